"""The prepared GPU check (issue 22): a *random-init* 8B-architecture model built from its config.json, no network.

    python bench/gpu_check.py --out docs/gpu/8b-check.json             # on a CUDA machine
    python bench/gpu_check.py --dry --out /tmp/plan.json                # anywhere: the plan and the estimate only

It measures, writing the JSON after every stage so that a failure later keeps what was measured:
1. QLoRA training (the harness's NF4 config, gradient checkpointing, bf16, AdamW on the LoRA weights):
   seconds per step and torch's CUDA peak, against `harness memory`'s estimate for the same batch.
2. Scoring throughput of the same rendered yes/no prompts through the harness's HF backend
   (harness.evaluate.run_lm_eval) and its vLLM backend (harness.evaluate_vllm.run_vllm_eval).
3. vLLM adapter loading: the first scoring pass with a LoRA adapter (trained in 1) against one without.

The weights are random, so accuracies mean nothing; speed and memory are those of the architecture. The
tokenizer is the embedded default model's (its ids fit any larger vocabulary). `--dry` builds nothing on a GPU:
it checks the config, the estimate, the prompts and the settings, and is what the CPU test suite runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "llama-3-8b", help="model config folder")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "gpu" / "8b-check.json")
    ap.add_argument("--work", type=Path, default=Path("/tmp/gpu-8b"), help="where the random-init model is saved")
    ap.add_argument("--batch", type=int, default=8, help="sequences per training step (gpu-8b.yaml: 8)")
    ap.add_argument("--seq", type=int, default=512, help="tokens per training sequence (gpu-8b.yaml: 512)")
    ap.add_argument("--rank", type=int, default=16, help="LoRA rank (defaults.yaml: 16)")
    ap.add_argument("--steps", type=int, default=6, help="training steps timed (after 2 untimed)")
    ap.add_argument("--prompts", type=int, default=64, help="yes/no prompts scored by each backend")
    ap.add_argument("--tokenizer", type=Path, default=None, help="tokenizer folder (default: the embedded model's)")
    ap.add_argument("--dry", action="store_true", help="plan and estimate only; no GPU needed")
    return ap.parse_args(argv)


def synthetic_questions(n: int):
    from harness.data import Question

    verbs = ("copy", "sell", "patent")
    return [
        Question(
            id=f"q{i}",
            question=f"Does licence {i} let me {verbs[i % 3]} the software?",
            answers=["Yes" if i % 2 == 0 else "No"],
            choices=["Yes", "No"],
        )
        for i in range(n)
    ]


def task_spec(model: str, rank: int):
    from harness.spec import TaskSpec

    return TaskSpec.model_validate(
        {
            "name": "gpu-check",
            "answer_format": "yes-no",
            "data": {"questions": {"path": "unused.jsonl"}},
            "model": model,
            "system_prompt": "Answer Yes or No.",
            "finetune": {"r": rank, "alpha": 2 * rank, "gradient_checkpointing": True, "bf16": "on"},
            "evaluation": {"backend": "vllm", "dtype": "bfloat16", "warmup": 2, "vllm": {"max_model_len": 2048}},
        }
    )


def save(report: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))


def stage(report: dict, name: str, out: Path, fn) -> None:
    print(f"== {name}", flush=True)
    start = time.perf_counter()
    try:
        report[name] = fn()
    except Exception as e:  # record and go on: the other stages' figures still count
        report[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
    report[name]["stage_seconds"] = round(time.perf_counter() - start, 1)
    save(report, out)


def build_random_model(config: Path, tokenizer_dir: str, folder: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if (folder / "config.json").exists():
        return folder
    torch.manual_seed(0)
    cfg = AutoConfig.from_pretrained(config)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(folder, max_shard_size="5GB")
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tok.save_pretrained(folder)
    del model
    torch.cuda.empty_cache()
    return folder


def train_qlora(folder: Path, args, estimate) -> dict:
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    from harness.parts.adapter_trainer import nf4_config
    from harness.parts.trainers import lora_config

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.float32, quantization_config=nf4_config(torch.bfloat16), device_map={"": 0}
    )
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    spec = task_spec(str(folder), args.rank)
    model = get_peft_model(model, lora_config(spec.finetune.for_method("qlora")))
    model.enable_input_require_grads()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    vocab = model.config.vocab_size
    times = []
    for step in range(args.steps + 2):
        ids = torch.randint(0, vocab, (args.batch, args.seq), device="cuda")
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if step >= 2:
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated()
    adapter = args.work / "adapter"
    model.save_pretrained(adapter)
    del model, opt
    torch.cuda.empty_cache()
    return {
        "seconds_per_step": round(sum(times) / len(times), 3),
        "tokens_per_s": round(args.batch * args.seq / (sum(times) / len(times)), 1),
        "cuda_peak_gib": round(peak / 2**30, 2),
        "estimate_gib": round(estimate.total / 2**30, 2),
        "peak_over_estimate": round(peak / estimate.total, 3),
        "within_20_percent": abs(peak / estimate.total - 1) <= 0.20,
        "adapter": str(adapter),
    }


def score(folder: Path, args, backend: str, adapter: Path | None = None) -> dict:
    import torch

    from harness import evaluate, evaluate_vllm
    from harness.models import ModelRef, load_model, load_tokenizer
    from harness.parts.prompt_builder import PromptBuilder

    spec = task_spec(str(folder), args.rank)
    ref = ModelRef(str(folder), str(folder), folder.name, "")
    tok = load_tokenizer(ref)
    questions = synthetic_questions(args.prompts)
    prompts = [PromptBuilder(spec, tok).plain(q) for q in questions]
    start = time.perf_counter()
    if backend == "hf":
        model = load_model(ref, "bfloat16", "cuda" if torch.cuda.is_available() else "cpu")
        loaded = time.perf_counter() - start
        start = time.perf_counter()
        measured = evaluate.run_lm_eval(
            model, tok, questions, prompts, answer_format="yes-no", task_name="gpu_check", batch_size=1,
            warmup=2, max_new_tokens=8, seed=0, dtype="bfloat16",
        )  # fmt: skip
        del model
        torch.cuda.empty_cache()
    else:
        loaded = 0.0
        measured = evaluate_vllm.run_vllm_eval(
            spec, str(folder), tok, questions, prompts, adapter=adapter, task_name="gpu_check", batch_size=1,
            warmup=2, dtype="bfloat16",
        )  # fmt: skip
    took = time.perf_counter() - start
    latencies = sorted(m.latency_s for m in measured if m.latency_s is not None)
    return {
        "backend": backend,
        "adapter": adapter is not None,
        "questions": len(measured),
        "seconds": round(took, 2),
        "load_seconds": round(loaded, 2),
        "questions_per_s": round(len(measured) / took, 2),
        "median_latency_ms": round(1000 * latencies[len(latencies) // 2], 2) if latencies else None,
        "finite_margins": all(m.margin is not None and abs(m.margin) < 1e4 for m in measured),
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("HARNESS_HOME", str(args.work / "home"))
    from harness import memory_estimate as me
    from harness.models import resolve_model, set_offline_defaults

    set_offline_defaults()
    shape = me.shape_of(me.load_config(str(args.config)))
    est = me.estimate(shape, "qlora", args.rank, "all-linear", args.batch, args.seq, checkpointing=True)
    report: dict = {
        "config": str(args.config),
        "random_init": True,
        "settings": {k: v for k, v in vars(args).items() if k in ("batch", "seq", "rank", "steps", "prompts")},
        "estimate": {t: round(b / 2**30, 3) for t, b, _ in est.terms} | {"total": round(est.total / 2**30, 3)},
    }
    spec = task_spec(str(args.work / "model"), args.rank)  # the settings both backends will be given
    report["evaluation"] = spec.evaluation.model_dump(mode="json")
    report["prompts"] = len(synthetic_questions(args.prompts))
    if args.dry:
        report["dry"] = True
        save(report, args.out)
        print(json.dumps(report, indent=2))
        return
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("gpu_check: torch sees no CUDA GPU; run with --dry for the plan only")
    from harness.manifest import package_versions

    report["gpu"] = torch.cuda.get_device_name(0)
    report["versions"] = package_versions(("torch", "transformers", "peft", "bitsandbytes", "vllm", "lm_eval"))
    tokenizer_dir = str(args.tokenizer or resolve_model("default", fingerprint=False).path)
    folder = build_random_model(args.config, tokenizer_dir, args.work / "model")
    stage(report, "qlora_training", args.out, lambda: train_qlora(folder, args, est))
    stage(report, "score_hf", args.out, lambda: score(folder, args, "hf"))
    stage(report, "score_vllm", args.out, lambda: score(folder, args, "vllm"))
    adapter = Path(report["qlora_training"].get("adapter", args.work / "adapter"))
    stage(report, "score_vllm_adapter", args.out, lambda: score(folder, args, "vllm", adapter))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
