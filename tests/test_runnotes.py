"""The notes under the summary table (harness.report.runnotes): a limited run, the calibration set, calibrated
accuracy below accuracy and oracle's cut gold documents appear in index.html, summary.md and the terminal."""

from __future__ import annotations

import html as htmllib

from report_fixtures import make_results, write_run

from harness.cli import print_summary
from harness.records import RunResults
from harness.report import render_report
from harness.report.runnotes import run_notes


def noted_results() -> dict:
    results = make_results()
    results["limited"] = {"n": 20, "of": 170, "drawn": "seeded sample, stratified by document and category"}
    results["calibration_set"] = {
        "n": 80,
        "yes_rate": 0.525,
        "dev_size": 85,
        "train_yes_rate": 0.524,
        "test_yes_rate": 0.559,
    }
    results["systems"]["rag"]["gold_context"] = {
        "n": 20,
        "cut": 14,
        "cut_share": 0.7,
        "kept_token_share": 0.7167,
        "kept_char_share": 0.68,
        "total_tokens_mean": 2718.0,
        "budget_tokens": 2016,
    }
    results["systems"]["prompt"]["serving_memory"] = {
        "process_mb": 900.0,
        "resources_mb": {"base model": 270.0},
        "answering_mb": 230.0,
    }
    return results


EXPECTED = [
    "limited run: 20 of 170 test questions (seeded sample, stratified by document and category)",
    "calibrated_accuracy (prompt 0.600, lora 0.780, rag 0.830): each system's Yes threshold is fitted on 80 of 85 "
    "dev questions (Yes-rate 0.53, drawn to match the training split's 0.52)",
    "calibrated accuracy below accuracy: lora (0.780 < 0.800)",
    "rag: the prompt budget (2016 tokens) cut the gold document for 14 of 20 questions (70%); the prompts held 72%",
    "serving peak memory: the process, the base model, index and embedder a system uses",
]


def test_notes_follow_the_figures():
    notes = run_notes(RunResults.model_validate(noted_results()))
    assert len(notes) == 5 and all(any(e in n for n in notes) for e in EXPECTED), notes
    plain = run_notes(RunResults.model_validate(make_results()))
    assert len(plain) == 1 and plain[0].startswith("calibrated accuracy below accuracy: lora (0.780 < 0.800), rag (")
    assert "spread differently on the dev documents" in plain[0] and "than chance" not in plain[0]
    # a margin no better than chance (prompt's AUC 0.52 [0.30, 0.74]) is named as the reason
    chance = make_results()
    chance["systems"]["prompt"]["metrics"]["calibrated_accuracy"]["value"] = 0.5
    (note,) = run_notes(RunResults.model_validate(chance))
    assert note.startswith("calibrated accuracy below accuracy: prompt (0.500 < 0.550; AUC 0.520 [0.300, 0.740])")
    assert "do not separate the answers better than chance" in note and "lora (0.780 < 0.800)" in note


def test_notes_appear_in_the_report_summary_and_terminal(tmp_path, capsys):
    run = write_run(tmp_path / "run", results=noted_results())
    page = htmllib.unescape(render_report(run).read_text(encoding="utf-8"))
    md = (run / "summary.md").read_text(encoding="utf-8")
    print_summary(run)
    terminal = " ".join(capsys.readouterr().out.split())
    for text in EXPECTED:
        assert text in page and text in md and text in terminal, text
    assert 'id="limited">limited run: 20 of 170' in page.replace("\n", " ")
    assert "(limited run: 20 of 170)" in terminal  # the table's title
    assert "serving peak<br>memory" in page and "serving peak memory" in md.splitlines()[2]
