"""Latency on a seeded sample (harness.latency): every test question scored in throughput batches, untimed; a
fixed sample, the same for every system, timed one question at a time and reported with its size."""

from __future__ import annotations

import json

import pytest

from harness import latency, models
from harness.data import Question
from harness.evaluate import run_lm_eval
from harness.parts.prompt_builder import render_chat


def test_the_sample_is_seeded_capped_and_in_order():
    a = latency.sample_indices(170, seed=7, size=40)
    assert a == latency.sample_indices(170, seed=7, size=40)  # the same draw for every system of a run
    assert len(a) == 40 and a == sorted(a) and len(set(a)) == 40 and all(0 <= i < 170 for i in a)
    assert a != latency.sample_indices(170, seed=8, size=40)
    assert latency.sample_indices(12, seed=7, size=40) == list(range(12))  # capped at the questions there are


def test_percentiles_count_only_the_timed_questions_and_carry_intervals():
    values = [None, 0.2, None, 0.1, 0.4, 0.3, None]
    p = latency.percentiles(values, bootstrap=200, seed=0)
    assert p.n == 4 and p.p50 == pytest.approx(0.25) and p.mean == pytest.approx(0.25)
    assert p.p50_ci[0] <= p.p50 <= p.p50_ci[1] and p.p95_ci[0] <= p.p95 <= p.p95_ci[1]
    assert latency.percentiles([None, None]) is None
    assert latency.percentiles([0.5]).model_dump(exclude_none=True) == {"p50": 0.5, "p95": 0.5, "mean": 0.5, "n": 1}


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    ref = models.resolve_model(str(tiny_model_dir))
    return models.load_model(ref), models.load_tokenizer(ref)


def test_batched_scoring_gives_the_batch_one_answers_in_fp32(tiny):
    """The accuracy pass scores in batches (right-padded) in fp32 only: each question's log-likelihoods are those
    of scoring it alone (bit for bit on the tiny model; to ~3e-5 on SmolLM2, docs/performance.md)."""
    model, tok = tiny
    qs = [
        Question(id=f"q{i}", question="Does Alpha allow it? " * (1 + i % 4), answers=["Yes"], choices=["Yes", "No"])
        for i in range(6)
    ]
    prompts = [render_chat(tok, "Answer with Yes or No.", q.question) for q in qs]
    kw = {"answer_format": "yes-no", "warmup": 0, "max_new_tokens": 4, "seed": 0, "dtype": "float32"}
    one = run_lm_eval(model, tok, qs, prompts, task_name="harness_lat_b1", batch_size=1, **kw)
    four = run_lm_eval(model, tok, qs, prompts, task_name="harness_lat_b4", batch_size=4, **kw)
    for a, b in zip(one, four):
        assert a.loglikelihoods == pytest.approx(b.loglikelihoods, abs=1e-4) and a.prediction == b.prediction


def test_the_accuracy_pass_is_batched_in_fp32_only():
    """bf16 kernels round differently for a batch's shape (7 of 60 legal-qa answers moved at batch 8): in bf16
    the accuracy pass keeps evaluation.batch_size, and so the answers a batch-1 run gives."""
    from types import SimpleNamespace

    from harness.system_eval import accuracy_batch

    def ctx(dtype):
        tokenizer = lambda text: SimpleNamespace(input_ids=text.split())
        return SimpleNamespace(
            dtype=dtype, tokenizer=tokenizer, spec=SimpleNamespace(evaluation=SimpleNamespace(batch_size=1))
        )

    short = ["a short prompt"] * 5
    assert accuracy_batch(ctx("float32"), short) == 8
    assert accuracy_batch(ctx("bfloat16"), short) == 1
    assert accuracy_batch(ctx("float32"), [" ".join(["w"] * 700)]) == 1  # long prompts gain nothing from batches


def test_a_run_times_the_same_seeded_sample_for_every_system_and_says_its_size(tmp_path, tiny_model_dir):
    from harness.cli import main
    from tests.conftest import write_tiny_task

    task = write_tiny_task(tmp_path / "t", tiny_model_dir, evaluation={"latency_sample": 4})
    args = ["run", str(task), "--systems", "prompt,fewshot", "--quiet"]
    args += ["--reports-dir", str(tmp_path / "r"), "--indices-dir", str(tmp_path / "i")]
    try:
        main(args)
    except SystemExit as e:
        assert e.code in (0, None)
    run_dir = (tmp_path / "r" / "tiny-qa" / "latest").resolve()
    res = json.loads((run_dir / "results.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    test_ids = list(dict.fromkeys(r["id"] for r in rows))
    expected = [test_ids[i] for i in latency.sample_indices(len(test_ids), res["seed"], 4)]
    assert res["settings"]["latency_sample"] == expected and res["n_test"] > 4
    for name in ("prompt", "fewshot"):
        entry = res["systems"][name]
        assert entry["latency_s"]["n"] == 4 and len(entry["latency_s"]["p95_ci"]) == 2
        timed = [r["id"] for r in rows if r["system"] == name and r["latency_s"] is not None]
        assert timed == expected  # the same questions for both systems
        assert entry["batched_pass"]["n"] == res["n_test"] and entry["batched_pass"]["questions_per_s"] > 0
    assert "latency p50 / p95 (n=4)" in (run_dir / "summary.md").read_text()
    assert 'data-metric="latency_n" data-value="4"' in (run_dir / "index.html").read_text()
