"""`make bench`: every benchmark, one after the other (one heavy process at a time), into bench/results.json.

python bench/run_all.py [--skip-run] [--repeat N] [--limit N] [--skip-ratios]

Besides the run times and the ratios (their keys stay as they were, so earlier figures compare), the file gets
`cpu` (flags, torch's capability, the dtypes used), `matmul` (the fp32 and bf16 peak on the model's shapes) and
`stages` (each heavy stage's tokens/s and fraction of that peak), from bench/bench_peak.py, and `openmp_wait`
(how torch's idle threads waited: harness.openmp). `bench/cpu_settings.py` (wait, pinning, oneDNN) runs apart.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_peak  # noqa: E402
import bench_ratios  # noqa: E402
import bench_run  # noqa: E402

TARGETS = {
    "cold_run_s": ("<=", 600),
    "warm_run_s": ("<=", 60),
    "peak_memory_mb": ("<=", 4096),
    "train_ratio": (">=", 0.9),
    "eval_ratio": (">=", 0.9),
    "generate_ratio": (">=", 0.9),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-run", action="store_true", help="only the ratios")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--limit", type=int, default=None, help="cold/warm runs with --limit N (a short bench)")
    ap.add_argument("--skip-ratios", action="store_true", help="no harness-against-library ratios")
    args = ap.parse_args()
    from harness.models import set_offline_defaults

    # as a run sets up its process, before anything loads torch: otherwise the peak, the stages and the ratios
    # would be measured with OpenMP's own default wait, not the one a run chooses (harness.openmp)
    set_offline_defaults()
    from harness.manifest import machine, versions

    results = {
        "machine": machine(),
        "versions": versions(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "python": platform.python_version(),
    }
    results.update(bench_peak.main([]))
    from harness import openmp

    results["openmp_wait"] = openmp.chosen()  # latency and the batch-1 stages depend on it (harness.openmp)
    if not args.skip_run:
        limit = [] if args.limit is None else ["--limit", str(args.limit)]
        results.update(bench_run.main(["--repeat", str(args.repeat), *limit]))
    if not args.skip_ratios:
        results.update(bench_ratios.main([]))
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'figure':<16}{'value':>10}  target")
    for key, (op, bound) in TARGETS.items():
        if key in results:
            v = results[key]
            ok = v <= bound if op == "<=" else v >= bound
            print(f"{key:<16}{v:>10}  {op} {bound}  {'met' if ok else 'NOT MET'}")
    for name, st in results["stages"].items():
        frac = st["fraction_of_peak"]
        print(f"{name + ' /peak':<16}{frac:>10}  >= 0.6  {'met' if frac >= 0.6 else 'NOT MET'}")
    print(f"wrote {HERE / 'results.json'}")


if __name__ == "__main__":
    main()
