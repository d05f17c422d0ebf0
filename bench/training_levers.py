"""Seconds of one LoRA training step under each attention kernel and weight dtype, in one process.

    python bench/training_levers.py [--dtype auto|float32|bfloat16] [--steps 3]

Two batch shapes, both right-padded with an attention mask as trl's collator makes them:
  lora      8 rows of 55-95 tokens (legal-qa's questions with their answers)
  rag+lora  2 rows of 470-509 tokens (its 1024-token micro-batch of prompts with passages)
Variants: attention "sdpa" (transformers' default) or "eager"; frozen base weights in fp32 under bf16 autocast
(what the Trainer does with bf16=True) or held in bf16 with fp32 adapters (native bf16 only); and the rows split
over 2 training workers (`finetune.workers`, harness.parts.answer_loss). Each figure is the
best of --steps steps after one warm-up step; compare the figures of one run, never across runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import first_and_best, legal_qa_model, lora_config

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


def step_seconds(path: str, attn: str, weights: str, bf16: bool, data, steps: int, workers: int = 1) -> float:
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from harness.parts.answer_loss import step as answer_positions_step

    dtype = torch.bfloat16 if weights == "bf16" else torch.float32
    base = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attn)
    model = get_peft_model(base, lora_config()).train()  # peft keeps the adapter in fp32 (autocast_adapter_dtype)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids, mask, labels = data
    head, backbone = base.get_output_embeddings(), base.model

    def step():  # the step the probe times; autocast only over fp32 weights (bf16 weights need none)
        answer_positions_step(backbone, head, opt, ids, mask, labels, bf16 and weights == "fp32", workers)

    return round(first_and_best(step, steps)[1], 3)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--shapes", default="lora,rag+lora")
    args = ap.parse_args(argv)
    ref = legal_qa_model("levers")
    import torch

    from harness.models import eval_dtype

    bf16 = eval_dtype(args.dtype, "cpu") == "bfloat16"
    vocab = 49152
    out: dict = {
        "bf16": bf16,
        "threads": torch.get_num_threads(),
        "capability": torch.backends.cpu.get_cpu_capability(),
    }
    variants = [("sdpa", "fp32", 1), ("sdpa", "fp32", 2), ("eager", "fp32", 1)]
    variants += [("sdpa", "bf16", 1), ("eager", "bf16", 1)] if bf16 else []
    for shape in args.shapes.split(","):
        data = batch(*SHAPES[shape], vocab=vocab)
        out[shape] = {
            f"{attn}, {weights} weights" + (f", {n} workers" if n > 1 else ""): step_seconds(
                ref.path, attn, weights, bf16, data, args.steps, n
            )
            for attn, weights, n in variants
        }
        print(json.dumps({shape: out[shape]}), flush=True)
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
