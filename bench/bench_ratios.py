"""The harness against the libraries it drives, each pair measured back to back in one process:

    python bench/bench_ratios.py [--train-examples 96] [--eval-questions 60] [--gen-questions 32]

train_ratio     harness training tokens/s  / a plain trl+peft script's (same model, rows, settings)
eval_ratio      harness questions/s        / lm-eval called directly on the same model and generated task, at the
                same questions per forward pass (until 2026-11-30 lm-eval had two per pass: see docs/performance.md)
generate_ratio  harness generated tokens/s / plain batched model.generate on the same prompts
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def context(task: str, home: str):
    os.environ["HARNESS_HOME"] = home
    from harness.models import set_offline_defaults, set_threads

    set_offline_defaults()
    set_threads()
    from harness import models
    from harness.context import Reporter, RunContext
    from harness.data import load_task_data
    from harness.spec import load_spec
    from harness.tasks import find_task

    spec = load_spec(find_task(task))
    data = load_task_data(spec)
    return RunContext(
        spec, data, models.resolve_model(spec.model), Reporter(), indices_dir=Path(home) / "indices", retrain=True
    )


def train_ratio(ctx, n: int) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from harness.systems import make_system
    from harness.systems.finetune import training_rows

    ctx.data.train = ctx.data.train[:n]
    ctx.data.dev = ctx.data.dev[:16]
    system = make_system("lora", ctx)
    s = system.adapter.settings
    harness_tps = system.build().training["tokens_per_s"]
    rows = training_rows(ctx, ctx.data.train)
    model = AutoModelForCausalLM.from_pretrained(ctx.model_ref.path)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = SFTTrainer(
            model=model,
            processing_class=ctx.tokenizer,
            train_dataset=Dataset.from_list(rows),
            args=SFTConfig(
                output_dir=tmp,
                num_train_epochs=s.epochs,
                per_device_train_batch_size=s.batch_size,
                learning_rate=s.learning_rate,
                bf16=ctx.use_bf16(s.bf16),
                use_cpu=ctx.device == "cpu",
                report_to="none",
                save_strategy="no",
                logging_steps=s.logging_steps,
                max_length=s.max_length,
                seed=ctx.spec.seed,
                disable_tqdm=True,
            ),
            peft_config=LoraConfig(
                r=s.r,
                lora_alpha=s.alpha,
                lora_dropout=s.dropout,
                target_modules=s.target_modules,
                task_type="CAUSAL_LM",
            ),
        )
        result = trainer.train()
        tokens = sum(len(i) for i in trainer.train_dataset["input_ids"]) * s.epochs
        plain_tps = tokens / result.metrics["train_runtime"]
    return {
        "train_ratio": round(harness_tps / plain_tps, 3),
        "harness_tokens_per_s": harness_tps,
        "plain_tokens_per_s": round(plain_tps, 1),
        "examples": n,
    }


def eval_ratio(ctx, n: int) -> dict:
    from lm_eval import evaluator
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from harness.evaluate import run_lm_eval, write_lm_eval_task
    from harness.systems import make_system

    qs = ctx.data.test[:n]
    prompts = make_system("prompt", ctx).prompts(qs).texts
    model, tok, ev = ctx.base_model(), ctx.tokenizer, ctx.spec.evaluation
    import torch

    mp = torch.bfloat16 if ctx.dtype == "bfloat16" else None
    start = time.perf_counter()
    run_lm_eval(
        model,
        tok,
        qs,
        prompts,
        answer_format=ctx.spec.answer_format,
        task_name="bench_h",
        batch_size=ev.batch_size,
        warmup=0,
        max_new_tokens=ev.max_new_tokens,
        seed=0,
        dtype=ctx.dtype,
    )
    harness_s = time.perf_counter() - start
    rows = [
        {"id": q.id, "prompt": p, "answer": q.answers[0], "choices": q.choices, "gold": q.gold_index}
        for q, p in zip(qs, prompts)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        write_lm_eval_task(Path(tmp), "bench_d", rows, ctx.spec.answer_format, [tok.eos_token], ev.max_new_tokens)
        # lm-eval's loglikelihood groups the one-token choices of a context into one forward pass, so its batch
        # size counts questions, as the harness's does: the same batch size is the same work per pass
        lm = HFLM(
            pretrained=model,
            tokenizer=tok,
            batch_size=ev.batch_size,
            mixed_precision_dtype=mp,
            softmax_dtype=torch.float32,
        )
        start = time.perf_counter()
        with torch.inference_mode():
            evaluator.simple_evaluate(
                model=lm,
                tasks=["bench_d"],
                task_manager=TaskManager(include_path=tmp, include_defaults=False),
                log_samples=True,
                bootstrap_iters=0,
                device=str(lm.device),
                verbosity="ERROR",
            )
        direct_s = time.perf_counter() - start
    return {
        "eval_ratio": round(direct_s / harness_s, 3),
        "harness_questions_per_s": round(n / harness_s, 2),
        "lm_eval_questions_per_s": round(n / direct_s, 2),
        "questions": n,
        "batch_size": ev.batch_size,
    }


def generate_ratio(ctx, n: int, batch: int = 8) -> dict:
    import torch

    from harness.evaluate import run_lm_eval
    from harness.systems import make_system

    qs = ctx.data.test[:n]
    prompts = make_system("prompt", ctx).prompts(qs).texts
    model, tok, max_new = ctx.base_model(), ctx.tokenizer, ctx.spec.evaluation.max_new_tokens
    start = time.perf_counter()
    recs = run_lm_eval(
        model,
        tok,
        qs,
        prompts,
        answer_format="free-text",
        task_name="bench_g",
        batch_size=batch,
        warmup=0,
        max_new_tokens=max_new,
        seed=0,
        dtype=ctx.dtype,
    )
    harness_s = time.perf_counter() - start
    harness_tokens = sum(r.new_tokens or 0 for r in recs)
    tok.padding_side = "left"
    generated, start = 0, time.perf_counter()
    with torch.inference_mode(), torch.autocast(ctx.device, dtype=torch.bfloat16, enabled=ctx.dtype == "bfloat16"):
        for b in range(0, len(prompts), batch):
            enc = tok(prompts[b : b + batch], return_tensors="pt", padding=True, add_special_tokens=False)
            out = model.generate(
                **enc,
                max_new_tokens=max_new,
                do_sample=False,
                stop_strings=["\n"],
                tokenizer=tok,
                pad_token_id=tok.pad_token_id,
            )
            for row in out[:, enc.input_ids.shape[1] :]:
                text = tok.decode(row, skip_special_tokens=True).split("\n")[0]
                generated += len(tok(text, add_special_tokens=False).input_ids)
    plain_s = time.perf_counter() - start
    h, p = harness_tokens / harness_s, generated / plain_s
    return {
        "generate_ratio": round(h / p, 3),
        "harness_tokens_per_s": round(h, 1),
        "plain_tokens_per_s": round(p, 1),
        "questions": n,
        "batch_size": batch,
    }


def main(argv=None) -> dict:
    """{"train_ratio": .., "eval_ratio": .., "generate_ratio": .., "ratio_details": {"train": {..}, ...}}:
    the details of each pair stay under their own key (they share names such as `questions`)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-examples", type=int, default=96)
    ap.add_argument("--eval-questions", type=int, default=60)
    ap.add_argument("--gen-questions", type=int, default=32)
    args = ap.parse_args(argv)
    details = {}
    with tempfile.TemporaryDirectory(prefix="harness-bench-") as home:
        ctx = context("legal-qa", home)
        details["eval"] = eval_ratio(ctx, args.eval_questions)
        print(json.dumps(details["eval"]), flush=True)
        details["train"] = train_ratio(ctx, args.train_examples)
        print(json.dumps(details["train"]), flush=True)
        gen = context("geo-qa", home)
        details["generate"] = generate_ratio(gen, args.gen_questions)
        print(json.dumps(details["generate"]), flush=True)
    out = {f"{k}_ratio": details[k][f"{k}_ratio"] for k in ("train", "eval", "generate")}
    out["ratio_details"] = details
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
