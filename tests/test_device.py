"""`device:` / `--device` and `evaluation.backend`: what this machine lacks is refused at plan time, in one
line naming the field (or the option), before anything loads; the device a run used is in its manifest."""

from __future__ import annotations

import importlib.util
import subprocess

import pytest

from harness import checks
from harness.errors import HarnessError
from harness.manifest import build_manifest
from harness.run import RunOptions, plan
from harness.spec import load_spec
from tests.conftest import write_tiny_task


def _plan(tmp_path, task, **kw):
    return plan(RunOptions(task=str(task), reports_dir=tmp_path / "r", indices_dir=tmp_path / "i", **kw))


def _one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(checks, "cuda_devices", lambda: 0)


@pytest.fixture
def vllm_installed(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name in ("vllm", "ray") else real(name, *a)
    )


def test_cuda_without_a_gpu_fails_at_plan_time_naming_the_field_or_the_option(tmp_path, tiny_model_dir, no_gpu):
    task = write_tiny_task(tmp_path / "t", tiny_model_dir, device="cuda")
    with pytest.raises(HarnessError) as exc:
        _plan(tmp_path, task)
    line = _one_line(exc)
    assert "tiny-qa.yaml:" in line and "field 'device'" in line and "no CUDA GPU" in line
    task = write_tiny_task(tmp_path / "u", tiny_model_dir)
    with pytest.raises(HarnessError) as exc:
        _plan(tmp_path, task, device="cuda")
    assert _one_line(exc).startswith("--device cuda: torch sees no CUDA GPU")
    with pytest.raises(HarnessError, match="--device must be auto, cpu or cuda, got 'gpu'"):
        _plan(tmp_path, task, device="gpu")


def test_device_option_overrides_the_task_and_is_recorded_in_the_manifest(tmp_path, tiny_model_dir):
    from harness.data import load_task_data
    from harness.models import resolve_model

    task = write_tiny_task(tmp_path / "t", tiny_model_dir, device="cuda")
    p = _plan(tmp_path, task, device="cpu")
    assert p.spec.device == "cpu" and load_spec(task).device == "cuda"
    manifest = build_manifest(p.spec, resolve_model(p.spec.model), load_task_data(p.spec), p.opts, "run-1")
    assert manifest["config"]["device"] == "cpu"


def test_cli_device_cuda_on_this_cpu_machine_exits_2_with_one_line_and_no_run(tmp_path, tiny_model_dir, harness_cmd):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    task = write_tiny_task(tmp_path / "t", tiny_model_dir)
    out = subprocess.run(
        [*harness_cmd, "run", str(task), "--device", "cuda", "--reports-dir", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--device cuda: torch sees no CUDA GPU" in lines[0]
    assert not list((tmp_path / "r").glob("*/*"))


def test_vllm_backend_without_vllm_fails_at_plan_time(tmp_path, tiny_model_dir, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    task = write_tiny_task(tmp_path / "t", tiny_model_dir, evaluation={"backend": "vllm"})
    with pytest.raises(HarnessError) as exc:
        _plan(tmp_path, task)
    line = _one_line(exc)
    assert "field 'evaluation.backend'" in line and "needs the vllm package (pip install vllm)" in line


def test_vllm_backend_without_a_gpu_or_on_the_cpu_fails_at_plan_time(tmp_path, tiny_model_dir, vllm_installed, no_gpu):
    task = write_tiny_task(tmp_path / "t", tiny_model_dir, evaluation={"backend": "vllm"})
    with pytest.raises(HarnessError) as exc:
        _plan(tmp_path, task)
    assert "backend 'vllm' needs a CUDA GPU and torch sees none" in _one_line(exc)
    with pytest.raises(HarnessError) as exc:
        _plan(tmp_path, task, device="cpu")
    assert "backend 'vllm' runs on CUDA GPUs, not on the cpu (--device cpu); use hf" in _one_line(exc)


def test_vllm_settings_this_machine_cannot_serve_are_listed(tmp_path, tiny_model_dir, vllm_installed, monkeypatch):
    monkeypatch.setattr(checks, "cuda_devices", lambda: 2)
    vllm = {"backend": "vllm", "vllm": {"tensor_parallel_size": 2, "data_parallel_size": 2}}
    task = write_tiny_task(tmp_path / "t", tiny_model_dir, evaluation=vllm, systems=["prompt", "dora"])
    problems = checks.machine_problems(load_spec(task), ["prompt", "dora"])
    assert len(problems) == 2
    assert "tensor_parallel_size x data_parallel_size is 4 GPUs, but this machine has 2" in problems[0]
    assert "vLLM cannot serve DoRA adapters (dora)" in problems[1]
    ok = write_tiny_task(tmp_path / "u", tiny_model_dir, evaluation={"backend": "vllm"})
    assert checks.machine_problems(load_spec(ok), ["prompt", "lora", "qlora"]) == []


def test_the_backend_is_in_the_settings_line_and_in_the_evaluation_key_only_for_vllm(tmp_path, tiny_model_dir):
    from harness import evalcache
    from harness.records import Settings
    from harness.report.render import settings_text
    from harness.systems import make_system
    from tests.test_finetune import make_ctx

    line = settings_text(Settings(threads=2, batch_size=1, dtype="bfloat16", warmup=2, device="cuda", backend="vllm"))
    assert "device=cuda" in line and "backend=vllm" in line

    def key(name, evaluation):
        ctx = make_ctx(write_tiny_task(tmp_path / name, tiny_model_dir, evaluation=evaluation), tmp_path)
        system = make_system("prompt", ctx)
        qs = ctx.data.test[:2]
        return evalcache.key(system, ctx, (qs, system.prompts(qs).texts), None, 1, 1)

    hf = key("a", {})
    assert key("b", {"vllm": {"tensor_parallel_size": 4}}) == hf, "vllm settings do not touch an hf evaluation"
    assert key("c", {"backend": "vllm"}) != hf
