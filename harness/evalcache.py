"""Reuse a system's evaluation when nothing that determines it changed: the warm re-run.

People re-run a comparison after changing one thing (a prompt, one system's settings). Every system whose
answers cannot have changed is then not scored again: its per-question records, latencies and memory
figures are read back from HARNESS_HOME/evaluations/ and the report says they were reused and when they were
measured. `--reevaluate` measures everything again.

The key covers everything that decides the records: the exact prompts the model sees (for rag, with the
passages retrieved this run), the weights (the base model's fingerprint, and the adapter file itself for
fine-tuned systems, so `--retrain` re-evaluates), the evaluation settings, thread count, device, precision
and library versions. Labels are not in it: scoring, intervals and the calibration threshold are computed
again on every run from the stored records.
"""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime
from pathlib import Path

from harness import cache
from harness.errors import HarnessError
from harness.manifest import package_versions

FORMAT = 1  # bump when the records' layout changes


def _questions(questions) -> list:
    return [[q.id, q.question, list(q.choices or [])] for q in questions]


def key(system, ctx, test: tuple[list, list[str]], calibration: tuple[list, list[str]] | None, threads: int) -> str:
    """`test` and `calibration`: (questions, rendered prompts)."""
    from harness import __version__

    ev = ctx.spec.evaluation.model_dump(exclude={"bootstrap"})
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


def load(task: str, k: str, log) -> dict | None:
    path = _path(task, k)
    if not path.exists():
        return None
    try:
        entry = json.loads(path.read_text())
        if entry.get("format") != FORMAT or not isinstance(entry.get("test"), list):
            raise ValueError("unexpected layout")
        return entry
    except (OSError, ValueError) as e:
        log(f"  ignoring a damaged stored evaluation {path} ({e}); evaluating again")
        path.unlink(missing_ok=True)
        return None


def save(
    task: str,
    k: str,
    *,
    test: list[dict],
    calibration: list[dict] | None,
    peak_memory_mb: float,
    cuda_peak_memory_mb: float | None,
    seconds: float,
    log,
) -> None:
    """Store an evaluation; failing to (a full disk) costs the next run a re-evaluation, not this run."""
    path = _path(task, k)
    entry = {
        "format": FORMAT,
        "measured_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "seconds": round(seconds, 2),
        "peak_memory_mb": peak_memory_mb,
        "cuda_peak_memory_mb": cuda_peak_memory_mb,
        "test": test,
        "calibration": calibration,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        cache.write_json_atomic(path, entry)
    except (OSError, HarnessError) as e:
        log(f"  could not store the evaluation for reuse ({e}); the next run will evaluate again")
