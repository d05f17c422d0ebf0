"""Latency on a seeded sample: which test questions are timed, and their percentiles with an interval.

Every test question is scored for accuracy in throughput batches, untimed (harness.system_eval); timing each of
them at batch 1 doubled the cost of evaluation for a figure that a sample measures as well. The questions timed
at `evaluation.batch_size` (1: what one user waits for one answer), after `evaluation.warmup` untimed ones, are a
fixed draw of `evaluation.latency_sample` test questions from the run's seed: the same ids for every system of
the run, so that latencies compare on the same questions. p50 and p95 come with a 95% bootstrap interval over
the sample and its size n, which the report, summary and terminal show beside them.
"""

from __future__ import annotations

import random

import numpy as np

from harness import stats
from harness.records import Percentiles


def sample_indices(n_questions: int, seed: int, size: int) -> list[int]:
    """The timed questions: `size` of `n_questions` (all when fewer), drawn from `seed`, in question order.
    Depends on nothing but its arguments, so every system of a run (same test split, same seed) gets the same."""
    k = min(size, n_questions)
    return sorted(random.Random(f"latency-sample-{seed}").sample(range(n_questions), k))


def _pct(q: float):
    def stat(x, axis=None):
        return np.percentile(x, q, axis=axis)

    return stat


def percentiles(values, *, bootstrap: int = 0, seed: int = 0) -> Percentiles | None:
    """p50, p95 and mean of the values that were measured (None: not in the sample), with their count n and,
    when `bootstrap` > 0, 95% bootstrap intervals of p50 and p95. None when nothing was measured."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None
    out = stats.percentiles(vals)
    out["n"] = len(vals)
    if bootstrap > 0:
        for q, field in ((50, "p50_ci"), (95, "p95_ci")):
            ci = stats.bootstrap_ci(vals, stat=_pct(q), n_boot=bootstrap, seed=seed)
            out[field] = [ci["ci_low"], ci["ci_high"]]
    return Percentiles.model_validate(out)
