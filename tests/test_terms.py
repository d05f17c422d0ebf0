"""Every term of the report has a one-line explanation (harness/report/terms.py): a tooltip where it appears
and an entry under "Terms"."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from report_fixtures import legal_qa_run, make_results, write_run

from harness import scorers
from harness.report import render_report
from harness.report.terms import glossary


class Abbrs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.abbrs: list[str | None] = []
        self.terms: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "abbr":
            self.abbrs.append(a.get("title"))
        if tag == "dt" and (a.get("id") or "").startswith("term-"):
            self.terms.append(a["id"][5:])


def _parse(html: str) -> Abbrs:
    p = Abbrs()
    p.feed(html)
    return p


def test_every_tooltip_says_something(tmp_path):
    for run in (write_run(tmp_path / "fake", results=make_results()), legal_qa_run(tmp_path / "lq")):
        parsed = _parse(render_report(run).read_text(encoding="utf-8"))
        assert len(parsed.abbrs) > 10
        assert all(t and t.strip() for t in parsed.abbrs), parsed.abbrs


def test_a_metric_without_an_explanation_would_show(tmp_path):
    results = make_results()
    results["systems"]["prompt"]["metrics"]["made_up_metric"] = {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6}
    parsed = _parse(render_report(write_run(tmp_path / "run", results=results)).read_text(encoding="utf-8"))
    assert "" in parsed.abbrs  # the summary header of made_up_metric has no explanation: the check above bites


def test_the_terms_section_lists_the_jargon(tmp_path):
    html = render_report(legal_qa_run(tmp_path / "lq")).read_text(encoding="utf-8")
    listed = _parse(html).terms
    for name in ("accuracy", "auc", "calibrated_accuracy", "margin", "mcnemar", "holm", "recall_at_k", "mrr"):
        assert name in listed, name
    assert set(scorers.SCORERS) <= set(listed)  # every registered metric, by its own description at least
    assert 'href="#terms"' in html
    assert all(len(text.splitlines()) == 1 for text in glossary().values())
    # the verdict column's header explains better / not different / worse
    assert re.search(r'<abbr title="better / worse: [^"]+">vs category_prior</abbr>', html)
