"""Scoring workers (harness.workers): untimed passes scored on two threads side by side, each question's answer
its own whichever thread scored it, and the timed latency sample still run alone."""

from __future__ import annotations

import copy
import threading
import time
from types import SimpleNamespace

import pytest

from harness import latency, models, workers
from harness.data import Question
from harness.evaluate import run_lm_eval
from harness.parts.prompt_builder import render_chat
from harness.records import Measurement


def test_auto_is_two_workers_on_two_threads_and_one_on_a_gpu_or_with_vllm():
    import torch

    from harness.context import RunContext

    assert workers.resolve("auto", 2) == 2 and workers.resolve("auto", 8) == 2 and workers.resolve("auto", 1) == 1
    assert workers.resolve(3, 2) == 2 and workers.resolve(1, 8) == 1  # at most one per torch thread
    assert workers.resolve("auto", 2, device="cuda") == 1 and workers.resolve(2, 2, device="cuda") == 1
    ctx = object.__new__(RunContext)
    ctx.device = "cpu"
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for backend, expected in (("hf", 2), ("vllm", 1)):  # vLLM batches on its own
            ctx.spec = SimpleNamespace(evaluation=SimpleNamespace(workers="auto", backend=backend))
            assert ctx.scoring_workers() == expected
    finally:
        torch.set_num_threads(before)


def test_every_item_runs_once_on_two_threads_with_one_torch_thread_each():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    seen, both = [], threading.Barrier(2, timeout=10)

    def work(item):
        if item < 2:
            both.wait()  # the first two items only get past here when two threads hold them at once
        seen.append(
            (item, threading.current_thread().name, torch.get_num_threads(), torch.is_inference_mode_enabled())
        )

    try:
        workers.run_shared(range(9), work, 2)
        assert torch.get_num_threads() == 2  # the caller's count again
    finally:
        torch.set_num_threads(before)
    assert sorted(i for i, *_ in seen) == list(range(9))
    assert {name for _, name, *_ in seen} == {"harness-worker-0", "harness-worker-1"}
    assert {n for *_, n, _ in seen} == {1} and all(inference for *_, inference in seen)


def test_one_worker_runs_in_order_on_the_callers_thread():
    seen = []
    workers.run_shared(range(4), lambda i: seen.append((i, threading.current_thread().name)), 1)
    assert seen == [(i, threading.current_thread().name) for i in range(4)]


def test_a_workers_error_stops_the_others_and_reaches_the_caller():
    done = []

    def work(item):
        if item == 1:
            raise ValueError("question 1 failed")
        time.sleep(0.01)
        done.append(item)

    with pytest.raises(ValueError, match="question 1 failed"):
        workers.run_shared(range(50), work, 2)
    time.sleep(0.05)
    assert len(done) < 49  # they stopped after their current item instead of scoring everything


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    ref = models.resolve_model(str(tiny_model_dir))
    return models.load_model(ref), models.load_tokenizer(ref)


@pytest.mark.parametrize("answer_format", ["yes-no", "free-text"])
def test_two_workers_score_the_answers_of_one(tiny, answer_format):
    """Log-likelihoods, generations and the cut-off flag are each question's own, whichever thread scored it:
    the per-call state (logits kept, the question being generated, cut-off texts) is the calling thread's."""
    import torch

    model, tok = tiny
    qs = [
        Question(
            id=f"q{i}",
            question="Does Alpha allow it? " * (1 + i % 4),
            answers=["Yes"],
            choices=["Yes", "No"] if answer_format == "yes-no" else None,
        )
        for i in range(10)
    ]
    prompts = [render_chat(tok, "Answer with Yes or No.", q.question) for q in qs]
    kw = {"answer_format": answer_format, "warmup": 0, "max_new_tokens": 5, "seed": 0, "dtype": "float32"}
    threads = set()
    forward = model.forward

    def recording(*a, **k):  # a pause inside every forward pass, as a real model's: the other worker runs then
        threads.add(threading.current_thread().name)
        time.sleep(0.005)
        return forward(*a, **k)

    decode = tok.decode

    def slow_decode(*a, **k):  # and one between a generation and reading back whether it was cut off
        time.sleep(0.005)
        return decode(*a, **k)

    config = model.generation_config
    if answer_format == "free-text":  # never ending (no end token, no line break): every answer is cut off
        stops = [i for t, i in tok.get_vocab().items() if "\n" in tok.convert_tokens_to_string([t])]
        model.generation_config = copy.deepcopy(config)
        model.generation_config.suppress_tokens = sorted({tok.eos_token_id, tok.pad_token_id, *stops})
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        # batches of 2 rows of other lengths: each call keeps its own number of logits positions
        one = run_lm_eval(model, tok, qs, prompts, task_name=f"harness_w1_{answer_format[:3]}", batch_size=2, **kw)
        model.forward, tok.decode = recording, slow_decode
        two = run_lm_eval(
            model, tok, qs, prompts, task_name=f"harness_w2_{answer_format[:3]}", batch_size=2, workers=2, **kw
        )
        threads_seen = set(threads)
        threads.clear()
        alone = run_lm_eval(model, tok, qs, prompts, task_name=f"harness_w1s_{answer_format[:3]}", batch_size=2, **kw)
    finally:
        model.forward, model.generation_config = forward, config
        tok.__dict__.pop("decode", None)  # the class's own again
        torch.set_num_threads(before)
    assert threads_seen == {"harness-worker-0", "harness-worker-1"} and threads == {"MainThread"}
    fields = {"id", "prediction", "loglikelihoods", "margin", "new_tokens", "hit_max_new_tokens", "prompt_tokens"}
    assert [m.model_dump(include=fields) for m in two] == [m.model_dump(include=fields) for m in one]
    assert [m.model_dump(include=fields) for m in alone] == [m.model_dump(include=fields) for m in one]
    if answer_format == "free-text":
        assert all(m.hit_max_new_tokens and m.new_tokens for m in one)  # each worker's cut-off texts its own


