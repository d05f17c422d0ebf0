"""The documents-change section of the report (`--scenario updates`, results.json's `scenario` key): accuracy per
group (new, earlier, future waves) against stage with intervals, one line per system; the cumulative refresh
cost against stage; the paired differences after the last stage; and a paragraph that reads them."""

from __future__ import annotations

from typing import Any

from harness.constants import SIGNIFICANCE_LEVEL
from harness.records import RunResults
from harness.scenario_records import Scenario

from . import fmt
from .svg import Chart, Linear, nice_domain, y_axis

GROUP_TITLES = {
    "new": "the new wave (absorption)",
    "earlier": "earlier waves (retention)",
    "future": "future waves (not yet known)",
}


def _frame(title: str, stages: int, lo: float, hi: float, ylabel: str) -> tuple[Chart, Linear, Linear]:
    W, H, L, R, T, B = 430, 260, 52, 120, 14, 42
    c = Chart(W, H, title)
    xs = Linear(-0.25, stages - 0.75, L, W - R)
    ys = Linear(*nice_domain(lo, hi), H - B, T)
    y_axis(c, ys, L, W - R)
    c.line(L, H - B, W - R, H - B)
    for k in range(stages):
        c.text(xs(k), H - B + 14, f"{k}", anchor="middle", cls="tick")
    c.text((L + W - R) / 2, H - 8, "stage (waves known: 0 ... k)", anchor="middle", cls="axlbl")
    c.text(12, (T + H - B) / 2, ylabel, anchor="middle", cls="axlbl", transform=f"rotate(-90 12 {(T + H - B) / 2})")
    return c, xs, ys


def _legend(c: Chart, names: list[str], colors: dict[str, str]) -> None:
    right = c.width - 120
    for i, name in enumerate(names):
        y = 20 + i * 18
        c.line(right + 10, y, right + 30, y, cls="curve", stroke=colors[name])
        c.text(right + 36, y + 4, name)


def group_chart(sc: Scenario, group: str, names: list[str], colors: dict[str, str], metric: str) -> Chart | None:
    points = {
        n: [(k, st.systems[n].groups[group]) for k, st in enumerate(sc.stages) if n in st.systems] for n in names
    }
    values = [g for pts in points.values() for _, g in pts if fmt.is_number(g.value)]
    if not values:
        return None
    lo = min(min(g.ci_low if fmt.is_number(g.ci_low) else g.value for g in values), 0.0)
    hi = max(
        max(g.ci_high if fmt.is_number(g.ci_high) else g.value for g in values), 1.0
    )  # headline metrics are shares
    c, xs, ys = _frame(f"{metric} on {GROUP_TITLES[group]}", len(sc.stages), lo, hi, metric)
    for i, (name, pts) in enumerate(points.items()):
        shift = (i - (len(points) - 1) / 2) * 0.06  # side by side, so intervals do not hide each other
        kept = [(k + shift, g) for k, g in pts if fmt.is_number(g.value)]
        for x, g in kept:
            if fmt.is_number(g.ci_low) and fmt.is_number(g.ci_high):
                c.line(xs(x), ys(g.ci_low), xs(x), ys(g.ci_high), cls="curve", stroke=colors[name], opacity="0.6")
        titles = [f"{name}, stage {round(x)}: {fmt.num(g.value)} {fmt.interval(g)} (n={g.n})" for x, g in kept]
        _series(c, xs, ys, name, colors[name], [(x, g.value) for x, g in kept], titles)
    _legend(c, names, colors)
    c.note = "Dots: the headline metric after each stage; bars: 95% bootstrap intervals. No dot: the group is empty."
    return c


def _series(c: Chart, xs, ys, name: str, color: str, points: list[tuple[float, float]], titles: list[str]) -> None:
    """One system's line: a dot per (stage, value), titled, joined when there are two or more."""
    for (x, y), title in zip(points, titles):
        c.add("circle", title=title, cx=xs(x), cy=ys(y), r=3.5, fill=color)
    if len(points) > 1:
        d = " ".join(f"{xs(x):.1f},{ys(y):.1f}" for x, y in points)
        c.add("polyline", title=name, points=d, fill="none", stroke=color, class_="curve")


