"""GPU check: QLoRA (bitsandbytes NF4) and LoRA training through the harness on CUDA, bf16/fp16/fp32
scoring paths, and GPU memory figures. Run on a lent GPU machine; prints JSON and writes it to --out.

    python bench/gpu_check.py --model-dir DIR [--random-init] --out gpu.json

With --random-init the SmolLM2-135M architecture (config + tokenizer from DIR) is built with random
weights: the paths, speeds and memory are real, the accuracies are not (say so wherever they are quoted).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def build_model_dir(src: Path, out: Path, random_init: bool) -> Path:
    if not random_init:
        return src
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(src)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return out


def score_choices(model, tok, prompts, choices=("Yes", "No")) -> tuple[list[list[float]], float]:
    """Log-likelihood of each one-token option after each prompt; returns (lls, seconds)."""
    import torch

    ids = [tok(c, add_special_tokens=False).input_ids[0] for c in choices]
    out, start = [], time.perf_counter()
    with torch.inference_mode():
        for p in prompts:
            enc = tok(p, return_tensors="pt").to(model.device)
            logits = model(**enc).logits[0, -1].float().log_softmax(-1)
            out.append([float(logits[i]) for i in ids])
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", type=Path, required=True)
    ap.add_argument("--random-init", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("gpu.json"))
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--home", type=Path, default=Path("/tmp/harness-gpu"))
    args = ap.parse_args()

    import os

    os.environ["HARNESS_HOME"] = str(args.home)
    from harness.models import set_offline_defaults

    set_offline_defaults()
    import torch

    from harness import models
    from harness.context import Reporter, RunContext
    from harness.data import load_task_data
    from harness.spec import load_spec
    from harness.stats import auc
    from harness.systems import make_system

    report: dict = {
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (cpu)",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "random_init": args.random_init,
        "systems": {},
    }
    import bitsandbytes
    import peft
    import transformers
    import trl

    report["versions"] = {
        "bitsandbytes": bitsandbytes.__version__,
        "peft": peft.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
    }
    model_dir = build_model_dir(args.model_dir, Path("/tmp/gpu-model"), args.random_init)
    root = Path(__file__).resolve().parent.parent
    spec = load_spec(root / "tasks" / "legal-qa.yaml")
    spec = spec.model_copy(
        update={"model": str(model_dir), "finetune": spec.finetune.model_copy(update={"epochs": args.epochs})}
    )
    data = load_task_data(spec)
    rep = Reporter(lambda line: print(line, flush=True))
    ref = models.resolve_model(str(model_dir))
    ctx = RunContext(spec, data, ref, rep, indices_dir=Path("/tmp/indices"), retrain=True)
    if args.limit:
        data.test = data.test[: args.limit]
    labels = [int(q.answers[0] == "Yes") for q in data.test]
    prompts = [ctx.prompts.plain(q) for q in data.test]

    # Scoring paths: the same base model in fp32, bf16 and fp16.
    for dtype in ("float32", "bfloat16", "float16")[: 3 if torch.cuda.is_available() else 1]:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        m = models.load_model(ref, dtype)
        score_choices(m, ctx.tokenizer, prompts[:4])  # warm-up
        lls, secs = score_choices(m, ctx.tokenizer, prompts)
        margins = [a - b for a, b in lls]
        report[f"score_{dtype}"] = {
            "questions_per_s": round(len(prompts) / secs, 1),
            "ms_per_question": round(1000 * secs / len(prompts), 2),
            "cuda_peak_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None,
            "auc": auc(labels, margins),
            "finite": all(abs(x) < 1e4 for x in margins),
        }
        del m
        args.out.write_text(json.dumps(report, indent=2))  # partial results survive a later failure

    # Training: QLoRA (NF4 on CUDA) and LoRA through the harness's own fine-tune system.
    for method in ("qlora", "lora"):
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        system = make_system(method, ctx)
        system.validate()
        try:
            info = system.build()
        except Exception as e:  # record and go on: the other method's figures still count
            import traceback

            report["systems"][method] = {
                "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc()[-3000:],
            }
            args.out.write_text(json.dumps(report, indent=2))
            continue
        with system.model() as m:
            if method == "qlora":
                report["systems"].setdefault(method, {})["linear4bit_layers"] = sum(
                    1 for mod in m.modules() if type(mod).__name__ == "Linear4bit"
                )
            with torch.autocast(ctx.device, dtype=torch.bfloat16):
                score_choices(m, ctx.tokenizer, prompts[:4])  # warm-up
                lls, secs = score_choices(m, ctx.tokenizer, prompts)
        margins = [a - b for a, b in lls]
        acc = sum((mg > 0) == bool(y) for mg, y in zip(margins, labels)) / len(labels)
        t = info.training or {}
        report["systems"].setdefault(method, {}).update(
            {
                "train_seconds": t.get("seconds"),
                "tokens_per_s": t.get("tokens_per_s"),
                "trainable_params": t.get("trainable_params"),
                "steps": t.get("steps"),
                "final_train_loss": t.get("final_train_loss"),
                "bf16": t.get("bf16"),
                "cuda_peak_memory_mb": t.get("cuda_peak_memory_mb"),
                "adapter_mb": round(info.artifact_mb, 2),
                "eval_accuracy": round(acc, 3),
                "eval_auc": auc(labels, margins),
                "eval_ms_per_question": round(1000 * secs / len(prompts), 2),
                "loss_curve_points": len(t.get("loss_curve") or []),
            }
        )
        args.out.write_text(json.dumps(report, indent=2))
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
