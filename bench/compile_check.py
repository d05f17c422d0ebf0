"""torch.compile (inductor on CPU) against eager, for the two heavy stages, in one process per CPU kind.

    python bench/compile_check.py [--dtype auto|float32|bfloat16] [--steps 3]
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 python bench/compile_check.py

Stages, on SmolLM2-135M (the default model) with shapes as the harness makes them:
  score      one rag-length prompt (628 tokens) at batch 1, the last position through the head (the weights in the
             evaluation dtype, as RunContext.base_model loads them)
  train      one LoRA optimiser step on lora's 8 padded rows of 55-95 tokens (harness.parts.answer_loss.step:
             fp32 weights under bf16 autocast where the CPU has bf16)
For each: the first call's seconds (compiling, for the compiled variant), then the best of --steps calls; and for
the compiled training step, a batch of another padded width (trl pads each batch to its longest row), which makes
dynamo compile again unless it marks the dimension dynamic. "break-even" is how many calls the compile time takes
to pay back at the measured gain. Compare the figures of one run only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import first_and_best, legal_qa_model, lora_config


def timed(fn, steps: int) -> dict:
    first, best = first_and_best(fn, steps)
    return {"first_s": round(first, 2), "best_s": round(best, 3)}


def score(path: str, dtype, compiled: bool, steps: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()
    ids = torch.randint(3, 49152, (1, 628), generator=torch.Generator().manual_seed(0))
    forward = torch.compile(model) if compiled else model

    def call():
        with torch.inference_mode():
            forward(input_ids=ids, logits_to_keep=1, use_cache=False)

    return timed(call, steps)


def train(path: str, bf16: bool, compiled: bool, steps: int) -> dict:
    import torch
    from peft import get_peft_model
    from training_levers import batch
    from transformers import AutoModelForCausalLM

    from harness.parts.answer_loss import step as answer_positions_step

    base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model = get_peft_model(base, lora_config()).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    backbone = torch.compile(base.model) if compiled else base.model
    head = base.get_output_embeddings()
    data = batch(8, 55, 95, vocab=49152)
    other = batch(8, 55, 95, vocab=49152, seed=1)  # another longest row: another padded width
    figures = timed(lambda: answer_positions_step(backbone, head, opt, *data, bf16), steps)
    start = time.perf_counter()
    answer_positions_step(backbone, head, opt, *other, bf16)
    return {
        **figures,
        "widths": [data[0].shape[1], other[0].shape[1]],
        "new_width_s": round(time.perf_counter() - start, 2),
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--stages", default="score,train")
    args = ap.parse_args(argv)
    ref = legal_qa_model("compile")
    import torch

    from harness.models import eval_dtype

    dtype_name = eval_dtype(args.dtype, "cpu")
    bf16 = dtype_name == "bfloat16"
    out: dict = {"dtype": dtype_name, "threads": torch.get_num_threads()}
    out["capability"] = torch.backends.cpu.get_cpu_capability()
    for stage in args.stages.split(","):
        figures = {}
        for compiled in (False, True):
            torch._dynamo.reset()
            name = "compiled" if compiled else "eager"
            if stage == "score":
                figures[name] = score(ref.path, getattr(torch, dtype_name), compiled, args.steps)
            else:
                figures[name] = train(ref.path, bf16, compiled, args.steps)
        eager, comp = figures["eager"]["best_s"], figures["compiled"]["best_s"]
        gain = eager - comp
        figures["speed-up"] = round(eager / comp, 3)
        figures["break-even calls"] = round((figures["compiled"]["first_s"] - comp) / gain) if gain > 0 else None
        out[stage] = figures
        print(json.dumps({stage: figures}), flush=True)
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
