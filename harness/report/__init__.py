"""The report: one self-contained index.html (plus results.csv and summary.md) per run directory.

    render_report(run_dir) -> Path          writes index.html, results.csv, summary.md into run_dir
    compare_runs(run_dirs, out_dir) -> Path writes a cross-run index.html and summary.md
    load_results(run_dir) -> RunResults    results.json, validated (ReportError naming the file and field)
    summary_rows(results) -> [SummaryRow]   the summary table's rows, with the one wording of every cell,
                                            shared by the HTML, results.csv, summary.md and the terminal
    prior_lines(results) -> [str]           each system on the questions the category prior gets wrong
    recommendation(results) -> str          the recommendation paragraph (claims need the Holm-adjusted
                                            paired test below harness.constants.SIGNIFICANCE_LEVEL)

`results` is a harness.records.RunResults. The directory layout is documented in docs/results-format.md.
"""

from .compare import compare_runs
from .load import ReportError, load_results
from .prior import terminal_lines as prior_lines
from .recommend import recommendation
from .render import render_report
from .summary import SummaryRow, best_baseline_name, metric_names, summary_rows

__all__ = [
    "ReportError",
    "SummaryRow",
    "best_baseline_name",
    "compare_runs",
    "load_results",
    "metric_names",
    "prior_lines",
    "recommendation",
    "render_report",
    "summary_rows",
]
