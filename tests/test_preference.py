"""dpo / orpo: preference pairs from a split or a file, and preference training on the tiny model."""

from __future__ import annotations

import json

import pytest

from harness import cache, files
from harness.context import Reporter, RunContext
from harness.data import Question, load_task_data
from harness.errors import HarnessError
from harness.models import resolve_model
from harness.records import Measurement
from harness.spec import load_spec
from harness.systems import make_system
from harness.systems.finetune import training_rows
from harness.systems.preference import choice_rejected, make_pairs, read_pair_file, text_rejected
from tests.conftest import tiny_questions, write_tiny_task

FAST = {"logging_steps": 4}  # fewer evaluations and checkpoints: the tiny runs stay a few seconds


def make_ctx(task_path, tmp_path, **updates) -> RunContext:
    spec = load_spec(task_path)
    if updates:
        spec = spec.model_copy(update=updates)
    return RunContext(spec, load_task_data(spec), resolve_model(spec.model), Reporter(), indices_dir=tmp_path / "idx")


def task_with(tmp_path, tiny_model_dir, **overrides):
    overrides.setdefault("finetune", FAST)
    return write_tiny_task(tmp_path / "tasks", tiny_model_dir, **overrides)


# ---------------------------------------------------------------- pairs from a split


def test_pairs_from_a_yes_no_split(tmp_path, tiny_model_dir):
    ctx = make_ctx(task_with(tmp_path, tiny_model_dir), tmp_path)
    train = ctx.data.train
    pairs, stats = make_pairs(ctx, train, "train")
    assert pairs == make_pairs(ctx, train, "train")[0], "deterministic"
    assert [p["prompt"] for p in pairs] == [r["prompt"] for r in training_rows(ctx, train)]  # the evaluation prompt
    assert [p["chosen"] for p in pairs] == [q.answers[0] for q in train]
    assert [p["rejected"] for p in pairs] == [{"Yes": "No", "No": "Yes"}[q.answers[0]] for q in train]
    assert stats == {
        "split": "train",
        "questions": len(train),
        "model_wrong": 0,
        "other_option": len(train),
        "skipped": 0,
    }
    assert {q.id for q in train}.isdisjoint(q.id for q in ctx.data.test)


def test_choice_rejected_is_the_models_wrong_answer_else_the_best_wrong_option():
    q = Question("q", "Which?", ["B"], choices=["A", "B", "C"])
    assert choice_rejected(q, [-1.0, -2.0, -3.0]) == ("A", "model-wrong")  # the model picks A: wrong
    assert choice_rejected(q, [-2.5, -1.0, -2.0]) == ("C", "other-option")  # right: the likeliest wrong option
    assert choice_rejected(q, [-2.0, -1.0, -2.0]) == ("A", "other-option")  # ties go to the first option


def test_text_rejected_is_the_models_wrong_answer_or_nothing():
    q = Question("q", "Capital of France?", ["Paris", "Paris, France"])
    assert text_rejected(q, " Lyon\n") == "Lyon"
    assert text_rejected(q, "paris.") is None  # right after normalisation: no pair
    assert text_rejected(q, "  ") is None


