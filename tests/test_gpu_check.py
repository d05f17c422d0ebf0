"""bench/gpu_check.py, the prepared GPU check, up to the CUDA calls: its plan and estimate (`--dry`), and its
scoring stage through both backends on the tiny model (HF on the CPU, vLLM against the fake vLLM package)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from harness import memory_estimate as me
from tests.test_evaluate_vllm import fake_vllm  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu_check.py"


def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dry_run_prints_the_plan_and_the_estimate_of_harness_memory(tmp_path):
    out = tmp_path / "plan.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    shape = me.shape_of(me.load_config(str(ROOT / "configs" / "llama-3-8b")))
    expected = me.estimate(shape, "qlora", 16, "all-linear", 8, 512, checkpointing=True)
    assert report["estimate"]["total"] == round(expected.total / 2**30, 3)
    assert report["evaluation"]["backend"] == "vllm" and report["prompts"] == 64 and report["dry"] is True


def test_scoring_stage_runs_both_backends_on_the_same_prompts(tmp_path, tiny_model_dir, fake_vllm):  # noqa: F811
    check = gpu_check()
    args = check.parse_args(["--prompts", "4", "--work", str(tmp_path)])
    hf = check.score(Path(tiny_model_dir), args, "hf")
    assert hf["backend"] == "hf" and hf["questions"] == 4 and hf["finite_margins"] is True
    adapter = tmp_path / "adapter"
    vllm = check.score(Path(tiny_model_dir), args, "vllm", adapter)
    assert vllm["backend"] == "vllm" and vllm["questions"] == 4 and vllm["adapter"] is True
    assert {c["lora"].lora_path for c in fake_vllm.calls} == {str(adapter.resolve())}
    assert len(fake_vllm.calls) == 2 * (4 + 2), "both options of 4 questions and 2 warm-up questions"
