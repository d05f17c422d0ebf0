"""Cold and warm `harness run` wall time and the peak memory of the process, measured from outside.

    python bench/bench_run.py [--task legal-qa] [--repeat 1] [--systems prompt,lora,rag]

cold: an empty HARNESS_HOME and indices folder (the model is converted, the adapter trained, the index built);
warm: the same command again with nothing changed (everything reused).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def timed_run(cmd: list[str], env: dict) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MB) of the largest process in the tree, exit code."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0.0]
    done = threading.Event()

    def sample():
        p = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                procs = [p, *p.children(recursive=True)]
                peak[0] = max([peak[0]] + [q.memory_info().rss / 2**20 for q in procs if q.is_running()])
            except psutil.Error:
                pass
            done.wait(0.1)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    _, err = proc.communicate()
    done.set()
    t.join()
    if proc.returncode != 0:
        print(err[-3000:], file=sys.stderr)
    return time.perf_counter() - start, peak[0], proc.returncode


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="legal-qa")
    ap.add_argument("--systems", default=None)
    ap.add_argument("--repeat", type=int, default=1, help="cold runs to take the median of")
    ap.add_argument("--warm-repeat", type=int, default=3)
    ap.add_argument(
        "--limit", type=int, default=None, help="evaluate N test questions (training and index stay whole)"
    )
    args = ap.parse_args(argv)
    import os

    harness = str(Path(sys.executable).parent / "harness")
    cold, warm, peaks = [], [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="harness-bench-") as tmp:
            env = {**os.environ, "HARNESS_HOME": f"{tmp}/home"}
            cmd = [
                harness,
                "run",
                args.task,
                "--quiet",
                "--reports-dir",
                f"{tmp}/reports",
                "--indices-dir",
                f"{tmp}/indices",
            ]
            if args.systems:
                cmd += ["--systems", args.systems]
            if args.limit:
                cmd += ["--limit", str(args.limit)]
            secs, peak, rc = timed_run(cmd, env)
            if rc != 0:
                raise SystemExit(f"cold run failed (exit {rc})")
            cold.append(secs)
            peaks.append(peak)
            print(f"cold run: {secs:.1f} s, peak {peak:.0f} MB", flush=True)
            for _ in range(args.warm_repeat):
                secs, _, rc = timed_run(cmd, env)
                if rc != 0:
                    raise SystemExit(f"warm run failed (exit {rc})")
                warm.append(secs)
                print(f"warm run: {secs:.1f} s", flush=True)
            latest = sorted(Path(f"{tmp}/reports/{args.task}").glob("2*"))[0]  # the cold run
            stages = json.loads((latest / "results.json").read_text())
    return {
        "cold_run_s": round(statistics.median(cold), 1),
        "warm_run_s": round(statistics.median(warm), 1),
        "peak_memory_mb": round(max(peaks), 1),
        "cold_runs_s": [round(c, 1) for c in cold],
        "run_limit": args.limit,
        "warm_runs_s": [round(w, 1) for w in warm],
        "systems": {
            n: {"build_s": s.get("build_s"), "latency_p50_s": (s.get("latency_s") or {}).get("p50")}
            for n, s in stages["systems"].items()
        },
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
