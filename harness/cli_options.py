"""Command-line options that `harness run` and `harness sweep` share (a sweep is a run with variants), and the
ones that override a task file's field."""

from __future__ import annotations

import typer

Track = typer.Option(
    None, "--track", help="`mlflow`: log the run (each system a nested run) to MLFLOW_TRACKING_URI or ./mlruns."
)


# Options `harness run` and `harness sweep` share (a sweep is a run with variants).
Device = typer.Option(
    None, "--device", help="auto, cpu or cuda: overrides the task's `device:` (recorded in the manifest)."
)
BatchSize = typer.Option(
    None, "--batch-size", help="Questions per forward pass when timing latency (overrides evaluation.batch_size)."
)
LatencySample = typer.Option(
    None,
    "--latency-sample",
    help="Test questions timed for latency, a seeded sample (overrides evaluation.latency_sample).",
)
Dtype = typer.Option(
    None, "--dtype", help="Evaluation precision: auto, float32 or bfloat16 (overrides evaluation.dtype)."
)
Workers = typer.Option(
    None,
    "--workers",
    help="auto or a number: threads scoring the untimed passes side by side (overrides evaluation.workers).",
)
TrainWorkers = typer.Option(
    None,
    "--train-workers",
    help="auto or a number: threads sharing each training step's rows (overrides finetune.workers).",
)
Threads = typer.Option(
    None, "--threads", help="Torch threads (default: HARNESS_THREADS, OMP_NUM_THREADS, or every core)."
)
ProfileOption = typer.Option(
    None,
    "--profile",
    help="Deployment profile over the task's `decision:` block, e.g. "
    "queries_per_day=5000,updates_per_month=4,usd_per_hour=0.9,p95_latency_s=2.",
)


# Options of `harness run` that override a task file's field: option -> (flag, dotted field). The run records
# what they changed in its manifest (harness.overrides).
OVERRIDES = {
    "batch_size": ("--batch-size", "evaluation.batch_size"),
    "dtype": ("--dtype", "evaluation.dtype"),
    "latency_sample": ("--latency-sample", "evaluation.latency_sample"),
    "workers": ("--workers", "evaluation.workers"),
    "train_workers": ("--train-workers", "finetune.workers"),
}


def overrides(**given) -> dict[str, tuple[str, object]]:
    """{dotted field: (flag, value)} for harness.overrides.apply_overrides, from the options' values."""
    return {OVERRIDES[k][1]: (OVERRIDES[k][0], _number(v)) for k, v in given.items()}


def _number(value):
    """A text option's value as a number when it is one (`--workers 2`), so the schema sees what a file would."""
    return int(value) if isinstance(value, str) and value.strip().lstrip("-").isdigit() else value
