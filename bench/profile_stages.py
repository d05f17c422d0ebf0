"""Where a heavy stage's time goes: torch.profiler over the model's own work, grouped by operator.

    python bench/profile_stages.py [--dtype auto|float32|bfloat16]

scoring   one forward pass of a 630-token prompt (rag's length), the last positions through the LM head
training  one LoRA optimiser step as the harness takes it (harness.parts.answer_loss.step), on batches shaped
          as trl's collator makes them (right-padded, with an attention mask; bench/training_levers.py's SHAPES):
          lora's 8 rows of 55-95 tokens, and rag+lora's micro-batch of 2 rows of 470-509 tokens
generate  16 new tokens for a batch of 8 geo-qa-length prompts (60 tokens)

Prints, per stage, each operator's share of the self CPU time (matmuls, attention, norms, the optimizer, ...).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import first_and_best, legal_qa_model, lora_config

GROUPS = {
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::linear", "aten::matmul", "mkldnn", "onednn"),
    "attention": ("scaled_dot_product", "flash_attention", "aten::_softmax", "aten::softmax"),
    "elementwise": ("aten::mul", "aten::add", "aten::silu", "aten::neg", "aten::cat", "aten::pow", "aten::rsqrt",
                    "aten::mean", "aten::sub", "aten::div", "aten::sigmoid", "aten::exp", "aten::cos", "aten::sin"),
    "copies/casts": ("aten::copy_", "aten::to", "aten::_to_copy", "aten::clone", "aten::contiguous", "aten::fill_",
                     "aten::zero_", "aten::empty", "aten::index", "aten::embedding"),
    "optimizer": ("Optimizer", "aten::_foreach", "aten::addcdiv", "aten::addcmul", "aten::lerp", "aten::sqrt"),
}  # fmt: skip


def group_of(name: str) -> str:
    for group, keys in GROUPS.items():
        if any(k.lower() in name.lower() for k in keys):
            return group
    return "other"


def profile(fn, steps: int = 2) -> dict:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    fn()  # warm-up
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        wall = (time.perf_counter() - start) / steps
    per_group: dict[str, float] = defaultdict(float)
    for e in prof.key_averages():
        per_group[group_of(e.key)] += e.self_cpu_time_total
    total = sum(per_group.values()) or 1.0
    top = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:8]
    return {
        "wall_s": round(wall, 3),
        "share": {g: round(v / total, 3) for g, v in sorted(per_group.items(), key=lambda kv: -kv[1])},
        "top_ops": {e.key: round(e.self_cpu_time_total / total, 3) for e in top},
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", default="auto")
    args = ap.parse_args(argv)
    ref = legal_qa_model("profile")
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from harness.models import eval_dtype

    dtype = eval_dtype(args.dtype, "cpu")
    torch_dtype = getattr(torch, dtype)
    out: dict = {"dtype": dtype, "threads": torch.get_num_threads()}
    model = AutoModelForCausalLM.from_pretrained(ref.path, dtype=torch_dtype).eval()
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)

    long = torch.randint(3, vocab, (1, 630), generator=g)
    with torch.inference_mode():
        out["scoring"] = profile(lambda: model(long, logits_to_keep=4))
        short = torch.randint(3, vocab, (8, 60), generator=g)
        out["generate"] = profile(
            lambda: model.generate(short, max_new_tokens=16, min_new_tokens=16, do_sample=False), steps=1
        )

    from training_levers import SHAPES, batch

    from harness.parts.answer_loss import step as answer_positions_step

    train = AutoModelForCausalLM.from_pretrained(ref.path, dtype=torch.float32)
    peft = get_peft_model(train, lora_config()).train()
    opt = torch.optim.AdamW([p for p in peft.parameters() if p.requires_grad], lr=1e-4)
    backbone, head = train.model, train.get_output_embeddings()
    for shape, (rows, shortest, longest) in SHAPES.items():
        data = batch(rows, shortest, longest, vocab=vocab)
        out[f"training, {shape}"] = profile(
            lambda data=data: answer_positions_step(backbone, head, opt, *data, dtype == "bfloat16")
        )
    out["levers"] = levers(ref.path, torch_dtype, long)
    return out


def best_of(fn, n: int = 3) -> float:
    return round(first_and_best(fn, n)[1], 3)


def levers(path: str, torch_dtype, long) -> dict:
    """Seconds of one 630-token scoring forward under each setting tried, in this process (best of 3)."""
    import torch
    from transformers import AutoModelForCausalLM

    out = {}
    for attn in ("sdpa", "eager"):
        m = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, attn_implementation=attn).eval()
        with torch.inference_mode():
            out[f"attention {attn}"] = best_of(lambda m=m: m(long, logits_to_keep=4))
            if attn == "sdpa":
                threads = torch.get_num_threads()
                torch.set_num_threads(1)
                out["sdpa, 1 thread"] = best_of(lambda m=m: m(long, logits_to_keep=4))
                torch.set_num_threads(threads)
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