def cost_chart(sc: Scenario, names: list[str], colors: dict[str, str]) -> Chart | None:
    series = {
        n: [(k, st.systems[n].cumulative_refresh_s) for k, st in enumerate(sc.stages) if n in st.systems]
        for n in names
    }
    values = [v for pts in series.values() for _, v in pts if fmt.is_number(v)]
    if not values:
        return None
    c, xs, ys = _frame("Cumulative refresh cost", len(sc.stages), 0.0, max(values) or 1.0, "seconds")
    for name, pts in series.items():
        kept = [(k, v) for k, v in pts if fmt.is_number(v)]
        _series(c, xs, ys, name, colors[name], kept, [f"{name}, stage {k}: {fmt.duration(v)}" for k, v in kept])
    _legend(c, names, colors)
    c.note = "Seconds spent building (stage 0) and refreshing (later stages), summed; prompt never refreshes."
    return c


def paragraph(sc: Scenario, names: list[str]) -> str:
    """What the figures say, in one paragraph (the issue's example: what absorbing a wave took, how well each
    system then answers about it, and what continuing an adapter lost on the earlier waves)."""
    last = sc.stages[-1]
    later = sc.stages[1:]
    docs = [len(w.doc_ids) for w in sc.waves[1:]]
    out = []
    costs = []
    for n in names:
        vals = [st.systems[n].refresh_s for st in later if n in st.systems]
        if n != "prompt" and vals and all(fmt.is_number(v) for v in vals):
            costs.append(f"{n} {fmt.duration(sum(vals) / len(vals))}")
    if costs and docs:
        size = f"{docs[0]}" if len(set(docs)) == 1 else f"{min(docs)}-{max(docs)}"
        out.append(f"Absorbing a wave of {size} documents took {', '.join(costs)} (mean over stages 1-{len(later)}).")
    new = [
        f"{n} {fmt.num(last.systems[n].groups['new'].value)} {fmt.interval(last.systems[n].groups['new'])}".strip()
        for n in names
        if n in last.systems and fmt.is_number(last.systems[n].groups["new"].value)
    ]
    if new:
        out.append(f"After the last stage, on the new wave's questions ({sc.metric}): {', '.join(new)}.")
    for n in names:
        if not n.endswith("-continue") or n not in last.systems:
            continue
        twin = n[: -len("-continue")] + "-retrain"
        a, b = last.systems[n].groups["earlier"], last.systems.get(twin)
        if b is None or not (fmt.is_number(a.value) and fmt.is_number(b.groups["earlier"].value)):
            continue
        test = next(
            (c for c in last.comparisons if c.group == "earlier" and {c.a, c.b} == {n, twin}),
            None,
        )
        diff = a.value - b.groups["earlier"].value
        verdict = "significant" if test is not None and test.p_holm < SIGNIFICANCE_LEVEL else "not distinguishable"
        p = "" if test is None else f", {fmt.pholm(test.p_holm)}"
        out.append(
            f"On the earlier waves {n} scored {fmt.signed(diff)} against {twin} ({verdict}{p}): "
            f"{'what continuing on the new wave alone forgot' if diff < 0 else 'no forgetting shown'}."
        )
    future = [
        f"{n} {fmt.num(sc.stages[0].systems[n].groups['future'].value)}"
        for n in names
        if n in sc.stages[0].systems and fmt.is_number(sc.stages[0].systems[n].groups["future"].value)
    ]
    if future:
        out.append(f"On the waves not yet known after stage 0 (the floor without the knowledge): {', '.join(future)}.")
    return " ".join(out)


def scenario_section(results: RunResults, colors: dict[str, str]) -> dict[str, Any] | None:
    sc = results.scenario
    if sc is None or not sc.stages:
        return None
    names = [n for n in sc.stages[0].systems if n in colors] + [n for n in sc.stages[0].systems if n not in colors]
    colors = {**colors, **{n: colors.get(n, "#6b7280") for n in names}}
    last = sc.stages[-1]
    rows = []
    for k, st in enumerate(sc.stages):
        for n, s in st.systems.items():
            rows.append({"stage": k, "name": n, "s": s, "groups": s.groups})
    return {
        "metric": sc.metric,
        "waves": sc.waves,
        "charts": [c for g in GROUP_TITLES if (c := group_chart(sc, g, names, colors, sc.metric)) is not None],
        "cost": cost_chart(sc, names, colors),
        "rows": rows,
        "comparisons": last.comparisons,
        "last": len(sc.stages) - 1,
        "paragraph": paragraph(sc, names),
        "seconds": sc.seconds,
    }
