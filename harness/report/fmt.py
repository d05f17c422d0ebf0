"""Number formatting shared by the terminal table, the HTML, Markdown and recommendation text (also registered
as jinja2 filters), so that every place writes a figure the same way."""

from __future__ import annotations

import math
from typing import Any

from harness.records import Interval

DASH = "—"
MINUS = "−"


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def num(v: Any, digits: int = 3) -> str:
    if not is_number(v):
        return DASH
    return f"{v:.{digits}f}".replace("-", MINUS)


def signed(v: Any, digits: int = 3) -> str:
    if not is_number(v):
        return DASH
    text = f"{v:+.{digits}f}"
    return text.replace("-", MINUS)


def has_interval(m: Interval | None) -> bool:
    return m is not None and is_number(m.ci_low) and is_number(m.ci_high)


def ci(m: Interval | None, digits: int = 3) -> str:
    """ "0.820 [0.760, 0.880]" from an Interval."""
    if m is None or not is_number(m.value):
        return DASH
    text = num(m.value, digits)
    if has_interval(m):
        text += " " + interval(m, digits)
    return text


def interval(m: Interval | None, digits: int = 3) -> str:
    """Only the "[lo, hi]" part, or "" when the interval is missing."""
    if not has_interval(m):
        return ""
    return f"[{num(m.ci_low, digits)}, {num(m.ci_high, digits)}]"


def seconds(v: Any) -> str:
    """A per-question latency: "85 ms", "4.2 ms", "1.23 s"."""
    if not is_number(v):
        return DASH
    if v == 0:
        return "0 s"
    if abs(v) < 0.01:
        return f"{v * 1000:.1f} ms"
    if abs(v) < 1:
        return f"{v * 1000:.0f} ms"
    return f"{v:.2f} s"


def duration(v: Any) -> str:
    """A build time: "12.3 s", "4 min 12 s", "1 h 02 min"."""
    if not is_number(v):
        return DASH
    if v < 60:
        return f"{v:.1f} s"
    if v < 3600:
        return f"{int(v // 60)} min {round(v % 60):02d} s"
    return f"{int(v // 3600)} h {round(v % 3600 / 60):02d} min"


def mb(v: Any) -> str:
    if not is_number(v):
        return DASH
    if abs(v) >= 100:
        return f"{v:,.0f} MB"
    return f"{v:.1f} MB"


def integer(v: Any) -> str:
    if not is_number(v):
        return DASH
    return f"{int(v):,}"


def pvalue(p: Any, name: str = "p") -> str:
    """ "p = 0.030", "p < 0.001"; `name` labels an adjusted p-value, e.g. "Holm p"."""
    if not is_number(p):
        return f"{name} n/a"
    if p < 0.001:
        return f"{name} < 0.001"
    return f"{name} = {p:.3f}"


def pholm(p: Any) -> str:
    """A Holm-adjusted p-value, labelled as one: "Holm p = 0.090"."""
    return pvalue(p, "Holm p")


def ratio(r: float) -> str:
    return f"{r:.1f}×"


def _delta(v: Any, unit) -> str:
    if not is_number(v):
        return ""
    if v == 0:
        return "±0"
    return ("+" if v > 0 else MINUS) + unit(abs(v))


def dseconds(v: Any) -> str:
    """A latency change: "+12 ms", "−1.20 s", "±0"."""
    return _delta(v, seconds)


def dmb(v: Any) -> str:
    return _delta(v, mb)


def pct(v: Any) -> str:
    return "" if not is_number(v) else _delta(v, lambda x: f"{x:.0f}%")


FILTERS = {
    "dseconds": dseconds,
    "dmb": dmb,
    "pct": pct,
    "num": num,
    "signed": signed,
    "ci": ci,
    "interval": interval,
    "seconds": seconds,
    "duration": duration,
    "mb": mb,
    "integer": integer,
    "pvalue": pvalue,
    "pholm": pholm,
}
