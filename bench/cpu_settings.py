"""Thread pinning, OpenMP's wait policy and oneDNN on or off: seconds of the run's heavy stages under each setting.

    python bench/cpu_settings.py [--rounds 3]

Each setting runs in its own process (OpenMP reads its environment once, at start), and the settings alternate
round by round, because this machine's speed drifts within minutes: compare the figures of one round. Every
child starts without the OpenMP variables of this shell, then gets its setting's:
  run        nothing: what a run chooses (harness.openmp: a brief spin on idle CPUs, sleeping on busy ones)
  passive    OMP_WAIT_POLICY=PASSIVE: idle OpenMP threads sleep at once (every run's setting before)
  active     OMP_WAIT_POLICY=ACTIVE: idle OpenMP threads spin instead of sleeping
  spin-N     GOMP_SPINCOUNT=N: idle threads spin N times, then sleep (libgomp's default is 300000)
  pinned     passive, and OMP_PROC_BIND=close, OMP_PLACES=threads, OMP_NUM_THREADS=2: each OpenMP thread bound
             to a core
  no-onednn  passive, and torch.backends.mkldnn.enabled = False: matmuls and attention off oneDNN
Each child times, in the dtype a run picks (bf16 where the CPU has it, else fp32):
  latency    a 60- and a 630-token prompt scored alone at batch 1 on every torch thread (the latency sample)
  workers    8 prompts of 630 tokens on 2 scoring workers, one torch thread each (the untimed passes)
  train      a LoRA step of 8 padded rows of 55-95 tokens on 2 training workers (legal-qa's lora)
and a checksum of the 630-token prompt's last logits, so a setting that changes the arithmetic shows it.
--together runs two processes of each setting at once: two runs, or a run beside a test suite, on one machine.
Under the AVX2 imitation (the variables in docs/performance.md), run it with them set: the children inherit them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from harness import openmp  # noqa: E402  (no torch: the children set their OpenMP variables before it loads)

PASSIVE = {"OMP_WAIT_POLICY": "PASSIVE"}
SETTINGS = {
    "run": {},  # nothing set: what a run chooses (harness.openmp), from what the CPUs are doing as it starts
    "passive": PASSIVE,
    "active": {"OMP_WAIT_POLICY": "ACTIVE"},
    **{f"spin-{n}": {"GOMP_SPINCOUNT": str(n)} for n in (1000, 10000, 30000, 100000, 300000)},
    # OpenMP binds the process's first thread to the first place when it starts, and every thread started later
    # (the workers' Python threads) inherits that one core; OMP_NUM_THREADS keeps both cores for torch's own team
    "pinned": {**PASSIVE, "OMP_PROC_BIND": "close", "OMP_PLACES": "threads", "OMP_NUM_THREADS": "2"},
    "no-onednn": PASSIVE,  # and a torch flag, set inside the child
}
CLEARED = (*openmp.USER_VARS, openmp.CHOSEN, "OMP_PROC_BIND", "OMP_PLACES")


def median_seconds(fn, n: int) -> float:
    fn()  # warm-up: oneDNN builds its kernels for a new shape on first use
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 4)


def child(setting: str) -> dict:
    from bench_common import legal_qa_model, lora_config

    ref = legal_qa_model("cpu-settings")
    import torch
    from peft import get_peft_model
    from training_levers import SHAPES, batch
    from transformers import AutoModelForCausalLM

    from harness.models import eval_dtype
    from harness.parts.answer_loss import step
    from harness.workers import run_shared

    if setting == "no-onednn":
        torch.backends.mkldnn.enabled = False
    dtype = eval_dtype("auto", "cpu")
    model = AutoModelForCausalLM.from_pretrained(ref.path, dtype=getattr(torch, dtype)).eval()
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    short, long = torch.randint(3, vocab, (1, 60), generator=g), torch.randint(3, vocab, (1, 630), generator=g)
    out: dict = {"dtype": dtype, "threads": torch.get_num_threads(), "openmp_wait": openmp.chosen()}
    with torch.inference_mode():
        out["latency 60 tokens"] = median_seconds(lambda: model(short, logits_to_keep=1), 12)
        out["latency 630 tokens"] = median_seconds(lambda: model(long, logits_to_keep=1), 6)
        out["logits checksum"] = float(model(long, logits_to_keep=1).logits.float().sum())
    prompts = [torch.randint(3, vocab, (1, 630), generator=g) for _ in range(8)]
    out["workers 8 x 630 tokens"] = median_seconds(
        lambda: run_shared(prompts, lambda p: model(p, logits_to_keep=1), workers=2), 2
    )
    train = AutoModelForCausalLM.from_pretrained(ref.path, dtype=torch.float32)
    peft = get_peft_model(train, lora_config()).train()
    opt = torch.optim.AdamW([p for p in peft.parameters() if p.requires_grad], lr=1e-4)
    data = batch(*SHAPES["lora"], vocab=vocab)
    bf16 = dtype == "bfloat16"
    out["train step, 2 workers"] = median_seconds(
        lambda: step(train.model, train.get_output_embeddings(), opt, *data, bf16, workers=2), 3
    )
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--settings", default="run,passive,active,spin-30000,pinned,no-onednn")
    ap.add_argument("--together", action="store_true", help="two processes of each setting at once (a shared machine)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        result = child(args.child)
        print("RESULT " + json.dumps(result), flush=True)
        return result
    from bench_common import legal_qa_model

    legal_qa_model("cpu-settings")  # converts the model once, into the HARNESS_HOME the children inherit
    import torch

    names = args.settings.split(",")
    out: dict = {"capability": torch.backends.cpu.get_cpu_capability(), "rounds": []}
    for _ in range(args.rounds):
        row = {}
        for name in names:
            env = {**{k: v for k, v in os.environ.items() if k not in CLEARED}, **SETTINGS[name]}
            children = [
                subprocess.Popen(
                    [sys.executable, __file__, "--child", name], env=env, stdout=subprocess.PIPE, text=True
                )
                for _ in range(2 if args.together else 1)
            ]
            found = []
            for c in children:
                stdout, _ = c.communicate()
                if c.returncode:
                    raise SystemExit(f"the {name} child failed (exit {c.returncode})")
                [line] = [x for x in stdout.splitlines() if x.startswith("RESULT ")]
                found.append(json.loads(line[len("RESULT ") :]))
            row[name] = found[0] if len(found) == 1 else found
        out["rounds"].append(row)
        print(json.dumps(row), flush=True)
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
