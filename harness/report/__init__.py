"""The report: one self-contained index.html (plus results.csv and summary.md) per run directory.

    render_report(run_dir) -> Path          writes index.html, results.csv, summary.md into run_dir
    compare_runs(run_dirs, out_dir) -> Path writes a cross-run index.html and summary.md
    summary_rows(results) -> list[dict]     the summary table as plain rows
    recommendation(results) -> str          the recommendation paragraph (claims need p < 0.05)

The directory layout is documented in docs/results-format.md.
"""

from .compare import compare_runs
from .load import ReportError
from .recommend import recommendation
from .render import render_report
from .summary import summary_rows

__all__ = ["ReportError", "compare_runs", "recommendation", "render_report", "summary_rows"]
