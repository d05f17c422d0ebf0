"""The summary `harness run` prints (harness/report/terminal.py) at 80, 100 and 160 columns."""

from __future__ import annotations

import pytest
from report_fixtures import legal_qa_run, make_results, write_run

from harness.report import load_results, recommendation, summary_rows
from harness.report.terminal import STEPS, fitting_table, summary_text


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("report: ")]


@pytest.mark.parametrize("width", [80, 100, 160])
@pytest.mark.parametrize("kind", ["fake", "legal-qa"])
def test_fits_the_width_and_cuts_nothing(tmp_path, width, kind):
    run = write_run(tmp_path / "run", results=make_results()) if kind == "fake" else legal_qa_run(tmp_path / "lq")
    results = load_results(run)
    text = summary_text(results, run, width)
    assert max(len(line) for line in _lines(text)) <= width, text
    assert "…" not in text
    for row in summary_rows(results):
        assert row.name in text
        if not row.is_baseline and row.status == "ok":
            assert row.beats in text  # the verdict word, as the HTML and summary.md write it
    assert " ".join(recommendation(results).split()) in " ".join(text.split())  # the paragraph, wrapped
    assert text.rstrip().splitlines()[-1] == f"report: {run / 'index.html'}"


def test_failed_system_and_its_error(tmp_path):
    run = write_run(tmp_path / "run", results=make_results())
    text = " ".join(summary_text(load_results(run), run, 80).split())
    assert "dora failed: CUDA out of memory: tried to allocate 2.00 GiB" in text


def test_columns_give_way_in_the_fixed_order(tmp_path):
    results = load_results(legal_qa_run(tmp_path / "lq"))
    rows = summary_rows(results)

    def headers(width: int) -> str:
        return " ".join(" ".join(str(c.header).split()) for c in fitting_table(results, rows, width).columns)

    wide, medium, narrow = headers(200), headers(100), headers(80)
    assert "auc" in wide and "artifact" in wide and "build" in wide and "peak memory" in wide
    assert "auc" not in medium and "artifact" not in medium and "accuracy [95% CI]" in medium
    assert "accuracy [95% CI]" in narrow and "latency p50 / p95" in narrow  # stacked: headers on two lines
    text = summary_text(results, tmp_path, 80)
    assert "\n" in text and any(line.strip().startswith("[") for line in text.splitlines())  # interval stacked
    assert STEPS.index("stack") > STEPS.index("build")
