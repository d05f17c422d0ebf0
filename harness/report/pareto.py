"""The Pareto front of a sweep: the headline metric against each cost, the variants no other beats on both,
paired tests of every variant against the best (Holm-corrected), and the cheapest variant not significantly
below the best.

Costs come from what the run measured, no cost model: serving time per 1,000 questions (mean latency per
question at batch 1, x 1,000), the build's cost in seconds (the time recorded when the artifact was built, for
a cached one), and peak memory while evaluating. The paired tests are the run's own (`results.comparisons`,
McNemar or paired permutation on the same questions); their raw p-values are Holm-adjusted here over the
family "each variant against the best".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness import stats
from harness.constants import SIGNIFICANCE_LEVEL
from harness.records import Interval, RunResults

from . import fmt
from .recommend import headline, metric
from .svg import Chart, Linear, Log, nice_domain, x_axis, y_axis

# (key, axis label, formatter, short name): the costs a variant is compared on; lower is cheaper.
COSTS = (
    ("serving_s", "serving time per 1,000 questions (s, batch 1)", lambda v: f"{v:,.1f} s", "serving"),
    ("build_s", "build cost (s)", lambda v: f"{v:,.1f} s", "build"),
    ("memory_mb", "peak memory (MB)", lambda v: f"{v:,.0f} MB", "memory"),
)
FRONT_COLOR, OTHER_COLOR = "#2563eb", "#9ca3af"


@dataclass
class Point:
    name: str
    value: Interval
    costs: dict[str, float | None]
    on_front: dict[str, bool] = field(default_factory=dict)
    diff: float | None = None  # against the best: this minus best
    p_holm: float | None = None
    test: str = ""
    below_best: bool = False  # significantly below the best (Holm)

    @property
    def front_text(self) -> str:
        axes = [short for key, _, _, short in COSTS if self.on_front.get(key)]
        return ", ".join(axes) if axes else fmt.DASH


@dataclass
class Front:
    metric: str
    points: list[Point]  # by serving cost, cheapest first
    best: str
    charts: list[Chart]
    sentence: str


def points_of(results: RunResults) -> list[Point]:
    hm = headline(results)
    out = []
    for name, e in results.systems.items():
        m = metric(e, hm)
        if not e.ok or m is None:
            continue
        mean = e.latency_s.mean if e.latency_s is not None else None
        build = e.build_cost_s if e.build_cost_s is not None else e.build_s
        costs = {
            "serving_s": mean * 1000 if fmt.is_number(mean) else None,
            "build_s": build if fmt.is_number(build) else None,
            "memory_mb": e.peak_memory_mb if fmt.is_number(e.peak_memory_mb) else None,
        }
        out.append(Point(name, m, costs))
    return out


def non_dominated(points: list[Point], key: str) -> set[str]:
    """Names no other point beats: another is at least as good on the metric and as cheap, better on one."""
    have = [p for p in points if p.costs[key] is not None]
    front = set()
    for p in have:
        if not any(
            q.value.value >= p.value.value
            and q.costs[key] <= p.costs[key]
            and (q.value.value > p.value.value or q.costs[key] < p.costs[key])
            for q in have
        ):
            front.add(p.name)
    return front


def test_against_best(results: RunResults, points: list[Point], best: str) -> None:
    """Each point's paired test against the best, from the run's comparisons, Holm-adjusted over that family."""
    hm = headline(results)
    raw = {}
    for c in results.comparisons:
        if c.metric == hm and best in (c.a, c.b):
            other = c.b if c.a == best else c.a
            raw[other] = (c.p_value, -c.diff if c.a == best else c.diff, c.test)
    names = [p.name for p in points if p.name in raw]
    adjusted = dict(zip(names, stats.holm([raw[n][0] for n in names])))
    for p in points:
        if p.name in adjusted:
            p.p_holm, p.diff, p.test = adjusted[p.name], raw[p.name][1] + 0.0, raw[p.name][2]
            p.diff = 0.0 if abs(p.diff) < 1e-12 else p.diff  # no "-0.000"
            p.below_best = p.p_holm < SIGNIFICANCE_LEVEL and p.diff < 0


def sentence(points: list[Point], best: str, hm: str) -> str:
    by = {p.name: p for p in points}
    ok = [p for p in points if not p.below_best and p.costs["serving_s"] is not None]
    if not ok:
        return f"No variant has a serving time to rank by; the best on {hm} is {best}."
    cheapest = min(ok, key=lambda p: p.costs["serving_s"])
    b = by[best]
    serving = COSTS[0][2]
    if cheapest.name == best:
        cheaper = [
            p for p in points if p.costs["serving_s"] is not None and p.costs["serving_s"] < b.costs["serving_s"]
        ]
        why = (
            f"every cheaper variant is significantly below it (paired tests, Holm-corrected, p < {SIGNIFICANCE_LEVEL})"
            if cheaper
            else "no variant serves for less"
        )
        return (
            f"The cheapest variant not significantly below the best is the best itself: {best} "
            f"({hm} {fmt.ci(b.value)}, {serving(b.costs['serving_s'])} per 1,000 questions); {why}."
        )
    return (
        f"The cheapest variant not significantly below the best is {cheapest.name} ({hm} {fmt.ci(cheapest.value)}, "
        f"{serving(cheapest.costs['serving_s'])} per 1,000 questions; best: {best}, {fmt.ci(b.value)}, "
        f"{serving(b.costs['serving_s'])}; difference {fmt.signed(cheapest.diff)}, {fmt.pholm(cheapest.p_holm)})."
    )


def chart(points: list[Point], key: str, label: str, hm: str) -> Chart | None:
    pts = [p for p in points if p.costs[key] is not None]
    if not pts:
        return None
    W, H, L, R, T, B = 640, 360, 64, 150, 24, 50
    c = Chart(W, H, f"{hm} vs {label.split(' (')[0]}")
    xs_vals = [p.costs[key] for p in pts]
    lo, hi = min(xs_vals), max(xs_vals)
    if lo > 0 and hi / lo > 10:
        xs = Log(lo / 1.6, hi * 1.6, L, W - R)
        label += ", log scale"
    else:
        pad = (hi - lo) * 0.15 or max(hi * 0.25, 1.0)
        xs = Linear(*nice_domain(max(lo - pad, 0.0), hi + pad), L, W - R)
    ys_vals = [v for p in pts for v in (p.value.value, p.value.ci_low, p.value.ci_high) if fmt.is_number(v)]
    y0, y1 = nice_domain(min(ys_vals), max(ys_vals))
    if min(ys_vals) >= 0 and max(ys_vals) <= 1:
        y0, y1 = max(y0, 0.0), min(y1, 1.0)
    ys = Linear(y0, y1, H - B, T)
    x_axis(c, xs, H - B, T)
    y_axis(c, ys, L, W - R)
    c.text((L + W - R) / 2, H - 12, label, anchor="middle", cls="axlbl")
    c.text(14, (T + H - B) / 2, hm, anchor="middle", cls="axlbl", transform=f"rotate(-90 14 {(T + H - B) / 2})")
    front = sorted((p for p in pts if p.on_front.get(key)), key=lambda p: p.costs[key])
    if len(front) > 1:  # the front as a staircase: what each extra unit of cost buys
        path = [(xs(front[0].costs[key]), ys(front[0].value.value))]
        for p in front[1:]:
            path += [(xs(p.costs[key]), path[-1][1]), (xs(p.costs[key]), ys(p.value.value))]
        d = "M " + " L ".join(f"{x:.1f} {y:.1f}" for x, y in path)
        c.add("path", d=d, fill="none", stroke=FRONT_COLOR, stroke_width=1.5, class_="front")
    for p in pts:
        x, y, on = xs(p.costs[key]), ys(p.value.value), p.on_front.get(key, False)
        color = FRONT_COLOR if on else OTHER_COLOR
        if fmt.has_interval(p.value):
            c.line(x, ys(p.value.ci_low), x, ys(p.value.ci_high), cls="whisker", stroke=color)
        tip = f"{p.name}: {hm} {fmt.ci(p.value)}, {label.split(' (')[0]} {COSTS_FMT[key](p.costs[key])}"
        tip += " (on the front)" if on else ""
        c.add("circle", title=tip, cx=x, cy=y, r=5.0, fill=color if on else "white", stroke=color, class_="pt")
        c.text(x + 8, y - 5, p.name, cls="lbl ptlbl")
    c.note = "Filled: on the front (no other variant is as good and cheaper). Vertical lines: 95% interval."
    return c


COSTS_FMT = {key: f for key, _, f, _ in COSTS}


def pareto(results: RunResults) -> Front | None:
    """The front of a sweep's run (None for a run that is not a sweep, or with no scored system)."""
    if results.sweep is None:
        return None
    points = points_of(results)
    if not points:
        return None
    hm = headline(results)
    for key, *_ in COSTS:
        front = non_dominated(points, key)
        for p in points:
            p.on_front[key] = p.name in front
    best = max(points, key=lambda p: (p.value.value, -(p.costs["serving_s"] or 0))).name
    test_against_best(results, points, best)
    points.sort(key=lambda p: (p.costs["serving_s"] is None, p.costs["serving_s"] or 0))
    charts = [c for key, label, _, _ in COSTS if (c := chart(points, key, label, hm)) is not None]
    return Front(hm, points, best, charts, sentence(points, best, hm))


def markdown(front: Front) -> str:
    """The front's table and sentence as Markdown (for notes and the terminal)."""
    head = f"| variant | {front.metric} | serving s / 1,000 q | build s | peak MB | on the front of | vs best |"
    lines = [head, "|" + "---|" * 7]
    for p in front.points:
        vs = "best" if p.name == front.best else f"{fmt.signed(p.diff)} ({fmt.pholm(p.p_holm)})"
        if p.below_best:
            vs += ", significantly below"
        c = p.costs
        lines.append(
            f"| {p.name} | {fmt.ci(p.value)} | {fmt.num(c['serving_s'], 1)} | {fmt.num(c['build_s'], 1)} "
            f"| {fmt.num(c['memory_mb'], 0)} | {p.front_text} | {vs} |"
        )
    return "\n".join(lines) + "\n\n" + front.sentence + "\n"
