"""The recommendation paragraph: a pure function of the run's results.

It claims a difference between two systems only where the paired test recorded in `comparisons` is
significant after Holm's correction over every pair on that metric (`Comparison.significant`, decided by
the run at harness.constants.SIGNIFICANCE_LEVEL); everything else is reported as "not distinguishable". A
system beats the strongest baseline only where its test is significant after Holm's correction over every
system's test against the baseline (`BaselineTest.significant`); otherwise it is "not better than" it.
Latency ratios are measurements, not statistical claims, and are stated as such.
"""

from __future__ import annotations

from harness.records import Comparison, Interval, RunResults, SystemResult

from . import fmt

SIMILAR_LATENCY = 1.1  # ratios within this factor read as "similar latency"


def headline(results: RunResults) -> str:
    return results.headline_metric or "accuracy"


def metric(entry: SystemResult | None, name: str) -> Interval | None:
    """The entry's figure for `name`, or None when it has none (or only a non-finite one)."""
    m = entry.metrics.get(name) if entry is not None else None
    return m if m is not None and fmt.is_number(m.value) else None


def latency_p50(entry: SystemResult) -> float | None:
    p50 = entry.latency_s.p50 if entry.latency_s is not None else None
    return p50 if fmt.is_number(p50) and p50 > 0 else None


def find_comparison(results: RunResults, x: str, y: str, name: str) -> tuple[Comparison | None, float | None]:
    """The paired comparison of x and y on `name`, and its diff oriented as x − y."""
    for c in results.comparisons:
        if c.metric != name:
            continue
        diff = c.diff if fmt.is_number(c.diff) else None
        if c.a == x and c.b == y:
            return c, diff
        if c.a == y and c.b == x:
            return c, (-diff if diff is not None else None)
    return None, None


def latency_phrase(best: SystemResult, other: SystemResult) -> str:
    """How `other` compares with `best` on median latency, e.g. "answers 3.1× faster"."""
    b, o = latency_p50(best), latency_p50(other)
    if b is None or o is None:
        return ""
    r = b / o
    if r >= SIMILAR_LATENCY:
        return f"answers {fmt.ratio(r)} faster"
    if r <= 1 / SIMILAR_LATENCY:
        return f"is {fmt.ratio(1 / r)} slower"
    return "has similar latency"


def _join(head: str, tail: str) -> str:
    return f"{head} and {tail}." if tail else f"{head}."


def _versus(results: RunResults, name: str, best: str, entries: dict[str, SystemResult], m: str) -> tuple[str, bool]:
    """One sentence comparing `name` with `best`; the flag says whether it is within noise."""
    c, d = find_comparison(results, best, name, m)
    lat = latency_phrase(entries[best], entries[name])
    if c is None or not fmt.is_number(c.p_holm):
        why = "no paired test recorded" if c is None else "paired test has no p-value"
        return _join(f"{name} is not distinguishable from {best} on {m} ({why})", lat), False
    p = fmt.pholm(c.p_holm)
    if c.significant:
        if d is not None and d < 0:
            head = (
                f"{name} is significantly above {best} on {m} in the paired test "
                f"({fmt.signed(-d)}, {p}) despite a lower point estimate"
            )
        else:
            gap = f"{fmt.signed(-d)}, " if d is not None else ""
            head = f"{name} is significantly below {best} on {m} ({gap}{p})"
        return _join(head, lat), False
    head = f"{name} is within noise of {best} (not distinguishable on {m}, {p})"
    return _join(head, lat), True


def _baseline_sentence(best: str, entry: SystemResult, m: str) -> str:
    vb = entry.vs_best_baseline
    if vb is None or not vb.baseline:
        return f"No comparison of {best} with a model-free baseline was recorded."
    on = vb.metric or m
    gap = f"{fmt.signed(vb.diff)} {on}, " if fmt.is_number(vb.diff) else ""
    p = fmt.pholm(vb.p_holm)
    if not vb.significant:
        return f"{best} is not better than the strongest model-free baseline, {vb.baseline} ({gap}{p})."
    if vb.beats:
        return f"{best} beats the strongest model-free baseline, {vb.baseline} ({gap}{p})."
    return (
        f"{best} does not beat the strongest model-free baseline, {vb.baseline}: "
        f"the baseline is significantly better ({gap}{p})."
    )


def _failed_sentences(systems: dict[str, SystemResult]) -> list[str]:
    out = []
    for name, entry in systems.items():
        if not entry.ok:
            err = " ".join((entry.error or "no error message recorded").split())
            out.append(f"{name} failed: {err.rstrip('.')}.")
    return out


def recommendation(results: RunResults) -> str:
    m = headline(results)
    entries = {n: e for n, e in results.systems.items() if e.ok and metric(e, m)}
    parts: list[str] = []
    if not entries:
        parts.append(f"No system produced a figure for {m}, so there is nothing to recommend.")
        return " ".join(parts + _failed_sentences(results.systems))

    def rank(n: str) -> tuple[float, float]:
        return (metric(entries[n], m).value, -(latency_p50(entries[n]) or float("inf")))

    best = max(entries, key=rank)
    top = metric(entries[best], m)
    ties = [n for n in entries if n != best and metric(entries[n], m).value == top.value]
    tied = f"; tied on the point estimate with {', '.join(ties)}" if ties else ""
    parts.append(f"{best} has the highest {m} ({fmt.ci(top)}, 95% interval{tied}).")
    within = []
    for name in sorted((n for n in entries if n != best), key=rank, reverse=True):
        sentence, noise = _versus(results, name, best, entries, m)
        parts.append(sentence)
        if noise:
            within.append(name)
    fast = [n for n in within if latency_p50(entries[n]) is not None]
    b_lat = latency_p50(entries[best])
    if fast and b_lat is not None:
        quickest = min(fast, key=lambda n: latency_p50(entries[n]))
        r = b_lat / latency_p50(entries[quickest])
        if r >= SIMILAR_LATENCY:
            parts.append(
                f"If latency matters, {quickest} gives {m} not distinguishable from {best} "
                f"at {fmt.ratio(r)} lower median latency."
            )
    parts.append(_baseline_sentence(best, entries[best], m))
    parts.extend(_failed_sentences(results.systems))
    return " ".join(parts)
