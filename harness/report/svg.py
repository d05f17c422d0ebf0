"""Minimal SVG building blocks: scales, ticks and a chart made of primitive elements.

Charts are data (tag + attributes + text), rendered by a jinja2 macro with autoescape on,
so labels that come from results.json are escaped like everything else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f")
BASELINE_COLOR = "#6b7280"
FONT = 11


def r1(v: float) -> float:
    return round(float(v), 1)


@dataclass
class Chart:
    width: int
    height: int
    title: str
    elements: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""

    def add(self, tag: str, text: str | None = None, title: str | None = None, **attrs: Any) -> None:
        clean = {
            k.rstrip("_").replace("_", "-"): (r1(v) if isinstance(v, float) else v)
            for k, v in attrs.items()
            if v is not None
        }
        self.elements.append({"tag": tag, "attrs": clean, "text": text, "title": title})

    def line(self, x1, y1, x2, y2, cls="axis", **kw) -> None:
        self.add("line", x1=float(x1), y1=float(y1), x2=float(x2), y2=float(y2), class_=cls, **kw)

    def text(self, x, y, text, anchor="start", cls="lbl", **kw) -> None:
        self.add("text", text=str(text), x=float(x), y=float(y), text_anchor=anchor, class_=cls, **kw)


class Linear:
    def __init__(self, d0: float, d1: float, r0: float, r1_: float):
        if d1 == d0:
            d0, d1 = d0 - 0.5, d1 + 0.5
        self.d0, self.d1, self.r0, self.r1 = d0, d1, r0, r1_
        self.log = False

    def __call__(self, v: float) -> float:
        return self.r0 + (v - self.d0) / (self.d1 - self.d0) * (self.r1 - self.r0)

    def ticks(self, n: int = 5) -> list[float]:
        return nice_ticks(self.d0, self.d1, n)


class Log:
    def __init__(self, d0: float, d1: float, r0: float, r1_: float):
        self.l0, self.l1 = math.log10(d0), math.log10(d1)
        if self.l1 == self.l0:
            self.l0, self.l1 = self.l0 - 0.5, self.l1 + 0.5
        self.d0, self.d1, self.r0, self.r1 = d0, d1, r0, r1_
        self.log = True

    def __call__(self, v: float) -> float:
        return self.r0 + (math.log10(v) - self.l0) / (self.l1 - self.l0) * (self.r1 - self.r0)

    def ticks(self, n: int = 6) -> list[float]:
        out = []
        for e in range(math.floor(self.l0), math.ceil(self.l1) + 1):
            for m in (1, 2, 5):
                v = m * 10.0**e
                if self.d0 <= v <= self.d1:
                    out.append(v)
        while len(out) > n + 2:
            out = out[::2]
        return out


def nice_step(span: float, n: int) -> float:
    raw = span / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = nice_step(hi - lo, n)
    start = math.ceil(lo / step - 1e-9) * step
    out, v = [], start
    while v <= hi + step * 1e-9:
        out.append(round(v, 10))
        v += step
    return out


def nice_domain(lo: float, hi: float, n: int = 5) -> tuple[float, float]:
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    step = nice_step(hi - lo, n)
    return math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step


def tick_label(v: float, seconds: bool = False) -> str:
    if seconds:
        if v < 1:
            ms = v * 1000
            return f"{ms:g} ms" if ms >= 1 else f"{ms:.2g} ms"
        return f"{v:g} s"
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}" if abs(v) < 1 else f"{v:g}"


def x_axis(c: Chart, scale, y: float, top: float, seconds: bool = False) -> None:
    c.line(scale.r0, y, scale.r1, y)
    for t in scale.ticks():
        x = scale(t)
        c.line(x, top, x, y, cls="grid")
        c.text(x, y + 14, tick_label(t, seconds), anchor="middle", cls="tick")


def y_axis(c: Chart, scale, x: float, right: float) -> None:
    c.line(x, scale.r0, x, scale.r1)
    for t in scale.ticks():
        y = scale(t)
        c.line(x, y, right, y, cls="grid")
        c.text(x - 5, y + 4, tick_label(t), anchor="end", cls="tick")


def colors_for(names: list[str]) -> dict[str, str]:
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}
