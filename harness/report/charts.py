"""The report's charts, computed server-side as `svg.Chart` element lists (no JS chart library)."""

from __future__ import annotations

import math
from typing import Any

from harness.records import Interval, RunResults, SystemResult

from . import fmt
from .recommend import headline, latency_p50, metric
from .summary import metric_names, summary_rows
from .svg import BASELINE_COLOR, Chart, Linear, Log, nice_domain, x_axis, y_axis

R_MAX, R_MIN = 22.0, 3.5


def _ok(results: RunResults) -> dict[str, SystemResult]:
    return {n: e for n, e in results.systems.items() if e.ok}


def _baseline_values(results: RunResults, m: str) -> list[tuple[str, float]]:
    return [(r.name, r.metrics[m].value) for r in summary_rows(results) if r.is_baseline and m in r.metrics]


def tradeoff_chart(results: RunResults, colors: dict[str, str]) -> Chart | None:
    """Headline metric (y) against median latency (x), marker area ∝ peak memory."""
    hm = headline(results)
    pts = [(n, latency_p50(e), metric(e, hm), e.peak_memory_mb) for n, e in _ok(results).items()]
    pts = [p for p in pts if p[1] is not None and p[2] is not None]
    if not pts:
        return None
    W, H, L, R, T, B = 760, 420, 64, 170, 24, 56
    c = Chart(W, H, f"{hm} vs median latency per question")
    lats = [p[1] for p in pts]
    lo, hi = min(lats), max(lats)
    if hi / lo > 10:
        xs = Log(lo / 1.6, hi * 1.6, L, W - R)
        xlabel = "latency p50 per question (log scale)"
    else:
        pad = (hi - lo) * 0.15 or hi * 0.25
        d0, d1 = nice_domain(max(lo - pad, 0.0), hi + pad)
        xs = Linear(d0, d1, L, W - R)
        xlabel = "latency p50 per question"
    ys_vals = [p[2].value for p in pts] + [v for _, v in _baseline_values(results, hm)]
    ys_vals += [getattr(p[2], k) for p in pts for k in ("ci_low", "ci_high") if fmt.is_number(getattr(p[2], k))]
    y0, y1 = nice_domain(min(ys_vals), max(ys_vals))
    if min(ys_vals) >= 0 and max(ys_vals) <= 1:
        y0, y1 = max(y0, 0.0), min(y1, 1.0)
    ys = Linear(y0, y1, H - B, T)
    x_axis(c, xs, H - B, T, seconds=True)
    y_axis(c, ys, L, W - R)
    c.text((L + W - R) / 2, H - 14, xlabel, anchor="middle", cls="axlbl")
    c.text(14, (T + H - B) / 2, hm, anchor="middle", cls="axlbl", transform=f"rotate(-90 14 {(T + H - B) / 2})")
    for name, v in _baseline_values(results, hm):
        y = ys(v)
        c.line(L, y, W - R, y, cls="base", stroke=BASELINE_COLOR, stroke_dasharray="6 4")
        c.text(W - R + 6, y + 4, f"{name} {fmt.num(v)}", cls="lbl base-lbl")
    mems = [p[3] for p in pts if fmt.is_number(p[3]) and p[3] > 0]
    top = max(mems) if mems else None
    for name, lat, m, mem in sorted(pts, key=lambda p: -(p[3] or 0)):
        x, y = xs(lat), ys(m.value)
        if fmt.has_interval(m):
            c.line(x, ys(m.ci_low), x, ys(m.ci_high), cls="whisker", stroke=colors[name])
        r = max(R_MIN, R_MAX * math.sqrt(mem / top)) if top and fmt.is_number(mem) and mem > 0 else R_MIN
        tip = f"{name}: {hm} {fmt.ci(m)}, latency p50 {fmt.seconds(lat)}, serving peak memory {fmt.mb(mem)}"
        c.add("circle", title=tip, cx=x, cy=y, r=float(r), fill=colors[name], class_="pt")
        c.text(x + r + 4, y - 4, name, cls="lbl ptlbl")
    c.note = (
        (
            f"Marker area is proportional to serving peak memory (largest {fmt.mb(top)}; training is not in it). "
            "Vertical lines: 95% interval. Dashed lines: model-free baselines."
        )
        if top
        else "Vertical lines: 95% interval. Dashed lines: model-free baselines."
    )
    return c