def test_pairs_from_a_multiple_choice_split_score_the_options_with_the_base_model(tmp_path, tiny_model_dir):
    task = task_with(tmp_path, tiny_model_dir, answer_format="multiple-choice", metrics=[])
    rows = [{**r, "choices": ["Yes", "No", "Unclear"]} for r in tiny_questions()]
    (task.parent / "tiny-qa" / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ctx = make_ctx(task, tmp_path)
    questions = ctx.data.train[:8]
    pairs, stats = make_pairs(ctx, questions, "train")
    assert len(pairs) == 8 and stats["model_wrong"] + stats["other_option"] == 8
    for q, p in zip(questions, pairs):
        assert p["chosen"] == q.answers[0] and p["rejected"] in q.choices and p["rejected"] != p["chosen"]
    assert pairs == make_pairs(ctx, questions, "train")[0], "deterministic"


def test_pairs_from_a_free_text_split_keep_only_wrong_answers(tmp_path, tiny_model_dir, monkeypatch):
    ctx = make_ctx(task_with(tmp_path, tiny_model_dir, answer_format="free-text", metrics=[]), tmp_path)
    questions = ctx.data.train[:3]
    answers = [f"not {questions[0].answers[0]}", questions[1].answers[0].lower(), ""]

    def fake_run_lm_eval(model, tok, qs, prompts, **kw):
        assert kw["answer_format"] == "free-text"
        return [Measurement(id=q.id, prediction=a, latency_s=None, prompt_tokens=0) for q, a in zip(qs, answers)]

    monkeypatch.setattr("harness.evaluate.run_lm_eval", fake_run_lm_eval)
    pairs, stats = make_pairs(ctx, questions, "train")
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [(questions[0].answers[0], answers[0])]
    assert stats["model_wrong"] == 1 and stats["skipped"] == 2


# ---------------------------------------------------------------- pairs from a file


def write_pairs(task, lines) -> None:
    (task.parent / "pairs.jsonl").write_text("".join(lines))


def file_task(tmp_path, tiny_model_dir, **pref):
    return task_with(tmp_path, tiny_model_dir, preference={"path": "pairs.jsonl", **pref})


def test_preference_file_is_read_and_rendered(tmp_path, tiny_model_dir):
    task = file_task(tmp_path, tiny_model_dir, fields={"prompt": "q", "chosen": "good", "rejected": "bad"})
    write_pairs(
        task,
        [
            '{"q": "Is it free?", "good": "Yes", "bad": "No"}\n',
            "\n",
            '{"q": "Is it paid?", "good": "No", "bad": "Yes", "note": 1}\n',
        ],
    )
    spec = load_spec(task)
    rows = read_pair_file(spec)
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in rows] == [
        ("Is it free?", "Yes", "No"),
        ("Is it paid?", "No", "Yes"),
    ]
    assert rows[1]["origin"].endswith("pairs.jsonl:3")


def test_preference_file_problems_name_file_line_and_field(tmp_path, tiny_model_dir):
    task = file_task(tmp_path, tiny_model_dir)
    write_pairs(
        task,
        [
            '{"prompt": "Q1?", "chosen": "Yes", "rejected": "No"}\n',
            '{"prompt": "Q2?", "chosen": "Yes"}\n',
            '{"prompt": "Q3?", "chosen": "  ", "rejected": "No"}\n',
            '{"prompt": "Q4?", "chosen": "Yes", "rejected": \n',
            '{"prompt": "Q5?", "chosen": "Yes", "rejected": "Yes"}\n',
        ],
    )
    with pytest.raises(HarnessError) as err:
        read_pair_file(load_spec(task))
    problems = err.value.problems
    assert len(problems) == 4
    assert problems[0].endswith("pairs.jsonl:4: invalid JSON (Expecting value, column 48)")  # read first
    assert "pairs.jsonl:2: field 'rejected' (rejected) is missing; fields on this line: prompt, chosen" in problems[1]
    assert problems[2].endswith("pairs.jsonl:3: field 'chosen' (chosen) is empty")
    assert "pairs.jsonl:5: chosen and rejected are the same answer" in problems[3]
    assert str(err.value).startswith(problems[0]) and "+3 more problems" in str(err.value)
    # the system refuses before any training starts
    with pytest.raises(HarnessError, match="pairs.jsonl:4: invalid JSON"):
        make_system("dpo", make_ctx(task, tmp_path)).validate()


def test_preference_file_with_renamed_fields_missing_and_absent_file(tmp_path, tiny_model_dir):
    task = file_task(tmp_path, tiny_model_dir, fields={"prompt": "question"})
    write_pairs(task, ['{"prompt": "Q1?", "chosen": "Yes", "rejected": "No"}\n'])
    with pytest.raises(HarnessError, match=r"pairs.jsonl:1: field 'question' \(prompt\) is missing"):
        read_pair_file(load_spec(task))
    write_pairs(task, ['{"question": "Q1?", "chosen": ["Yes"], "rejected": "No"}\n'])
    with pytest.raises(HarnessError, match=r"pairs.jsonl:1: field 'chosen' \(chosen\) must be text, got list"):
        read_pair_file(load_spec(task))
    write_pairs(task, ["\n"])
    with pytest.raises(HarnessError, match="holds no preference pairs"):
        read_pair_file(load_spec(task))
    (task.parent / "pairs.jsonl").unlink()
    with pytest.raises(HarnessError, match=r"tiny-qa.yaml:\d+: field 'preference.path': .*pairs.jsonl not found"):
        read_pair_file(load_spec(task))


