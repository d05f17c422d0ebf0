"""`--launcher accelerate`: training through `accelerate launch` with a config the harness writes.

The harness does not distribute training itself: it writes an accelerate config (DDP, FSDP or DeepSpeed)
and a job file, runs `accelerate launch -m harness.train_worker JOB`, and records both in the manifest.
The worker rebuilds the same adapter (same cache key) inside each process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml


def accelerate_config(settings, use_cpu: bool) -> dict:
    cfg = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": settings.distributed_type,
        "num_processes": settings.num_processes,
        "num_machines": settings.num_machines,
        "machine_rank": 0,
        "mixed_precision": settings.mixed_precision,
        "use_cpu": use_cpu,
        "main_training_function": "main",
        "rdzv_backend": "static",
        "same_network": True,
    }
    if settings.distributed_type == "FSDP":
        cfg["fsdp_config"] = {
            "fsdp_version": 2,
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_state_dict_type": "SHARDED_STATE_DICT",
            "fsdp_cpu_ram_efficient_loading": True,
            "fsdp_reshard_after_forward": True,
        }
    if settings.distributed_type == "DEEPSPEED":
        cfg["deepspeed_config"] = {
            "zero_stage": settings.deepspeed_stage,
            "gradient_accumulation_steps": 1,
            "offload_optimizer_device": "none",
            "offload_param_device": "none",
            "zero3_init_flag": settings.deepspeed_stage == 3,
        }
    return cfg


def write_job(
    folder: Path,
    *,
    task_file: str,
    system: str,
    model: str,
    seed: int,
    home: str,
    indices_dir: str,
    settings,
    use_cpu: bool,
    device: str = "auto",
) -> tuple[list[str], dict]:
    """Write the accelerate config and the job file; return the command and what to record."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = accelerate_config(settings, use_cpu)
    cfg_path = folder / "accelerate.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    job = {
        "task_file": task_file,
        "system": system,
        "model": model,
        "seed": seed,
        "device": device,
        "harness_home": home,
        "indices_dir": indices_dir,
    }
    job_path = folder / "job.json"
    job_path.write_text(json.dumps(job, indent=2))
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(cfg_path),
        "-m",
        "harness.train_worker",
        str(job_path),
    ]
    return cmd, {"command": " ".join(cmd), "config": cfg, "job": job}


def run(cmd: list[str], log) -> None:
    log(f"  launching: {' '.join(cmd)}")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"accelerate launch exited {proc.returncode}: {' | '.join(tail)}")