def _bars(title: str, rows: list[tuple[str, Interval, str]], W: int = 560) -> Chart:
    """Horizontal bars with whiskers; rows are (label, interval, colour)."""
    longest = max(len(label) for label, _, _ in rows)
    L, R, T, ROW = int(min(260, max(80, 6.6 * longest + 14))), 150, 10, 24
    W = max(W, L + R + 240)
    H = T + ROW * len(rows) + 30
    vals = [getattr(m, k) for _, m, _ in rows for k in ("value", "ci_low", "ci_high") if fmt.is_number(getattr(m, k))]
    if vals and min(vals) >= 0 and max(vals) <= 1:
        d0, d1 = 0.0, 1.0
    else:
        d0, d1 = nice_domain(min(0.0, min(vals)), max(vals))
    xs = Linear(d0, d1, L, W - R)
    c = Chart(W, H, title)
    x_axis(c, xs, H - 26, T)
    zero = xs(max(d0, 0.0))
    for i, (label, m, color) in enumerate(rows):
        y = T + i * ROW + 4
        v = m.value
        x0, x1 = sorted((zero, xs(v)))
        tip = f"{label}: {fmt.ci(m)}"
        c.add(
            "rect",
            title=tip,
            x=x0,
            y=float(y),
            width=max(x1 - x0, 1.0),
            height=float(ROW - 9),
            fill=color,
            class_="bar",
        )
        c.text(L - 6, y + ROW / 2, label, anchor="end")
        lo, hi = m.ci_low, m.ci_high
        cy = y + (ROW - 9) / 2
        if fmt.has_interval(m):
            c.line(xs(lo), cy, xs(hi), cy, cls="whisker")
            c.line(xs(lo), cy - 4, xs(lo), cy + 4, cls="whisker")
            c.line(xs(hi), cy - 4, xs(hi), cy + 4, cls="whisker")
        c.text(W - R + 8, y + ROW / 2, fmt.ci(m), cls="lbl val")
    return c


def metric_charts(results: RunResults, colors: dict[str, str]) -> list[Chart]:
    rows = [r for r in summary_rows(results) if r.status == "ok"]
    charts = []
    for m in metric_names(results, rows):
        bars = [
            (r.label, r.metrics[m], BASELINE_COLOR if r.is_baseline else colors.get(r.name, BASELINE_COLOR))
            for r in rows
            if m in r.metrics
        ]
        if bars:
            charts.append(_bars(m, bars))
    return charts


def _curve(curve: Any) -> list[dict[str, Any]]:
    """The points of a training record's loss curve that have a step (the record is free-form JSON)."""
    return [p for p in curve or [] if isinstance(p, dict) and fmt.is_number(p.get("step"))]


def loss_chart(results: RunResults, colors: dict[str, str]) -> Chart | None:
    curves = {n: _curve(e.training.get("loss_curve")) for n, e in _ok(results).items() if e.training is not None}
    curves = {n: c for n, c in curves.items() if c}
    if not curves:
        return None
    steps = [p["step"] for c in curves.values() for p in c]
    losses = [p[k] for c in curves.values() for p in c for k in ("train_loss", "eval_loss") if fmt.is_number(p.get(k))]
    if not losses:
        return None
    W, H, L, R, T, B = 620, 300, 56, 130, 16, 46
    c = Chart(W, H, "Training loss")
    xs = Linear(*nice_domain(min(0.0, min(steps)), max(steps)), L, W - R)
    ys = Linear(*nice_domain(min(0.0, min(losses)), max(losses)), H - B, T)
    x_axis(c, xs, H - B, T)
    y_axis(c, ys, L, W - R)
    c.text((L + W - R) / 2, H - 10, "step", anchor="middle", cls="axlbl")
    c.text(14, (T + H - B) / 2, "loss", anchor="middle", cls="axlbl", transform=f"rotate(-90 14 {(T + H - B) / 2})")
    for i, (name, curve) in enumerate(curves.items()):
        for key, dash in (("train_loss", None), ("eval_loss", "6 4")):
            pts = [(xs(p["step"]), ys(p[key])) for p in curve if fmt.is_number(p.get(key))]
            if not pts:
                continue
            d = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
            c.add(
                "polyline",
                title=f"{name} {key.replace('_', ' ')}",
                points=d,
                fill="none",
                stroke=colors[name],
                stroke_dasharray=dash,
                class_="curve",
            )
            if len(pts) == 1:
                c.add("circle", cx=pts[0][0], cy=pts[0][1], r=3.0, fill=colors[name])
        ly = T + 8 + i * 18
        c.line(W - R + 10, ly, W - R + 34, ly, cls="curve", stroke=colors[name])
        c.text(W - R + 40, ly + 4, name)
    c.note = "Solid: train loss. Dashed: eval loss."
    return c


def retrieval_chart(results: RunResults, colors: dict[str, str]) -> Chart | None:
    rows = []
    for name, e in _ok(results).items():
        ret = e.retrieval
        if ret is None:
            continue
        if fmt.is_number(ret.recall_at_k):
            rows.append((f"{name} recall@{ret.k}", Interval(value=ret.recall_at_k), colors[name]))
        if fmt.is_number(ret.mrr):
            rows.append((f"{name} MRR", Interval(value=ret.mrr), colors[name]))
    return _bars("Retrieval: recall@k and MRR", rows) if rows else None
