"""Seconds of legal-qa's real LoRA training steps and of a validation pass, on 1 and 2 training workers, alternated.

    python bench/train_steps.py [--steps 16] [--rounds 2]

The trainer the harness runs (parts.trainers, trl's SFTTrainer with the answer-positions loss) on legal-qa's
training rows, in random batches of 8 as a run takes them; each round trains a fresh adapter for --steps steps on
1 worker, then on 2 (`finetune.workers`, harness.parts.answer_loss), then times one validation pass over the
dev rows a run validates on. This machine's speed drifts within minutes, so the rounds alternate and the figures
to compare are each round's pair; the validation losses show what the split does to the arithmetic.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import legal_qa_model


def train_and_validate(adapter, workers: int, steps: int) -> dict:
    import torch
    from peft import get_peft_model
    from transformers import TrainerCallback

    from harness.parts.trainers import SupervisedPhase, lora_config
    from harness.systems.finetune import PlainRows

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.seconds, self.start = [], 0.0

        def on_step_begin(self, *args, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, *args, **kwargs):
            self.seconds.append(time.perf_counter() - self.start)

    torch.manual_seed(0)
    model = get_peft_model(adapter.load_base(), lora_config(adapter.settings))
    times = StepTimes()
    trainer = SupervisedPhase(adapter, "qa", PlainRows(adapter.ctx)).trainer(model, tempfile.mkdtemp(), [times])
    trainer.harness_workers = workers
    trainer.args.max_steps, trainer.args.eval_strategy, trainer.args.save_strategy = steps, "no", "no"
    trainer.train()
    start = time.perf_counter()
    validation = trainer.evaluate()
    return {
        "median_step_s": round(statistics.median(times.seconds[1:]), 3),
        "steps_s": round(sum(times.seconds), 2),
        "validation_s": round(time.perf_counter() - start, 2),
        "validation_loss": round(validation["eval_loss"], 5),
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    ref = legal_qa_model("train-steps")
    import torch

    from harness.context import Reporter, RunContext
    from harness.data import load_task_data
    from harness.spec import load_spec
    from harness.systems import make_system
    from harness.tasks import find_task

    spec = load_spec(find_task("legal-qa"))
    ctx = RunContext(spec, load_task_data(spec), ref, Reporter(), indices_dir=Path(tempfile.mkdtemp()))
    adapter = make_system("lora", ctx).adapter
    out: dict = {
        "capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "bf16": ctx.use_bf16(adapter.settings.bf16),
        "rounds": [],
    }
    for _ in range(args.rounds):
        pair = {f"{n} workers": train_and_validate(adapter, n, args.steps) for n in (1, 2)}
        out["rounds"].append(pair)
        print(json.dumps(pair), flush=True)
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
