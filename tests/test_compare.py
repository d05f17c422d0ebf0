"""harness compare (harness/report/compare.py, pairing.py): paired tests on shared questions, a banner when the
test sets differ, and a note when a run is compared with itself."""

from __future__ import annotations

import copy
import re

import pytest
from report_fixtures import make_results, make_samples, write_run

from harness.records import Sample
from harness.report import compare_runs
from harness.results import compare, per_question
from harness.stats import holm


def _cells(html: str, system: str, run: str) -> dict[str, dict[str, str]]:
    row = re.search(rf'<tr[^>]*data-system="{system}" data-run="{run}">(.*?)</tr>', html, re.S).group(1)
    return {
        m.group(1): dict(re.findall(r'data-([a-z-]+)="([^"]*)"', m.group(0)))
        for m in re.finditer(r'<td[^>]*data-metric="([a-z_]+)"[^>]*>', row)
    }


def _second(tmp_path, samples, n_test=20, run_id="20261127-090000-ffff"):
    results = copy.deepcopy(make_results(n_test))
    results["run_id"] = run_id
    return write_run(tmp_path / "b", results=results, samples=samples)


def test_shared_questions_are_paired_and_tested(tmp_path):
    first = write_run(tmp_path / "a")
    better = make_samples()
    for s in better:  # rag gets every question right in the second run
        if s["system"] == "rag":
            s["prediction"], s["correct"], s["scores"] = s["gold"], True, {"accuracy": 1.0}
    second = _second(tmp_path, better)
    html = compare_runs([first, second], tmp_path / "cmp").read_text(encoding="utf-8")
    assert 'id="test-set-banner"' not in html and 'id="self-note"' not in html
    # the same test as the run's own comparisons, on the same questions, Holm-adjusted over the systems
    a = [Sample.model_validate(s) for s in make_samples()]
    b = [Sample.model_validate(s) for s in better]
    raw = {
        name: compare(
            per_question([s for s in b if s.system == name], "accuracy"),
            per_question([s for s in a if s.system == name], "accuracy"),
            "accuracy",
            0,
        )
        for name in ("prompt", "lora", "rag")
    }
    adjusted = dict(zip(raw, holm([r["p_value"] for r in raw.values()])))
    rag = _cells(html, "rag", "20261127-090000-ffff")["paired"]
    assert float(rag["value"]) == pytest.approx(raw["rag"]["diff"]) and rag["n"] == "20"
    assert float(rag["p-holm"]) == pytest.approx(adjusted["rag"])
    assert rag["verdict"] == ("better" if adjusted["rag"] < 0.05 else "not different")
    prompt = _cells(html, "prompt", "20261127-090000-ffff")["paired"]
    assert prompt["verdict"] == "not different" and float(prompt["p-holm"]) == 1.0  # identical answers
    md = (tmp_path / "cmp" / "summary.md").read_text(encoding="utf-8")
    assert any("on 20 shared" in line and line.startswith("| rag |") for line in md.splitlines())


def test_different_test_sets_get_a_banner_and_no_whole_run_delta(tmp_path):
    first = write_run(tmp_path / "a")
    second = _second(tmp_path, make_samples(10), n_test=10)
    html = compare_runs([first, second], tmp_path / "cmp").read_text(encoding="utf-8")
    banner = re.search(r'<p class="warn" id="test-set-banner">(.*?)</p>', html, re.S).group(1)
    assert "different questions" in banner and "10 shared" in banner
    cells = _cells(html, "rag", "20261127-090000-ffff")
    assert cells["headline_delta"]["value"] == ""  # whole-run accuracy over different questions: not shown
    assert cells["paired"]["n"] == "10"  # the paired difference, on the 10 shared questions
    md = (tmp_path / "cmp" / "summary.md").read_text(encoding="utf-8")
    assert "**Note:** The runs were tested on different questions" in md


def test_a_run_compared_with_itself_says_so(tmp_path):
    run = write_run(tmp_path / "a")
    html = compare_runs([run, run], tmp_path / "cmp").read_text(encoding="utf-8")
    note = re.search(r'<p class="warn" id="self-note">(.*?)</p>', html, re.S).group(1)
    assert "compared with itself" in note and "zero by construction" in note
    assert not re.search(r'<td class="[^"]*\b(up|down)\b', html)  # nothing is coloured as a change
    md = (tmp_path / "cmp" / "summary.md").read_text(encoding="utf-8")
    assert "compared with itself" in md
