"""Scoring and generating through a merged adapter, with and without harness.models.standard_head_input.

    python bench/head_check.py [--dtype auto|float32|bfloat16] [--adapter FOLDER]

Loads legal-qa's model in the evaluation precision, puts a LoRA adapter on it (a trained one from --adapter,
or a fresh one) and merges it, as AdapterTrainer.model does. Then, in one process, alternating the two so that
both see the same machine: seconds per forward pass keeping the last 3 positions (lm-eval scoring, at batch 1
and 4, 60 and 512 tokens) and per 16 generated tokens, with the head's input as transformers slices it (a
strided view) and copied to standard strides. Also checks that the logits and tokens are identical.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import legal_qa_model


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--adapter", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    ref = legal_qa_model("head")
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from harness import models

    dtype = models.eval_dtype(args.dtype, "cpu")
    base = AutoModelForCausalLM.from_pretrained(ref.path, dtype=getattr(torch, dtype)).eval()
    if args.adapter:
        peft = PeftModel.from_pretrained(base, args.adapter)
    else:
        peft = get_peft_model(base, LoraConfig(r=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    peft.eval()
    peft.merge_adapter()
    head = base.get_output_embeddings()
    g = torch.Generator().manual_seed(0)
    out: dict = {"dtype": dtype, "threads": torch.get_num_threads()}
    out["capability"] = torch.backends.cpu.get_cpu_capability()

    def with_hook(on: bool):
        for h in list(head._forward_pre_hooks):
            del head._forward_pre_hooks[h]
        if on:  # the hook standard_head_input registers for bf16 and fp16 heads, here in any precision
            head.register_forward_pre_hook(models.standard_strides)

    for rows, length in ((1, 60), (4, 60), (1, 512)):
        ids = torch.randint(3, base.config.vocab_size, (rows, length), generator=g)
        times, logits = {False: [], True: []}, {}
        with torch.inference_mode():
            # Warm-up first: the first bf16 call of a process can round differently from every later one (seen
            # once here; harness.serving warms up the same way before a run scores), then the logits of each.
            peft(ids, logits_to_keep=3)
            for on in (False, True):
                with_hook(on)
                logits[on] = peft(ids, logits_to_keep=3).logits
            for _ in range(args.repeats):
                for on in (False, True):
                    with_hook(on)
                    start = time.perf_counter()
                    peft(ids, logits_to_keep=3)
                    times[on].append(time.perf_counter() - start)
        out[f"score {rows} x {length} tokens"] = {
            "strided view s": round(min(times[False]), 3),
            "standard strides s": round(min(times[True]), 3),
            "logits identical": bool(torch.equal(logits[False], logits[True])),
        }
        print(json.dumps({f"score {rows} x {length}": out[f"score {rows} x {length} tokens"]}), flush=True)
    ids = torch.randint(3, base.config.vocab_size, (1, 60), generator=g)
    times, tokens = {False: [], True: []}, {}
    with torch.inference_mode():
        for _ in range(args.repeats):
            for on in (False, True):
                with_hook(on)
                start = time.perf_counter()
                tokens[on] = peft.generate(ids, max_new_tokens=16, min_new_tokens=16, do_sample=False)
                times[on].append(time.perf_counter() - start)
    out["generate 16 tokens"] = {
        "strided view s": round(min(times[False]), 3),
        "standard strides s": round(min(times[True]), 3),
        "tokens identical": bool(torch.equal(tokens[False], tokens[True])),
    }
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
