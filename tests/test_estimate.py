"""The time estimate (harness.estimate, harness.probe), `harness run --dry-run`, and the ETA on progress lines."""

from __future__ import annotations

import math

import pytest

from harness.context import Reporter
from harness.estimate import Estimate, Stage, SystemPlan, estimate, padded_tokens
from harness.probe import Rates
from harness.spec import load_spec
from tests.conftest import run_cli, write_tiny_task


def test_padded_tokens_pads_each_batch_to_its_longest():
    assert padded_tokens([10, 10, 10, 10], 2, 0) == 40
    assert padded_tokens([5, 20], 2, 0) == 40  # one batch of two, padded to 20
    assert padded_tokens([5, 20], 1, 0) == 25


def test_each_stage_is_its_work_times_the_probed_rate(tmp_path, tiny_model_dir):
    spec = load_spec(write_tiny_task(tmp_path, tiny_model_dir, evaluation={"warmup": 2}))
    r = Rates(eval_a=0.1, eval_b=0.001, lm_eval_overhead_s=1.0, merge_s=0.5, train_load_s=2.0, embedder_load_s=3.0)
    r.train_tokens_per_s["lora"] = 100.0
    r.embed_chunk_s = 0.2
    plans = [
        SystemPlan("prompt", "prompt", 100.0),
        SystemPlan("lora", "finetune", 100.0, train_rows=[50] * 16, batch_size=8, epochs=2, method="lora"),
        SystemPlan("rag", "rag", 500.0, index=True),
    ]
    stages = {s.name: s for s in estimate(spec, plans, r, n_test=10, n_cal=0, n_chunks=40)}
    # 10 questions + 2 warm-up at 0.1 + 0.001 * 100 s, plus one lm-eval call
    assert stages["prompt: evaluate 10 questions"].seconds == pytest.approx(12 * 0.2 + 1.0)
    assert stages["prompt: build"].seconds == 0
    # 100 questions: in batches of 8 (1024 // 100 tokens), then the 40 of the latency sample + 2 timed one by one
    more = {s.name: s for s in estimate(spec, plans[:1], r, n_test=100, n_cal=0, n_chunks=0)}
    batched = math.ceil(100 / 8) * 0.1 + 100 * 0.001 * 100 + 1.0
    assert more["prompt: evaluate 100 questions"].seconds == pytest.approx(batched + 42 * 0.2 + 1.0)
    # 2 epochs x 2 steps x 8 rows x 50 tokens at 100 tokens/s, plus loading the weights to train
    assert stages["lora: build"].seconds == pytest.approx(2 * 2 * 8 * 50 / 100 + 2.0)
    assert stages["lora: evaluate 10 questions"].seconds == pytest.approx(12 * 0.2 + 1.0 + 0.5)
    assert stages["rag: build"].seconds == pytest.approx(40 * 0.2)  # the embedder is loaded before the stages
    assert "rag: throughput probe (4 batch sizes, 8 questions each)" in stages
    cached = SystemPlan("lora", "finetune", 100.0, train_rows=[50] * 16, batch_size=8, epochs=2, method="lora")
    cached.cached = True
    (build, *_) = estimate(spec, [cached], r, n_test=10, n_cal=0, n_chunks=0)
    assert build.seconds == 0 and "cached" in build.how


def test_the_untimed_passes_run_at_the_workers_probed_speedup_and_the_sample_alone(tmp_path, tiny_model_dir):
    """With two scoring workers (harness.workers) every question is scored side by side at the probed speed-up,
    and the latency sample again one at a time; calibration is side by side too."""
    spec = load_spec(write_tiny_task(tmp_path, tiny_model_dir, evaluation={"warmup": 2, "dtype": "bfloat16"}))
    plan = [SystemPlan("prompt", "prompt", 100.0)]
    one = Rates(eval_a=0.1, eval_b=0.001, lm_eval_overhead_s=1.0)
    two = Rates(eval_a=0.1, eval_b=0.001, lm_eval_overhead_s=1.0, workers=2, workers_speedup=1.6)
    (_, alone, _) = estimate(spec, plan, one, n_test=100, n_cal=30, n_chunks=0)
    (_, side, _) = estimate(spec, plan, two, n_test=100, n_cal=30, n_chunks=0)
    q = 0.1 + 0.001 * 100
    calibration = math.ceil(30 / 8) * 0.1 + 30 * 0.001 * 100  # short prompts: batches of 8
    assert alone.seconds == pytest.approx(102 * q + 1.0 + calibration + 1.0)  # bf16, one worker: one timed pass
    assert side.seconds == pytest.approx(100 * q / 1.6 + 1.0 + 42 * q + 1.0 + calibration / 1.6 + 1.0)
    assert "on 2 workers (1.60x)" in side.how and "workers" not in alone.how


