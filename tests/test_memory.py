"""Memory per system as if it ran alone (harness.measure.MemoryLedger): a system's serving peak does not carry
what an earlier system of the same run loaded or freed, and training is measured apart from serving."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from harness.measure import MemoryLedger, rss_mb
from tests.conftest import write_tiny_task


def test_a_stage_carries_only_the_resources_its_system_uses():
    ledger = MemoryLedger()
    held = {}
    with ledger.loading("index"):
        held["index"] = np.ones(40 * 2**20 // 8)  # 40 MB, resident
    assert 35 < ledger.sizes["index"] < 50
    ledger.begin_system()  # a system that does not use the index
    with ledger.footprint() as fp:
        scratch = np.ones(30 * 2**20 // 8)
        time.sleep(0.3)  # resident for several of PeakMemory's samples (every 0.05 s)
        del scratch
    assert "index" not in fp.resources_mb and 25 < fp.stage_mb < 40
    assert fp.peak_mb == pytest.approx(ledger.process_mb + fp.stage_mb, abs=0.2)
    ledger.begin_system()  # one that does
    ledger.use("index")
    with ledger.footprint() as fp:
        pass
    assert fp.resources_mb == {"index": ledger.sizes["index"]} and fp.stage_mb < 5
    # memory an earlier stage freed is handed back before the next is measured
    junk = [bytes(1000) for _ in range(60_000)]  # many small blocks on the heap
    del junk
    ledger.begin_system()
    with ledger.footprint() as fp:
        pass
    assert fp.stage_mb < 5 and rss_mb() < ledger.process_mb + 80


def test_a_pass_that_is_not_serving_is_left_out_of_the_peak_and_what_it_keeps_is_not():
    """Scoring many questions at once (batches, scoring workers) is not what answering one user takes
    (harness.system_eval): its memory is not counted, what it leaves allocated is, and so is the rest."""
    from harness.measure import PeakMemory, not_counted

    with PeakMemory() as mem:
        start = mem.peak_mb
        with not_counted():
            scratch = np.ones(120 * 2**20 // 8)  # 120 MB, resident for several samples
            time.sleep(0.3)
            del scratch
        assert mem.peak_mb - start < 20
        with not_counted():
            kept = np.ones(40 * 2**20 // 8)  # still allocated after the pass
        time.sleep(0.2)
        assert 30 < mem.peak_mb - start < 60
        serving = np.ones(80 * 2**20 // 8)
        time.sleep(0.2)
        del serving
    assert 100 < mem.peak_mb - start < 140 and kept.size


def _run(task, order, home, tmp_path, *extra, output: list | None = None):
    env = {**os.environ, "HARNESS_HOME": str(home)}
    reports = tmp_path / f"reports-{order[0]}"
    cmd = [sys.executable, "-m", "harness.cli", "run", str(task), "--systems", ",".join(order)]
    cmd += ["--reports-dir", str(reports), "--indices-dir", str(tmp_path / "indices"), *extra]
    cmd += [] if output is not None else ["--quiet"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    if output is not None:
        output.append(done.stderr)  # progress and the estimate go to stderr
    return json.loads(next(reports.glob("*/latest/results.json")).read_text())["systems"]


def test_serving_peaks_do_not_depend_on_the_order_of_the_systems(tmp_path, tiny_model_dir, monkeypatch):
    """prompt, lora (trained in this process), rag; then rag, lora (reused), prompt in a fresh process, every
    evaluation measured again: the serving peaks agree within 5%. Before, lora's evaluation peak was its
    training peak, and prompt after rag carried rag's embedder and index. The first run probes the machine for
    its time estimate (in a child process); the second reads the stored rates: neither is in the peaks."""
    monkeypatch.delenv("HARNESS_ESTIMATE", raising=False)
    task = write_tiny_task(tmp_path / "t", tiny_model_dir, evaluation={"calibration_limit": 4})
    home = tmp_path / "home"
    printed: list[str] = []
    first = _run(task, ["prompt", "lora", "rag"], home, tmp_path, "--limit", "6", output=printed)
    # the estimate names the child's probe as what it took, not the instant of reading its figures back
    lines = printed[0].splitlines()
    [probe_line] = [line for line in lines if "probe this machine's speed" in line and "done in" in line]
    [estimate_line] = [line for line in lines if "estimated time on this machine" in line]
    child_s = float(probe_line.split("done in ")[1].split(" s")[0])
    reported_s = float(estimate_line.split("probe took ")[1].split(" s")[0])
    assert abs(reported_s - child_s) <= 1, (probe_line, estimate_line)
    assert "rates measured earlier" not in printed[0]
    second = _run(task, ["rag", "lora", "prompt"], home, tmp_path, "--limit", "6", "--reevaluate")
    assert first["lora"]["training"] is not None and first["lora"]["cached"] is False and second["lora"]["cached"]
    assert list((home / "probe").glob("*.json")), "the first run probed the machine and stored the rates"
    for name in ("prompt", "lora", "rag"):
        a, b = first[name]["peak_memory_mb"], second[name]["peak_memory_mb"]
        print(f"{name}: serving {a} / {b} MB", first[name]["serving_memory"], second[name]["serving_memory"])
        assert abs(a - b) <= 0.05 * min(a, b), (
            name,
            a,
            b,
            first[name]["serving_memory"],
            second[name]["serving_memory"],
        )
    # rag's serving peak holds its embedder and index; prompt's holds neither
    assert set(first["rag"]["serving_memory"]["resources_mb"]) == {"base model", "embedder", "index"}
    assert set(second["prompt"]["serving_memory"]["resources_mb"]) == {"base model"}
    # training is measured apart and recorded on its own; lora serves about what prompt does (the same base
    # model with a small adapter merged in), though it trained in the same process just before
    lora = first["lora"]
    assert lora["training_peak_memory_mb"] == lora["training"]["peak_memory_mb"] > lora["serving_memory"]["process_mb"]
    assert lora["peak_memory_mb"] <= 1.1 * first["prompt"]["peak_memory_mb"]
