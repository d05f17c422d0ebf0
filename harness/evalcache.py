"""Reuse a system's evaluation when nothing that determines it changed: the warm re-run.

People re-run a comparison after changing one thing (a prompt, one system's settings). Every system whose
answers cannot have changed is then not scored again: its per-question records, latencies and memory
figures are read back from HARNESS_HOME/evaluations/ and the report says they were reused and when they were
measured. `--reevaluate` measures everything again.

The key covers everything that decides the measurements: the exact prompts the model sees (for rag, with the
passages retrieved this run), the weights (the base model's fingerprint, and the adapter file by content for
fine-tuned systems, so `--retrain` re-evaluates), the evaluation settings, thread count, device, precision
and library versions. Labels are not in it: scoring, intervals and the calibration threshold are computed
again on every run from the stored measurements.

An entry is a `StoredEvaluation`: harness.records.Measurement dumps plus what evaluating them took. Entries
written before the Measurement model existed have the same layout and still load; one that does not validate
is removed with a one-line notice and measured again.
"""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime
from pathlib import Path

from pydantic import Field, ValidationError

from harness import __version__, cache, files, openmp
from harness.errors import HarnessError
from harness.manifest import package_versions
from harness.records import BatchedPass, Measurement, Record, ServingMemory

# Bump when StoredEvaluation's layout or meaning changes (old entries are then simply measured again).
# 2: peak_memory_mb is the serving peak, as if the system ran alone, with its parts (serving_memory).
# 3: answers from the batched accuracy pass, latency on the seeded sample only (harness.latency), batched_pass.
FORMAT = 3


class StoredEvaluation(Record):
    """One system's evaluation as stored for reuse: its measurements and what measuring them took."""

    format: int = Field(description="the layout's version, harness.evalcache.FORMAT")
    measured_at: str = Field(description="ISO time the measurements were taken")
    seconds: float | None = Field(default=None, description="what evaluating took")
    peak_memory_mb: float = Field(description="peak RSS while evaluating")
    cuda_peak_memory_mb: float | None = Field(default=None, description="peak CUDA memory, on a GPU")
    serving_memory: ServingMemory | None = Field(default=None, description="the parts of peak_memory_mb")
    test: list[Measurement] = Field(description="one per test question, in order")
    calibration: list[Measurement] | None = Field(
        default=None, description="yes-no: the calibration questions' measurements"
    )
    batched_pass: BatchedPass | None = Field(default=None, description="the accuracy pass's throughput")
    openmp_wait: str | None = Field(
        default=None,
        description="how idle OpenMP threads waited while it was measured (harness.openmp.mode); its latency "
        "depends on it, its answers do not (absent from entries stored before it was kept)",
    )


def _questions(questions) -> list:
    return [[q.id, q.question, list(q.choices or [])] for q in questions]


def key(
    system, ctx, test: tuple[list, list[str]], calibration: tuple[list, list[str]] | None, threads: int, workers: int
) -> str:
    """`test` and `calibration`: (questions, rendered prompts). `workers`: the scoring workers it resolved to (a
    worker's share of the threads can round an fp32 answer differently; `auto` is not what counts)."""
    # The backend's settings count only for vllm, so that keys made before the backend existed stay valid.
    hf = ctx.spec.evaluation.backend == "hf"
    ev = ctx.spec.evaluation.model_dump(exclude={"bootstrap", "workers"} | ({"backend", "vllm"} if hf else set()))
    return cache.key_of(
        FORMAT,
        __version__,
        system.name,
        system.kind,
        system.weights_identity(),
        ctx.spec.answer_format,
        ev,
        ctx.dtype,
        ctx.device,
        threads,
        *([workers] if workers > 1 else []),  # keys made before workers existed stay valid for one
        ctx.spec.seed,
        platform.machine(),
        os.cpu_count(),
        package_versions(("torch", "transformers", "peft", "lm_eval", "sentence-transformers", "faiss-cpu")),
        _questions(test[0]),
        test[1],
        None if calibration is None else [_questions(calibration[0]), calibration[1]],
    )


def _path(task: str, k: str) -> Path:
    return cache.home() / "evaluations" / task / f"{k}.json"


def sidecar(task: str, k: str, what: str) -> Path:
    """A file stored beside evaluation `k` and reused with it (e.g. the throughput probe's result)."""
    return cache.home() / "evaluations" / task / what / f"{k}.json"


def save_sidecar(task: str, k: str, what: str, data: dict, log) -> None:
    """Store `data` beside evaluation `k`; failing to costs the next run a new measurement, not this run."""
    if cache.read_only():
        return
    path = sidecar(task, k, what)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        files.write_json_atomic(path, data)
    except (OSError, HarnessError) as e:
        log(f"  could not store the {what} for reuse ({e}); the next run will measure it again")


def load(task: str, k: str, log) -> StoredEvaluation | None:
    path = _path(task, k)
    if not path.exists():
        return None
    try:
        entry = StoredEvaluation.model_validate(json.loads(path.read_text()))
        if entry.format != FORMAT:
            raise ValueError(f"format {entry.format}, expected {FORMAT}")
        return entry
    except ValidationError as e:
        reason = f"unexpected layout: {e.error_count()} field(s) do not fit, e.g. {_first_error(e)}"
    except (OSError, ValueError) as e:
        reason = str(e)
    log(f"  ignoring a damaged stored evaluation {path} ({reason}); evaluating again")
    path.unlink(missing_ok=True)
    return None


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    return f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"


def save(
    task: str,
    k: str,
    *,
    test: list[Measurement],
    calibration: list[Measurement] | None,
    peak_memory_mb: float,
    cuda_peak_memory_mb: float | None,
    seconds: float,
    log,
    serving_memory: ServingMemory | None = None,
    batched_pass: BatchedPass | None = None,
) -> None:
    """Store an evaluation; failing to (a full disk) costs the next run a re-evaluation, not this run. A
    read-only HARNESS_HOME stores nothing (the run said so once)."""
    if cache.read_only():
        return
    path = _path(task, k)
    entry = StoredEvaluation(
        format=FORMAT,
        measured_at=datetime.now().astimezone().isoformat(timespec="seconds"),
        seconds=round(seconds, 2),
        peak_memory_mb=peak_memory_mb,
        cuda_peak_memory_mb=cuda_peak_memory_mb,
        serving_memory=serving_memory,
        test=test,
        calibration=calibration,
        batched_pass=batched_pass,
        openmp_wait=openmp.mode(),
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        files.write_json_atomic(path, entry.model_dump(mode="json"))
    except (OSError, HarnessError) as e:
        log(f"  could not store the evaluation for reuse ({e}); the next run will evaluate again")