def test_rag_lora_trains_at_its_own_probed_rate_apart_from_lora(tmp_path, tiny_model_dir):
    """RAFT rows (prompts with passages) train at another rate per token than plain rows: a run with both lora and
    rag+lora probes and uses each rate for its own system (harness.probe.train_rate_key)."""
    spec = load_spec(write_tiny_task(tmp_path, tiny_model_dir))
    r = Rates(train_load_s=0.0)
    r.train_tokens_per_s.update({"lora": 200.0, "rag+lora": 100.0})
    r.train_peak_mb.update({"lora": 900.0, "rag+lora": 1500.0})
    plans = [
        SystemPlan("lora", "finetune", 100.0, train_rows=[50] * 8, batch_size=8, epochs=1, method="lora"),
        SystemPlan("rag+lora", "rag+finetune", 100.0, train_rows=[50] * 8, batch_size=8, epochs=1, method="lora"),
        SystemPlan("dpo", "preference", 100.0, train_rows=[50] * 8, batch_size=8, epochs=1, method="dpo"),
    ]
    stages = {s.name: s for s in estimate(spec, plans, r, n_test=10, n_cal=0, n_chunks=0)}
    assert stages["lora: build"].seconds == pytest.approx(400 / 200)
    assert stages["rag+lora: build"].seconds == pytest.approx(400 / 100)
    assert (stages["lora: build"].peak_mb, stages["rag+lora: build"].peak_mb) == (900.0, 1500.0)
    assert stages["dpo: build"].seconds == pytest.approx(400 / 200)  # preference training probes as lora


def test_a_cached_index_is_not_estimated_again_when_the_adapter_still_trains(tmp_path, tiny_model_dir):
    """rag+lora with the index already built (by an earlier run) but no adapter yet: its build is the training only."""
    spec = load_spec(write_tiny_task(tmp_path, tiny_model_dir))
    r = Rates(train_load_s=0.0, embed_chunk_s=0.5)
    r.train_tokens_per_s["rag+lora"] = 100.0
    plan = SystemPlan("rag+lora", "rag+finetune", 100.0, train_rows=[50] * 8, batch_size=8, epochs=1, method="lora")
    plan.index = True
    (fresh, *_) = estimate(spec, [plan], r, n_test=10, n_cal=0, n_chunks=40)
    assert fresh.seconds == pytest.approx(40 * 0.5 + 400 / 100)
    plan.index_cached = True
    (build, *_) = estimate(spec, [plan], r, n_test=10, n_cal=0, n_chunks=40)
    assert build.seconds == pytest.approx(400 / 100) and "reuses the index" in build.how


def test_estimate_lines_show_every_stage_and_the_total():
    est = Estimate(["plan: t"], [Stage("a: build", 90.0, 1500.0, "x"), Stage("a: evaluate 3 questions", 30.0)], 4.0)
    lines = est.lines()
    assert lines[0] == "plan: t" and "probe took 4 s" in lines[1]
    assert "1 min 30 s" in lines[2] and "peak ~1,500 MB" in lines[2]
    assert lines[-1].split()[0] == "total" and lines[-1].endswith("2 min 00 s")


def test_progress_lines_show_elapsed_time_and_an_eta():
    rep = Reporter()
    rep.expect({"a: build": 10.0, "a: evaluate 4 questions": 20.0})
    with rep.stage("a: build"):
        pass
    with rep.stage("a: evaluate 4 questions"):
        step = rep.progress("a: test", 4)
        step()
        step(3)
    assert rep.lines[0] == "▸ a: build (estimate 10 s; run ETA 30 s)"
    assert rep.lines[1].endswith("(estimated 10 s)")
    assert rep.lines[2] == "▸ a: evaluate 4 questions (estimate 20 s; run ETA 20 s)"
    assert "ETA" in rep.lines[3] and rep.lines[3].startswith("  a: test: 1/4 (")
    assert "ETA" not in rep.lines[4]  # the last one: nothing left
    assert rep._eta("a: evaluate 4 questions", 0) == ""  # no stage open any more


@pytest.fixture(scope="module")
def task(tmp_path_factory, tiny_model_dir):
    return write_tiny_task(tmp_path_factory.mktemp("dry"), tiny_model_dir, evaluation={"calibration": "none"})


def test_dry_run_prints_the_plan_and_estimates_and_writes_nothing(task, tmp_path):
    reports = tmp_path / "reports"
    code, out, err = run_cli(
        "run", task, "--dry-run", "--limit", 4, "--reports-dir", reports, "--indices-dir", tmp_path / "i"
    )
    assert code == 0, err
    assert out.startswith("plan: tiny-qa")
    for stage in ("prompt: build", "lora: build", "lora: evaluate 4 questions", "rag: build"):
        assert f"  {stage} " in out, stage
    assert "lora (finetune): build -> evaluate -> throughput probe; trains on " in out
    assert [line.split()[0] for line in out.splitlines() if line.startswith("  total")] == ["total"]
    assert not reports.exists() and not (tmp_path / "i").exists()


def test_dry_run_on_a_bad_task_file_fails_as_a_run_does(tmp_path, tiny_model_dir):
    bad = write_tiny_task(tmp_path, tiny_model_dir, rag={"k": 0})
    args = ("--reports-dir", tmp_path / "r", "--indices-dir", tmp_path / "i")
    dry = run_cli("run", bad, "--dry-run", *args)
    real = run_cli("run", bad, *args)
    assert dry[0] == real[0] == 2
    assert dry[2] == real[2] and "rag.k" in dry[2] and dry[2].count("\n") <= 2, dry[2]
    assert not (tmp_path / "r").exists()
