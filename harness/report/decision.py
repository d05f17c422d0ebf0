"""The report's Decision section: the recommendation for the deployment profile (written by the run as
`results.decision`, harness.cost), each system's cost, and the break-even charts (monthly cost against
questions per day and against document updates per month, one line per system, the profile's point marked).
Inline SVG like the other charts: no network, no script.
"""

from __future__ import annotations

from typing import Any

from harness.cost import DAYS_PER_MONTH, duration, line, number
from harness.profile import Profile
from harness.records import RunResults, SystemCost

from . import fmt
from .svg import Chart, Linear, nice_domain, x_axis, y_axis

AXES = {
    "queries_per_day": "questions per day",
    "updates_per_month": "document updates per month",
}


def _unit(profile: Profile) -> tuple[str, float]:
    """The charts' y unit and the factor from machine-seconds to it."""
    if profile.usd_per_hour is not None:
        return "USD per month", profile.usd_per_hour / 3600
    return "machine-hours per month", 1 / 3600


def _costs(results: RunResults) -> dict[str, SystemCost]:
    return {n: e.cost for n, e in results.systems.items() if e.ok and e.cost is not None}


def break_even_chart(results: RunResults, axis: str, colors: dict[str, str]) -> Chart | None:
    """Monthly cost (y) against one profile axis (x), the other axis at the profile's value."""
    d = results.decision
    costs = {n: c for n, c in _costs(results).items() if c.machine_s_per_month is not None}
    if d is None or not costs:
        return None
    profile = d.profile
    unit, factor = _unit(profile)
    x0 = float(getattr(profile, axis))
    flips = [b.at for b in d.break_even if b.axis == axis]
    x_hi = max([x0 * 2, *(f * 1.5 for f in flips)]) or (2000.0 if axis == "queries_per_day" else 10.0)
    lines = {n: line(c, axis, profile) for n, c in costs.items()}
    W, H, L, R, T, B = 620, 320, 64, 150, 16, 46
    _, x1 = nice_domain(0.0, x_hi)
    xs = Linear(0.0, x1, L, W - R)
    tops = [(a + b * x1) * factor for a, b in lines.values()]
    _, y1 = nice_domain(0.0, max(tops) or 1.0)
    ys = Linear(0.0, y1, H - B, T)
    c = Chart(W, H, f"Cost per month vs {AXES[axis]}")
    x_axis(c, xs, H - B, T)
    y_axis(c, ys, L, W - R)
    c.text((L + W - R) / 2, H - 10, AXES[axis], anchor="middle", cls="axlbl")
    c.text(14, (T + H - B) / 2, unit, anchor="middle", cls="axlbl", transform=f"rotate(-90 14 {(T + H - B) / 2})")
    for i, (name, (a, b)) in enumerate(lines.items()):
        eligible = name in d.eligible
        y_end = (a + b * x1) * factor
        c.add(
            "polyline",
            title=f"{name}: {fmt.num(a * factor)} + {fmt.num(b * factor)} per unit ({unit})",
            points=f"{xs(0.0):.1f},{ys(a * factor):.1f} {xs(x1):.1f},{ys(y_end):.1f}",
            fill="none",
            stroke=colors.get(name, "#111827"),
            stroke_dasharray=None if eligible else "4 4",
            class_="curve",
        )
        ly = T + 8 + i * 18
        c.line(W - R + 10, ly, W - R + 34, ly, cls="curve", stroke=colors.get(name, "#111827"))
        c.text(W - R + 40, ly + 4, name if eligible else f"{name} (not eligible)")
    c.line(xs(x0), T, xs(x0), H - B, cls="base", stroke="#111827", stroke_dasharray="2 3")
    if d.recommended in lines:
        a, b = lines[d.recommended]
        y = (a + b * x0) * factor
        c.add(
            "circle",
            title=f"the profile: {fmt.num(x0)} {AXES[axis]}, {d.recommended} at {fmt.num(y)} {unit}",
            cx=xs(x0),
            cy=ys(y),
            r=5.0,
            fill=colors.get(d.recommended, "#111827"),
            class_="pt profile-point",
        )
    c.text(xs(x0) + 4, T + 10, "profile", cls="lbl")
    other = "updates_per_month" if axis == "queries_per_day" else "queries_per_day"
    c.note = (
        f"Machine time for serving (at each system's best measured batch size) plus refreshes, with "
        f"{AXES[other]} at the profile's {fmt.num(getattr(profile, other))}. Dotted line: the profile. "
        "Dashed systems are not eligible (significantly below the most accurate, or over the latency limit)."
    )
    return c


def profile_rows(results: RunResults) -> list[dict[str, Any]]:
    d = results.decision
    if d is None:
        return []
    rows = []
    for key, f in Profile.model_fields.items():
        value = getattr(d.profile, key)
        rows.append(
            {
                "key": key,
                "value": "unset" if value is None else number(value),
                "default": key in d.defaults,
                "help": f.description,
            }
        )
    return rows


def cost_rows(results: RunResults) -> list[dict[str, Any]]:
    d = results.decision
    rows = []
    for name, c in _costs(results).items():
        tp = results.systems[name].throughput
        rows.append(
            {
                "name": name,
                "build": duration(c.build_s) if c.build_s else "none",
                "batch1": number(c.s_per_1k_batch1) if c.s_per_1k_batch1 is not None else fmt.DASH,
                "best": number(c.s_per_1k_best) if c.s_per_1k_best is not None else fmt.DASH,
                "batch": c.best_batch_size,
                "probe_s": tp.seconds if tp is not None else None,
                "refresh": duration(c.refresh_s) if c.refresh_s else "none",
                "refresh_what": c.refresh_what,
                "basis": c.refresh_basis,
                "memory": fmt.mb(c.peak_memory_mb),
                "p95": fmt.seconds(c.p95_latency_s) if c.p95_latency_s is not None else fmt.DASH,
                "hours": number(c.machine_s_per_month / 3600) if c.machine_s_per_month is not None else fmt.DASH,
                "usd": None if c.usd_per_month is None else f"${c.usd_per_month:,.2f}",
                "chosen": d is not None and name == d.recommended,
                "eligible": d is not None and name in d.eligible,
            }
        )
    return rows


def decision_context(results: RunResults, colors: dict[str, str]) -> dict[str, Any]:
    """What templates/decision.html shows; empty for a run written before the cost model."""
    d = results.decision
    if d is None:
        return {"decision": None}
    return {
        "decision": d,
        "profile_rows": profile_rows(results),
        "cost_rows": cost_rows(results),
        "days_per_month": DAYS_PER_MONTH,
        "break_even_charts": [
            ch for ch in (break_even_chart(results, axis, colors) for axis in AXES) if ch is not None
        ],
    }
