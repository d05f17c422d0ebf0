"""Training under `--launcher accelerate` with two real processes on the CPU (DDP over gloo), on the tiny model.

Nothing is mocked: `accelerate launch` starts two `harness.train_worker` processes that train together. The
loss curve is compared with one process's, a killed two-process run is resumed, and only rank 0 writes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness import files
from harness.errors import HarnessError
from harness.systems import make_system
from tests.conftest import write_tiny_task
from tests.test_finetune import make_ctx

TWO_PROCESSES = {"num_processes": 2, "distributed_type": "MULTI_GPU"}  # + use_cpu: two gloo processes here


def _train(tmp_path: Path, tiny_model_dir: Path, monkeypatch, name: str, launcher: str, accelerate: dict):
    # A learning rate high enough that the loss falls a few percent in 12 steps: agreeing "within 1%" must
    # mean something, not only that neither curve moved.
    finetune = {"logging_steps": 1, "epochs": 3, "learning_rate": 0.01, "accelerate": accelerate}
    task = write_tiny_task(tmp_path / name, tiny_model_dir, finetune=finetune)
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / f"home-{name}"))
    ctx = make_ctx(task, tmp_path, launcher=launcher)
    system = make_system("lora", ctx)
    system.validate()
    return ctx, system, system.build()


def test_two_ddp_processes_follow_the_single_process_loss_curve_and_rank_0_writes_once(
    tmp_path, tiny_model_dir, monkeypatch
):
    """`finetune.batch_size` is examples per optimiser step under either launcher: two processes take 4 each
    of the same 8 (accelerate shards the one seeded order), so the steps and the loss curve are the
    single process's, to rounding in the gradient all-reduce (docs/scale.md gives the measured gap)."""
    _, _, one = _train(tmp_path, tiny_model_dir, monkeypatch, "one", "local", {})
    ctx, system, two = _train(tmp_path, tiny_model_dir, monkeypatch, "two", "accelerate", TWO_PROCESSES)
    assert two.launch["config"]["num_processes"] == 2 and two.launch["config"]["use_cpu"] is True
    assert two.training["world_size"] == 2 and one.training["world_size"] == 1
    assert two.training["steps"] == one.training["steps"] == 3 * -(-len(ctx.data.train) // 8)
    a, b = one.training["loss_curve"], two.training["loss_curve"]
    assert [p["step"] for p in a] == [p["step"] for p in b] and len(a) == one.training["steps"]
    first, last = a[0]["train_loss"], a[-1]["train_loss"]
    assert (first - last) / first > 0.03, "the loss falls, so agreement within 1% is not trivial"
    for p, q in zip(a, b, strict=True):
        for key in ("train_loss", "eval_loss"):
            assert abs(p[key] - q[key]) <= 0.01 * p[key], f"step {p['step']} {key}: {p[key]} vs {q[key]}"
    # Saved once, by rank 0: one sealed adapter folder, no second writer's temporary folder, no work folder left.
    folder = system.adapter.folder
    assert files.verify(folder) is None
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]
    assert json.loads((folder / files.MANIFEST).read_text())["training"]["world_size"] == 2
    assert not system.adapter.workdir.exists()


def test_a_process_other_than_rank_0_trains_but_writes_no_adapter_or_record(tmp_path, tiny_model_dir, monkeypatch):
    """The harness's own rank logic (trl saves checkpoints from rank 0 by itself): a rank-1 process trains and
    returns its record, but saves no adapter, seals no manifest and leaves the shared work folder alone."""
    monkeypatch.setenv("RANK", "1")
    task = write_tiny_task(tmp_path / "t", tiny_model_dir)
    system = make_system("lora", make_ctx(task, tmp_path))
    info = system.build()
    assert info.training["steps"] > 0 and info.training["loss_curve"]
    written = [p.name for p in system.adapter.folder.parent.iterdir() if p.suffix != ".lock"]
    assert written == [], "no adapter, no temporary folder of one"
    assert system.adapter.workdir.exists(), "rank 0 removes the work folder, not rank 1"


def test_a_batch_that_does_not_split_over_the_processes_fails_at_plan_time(tmp_path, tiny_model_dir):
    task = write_tiny_task(tmp_path / "t", tiny_model_dir, finetune={"batch_size": 7, "accelerate": TWO_PROCESSES})
    system = make_system("lora", make_ctx(task, tmp_path, launcher="accelerate"))
    with pytest.raises(HarnessError, match=r"finetune\.batch_size.*7 examples per step.*num_processes 2"):
        system.validate()


def test_a_killed_two_process_run_resumes_from_its_checkpoint(tmp_path, tiny_model_dir, harness_cmd):
    """`harness run --launcher accelerate` with two processes, killed (the whole process group, as a closed
    terminal or a lost machine would) after a checkpoint; the same command resumes from it."""
    finetune = {"epochs": 3, "batch_size": 2, "logging_steps": 2, "accelerate": TWO_PROCESSES}
    task = write_tiny_task(tmp_path / "t", tiny_model_dir, finetune=finetune)
    home = Path(os.environ["HARNESS_HOME"])
    args = [*harness_cmd, "run", str(task), "--systems", "lora", "--limit", "3", "--launcher", "accelerate"]
    args += ["--reports-dir", str(tmp_path / "r"), "--indices-dir", str(tmp_path / "i")]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert _wait_for("train/*/*/qa/checkpoint-*/trainer_state.json", home, 180), "no checkpoint was written"
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    time.sleep(0.5)  # the launcher's workers die with their group
    assert not list((tmp_path / "r").glob("*/*")), "a killed run leaves no run directory"
    assert not list(home.glob("adapters/*/*")), "the kill came before the adapter was saved"
    state = json.loads(sorted(home.glob("train/*/*/qa/checkpoint-*/trainer_state.json"))[-1].read_text())
    killed_at = state["global_step"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    run = sorted(p for p in (tmp_path / "r").glob("*/*") if p.name != "latest")[-1]
    training = json.loads((run / "results.json").read_text())["systems"]["lora"]["training"]
    assert training["world_size"] == 2 and training["resumed_from"].startswith("qa/checkpoint-")
    assert killed_at < training["steps"], "the kill came before training ended"
    assert not any((home / "train").rglob("checkpoint-*")), "checkpoints are removed once the adapter is saved"


def _wait_for(path_glob: str, root: Path, timeout: float) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if list(root.glob(path_glob)):
            return True
        time.sleep(0.2)
    return False
