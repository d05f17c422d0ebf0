"""The summary table, built once as rows, and every place that shows it: the HTML table (summary_table.html),
results.csv, summary.md and the terminal table (cli.print_summary). The rows carry the raw figures (for data
attributes and the CSV) and the one wording of each cell, so the four cannot drift apart."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from harness import openmp
from harness.constants import SIGNIFICANCE_LEVEL
from harness.records import BaselineResult, BaselineTest, Interval, Percentiles, RunResults, SystemResult

from . import fmt
from .prior import markdown_lines as prior_lines
from .recommend import headline
from .runnotes import memory_label, run_notes

METRIC_PARTS = ("value", "ci_low", "ci_high")
# The verdict against the strongest baseline, worded once for the HTML, summary.md, results.csv and the terminal
BETTER, NOT_DIFFERENT, WORSE = "better", "not different", "worse"
NO_ERROR = "no error message recorded"


def _num(v: Any) -> float | None:
    return v if fmt.is_number(v) else None


def _metrics(raw: dict[str, Interval]) -> dict[str, Interval]:
    """The metrics that have a figure, non-finite interval ends dropped (they cannot be drawn or compared)."""
    return {
        name: Interval(value=m.value, ci_low=_num(m.ci_low), ci_high=_num(m.ci_high))
        for name, m in raw.items()
        if fmt.is_number(m.value)
    }


def _p(percentiles: Percentiles | None, key: str) -> float | None:
    return _num(getattr(percentiles, key)) if percentiles is not None else None


def beats_verdict(vb: BaselineTest | None) -> str | None:
    """ "better" / "worse" / "not different" against the strongest baseline, as the run's test decided after Holm's
    correction over every system's test against the baseline."""
    if vb is None or not vb.baseline:
        return None
    if not vb.significant:
        return NOT_DIFFERENT
    return BETTER if vb.beats else WORSE


CORRECTION_NOTE = (
    "Verdicts follow Holm-adjusted p-values: a system beats the baseline only where the Holm p over every "
    f"system's test against it is below {SIGNIFICANCE_LEVEL}, and two systems differ only where the Holm p over "
    "every pair "
    "compared on that metric is."
)


def best_baseline_name(results: RunResults) -> str | None:
    for entry in results.systems.values():
        if entry.vs_best_baseline is not None and entry.vs_best_baseline.baseline:
            return entry.vs_best_baseline.baseline
    return None


@dataclass(frozen=True)
class SummaryRow:
    """One line of the summary table: a system or a baseline."""

    name: str
    kind: str
    status: str = "ok"
    error: str | None = None
    is_baseline: bool = False
    description: str | None = None
    metrics: dict[str, Interval] = field(default_factory=dict)
    latency_p50: float | None = None
    latency_p95: float | None = None
    latency_mean: float | None = None
    latency_n: int | None = None  # questions timed (the seeded latency sample)
    retrieval_latency_p50: float | None = None
    retrieval_latency_p95: float | None = None
    peak_memory_mb: float | None = None
    build_s: float | None = None
    build_cost_s: float | None = None
    cached: bool = False
    artifact_mb: float | None = None
    evaluation_reused: str | None = None  # when the reused records were measured
    evaluation_reused_wait: str | None = None  # how idle CPU threads waited then, where it differs from this run
    vs_best_baseline: BaselineTest | None = None
    beats: str | None = None  # BETTER / WORSE / NOT_DIFFERENT
    beats_p: float | None = None  # the Holm-adjusted p of the test against the strongest baseline

    # ---- the one wording of each cell

    @property
    def label(self) -> str:
        return f"{self.name} (baseline)" if self.is_baseline else self.name

    @property
    def failure_text(self) -> str:
        return f"failed: {' '.join((self.error or NO_ERROR).split())}"

    def metric_text(self, name: str) -> str:
        return fmt.ci(self.metrics.get(name))

    @property
    def latency_text(self) -> str:
        if self.latency_p50 is None:
            return fmt.DASH
        return f"{fmt.seconds(self.latency_p50)} / {fmt.seconds(self.latency_p95)}"

    @property
    def memory_text(self) -> str:
        return fmt.mb(self.peak_memory_mb)

    @property
    def build_text(self) -> str:
        """This run's build time; for a reused artifact, what it took when it was built (when recorded)."""
        if self.build_s is None:
            return fmt.DASH
        if not self.cached:
            return fmt.duration(self.build_s)
        return "cached" + (f" (built in {fmt.duration(self.build_cost_s)})" if self.build_cost_s is not None else "")

    @property
    def artifact_text(self) -> str:
        return fmt.mb(self.artifact_mb)

    @property
    def beats_text(self) -> str:
        if self.is_baseline:
            return "(baseline)"
        if self.beats is None:
            return fmt.DASH
        return f"{self.beats} ({fmt.pholm(self.beats_p)})"


def reused_wait(e: SystemResult, run_wait: str | None) -> str | None:
    """How idle CPU threads waited when a reused evaluation's latency was measured, where this run's differ
    (`run_wait`: settings.openmp_wait; harness.openmp)."""
    then = e.evaluation_reused.openmp_wait if e.evaluation_reused is not None else None
    return then if then and then != openmp.mode_of(run_wait) else None


