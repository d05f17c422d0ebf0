"""Evaluation through lm-eval on the tiny model: one Measurement per question, in order, with margins and latency."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from harness import models
from harness.data import Question
from harness.evaluate import run_lm_eval, write_lm_eval_task
from harness.parts.prompt_builder import render_chat
from harness.records import Measurement


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    ref = models.resolve_model(str(tiny_model_dir))
    return models.load_model(ref), models.load_tokenizer(ref)


def _questions(n: int, choices=("Yes", "No")) -> list[Question]:
    return [
        Question(
            id=f"q{i}",
            question=f"Does the Alpha licence allow use number {i}?",
            answers=[choices[i % len(choices)]],
            choices=list(choices),
        )
        for i in range(n)
    ]


def test_yes_no_records(tiny):
    model, tok = tiny
    qs = _questions(5)
    prompts = [render_chat(tok, "Answer with Yes or No.", q.question) for q in qs]
    recs = run_lm_eval(
        model,
        tok,
        qs,
        prompts,
        answer_format="yes-no",
        task_name="harness_test_yesno",
        batch_size=1,
        warmup=1,
        max_new_tokens=4,
        seed=0,
    )
    assert [r.id for r in recs] == [q.id for q in qs]
    assert all(isinstance(r, Measurement) for r in recs)
    for r, p in zip(recs, prompts):
        assert r.prediction in ("Yes", "No")
        lls = r.loglikelihoods
        assert len(lls) == 2 and all(math.isfinite(x) and x < 0 for x in lls)
        assert math.isfinite(r.margin) and r.margin == pytest.approx(lls[0] - lls[1])
        assert r.prediction == ("Yes" if r.margin > 0 else "No")
        assert r.latency_s is not None and r.latency_s > 0
        assert r.prompt_tokens == len(tok(p).input_ids)


def test_margin_matches_a_direct_forward(tiny):
    """The margin is log P(Yes | prompt) - log P(No | prompt), as the model itself computes it.

    (lm-eval moves the prompt's trailing newline into the continuation, so each log-likelihood also holds
    log P("\\n" | prompt without it); that term is the same for both options and cancels in the margin.)
    """
    import torch

    model, tok = tiny
    q = _questions(1)[0]
    prompt = render_chat(tok, "", q.question)
    assert prompt.endswith("assistant\n")
    rec = run_lm_eval(
        model,
        tok,
        [q],
        [prompt],
        answer_format="yes-no",
        task_name="harness_test_direct",
        batch_size=1,
        warmup=0,
        max_new_tokens=4,
        seed=0,
    )[0]

    def logp(context: str, continuation: str) -> float:
        ctx = tok(context).input_ids
        cont = tok(context + continuation).input_ids[len(ctx) :]
        with torch.no_grad():
            out = torch.log_softmax(model(torch.tensor([ctx + cont])).logits[0].float(), -1)
        return sum(out[len(ctx) - 1 + i, t].item() for i, t in enumerate(cont))

    direct = {c: logp(prompt, c) for c in ("Yes", "No")}
    assert rec.margin == pytest.approx(direct["Yes"] - direct["No"], abs=1e-3)
    lm_eval_view = [logp(prompt.rstrip(), "\n" + c) for c in ("Yes", "No")]
    assert rec.loglikelihoods == pytest.approx(lm_eval_view, abs=1e-3)


def test_multiple_choice_records(tiny):
    model, tok = tiny
    qs = _questions(3, choices=("red", "green", "blue"))
    prompts = [render_chat(tok, "", q.question) for q in qs]
    recs = run_lm_eval(
        model,
        tok,
        qs,
        prompts,
        answer_format="multiple-choice",
        task_name="harness_test_mc",
        batch_size=1,
        warmup=0,
        max_new_tokens=4,
        seed=0,
    )
    for r in recs:
        assert r.prediction in ("red", "green", "blue") and len(r.loglikelihoods) == 3
        assert r.margin is None and "margin" not in r.model_dump(mode="json")  # yes-no only: omitted, not null


def test_scoring_only_the_last_positions_gives_the_full_logits_answer(tiny, monkeypatch):
    """Only the positions the continuations need are projected through the LM head (logits_to_keep),
    one question or a padded batch of them per call; the log-likelihoods are those of the full logits."""
    model, tok = tiny
    choices = ("Apache License 2.0", "MIT", "GNU General Public License v3 or later")
    qs = _questions(3, choices=choices)
    passage = "The licence text says that copies may be made and shared if the notice is kept. " * 3
    prompts = [render_chat(tok, "Name the licence.", passage + q.question) for q in qs]  # RAG-like: long context
    kept = []
    forward = type(model).forward

    def spy(self, *args, **kwargs):
        kept.append(kwargs.get("logits_to_keep"))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "forward", spy)
    one = run_lm_eval(
        model,
        tok,
        qs,
        prompts,
        answer_format="multiple-choice",
        task_name="harness_test_keep1",
        batch_size=1,
        warmup=0,
        max_new_tokens=4,
        seed=0,
    )
    shortest = min(len(tok(p).input_ids) for p in prompts)
    assert kept and all(isinstance(k, int) and k < shortest for k in kept), (kept, shortest)
    batched = run_lm_eval(
        model,
        tok,
        qs,
        prompts,
        answer_format="multiple-choice",
        task_name="harness_test_keep3",
        batch_size=3,
        warmup=0,
        max_new_tokens=4,
        seed=0,
    )
    kept.clear()
    monkeypatch.setattr(type(model), "forward", forward)
    import harness.evaluate as ev

    full_class = ev.make_timed_lm_class()
    monkeypatch.setattr(full_class, "_loglikelihood_tokens", full_class.__mro__[1]._loglikelihood_tokens)
    monkeypatch.setattr(ev, "make_timed_lm_class", lambda: full_class)
    full = run_lm_eval(
        model,
        tok,
        qs,
        prompts,
        answer_format="multiple-choice",
        task_name="harness_test_full",
        batch_size=1,
        warmup=0,
        max_new_tokens=4,
        seed=0,
    )
    for a, b, c in zip(one, batched, full):
        assert a.loglikelihoods == pytest.approx(c.loglikelihoods, abs=1e-4)
        assert b.loglikelihoods == pytest.approx(c.loglikelihoods, abs=1e-4)
        assert a.prediction == b.prediction == c.prediction


def test_free_text_records(tiny):
    model, tok = tiny
    qs = [Question(id=f"f{i}", question=f"Name licence {i}.", answers=["Alpha"]) for i in range(2)]
    prompts = [render_chat(tok, "", q.question) for q in qs]
    recs = run_lm_eval(
        model,
        tok,
        qs,
        prompts,
        answer_format="free-text",
        task_name="harness_test_free",
        batch_size=1,
        warmup=0,
        max_new_tokens=3,
        seed=0,
    )
    assert [r.id for r in recs] == ["f0", "f1"]
    for r in recs:
        assert isinstance(r.prediction, str) and r.latency_s > 0
        assert r.new_tokens is not None and r.new_tokens <= 3 + 1


def test_task_yaml_uses_absolute_data_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = Path("relative-folder")
    folder.mkdir()
    rows = [{"id": "q0", "prompt": "P", "answer": "Yes", "choices": ["Yes", "No"], "gold": 0}]
    write_lm_eval_task(folder, "harness_abs", rows, "yes-no", ["\n"], 8)
    cfg = yaml.safe_load((folder / "harness_abs.yaml").read_text())
    data_file = Path(cfg["dataset_kwargs"]["data_files"]["test"])
    assert data_file.is_absolute() and data_file.exists()
    assert data_file == (tmp_path / "relative-folder" / "harness_abs.jsonl")
    assert cfg["task"] == "harness_abs" and cfg["output_type"] == "multiple_choice"
    assert cfg["target_delimiter"] == ""
    # metrics lm-eval knows offline (an unknown name would fall back to `evaluate.load`, which needs the hub)
    assert [m["metric"] for m in cfg["metric_list"]] == ["acc"]

    write_lm_eval_task(folder, "harness_gen", [{"id": "q0", "prompt": "P", "answer": "x"}], "free-text", ["\n"], 8)
    gen = yaml.safe_load((folder / "harness_gen.yaml").read_text())
    assert Path(gen["dataset_kwargs"]["data_files"]["test"]).is_absolute()
    assert gen["output_type"] == "generate_until"
    assert gen["generation_kwargs"]["max_gen_toks"] == 8 and gen["generation_kwargs"]["do_sample"] is False
