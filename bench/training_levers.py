"""Seconds of one LoRA training step under each attention kernel and weight dtype, in one process.

    python bench/training_levers.py [--dtype auto|float32|bfloat16] [--steps 3]

Two batch shapes, both right-padded with an attention mask as trl's collator makes them:
  lora      8 rows of 55-95 tokens (legal-qa's questions with their answers)
  rag+lora  2 rows of 470-509 tokens (its 1024-token micro-batch of prompts with passages)
Variants: attention "sdpa" (transformers' default) or "eager"; frozen base weights in fp32 under bf16 autocast
(what the Trainer does with bf16=True) or held in bf16 with fp32 adapters (native bf16 only). Each figure is the
best of --steps steps after one warm-up step; compare the figures of one run, never across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SHAPES = {"lora": (8, 55, 95), "rag+lora": (2, 470, 509)}


def batch(rows: int, shortest: int, longest: int, vocab: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(shortest, longest + 1, (rows,), generator=g)
    ids = torch.randint(3, vocab, (rows, int(lengths.max())), generator=g)
    mask = torch.arange(ids.shape[1])[None, :] < lengths[:, None]
    labels = torch.full_like(ids, -100)
    for r, n in enumerate(lengths.tolist()):
        labels[r, n - 3 : n] = ids[r, n - 3 : n]  # the answer's last positions, as completion_only_loss keeps
    return ids, mask.long(), labels


def step_seconds(path: str, attn: str, weights: str, bf16: bool, data, steps: int) -> float:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from harness.probe import answer_positions_step

    dtype = torch.bfloat16 if weights == "bf16" else torch.float32
    base = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attn)
    cfg = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    model = get_peft_model(base, cfg).train()  # peft keeps the adapter in fp32 (autocast_adapter_dtype)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids, mask, labels = data
    head, backbone = base.get_output_embeddings(), base.model

    def step():  # the step the probe times; autocast only over fp32 weights (bf16 weights need none)
        answer_positions_step(backbone, head, opt, ids, mask, labels, bf16 and weights == "fp32")

    step()
    best = float("inf")
    for _ in range(steps):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return round(best, 3)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--shapes", default="lora,rag+lora")
    args = ap.parse_args(argv)
    os.environ.setdefault("HARNESS_HOME", tempfile.mkdtemp(prefix="harness-levers-"))
    from harness.models import eval_dtype, set_offline_defaults, set_threads

    set_offline_defaults()
    set_threads()
    import torch

    from harness import models
    from harness.spec import load_spec
    from harness.tasks import find_task

    ref = models.resolve_model(load_spec(find_task("legal-qa")).model)
    bf16 = eval_dtype(args.dtype, "cpu") == "bfloat16"
    vocab = 49152
    out: dict = {
        "bf16": bf16,
        "threads": torch.get_num_threads(),
        "capability": torch.backends.cpu.get_cpu_capability(),
    }
    variants = [("sdpa", "fp32"), ("eager", "fp32")] + ([("sdpa", "bf16"), ("eager", "bf16")] if bf16 else [])
    for shape in args.shapes.split(","):
        data = batch(*SHAPES[shape], vocab=vocab)
        out[shape] = {
            f"{attn}, {weights} weights": step_seconds(ref.path, attn, weights, bf16, data, args.steps)
            for attn, weights in variants
        }
        print(json.dumps({shape: out[shape]}), flush=True)
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
