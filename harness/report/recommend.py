"""The recommendation paragraph: a pure function of results.json.

It claims a difference between two systems only where the paired test recorded in
`comparisons` gives p < 0.05; everything else is reported as "not distinguishable".
Latency ratios are measurements, not statistical claims, and are stated as such.
"""

from __future__ import annotations

from typing import Any

from . import fmt

SIMILAR_LATENCY = 1.1  # ratios within this factor read as "similar latency"


def headline(results: dict[str, Any]) -> str:
    return str(results.get("headline_metric") or "accuracy")


def metric(entry: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    metrics = (entry or {}).get("metrics") or {}
    m = metrics.get(name)
    if isinstance(m, dict) and fmt.is_number(m.get("value")):
        return m
    return None


def latency_p50(entry: dict[str, Any]) -> float | None:
    p50 = (entry.get("latency_s") or {}).get("p50")
    return p50 if fmt.is_number(p50) and p50 > 0 else None


def find_comparison(results: dict[str, Any], x: str, y: str, name: str) -> tuple[dict | None, float | None]:
    """The paired comparison of x and y on `name`, and its diff oriented as x − y."""
    for c in results.get("comparisons") or []:
        if not isinstance(c, dict) or c.get("metric") != name:
            continue
        diff = c.get("diff")
        diff = diff if fmt.is_number(diff) else None
        if c.get("a") == x and c.get("b") == y:
            return c, diff
        if c.get("a") == y and c.get("b") == x:
            return c, (-diff if diff is not None else None)
    return None, None


def latency_phrase(best: dict[str, Any], other: dict[str, Any]) -> str:
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


def _versus(results, name, best, entries, m) -> tuple[str, bool]:
    """One sentence comparing `name` with `best`; the flag says whether it is within noise."""
    c, d = find_comparison(results, best, name, m)
    p = c.get("p_value") if c else None
    lat = latency_phrase(entries[best], entries[name])
    if c is None or not fmt.is_number(p):
        why = "no paired test recorded" if c is None else "paired test has no p-value"
        return _join(f"{name} is not distinguishable from {best} on {m} ({why})", lat), False
    if fmt.significant(p):
        if d is not None and d < 0:
            head = (
                f"{name} is significantly above {best} on {m} in the paired test "
                f"({fmt.signed(-d)}, {fmt.pvalue(p)}) despite a lower point estimate"
            )
        else:
            gap = f"{fmt.signed(-d)}, " if d is not None else ""
            head = f"{name} is significantly below {best} on {m} ({gap}{fmt.pvalue(p)})"
        return _join(head, lat), False
    head = f"{name} is within noise of {best} (not distinguishable on {m}, {fmt.pvalue(p)})"
    return _join(head, lat), True


def _baseline_sentence(best: str, entry: dict[str, Any], m: str) -> str:
    vb = entry.get("vs_best_baseline")
    if not isinstance(vb, dict) or not vb.get("baseline"):
        return f"No comparison of {best} with a model-free baseline was recorded."
    bl, p, diff = vb["baseline"], vb.get("p_value"), vb.get("diff")
    on = vb.get("metric") or m
    gap = f"{fmt.signed(diff)} {on}, " if fmt.is_number(diff) else ""
    if not fmt.significant(p):
        return f"{best} is not distinguishable from the strongest model-free baseline, {bl} ({gap}{fmt.pvalue(p)})."
    ahead = diff > 0 if fmt.is_number(diff) else bool(vb.get("beats"))
    if ahead:
        return f"{best} beats the strongest model-free baseline, {bl} ({gap}{fmt.pvalue(p)})."
    return (
        f"{best} does not beat the strongest model-free baseline, {bl}: "
        f"the baseline is significantly better ({gap}{fmt.pvalue(p)})."
    )


def _failed_sentences(systems: dict[str, Any]) -> list[str]:
    out = []
    for name, entry in systems.items():
        if entry.get("status") == "failed":
            err = " ".join(str(entry.get("error") or "no error message recorded").split())
            out.append(f"{name} failed: {err.rstrip('.')}.")
    return out


def recommendation(results: dict[str, Any]) -> str:
    m = headline(results)
    systems = results.get("systems") or {}
    entries = {
        n: e for n, e in systems.items() if isinstance(e, dict) and e.get("status", "ok") == "ok" and metric(e, m)
    }
    parts: list[str] = []
    if not entries:
        parts.append(f"No system produced a figure for {m}, so there is nothing to recommend.")
        return " ".join(parts + _failed_sentences(systems))

    def rank(n: str) -> tuple[float, float]:
        return (metric(entries[n], m)["value"], -(latency_p50(entries[n]) or float("inf")))

    best = max(entries, key=rank)
    top = metric(entries[best], m)
    ties = [n for n in entries if n != best and metric(entries[n], m)["value"] == top["value"]]
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
    parts.extend(_failed_sentences(systems))
    return " ".join(parts)
