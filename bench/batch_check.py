"""Does scoring in throughput batches change any answer, and what does it save? One process, legal-qa's prompt
system on the base model: every question at batch 1 (the old timed pass) and in the accuracy pass's throughput
batches, in bf16 (where the CPU has it) and fp32.

    python bench/batch_check.py [--questions 60]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=60)
    ap.add_argument("--systems", default="prompt")
    args = ap.parse_args(argv)
    from harness.models import set_offline_defaults, set_threads

    set_offline_defaults()
    set_threads()
    import torch

    from harness import models
    from harness.context import Reporter, RunContext
    from harness.data import load_task_data
    from harness.evaluate import run_lm_eval
    from harness.spec import load_spec
    from harness.system_eval import throughput_batch
    from harness.systems import make_system
    from harness.tasks import find_task

    spec = load_spec(find_task("legal-qa"))
    data = load_task_data(spec)
    home = Path(os.environ["HARNESS_HOME"])
    ctx = RunContext(spec, data, models.resolve_model(spec.model), Reporter(), indices_dir=home / "indices")
    out = {}
    qs = data.test[: args.questions]
    for name in args.systems.split(","):
        system = make_system(name, ctx)
        texts = system.prompts(qs).texts
        batch = throughput_batch(ctx, texts)
        for dtype in dict.fromkeys([ctx.dtype, "float32"]):
            res, secs = {}, {}
            with system.model() as model:
                m = model if dtype == ctx.dtype else model.to(torch.float32)
                for b in (1, batch):
                    kw = {"answer_format": spec.answer_format, "max_new_tokens": 4, "seed": 0, "dtype": dtype}
                    run_lm_eval(m, ctx.tokenizer, qs[:2], texts[:2], task_name="bc_w", batch_size=1, warmup=0, **kw)
                    start = time.perf_counter()
                    res[b] = run_lm_eval(
                        m, ctx.tokenizer, qs, texts, task_name=f"bc_{b}", batch_size=b, warmup=0, **kw
                    )
                    secs[b] = time.perf_counter() - start
                if m is not model:
                    model.to(torch.bfloat16)
            one, many = res[1], res[batch]
            out[f"{name} {dtype}"] = {
                "questions": len(qs),
                "batch": batch,
                "flips": sum(a.prediction != b.prediction for a, b in zip(one, many)),
                "max_margin_diff": max(abs(a.margin - b.margin) for a, b in zip(one, many)),
                "identical": all(a.loglikelihoods == b.loglikelihoods for a, b in zip(one, many)),
                "seconds_batch1": round(secs[1], 2),
                "seconds_batched": round(secs[batch], 2),
                "speedup": round(secs[1] / secs[batch], 2),
            }
            print(json.dumps({f"{name} {dtype}": out[f"{name} {dtype}"]}), flush=True)
    return out


if __name__ == "__main__":
    main()