# ------------------------------------------------ which questions each pass scores (harness.system_eval)


def _ctx(dtype: str, n_workers: int, sample: int = 4):
    ev = SimpleNamespace(batch_size=1, warmup=2, latency_sample=sample, backend="hf")
    logs = []
    reporter = SimpleNamespace(progress=lambda *a: None, log=logs.append)
    return SimpleNamespace(
        dtype=dtype,
        spec=SimpleNamespace(evaluation=ev, seed=7),
        tokenizer=lambda text: SimpleNamespace(input_ids=text.split()),
        reporter=reporter,
        scoring_workers=lambda: n_workers,
        logs=logs,
    )


def _scored(monkeypatch):
    from harness import system_eval

    calls = []

    def fake(system, ctx, questions, texts, task_name, batch, warmup, progress, workers=1):
        calls.append({"ids": [q.id for q in questions], "batch": batch, "warmup": warmup, "workers": workers})
        timed = "latency" in task_name or (len(calls) == 1 and workers == 1)
        return [
            Measurement(id=q.id, prompt_tokens=3, prediction="Yes", latency_s=0.5 if timed else 9.0) for q in questions
        ]

    monkeypatch.setattr(system_eval, "_score", fake)
    return calls


def _evaluate(ctx, n=12):
    from harness.system_eval import evaluate_timed

    qs = [Question(id=f"q{i}", question="q", answers=["Yes"], choices=["Yes", "No"]) for i in range(n)]
    prompts = SimpleNamespace(texts=["a short prompt"] * n, retrieved=None)
    return evaluate_timed(SimpleNamespace(name="prompt"), ctx, qs, "harness_prompt_test", prompts)


@pytest.mark.parametrize("dtype, batch", [("bfloat16", 1), ("float32", 8)])
def test_the_workers_score_every_question_and_the_sample_is_timed_alone(monkeypatch, dtype, batch):
    """Every answer comes from the workers' pass (one way of rounding for all); the sample is timed apart, alone."""
    calls = _scored(monkeypatch)
    ctx = _ctx(dtype, 2)
    measured, batched = _evaluate(ctx)
    sample = [f"q{i}" for i in latency.sample_indices(12, 7, 4)]
    assert len(calls) == 2
    assert calls[0] == {"ids": [f"q{i}" for i in range(12)], "batch": batch, "warmup": 0, "workers": 2}
    assert calls[1] == {"ids": sample, "batch": 1, "warmup": 2, "workers": 1}  # the latency sample, alone
    assert batched.workers == 2 and batched.n == 12 and batched.batch_size == batch
    assert [m.id for m in measured if m.latency_s is not None] == sample
    assert {m.latency_s for m in measured if m.latency_s is not None} == {0.5}  # timed alone, not beside another
    assert not ctx.logs  # the fake's answers agree


def test_a_timed_answer_that_differs_is_said_and_the_pass_answer_kept(monkeypatch):
    from harness import system_eval

    def fake(system, ctx, questions, texts, task_name, batch, warmup, progress, workers=1):
        answer = "No" if "latency" in task_name else "Yes"
        return [Measurement(id=q.id, prompt_tokens=3, prediction=answer, latency_s=0.5) for q in questions]

    monkeypatch.setattr(system_eval, "_score", fake)
    ctx = _ctx("bfloat16", 2)
    measured, _ = _evaluate(ctx)
    assert {m.prediction for m in measured} == {"Yes"}
    assert ctx.logs == [
        "  prompt: 4 of 4 timed answers (batch 1, alone) differ from the accuracy pass's (batch 1, 2 worker(s)); "
        "the accuracy pass's are scored"
    ]


@pytest.mark.parametrize(
    "ctx",
    [_ctx("bfloat16", 1), _ctx("bfloat16", 2, sample=40)],
    ids=["one worker", "every question timed"],
)
def test_one_timed_pass_where_workers_would_gain_nothing(monkeypatch, ctx):
    calls = _scored(monkeypatch)
    measured, batched = _evaluate(ctx)
    assert len(calls) == 1 and calls[0]["workers"] == 1 and calls[0]["warmup"] == 2 and batched.workers == 1
    assert sum(m.latency_s is not None for m in measured) == min(12, ctx.spec.evaluation.latency_sample)
