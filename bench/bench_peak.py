"""The machine's own limit: its matmul rate on the model's shapes, and each heavy stage's fraction of it.

    python bench/bench_peak.py [--questions 32] [--train-examples 32]

Measured in one process, so that a busy machine slows the peak and the stages alike and their ratio survives:

cpu             the CPU flags that decide the kernels (avx2, avx512f, avx512_bf16, amx_bf16), torch's CPU capability
                and the dtypes the harness picks here (evaluation and training)
matmul          GFLOP/s of `torch.nn.functional.linear` in fp32 and bf16 on the model's own shapes (hidden x hidden,
                hidden x key/value, hidden x intermediate, intermediate x hidden, hidden x vocabulary) at the token
                counts the stages use (512 rows: a batch of prompts or training examples; 8 rows: one decoding step
                of a batch of 8); the peak of a dtype is its best shape at 512 rows
stages          tokens/s of scoring (legal-qa prompts at the accuracy pass's batch size, and 630-token
                prompts, rag's length, one at a time; each again on the run's scoring workers, `*_workers`, as the
                accuracy pass runs), generation (geo-qa, batches of 8) and training (LoRA, a few
                steps), each turned into GFLOP/s with the model's FLOPs per token and divided by the peak of the dtype
                it ran in

FLOPs per token: 2 x the parameters of the linear layers (the LM head apart) + causal attention (2 x 2 x
layers x hidden x context / 2); the LM head (2 x hidden x vocabulary) only where a position is projected (each
generated token; scoring and training project only the answer positions, not counted). Training with frozen
base weights computes the forward pass and the gradients of the activations, not of the weights: 2 x forward.
Its tokens/s is the trainer's own (validation passes included, their FLOPs not counted: a lower bound).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
ROWS = (512, 8)


def cpu() -> dict:
    import torch

    from harness import models

    try:
        have = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        have = set()
    return {
        "flags": [f for f in FLAGS if f in have],
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_used": models.bf16_supported("cpu"),
        "eval_dtype": models.eval_dtype("auto", "cpu"),
        "threads": torch.get_num_threads(),
    }


def shapes(config) -> dict[str, tuple[int, int]]:
    h, i, v = config.hidden_size, config.intermediate_size, config.vocab_size
    kv = config.num_key_value_heads * getattr(config, "head_dim", h // config.num_attention_heads)
    return {"h x h": (h, h), "h x kv": (h, kv), "h x inter": (h, i), "inter x h": (i, h), "h x vocab": (h, v)}


def matmul_rates(config, dtypes: list[str], seconds: float = 0.4) -> dict:
    """GFLOP/s per dtype, shape and row count; the best 512-row figure of a dtype is its peak."""
    import torch

    out: dict = {}
    for name in dtypes:
        dt = getattr(torch, name)
        rates: dict = {}
        for label, (k, n) in shapes(config).items():
            w = torch.randn(n, k, dtype=dt)
            for m in ROWS:
                x = torch.randn(m, k, dtype=dt)
                with torch.inference_mode():
                    for _ in range(3):
                        torch.nn.functional.linear(x, w)
                    reps, start = 0, time.perf_counter()
                    while time.perf_counter() - start < seconds:
                        torch.nn.functional.linear(x, w)
                        reps += 1
                    took = time.perf_counter() - start
                rates[f"{label} @{m}"] = round(2 * m * k * n * reps / took / 1e9, 1)
        peak = max(v for key, v in rates.items() if key.endswith(f"@{ROWS[0]}"))
        out[name] = {"peak_gflops": peak, "shapes": rates}
    return out


def flops_per_token(model, context: float, head: bool = False) -> float:
    """Forward FLOPs of one token at `context` tokens of causal attention (see the module docstring)."""
    import torch

    cfg = model.config
    linear = sum(
        m.in_features * m.out_features
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and not name.endswith("lm_head")
    )
    attention = 2 * 2 * cfg.num_hidden_layers * cfg.hidden_size * context / 2
    return 2 * linear + attention + (2 * cfg.hidden_size * cfg.vocab_size if head else 0)


def _stage(tokens: float, seconds: float, flops: float, peak: float) -> dict:
    gflops = flops / seconds / 1e9
    return {
        "tokens_per_s": round(tokens / seconds, 1),
        "gflops": round(gflops, 1),
        "fraction_of_peak": round(gflops / peak, 3),
        "seconds": round(seconds, 2),
    }


def scoring(ctx, model, n: int, peak: float) -> dict:
    from harness.evaluate import run_lm_eval
    from harness.parts.prompt_builder import render_chat
    from harness.system_eval import accuracy_batch
    from harness.systems import make_system

    tok, spec, out = ctx.tokenizer, ctx.spec, {}
    qs = ctx.data.test[:n]
    short = make_system("prompt", ctx).prompts(qs).texts
    doc = " ".join(d.text for d in ctx.data.corpus[:3])
    ids = tok(doc, add_special_tokens=False).input_ids[:560]
    passage = tok.decode(ids)
    long = [render_chat(tok, spec.system_prompt or "", passage + "\n\n" + q.question) for q in qs[: max(4, n // 3)]]
    for label, texts, batch in (("prompt", short, accuracy_batch(ctx, short)), ("rag_length", long, 1)):
        qq = qs[: len(texts)]
        kw = {"answer_format": spec.answer_format, "max_new_tokens": 4, "seed": 0, "dtype": ctx.dtype}
        run_lm_eval(model, tok, qq[:2], texts[:2], task_name=f"bench_pk_w{label}", batch_size=1, warmup=0, **kw)
        start = time.perf_counter()
        recs = run_lm_eval(model, tok, qq, texts, task_name=f"bench_pk_{label}", batch_size=batch, warmup=0, **kw)
        seconds = time.perf_counter() - start
        lengths = [r.prompt_tokens for r in recs]
        flops = sum(n_tok * flops_per_token(model, n_tok) for n_tok in lengths)
        out[label] = {
            **_stage(sum(lengths), seconds, flops, peak),
            "batch_size": batch,
            "prompt_tokens_mean": round(sum(lengths) / len(lengths), 1),
        }
        workers = ctx.scoring_workers()
        if workers > 1:  # the accuracy pass as a run scores it: on the scoring workers (harness.workers)
            start = time.perf_counter()
            run_lm_eval(
                model,
                tok,
                qq,
                texts,
                task_name=f"bench_pk_{label}_w",
                batch_size=batch,
                warmup=0,
                workers=workers,
                **kw,
            )
            out[f"{label}_workers"] = {
                **_stage(sum(lengths), time.perf_counter() - start, flops, peak),
                "workers": workers,
            }
    return out


def generation(ctx, model, n: int, peak: float, batch: int = 8) -> dict:
    from harness.evaluate import run_lm_eval
    from harness.systems import make_system

    qs = ctx.data.test[:n]
    texts = make_system("prompt", ctx).prompts(qs).texts
    kw = {"answer_format": "free-text", "max_new_tokens": ctx.spec.evaluation.max_new_tokens, "seed": 0}
    start = time.perf_counter()
    recs = run_lm_eval(
        model, ctx.tokenizer, qs, texts, task_name="bench_pk_gen", batch_size=batch, warmup=0, dtype=ctx.dtype, **kw
    )
    seconds = time.perf_counter() - start
    new = sum(r.new_tokens or 0 for r in recs)
    flops = sum(r.prompt_tokens * flops_per_token(model, r.prompt_tokens) for r in recs)
    flops += sum((r.new_tokens or 0) * flops_per_token(model, 2 * (r.prompt_tokens + 8), head=True) for r in recs)
    return {**_stage(new, seconds, flops, peak), "batch_size": batch, "new_tokens": new}


def training(ctx, n: int, peaks: dict) -> dict:
    from harness.systems import make_system

    ctx.data.train = ctx.data.train[:n]
    ctx.data.dev = ctx.data.dev[:8]
    system = make_system("lora", ctx)
    record = system.build().training
    dtype = "bfloat16" if ctx.use_bf16(system.adapter.settings.bf16) else "float32"
    model = ctx.base_model()
    mean_len = record["tokens"] / max(1, record["examples"] * record["epochs"])
    flops = record["tokens"] * 2 * flops_per_token(model, mean_len)
    return {
        **_stage(record["tokens"], record["seconds"], flops, peaks[dtype]),
        "dtype": dtype,
        "steps": record["steps"],
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    # 32: four batches of 8 (fp32's accuracy batch), so that both scoring workers stay busy to the end; with 24,
    # one worker scored two batches while the other idled after one, and the workers looked slower than one pass
    ap.add_argument("--questions", type=int, default=32)
    ap.add_argument("--train-examples", type=int, default=32)
    args = ap.parse_args(argv)
    import tempfile

    from bench_ratios import context

    with tempfile.TemporaryDirectory(prefix="harness-bench-") as home:
        ctx = context("legal-qa", home)
        model = ctx.base_model()
        info = cpu()
        info["eval_dtype"] = ctx.dtype
        rates = matmul_rates(model.config, ["float32", "bfloat16"])
        peaks = {k: v["peak_gflops"] for k, v in rates.items()}
        print(json.dumps({"cpu": info, "peaks": peaks}), flush=True)
        stages = scoring(ctx, model, args.questions, peaks[ctx.dtype])
        gen = context("geo-qa", home)
        stages["generation"] = generation(gen, gen.base_model(), args.questions, peaks[gen.dtype])
        stages["training"] = training(ctx, args.train_examples, peaks)
    for name, s in stages.items():
        print(
            f"{name:<12}{s['tokens_per_s']:>10} tokens/s {s['gflops']:>8} GFLOP/s  {s['fraction_of_peak']:.0%} of peak"
        )
    return {"cpu": info, "matmul": rates, "stages": stages}


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
