"""The run's summary for a terminal: one compact table that fits the given width, then the recommendation and
the report's path. The cells are SummaryRow's wording (the HTML table, summary.md and results.csv show the
same); where the table does not fit, columns are dropped or stacked on two lines in one fixed order (STEPS), and
no cell is ever cut short with "…"."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from harness.records import RunResults

from .prior import terminal_lines as prior_lines
from .recommend import headline, recommendation
from .runnotes import memory_label, run_notes
from .summary import SummaryRow, best_baseline_name, latency_label, metric_names, summary_rows, truncation_text

PLAIN = {"highlight": False, "markup": False, "emoji": False}

# What gives way, in order, until the table fits: the other metrics, the artifact, build and memory columns, then
# cells stack on two lines (interval under value, p-value under verdict, p95 under p50), then latency goes.
STEPS = ("metrics", "artifact", "build", "memory", "stack", "latency")


def _split(text: str, sep: str) -> str:
    """ "0.633 [0.467, 0.800]" -> "0.633\n[0.467, 0.800]": the cell on two lines at its first `sep`."""
    head, found, tail = text.partition(sep)
    return f"{head}\n{sep.lstrip()}{tail}" if found else text


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    cell: Callable[[SummaryRow, bool], str]  # (row, stacked) -> text
    stacked_header: str | None = None
    left: bool = False


def columns(results: RunResults, rows: list[SummaryRow]) -> list[Column]:
    hm = headline(results)
    baseline = best_baseline_name(results) or "best baseline"

    def metric(name: str) -> Callable[[SummaryRow, bool], str]:
        def cell(r: SummaryRow, stacked: bool) -> str:
            if r.status == "failed":
                return "failed" if name == hm else ""
            text = r.metric_text(name)
            return _split(text, " [") if stacked else text

        return cell

    def other(attr: str, sep: str) -> Callable[[SummaryRow, bool], str]:
        def cell(r: SummaryRow, stacked: bool) -> str:
            if r.status == "failed":
                return ""
            text = getattr(r, attr)
            return _split(text, sep) if stacked else text

        return cell

    out = [
        Column("system", "system", lambda r, s: _split(r.label, " (") if s else r.label, left=True),
        Column("headline", f"{hm} [95% CI]", metric(hm), f"{hm}\n[95% CI]"),
    ]
    out += [Column(f"metric:{m}", m, metric(m)) for m in metric_names(results, rows) if m != hm]
    out += [
        Column(
            "latency", latency_label(rows), other("latency_text", " / "), latency_label(rows).replace(" ", "\n", 1)
        ),
        Column(
            "memory", memory_label(results), other("memory_text", "\0"), memory_label(results).replace(" ", "\n", 1)
        ),
        Column("build", "build", other("build_text", " (")),
        Column("artifact", "artifact", other("artifact_text", "\0")),
        Column("verdict", f"vs {baseline}", other("beats_text", " ("), f"vs\n{baseline}"),
    ]
    return out


def _table(results: RunResults, rows: list[SummaryRow], cols: list[Column], stacked: bool) -> Table:
    table = Table(
        title=f"{results.task}: {results.n_test} test questions"
        + (f" (limited run: {results.limited.n} of {results.limited.of})" if results.limited else ""),
        caption=f"model: {results.model or 'unknown'}",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
        show_edge=False,
    )
    for c in cols:
        header = c.stacked_header if stacked and c.stacked_header else c.header
        table.add_column(header, justify="left" if c.left else "right", overflow="fold")
    for r in rows:
        table.add_row(*[c.cell(r, stacked) for c in cols])
    return table


def fitting_table(results: RunResults, rows: list[SummaryRow], width: int) -> Table:
    """The table with the fewest STEPS applied that fits `width` (the last one, whatever its width)."""
    cols = columns(results, rows)
    console = Console(width=10_000, file=io.StringIO(), **PLAIN)
    stacked = False
    dropped: set[str] = set()
    steps = iter(STEPS)
    while True:
        gone = dropped | ({c.key for c in cols if c.key.startswith("metric:")} if "metrics" in dropped else set())
        shown = [c for c in cols if c.key not in gone]
        table = _table(results, rows, shown, stacked)
        if Measurement.get(console, console.options.update_width(10_000), table).maximum <= width:
            return table
        step = next(steps, None)
        if step is None:
            return table
        if step == "stack":
            stacked = True
        else:
            dropped.add(step)


def summary_text(results: RunResults, run_dir: Path, width: int) -> str:
    """What `harness run` prints at the end: the table, failures, reused evaluations, the recommendation
    paragraph and the report's path, every line at most `width` columns (paths excepted: they are not cut)."""
    rows = summary_rows(results)
    out = io.StringIO()
    console = Console(width=width, file=out, **PLAIN)
    console.print(fitting_table(results, rows, width))

    def para(text: str) -> None:
        console.print(textwrap.fill(" ".join(text.split()), width=width, break_on_hyphens=False), soft_wrap=True)

    for r in rows:
        if r.status == "failed":
            para(f"{r.name} {r.failure_text}")
    reused = [r for r in rows if r.evaluation_reused]
    if reused:
        para(
            "evaluation reused (nothing that decides the answers changed; figures as measured then; "
            "--reevaluate measures again): "
            + ", ".join(
                f"{r.name} ({r.evaluation_reused}"
                + (f"; idle CPU threads then: {r.evaluation_reused_wait}" if r.evaluation_reused_wait else "")
                + ")"
                for r in reused
            )
        )
    truncation = truncation_text(results)
    if truncation:
        para(truncation)
    for line in [*prior_lines(results), *run_notes(results)]:
        para(line)
    console.print()
    para(recommendation(results))
    if results.decision is not None:
        console.print()
        para(f"decision: {results.decision.text}")
    console.print()
    console.print(f"report: {run_dir / 'index.html'}", soft_wrap=True)
    return out.getvalue()
