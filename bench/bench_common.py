"""What the model benches here share: setting up the process as a harness run does and resolving legal-qa's model,
the LoRA adapter they train, and timing a call as the best of a few after a warm-up."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def legal_qa_model(name: str):
    """The offline hub and thread defaults of a run, a throw-away HARNESS_HOME (`harness-NAME-...`) unless one is
    set, and legal-qa's model (the embedded default is converted into that home once). Returns its ModelRef."""
    os.environ.setdefault("HARNESS_HOME", tempfile.mkdtemp(prefix=f"harness-{name}-"))
    from harness import models
    from harness.spec import load_spec
    from harness.tasks import find_task

    models.set_offline_defaults()
    models.set_threads()
    return models.resolve_model(load_spec(find_task("legal-qa")).model)


def lora_config():
    """The adapter the training benches put on the model: rank 16 on every linear layer, no dropout (the defaults)."""
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")


def first_and_best(fn, steps: int) -> tuple[float, float]:
    """Seconds of the first call of `fn` (the warm-up: allocation, compiling), and the best of `steps` more."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    best = float("inf")
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return first, best
