"""Calibration settings, generation measurements (time to first token, tokens per second) and the retrieval
figures a retrieval system's measurements carry."""

from __future__ import annotations

import json

import pytest

from harness import stats
from harness.calibration import CONTENT_FREE, calibration_questions, calibration_threshold
from harness.context import Reporter, RunContext
from harness.data import Question, load_task_data
from harness.models import resolve_model
from harness.records import Measurement, Passage
from harness.spec import load_spec
from harness.system_eval import evaluate_system, with_retrieval
from harness.systems import make_system
from tests.conftest import write_tiny_task


def _ctx(task, tmp_path):
    spec = load_spec(task)
    return RunContext(spec, load_task_data(spec), resolve_model(spec.model), Reporter(), indices_dir=tmp_path / "i")


def _threshold(system, ctx):
    """What a run does: the calibration questions, scored in throughput batches, then the threshold."""
    questions = calibration_questions(ctx)
    return calibration_threshold(ctx, questions, evaluate_system(system, ctx, questions, "cal", timed=False))


def test_contextual_calibration_is_the_content_free_margin(tmp_path, tiny_model_dir):
    ctx = _ctx(write_tiny_task(tmp_path / "t", tiny_model_dir, evaluation={"calibration": "contextual"}), tmp_path)
    system = make_system("prompt", ctx)
    threshold = _threshold(system, ctx)
    free = [
        Question(id=str(i), question=t, answers=["Yes"], choices=["Yes", "No"]) for i, t in enumerate(CONTENT_FREE)
    ]
    margins = [r.margin for r in evaluate_system(system, ctx, free, "check_cf")]
    # scored one at a time here, batched (padded) in the run: the same up to rounding
    assert threshold == pytest.approx(sum(margins) / len(margins), abs=1e-4)


def test_dev_threshold_is_fitted_on_dev_not_test(tmp_path, tiny_model_dir):
    ctx = _ctx(write_tiny_task(tmp_path / "t", tiny_model_dir), tmp_path)
    system = make_system("prompt", ctx)
    dev = calibration_questions(ctx)  # drawn from dev with training's answer mix (tests/test_strata.py)
    assert dev and {q.id for q in dev} <= {q.id for q in ctx.data.dev}
    assert {q.id for q in dev}.isdisjoint(q.id for q in ctx.data.train + ctx.data.test)
    margins = [r.margin for r in evaluate_system(system, ctx, dev, "check_dev")]
    expected = stats.fit_threshold([int(q.answers[0] == "Yes") for q in dev], margins)
    assert _threshold(system, ctx) == pytest.approx(expected, abs=1e-4)


def test_free_text_records_first_token_and_tokens_per_second(tmp_path, tiny_model_dir):
    rows = [
        {"id": f"q{i}", "question": f"What is item {i}?", "answer": ["alpha", "a"], "doc_id": f"d{i % 3}"}
        for i in range(12)
    ]
    folder = tmp_path / "ft"
    folder.mkdir()
    (folder / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "task.yaml").write_text(
        "name: ft\nanswer_format: free-text\n"
        f"model: {tiny_model_dir}\n"
        "data: {questions: {path: q.jsonl}, split: {by: doc, test_fraction: 0.34, dev_fraction: 0}}\n"
        "evaluation: {max_new_tokens: 6, warmup: 1, dtype: float32, bootstrap: 100}\n"
    )
    ctx = _ctx(folder / "task.yaml", tmp_path)
    recs = evaluate_system(make_system("prompt", ctx), ctx, ctx.data.test, "check_gen")
    assert recs and all(isinstance(r.prediction, str) for r in recs)
    for r in recs:
        assert r.first_token_s is not None and 0 < r.first_token_s <= r.latency_s
        if r.new_tokens:
            assert r.tokens_per_s == pytest.approx(r.new_tokens / r.latency_s)


def test_a_retrieval_measurement_carries_its_passages_and_the_latency_a_user_sees():
    measured = Measurement(id="q1", prediction="Yes", latency_s=0.25, prompt_tokens=40, loglikelihoods=[-1.0, -2.0])
    passages = [{"doc_id": "alpha", "chunk": 2, "score": 0.8125, "text": "The Alpha licence permits it."}]
    m = with_retrieval(measured, passages, ["alpha", "bravo"], 0.125)
    assert m.latency_s == 0.375 and m.model_latency_s == 0.25 and m.retrieval_latency_s == 0.125
    assert m.retrieved == [Passage(doc_id="alpha", chunk=2, score=0.8125, text="The Alpha licence permits it.")]
    assert m.ranked_doc_ids == ["alpha", "bravo"]
    # a new measurement: the model's own one is left as it was measured
    assert measured.latency_s == 0.25 and measured.retrieved is None
    # fields a plain system does not have are absent from its dump, not null; a truncated flag only when cut
    assert set(measured.model_dump(mode="json")) == {
        "id",
        "prediction",
        "latency_s",
        "prompt_tokens",
        "loglikelihoods",
    }
    assert "truncated" not in m.model_dump(mode="json")["retrieved"][0]


@pytest.mark.parametrize("endless", [False, True])
def test_generations_cut_off_at_max_new_tokens_are_flagged_alike_in_any_batch(tmp_path, tiny_model_dir, endless):
    """A generation that used the whole max_new_tokens budget without stopping is flagged; the flag is the same
    whether lm-eval generates one question at a time or several in a (reordered) batch. The tiny model ends at
    once; with its end token and line breaks suppressed (`endless`) it never stops."""
    import shutil

    import torch
    from transformers import AutoTokenizer

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    if endless:
        tok = AutoTokenizer.from_pretrained(model_dir)
        stops = [i for t, i in tok.get_vocab().items() if "\n" in tok.convert_tokens_to_string([t])]
        config = json.loads((model_dir / "generation_config.json").read_text())
        config["suppress_tokens"] = sorted({tok.eos_token_id, tok.pad_token_id, *stops})
        (model_dir / "generation_config.json").write_text(json.dumps(config))
    rows = [{"id": f"q{i}", "question": "Say " + "more " * i, "answer": "x"} for i in range(16)]
    folder = tmp_path / "tr"
    folder.mkdir()
    (folder / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    flags = {}
    for batch in (1, 3):
        (folder / "task.yaml").write_text(
            "name: tr\nanswer_format: free-text\n"
            f"model: {model_dir}\n"
            "data: {questions: {path: q.jsonl}, split: {by: question, test_fraction: 0.5, dev_fraction: 0}}\n"
            f"evaluation: {{max_new_tokens: 4, warmup: 0, dtype: float32, batch_size: {batch}}}\n"
        )
        ctx = _ctx(folder / "task.yaml", tmp_path)
        system = make_system("prompt", ctx)
        flags[batch] = [r.hit_max_new_tokens for r in evaluate_system(system, ctx, ctx.data.test, f"tr_{batch}")]
    assert flags[1] == flags[3] and all(f is endless for f in flags[1])
    # The reference: generate each prompt directly and see whether it ended before the budget.
    with system.model() as model, torch.no_grad():
        for prompt in system.prompts(ctx.data.test).texts:
            ids = ctx.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
            new = model.generate(ids, max_new_tokens=4, do_sample=False)[0, ids.shape[1] :].tolist()
            stopped = ctx.tokenizer.eos_token_id in new or "\n" in ctx.tokenizer.decode(new)
            assert (len(new) == 4 and not stopped) is endless, (prompt, new)