def system_row(name: str, e: SystemResult, run_wait: str | None = None) -> SummaryRow:
    vb = e.vs_best_baseline
    return SummaryRow(
        name=name,
        kind=e.kind or "",
        status=e.status,
        error=e.error,
        metrics=_metrics(e.metrics),
        latency_p50=_p(e.latency_s, "p50"),
        latency_p95=_p(e.latency_s, "p95"),
        latency_mean=_p(e.latency_s, "mean"),
        latency_n=e.latency_s.n if e.latency_s is not None else None,
        retrieval_latency_p50=_p(e.retrieval_latency_s, "p50"),
        retrieval_latency_p95=_p(e.retrieval_latency_s, "p95"),
        peak_memory_mb=_num(e.peak_memory_mb),
        build_s=_num(e.build_s),
        build_cost_s=_num(e.build_cost_s),
        cached=bool(e.cached),
        artifact_mb=_num(e.artifact_mb),
        evaluation_reused=e.evaluation_reused.measured_at if e.evaluation_reused is not None else None,
        evaluation_reused_wait=reused_wait(e, run_wait),
        vs_best_baseline=vb,
        beats=beats_verdict(vb),
        beats_p=_num(vb.p_holm) if vb is not None else None,
    )


def baseline_row(name: str, b: BaselineResult) -> SummaryRow:
    return SummaryRow(
        name=name, kind="baseline", is_baseline=True, description=b.description, metrics=_metrics(b.metrics)
    )


def summary_rows(results: RunResults) -> list[SummaryRow]:
    """One row per system, then one per baseline, with every figure the summary table shows."""
    wait = results.settings.openmp_wait if results.settings is not None else None
    rows = [system_row(name, e, wait) for name, e in results.systems.items()]
    return rows + [baseline_row(name, b) for name, b in results.baselines.items()]


def truncation_text(results: RunResults) -> str | None:
    """Free text: each system's share of answers cut off at max_new_tokens, as one sentence (None when no
    system recorded it)."""
    shares = [
        f"{name} {e.truncated_share:.0%}"
        for name, e in results.systems.items()
        if e.ok and fmt.is_number(e.truncated_share)
    ]
    if not shares:
        return None
    return (
        f"Answers cut off at evaluation.max_new_tokens: {', '.join(shares)}. A cut-off answer may never reach "
        "its point; raise max_new_tokens where the share is not small."
    )


def metric_names(results: RunResults, rows: list[SummaryRow] | None = None) -> list[str]:
    """Headline metric first, then every other metric in order of first appearance."""
    names = [headline(results)]
    for row in rows if rows is not None else summary_rows(results):
        for m in row.metrics:
            if m not in names:
                names.append(m)
    return names


def latency_label(rows: list[SummaryRow]) -> str:
    """The latency column's header, with the size of the timed sample: "latency p50 / p95 (n=40)" (every system
    of a run is timed on the same seeded sample; "n=30-40" if they differ)."""
    ns = sorted({r.latency_n for r in rows if r.latency_n is not None})
    if not ns:
        return "latency p50 / p95"
    return f"latency p50 / p95 (n={ns[0]})" if len(ns) == 1 else f"latency p50 / p95 (n={ns[0]}-{ns[-1]})"


CSV_TAIL = (
    "latency_p50",
    "latency_p95",
    "latency_n",
    "retrieval_latency_p50",
    "retrieval_latency_p95",
    "peak_memory_mb",
    "build_s",
    "build_cost_s",
    "cached",
    "artifact_mb",
    "evaluation_reused",
    "beats_best_baseline",
    "beats_p_holm",
    "error",
)


def csv_text(results: RunResults) -> str:
    rows = summary_rows(results)
    metrics = metric_names(results, rows)
    header = ["name", "kind", "status"] + [f"{m}_{part}" for m in metrics for part in METRIC_PARTS]
    header += list(CSV_TAIL)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for r in rows:
        line: list[Any] = [r.name, r.kind, r.status]
        for m in metrics:
            cell = r.metrics.get(m)
            line += [_csv(getattr(cell, part) if cell is not None else None) for part in METRIC_PARTS]
        line += [_csv(getattr(r, k)) for k in CSV_TAIL[:8]]
        line += [
            str(r.cached).lower() if not r.is_baseline else "",
            _csv(r.artifact_mb),
            _csv(r.evaluation_reused),
            r.beats or "",
            _csv(r.beats_p),
            " ".join(str(r.error or "").split()),
        ]
        writer.writerow(line)
    return buf.getvalue()


def _csv(v: Any) -> str:
    return "" if v is None else repr(v) if isinstance(v, float) else str(v)


def _md(text: Any) -> str:
    return " ".join(str(text).split()).replace("\\", "\\\\").replace("|", "\\|")


def markdown_text(results: RunResults) -> str:
    hm = headline(results)
    rows = summary_rows(results)
    bl = best_baseline_name(results) or "best baseline"
    head = [
        "system",
        f"{hm} [95% CI]",
        latency_label(rows),
        memory_label(results),
        "build time",
        "artifact size",
        f"vs best baseline ({bl})",
    ]
    lines = [
        f"**{_md(results.task or 'task')}** · run `{_md(results.run_id or '?')}` · n_test = {_md(results.n_test)}",
        "",
        "| " + " | ".join(_md(h) for h in head) + " |",
        "|" + "|".join(["---"] + ["---:"] * 5 + [":---"]) + "|",
    ]
    for r in rows:
        if r.status == "failed":
            cells = [f"{r.name} (failed)", r.failure_text] + [fmt.DASH] * 5
        else:
            cells = [r.label, r.metric_text(hm), r.latency_text, r.memory_text, r.build_text, r.artifact_text]
            cells.append(r.beats_text)
        lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
    lines += ["", CORRECTION_NOTE]
    lines += prior_lines(results)
    truncation = truncation_text(results)
    if truncation:
        lines += ["", truncation]
    lines += [line for note in run_notes(results) for line in ("", _md(note))]
    if results.decision is not None:  # the same paragraph the report opens with and the terminal prints
        lines += ["", f"**Decision.** {_md(results.decision.text)}"]
    return "\n".join(lines) + "\n"