# ---------------------------------------------------------------- cache identity


def test_key_follows_the_preference_settings_and_the_sft_adapter(tmp_path, tiny_model_dir):
    task = task_with(tmp_path, tiny_model_dir)
    spec = load_spec(task)
    ctx = make_ctx(task, tmp_path)
    dpo, orpo = make_system("dpo", ctx), make_system("orpo", ctx)
    assert dpo.adapter.folder.name.startswith("dpo-") and orpo.adapter.folder.name.startswith("orpo-")
    assert dpo.adapter.key == make_system("dpo", make_ctx(task, tmp_path)).adapter.key
    pref = spec.preference
    beta = make_ctx(task, tmp_path, preference=pref.model_copy(update={"beta": 0.2}))
    assert make_system("dpo", beta).adapter.key != dpo.adapter.key
    base = make_ctx(task, tmp_path, preference=pref.model_copy(update={"start_from": "base"}))
    assert make_system("dpo", base).adapter.key != dpo.adapter.key
    assert make_system("orpo", base).adapter.key == orpo.adapter.key, "orpo always starts from the base model"
    lora_r = make_ctx(task, tmp_path, finetune=spec.finetune.model_copy(update={"r": 2}))
    assert make_system("dpo", lora_r).adapter.key != dpo.adapter.key  # another supervised adapter to start from


# ---------------------------------------------------------------- training


def test_dpo_after_sft_trains_records_figures_and_is_cached(tmp_path, tiny_model_dir):
    ctx = make_ctx(task_with(tmp_path, tiny_model_dir), tmp_path)
    dpo = make_system("dpo", ctx)
    dpo.validate()
    info = dpo.build()
    t = info.training
    assert not info.cached and info.build_s > 0 and info.artifact_mb > 0
    assert t["method"] == "dpo" and t["start_from"] == "sft" and t["sft"]["cached"] is False
    assert t["seconds"] > 0 and t["tokens_per_s"] > 0 and t["peak_memory_mb"] > 0
    assert 0 < t["trainable_params"] < t["total_params"]
    assert t["examples"] == len(ctx.data.train) and t["steps"] == -(-len(ctx.data.train) // 4)
    assert t["pairs"]["dev_pairs"] == len(ctx.data.dev)
    curve = t["loss_curve"]
    assert any(p["train_loss"] is not None for p in curve) and any(p["eval_loss"] is not None for p in curve)
    assert {"loss", "rewards/accuracies"} <= set(t["final_eval"])
    final = dpo.adapter.folder
    assert files.verify(final) is None
    assert not (final / "ref").exists(), "only the trained adapter is kept, not DPO's reference copy"
    assert json.loads((final / files.MANIFEST).read_text())["training"]["method"] == "dpo"
    # the supervised adapter it started from is the lora system's, and is reused as such
    assert make_system("lora", ctx).build().cached
    again = make_system("dpo", ctx).build()
    assert again.cached and again.training["steps"] == t["steps"]
    with dpo.model() as model:
        assert list(model.peft_config) == ["default"]
    assert not hasattr(ctx.base_model(), "peft_config"), "the adapter comes off the shared base model again"


def test_orpo_trains_from_the_base_model(tmp_path, tiny_model_dir):
    ctx = make_ctx(task_with(tmp_path, tiny_model_dir, preference={"max_pairs": 12}), tmp_path)
    info = make_system("orpo", ctx).build()
    t = info.training
    assert t["method"] == "orpo" and t["start_from"] == "base" and t["sft"] is None
    assert t["examples"] == 12 and t["pairs"]["train_pairs"] == 12
    assert t["tokens_per_s"] > 0 and any(p["eval_loss"] is not None for p in t["loss_curve"])
    assert not list((cache.home() / "adapters" / "tiny-qa").glob("lora-*")), "no supervised adapter needed"
