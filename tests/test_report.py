"""Tests for harness.report: a fake run directory rendered end to end, plus the pure helpers."""

from __future__ import annotations

import copy
import csv
import io
import json
import re
from html.parser import HTMLParser

import pytest
from report_fixtures import (
    DATA_URL,
    IMG,
    MANIFEST,
    SCRIPT,
    _m,
    _vb,
    comparisons,
    make_results,
    make_samples,
    write_run,
)

from harness.errors import HarnessError
from harness.records import Interval, RunResults
from harness.report import ReportError, compare_runs, recommendation, render_report, summary_rows


def typed(results: dict) -> RunResults:
    return RunResults.model_validate(results)


class Cells(HTMLParser):
    """Collects data-system / data-metric / data-value attributes of <td> cells."""

    def __init__(self):
        super().__init__()
        self.cells: dict[tuple[str, str], str] = {}
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "td" and "data-metric" in a and "data-system" in a:
            self.cells.setdefault((a["data-system"], a["data-metric"]), a.get("data-value"))


@pytest.fixture
def rendered(tmp_path):
    run = write_run(tmp_path / "run")
    index = render_report(run)
    return run, index, index.read_text(encoding="utf-8")


def test_writes_three_files_atomically(rendered):
    run, index, _ = rendered
    assert index == run / "index.html" and index.is_file()
    assert (run / "results.csv").is_file() and (run / "summary.md").is_file()
    assert not list(run.glob(".*.tmp-*"))
    assert render_report(run) == index  # re-rendering replaces in place


def test_self_contained_no_network(rendered):
    _, _, html = rendered
    low = html.lower()
    for bad in ("<script src", "<link", "@import", "url(", "<iframe", "<img", "innerhtml", "eval("):
        assert bad not in low, bad
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", low)
    assert low.count("<script") == 1  # the inline viewer script only
    # URLs appear only inside escaped data (the retrieved passage text)
    rest = html.replace(DATA_URL, "")
    assert "http://" not in rest and "https://" not in rest


def test_injected_markup_is_escaped(rendered):
    _, _, html = rendered
    assert SCRIPT not in html and IMG not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    parser = Cells()
    parser.feed(html)
    assert not [t for t, _ in parser.tags if t == "img"]
    assert not any("onerror" in a for _, a in parser.tags)


def test_summary_data_values_match_results(rendered):
    _, _, html = rendered
    parser = Cells()
    parser.feed(html)
    cells, results = parser.cells, make_results()
    checked = 0
    for name, e in results["systems"].items():
        for metric, m in e["metrics"].items():
            assert float(cells[(name, metric)]) == m["value"]
            checked += 1
        if e["status"] == "ok":
            assert float(cells[(name, "latency_p50")]) == e["latency_s"]["p50"]
            assert float(cells[(name, "latency_p95")]) == e["latency_s"]["p95"]
            for key in ("peak_memory_mb", "build_s", "artifact_mb"):
                assert float(cells[(name, key)]) == e[key]
            checked += 5
    for name, b in results["baselines"].items():
        assert float(cells[(name, "accuracy")]) == b["metrics"]["accuracy"]["value"]
    assert float(cells[("rag", "retrieval_latency_p50")]) == 0.02
    assert cells[("dora", "status")] == "failed" and ("dora", "accuracy") not in cells
    assert cells[("dora", "error")] == "CUDA out of memory: tried to allocate 2.00 GiB"
    assert cells[("rag", "beats_best_baseline")] == "better"
    assert cells[("lora", "beats_best_baseline")] == "not different"
    assert cells[("prompt", "beats_best_baseline")] == "worse"
    assert checked == 3 * 3 + 3 * 5


def test_sections_and_failed_system(rendered):
    _, _, html = rendered
    for anchor in (
        "recommendation",
        "summary",
        "tradeoff",
        "metrics",
        "training",
        "retrieval",
        "comparisons",
        "questions",
        "manifest",
    ):
        assert f'id="{anchor}"' in html
    assert "dora" in html and "CUDA out of memory: tried to allocate 2.00 GiB" in html
    assert "HuggingFaceTB/SmolLM2-135M-Instruct@abc123" in html and "AMD EPYC 7B13" in html
    assert "harness run tasks/legal-qa.yaml --seed 0" in html
    assert html.count("<svg") >= 1 + 3 + 1 + 1  # trade-off, 3 metric bars, loss, retrieval
    assert 'stroke-dasharray="6 4"' in html  # baselines / eval loss dashed
    assert "not significant" in html  # rag vs lora, p = 0.4
    assert html.count("<tr data-id=") == 20
    assert 'data-failure="1"' in html and 'data-disagreement="1"' in html and 'data-allwrong="1"' in html


def test_results_csv(rendered):
    run, _, _ = rendered
    rows = list(csv.DictReader(io.StringIO((run / "results.csv").read_text(encoding="utf-8"))))
    assert [r["name"] for r in rows] == ["prompt", "lora", "rag", "dora", "majority", "category_prior"]
    by = {r["name"]: r for r in rows}
    assert float(by["rag"]["accuracy_value"]) == 0.85 and float(by["rag"]["accuracy_ci_low"]) == 0.7
    assert float(by["lora"]["auc_ci_high"]) == 0.96
    assert float(by["rag"]["latency_p50"]) == 0.31 and float(by["rag"]["latency_p95"]) == 0.55
    assert float(by["rag"]["peak_memory_mb"]) == 2100 and float(by["rag"]["artifact_mb"]) == 1.2
    assert (
        float(by["lora"]["build_s"]) == 81
        and by["rag"]["cached"] == "true"
        and float(by["rag"]["build_cost_s"]) == 12.5
    )
    assert by["lora"]["build_cost_s"] == ""  # not recorded in that result: left empty, not made up
    assert by["dora"]["status"] == "failed" and "CUDA out of memory" in by["dora"]["error"]
    assert by["majority"]["kind"] == "baseline" and float(by["majority"]["accuracy_value"]) == 0.5
    assert by["majority"]["auc_value"] == ""


def test_summary_md(rendered):
    run, _, _ = rendered
    md = (run / "summary.md").read_text(encoding="utf-8")
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| system"))
    assert "accuracy [95% CI]" in header and "latency p50 / p95" in header and "vs best baseline" in header
    row = {line.split("|")[1].strip(): line for line in lines if line.startswith("| ") and "system" not in line}
    assert "0.850 [0.700, 0.950]" in row["rag"] and "310 ms / 550 ms" in row["rag"]
    assert (
        "2,100 MB" in row["rag"]
        and "cached (built in 12.5 s)" in row["rag"]
        and "better (Holm p = 0.020)" in row["rag"]
    )
    assert "not different (Holm p = 0.500)" in row["lora"] and "1 min 21 s" in row["lora"]
    assert "worse (Holm p = 0.003)" in row["prompt"]
    assert "Verdicts follow Holm-adjusted p-values" in md
    assert "failed: CUDA out of memory" in row["dora (failed)"]
    assert "0.750 [0.550, 0.900]" in row["category_prior (baseline)"]
    assert all(line.count("|") == header.count("|") for line in row.values())


def test_summary_rows_shape():
    rows = summary_rows(typed(make_results()))
    assert [r.name for r in rows][:4] == ["prompt", "lora", "rag", "dora"]
    assert [r.is_baseline for r in rows] == [False] * 4 + [True] * 2
    rag = rows[2]
    assert rag.metrics["accuracy"] == Interval(value=0.85, ci_low=0.7, ci_high=0.95)
    assert rag.retrieval_latency_p50 == 0.02 and rag.cached is True and rag.beats == "better"
    assert rows[3].status == "failed" and rows[3].metrics == {}


def test_summary_rows_carry_the_one_wording():
    """Every place that shows the summary (HTML, summary.md, the terminal) takes its cell texts from the rows."""
    rows = {r.name: r for r in summary_rows(typed(make_results()))}
    rag, lora, prompt, dora = rows["rag"], rows["lora"], rows["prompt"], rows["dora"]
    assert rag.metric_text("accuracy") == "0.850 [0.700, 0.950]"
    assert rag.latency_text == "310 ms / 550 ms" and rag.memory_text == "2,100 MB"
    assert rag.build_text == "cached (built in 12.5 s)" and rag.artifact_text == "1.2 MB"
    assert rag.beats_text == "better (Holm p = 0.020)" and prompt.beats_text == "worse (Holm p = 0.003)"
    assert lora.beats_text == "not different (Holm p = 0.500)" and lora.build_text == "1 min 21 s"
    assert dora.failure_text == "failed: CUDA out of memory: tried to allocate 2.00 GiB"
    assert rows["majority"].label == "majority (baseline)" and rows["majority"].metric_text("auc") == "—"


def _sentence(text: str, start: str) -> str:
    return next(s for s in re.split(r"(?<=\.) ", text) if s.startswith(start))


def test_recommendation_claims_only_significant_differences():
    text = recommendation(typed(make_results()))
    assert text.startswith("rag has the highest accuracy")
    lora = _sentence(text, "lora ")
    assert "within noise of rag" in lora and "not distinguishable" in lora and "significantly" not in lora
    assert "answers 3.1× faster" in lora
    prompt = _sentence(text, "prompt ")
    assert "significantly below rag" in prompt and "Holm p = 0.003" in prompt  # raw p 0.001, three pairs
    assert "rag beats the strongest model-free baseline, category_prior" in text
    assert "dora failed: CUDA out of memory: tried to allocate 2.00 GiB." in text


def test_recommendation_boundary_and_missing_tests():
    results = make_results()
    results["comparisons"] = comparisons([("prompt", "rag", -0.3, 0.05)]) + comparisons(
        [("lora", "rag", -0.07, 0.0001)], metric="auc", test="permutation"
    )
    results["systems"]["rag"]["vs_best_baseline"] = _vb(0.1, 0.2)
    text = recommendation(typed(results))
    assert "significantly" not in text  # p = 0.05 is not < 0.05; the auc test says nothing about accuracy
    assert "not distinguishable" in _sentence(text, "prompt ")
    assert "no paired test recorded" in _sentence(text, "lora ")
    assert "rag is not better than the strongest model-free baseline" in text
    assert "beats" not in text


def test_significance_follows_the_holm_adjusted_p(tmp_path):
    """Raw p = 0.03 but Holm p = 0.09 over the six pairs of four systems: not significant, in the comparisons
    table, the recommendation and everything else the report says (issue 15)."""
    results = make_results()
    results["systems"]["dora"].update(
        status="ok",
        error=None,
        metrics={"accuracy": _m(0.7, 0.5, 0.9)},
        latency_s={"p50": 0.12, "p95": 0.3, "mean": 0.14},
        peak_memory_mb=1900.0,
        build_s=90.0,
        artifact_mb=4.0,
    )
    pairs = [("rag", "lora", 0.05, 0.03), ("rag", "prompt", 0.3, 0.2), ("lora", "prompt", 0.25, 0.3)]
    pairs += [("rag", "dora", 0.15, 0.4), ("lora", "dora", 0.1, 0.5), ("dora", "prompt", 0.15, 0.6)]
    results["comparisons"] = comparisons(pairs)
    rag_lora = results["comparisons"][0]
    assert rag_lora["p_value"] < 0.05 < rag_lora["p_holm"] and rag_lora["significant"] is False
    html = render_report(write_run(tmp_path / "run", results=results)).read_text(encoding="utf-8")
    assert '<tr data-a="rag" data-b="lora" data-metric="accuracy" data-significant="false">' in html
    assert 'data-significant="true"' not in html and "badge ok" not in html
    text = recommendation(typed(results))
    lora = _sentence(text, "lora ")
    assert "within noise of rag" in lora and "Holm p = 0.180" in lora and "significantly" not in text
    assert "after Holm's correction" in html


def test_recommendation_baseline_wins_and_nothing_ok():
    results = make_results()
    results["systems"]["rag"]["vs_best_baseline"] = _vb(-0.12, 0.004)
    assert "rag does not beat the strongest model-free baseline" in recommendation(typed(results))
    for name in ("prompt", "lora", "rag"):
        results["systems"][name].update(status="failed", error=f"{name} broke")
    text = recommendation(typed(results))
    assert text.startswith("No system produced a figure for accuracy, so there is nothing to recommend.")
    assert "lora failed: lora broke." in text


def test_report_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReportError, match="results.json") as info:
        render_report(empty)
    assert str(empty) in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, HarnessError)
    (empty / "results.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ReportError, match="invalid"):
        render_report(empty)
    with pytest.raises(ReportError):
        render_report(tmp_path / "missing")
    with pytest.raises(ReportError, match="at least 2"):
        compare_runs([write_run(tmp_path / "one")], tmp_path / "cmp")
    with pytest.raises(ReportError):
        compare_runs([write_run(tmp_path / "one"), empty], tmp_path / "cmp")


def test_results_that_do_not_validate_name_the_field(tmp_path):
    results = make_results()
    del results["systems"]["dora"]["kind"]
    run = write_run(tmp_path / "run", results=results)
    with pytest.raises(ReportError) as info:
        render_report(run)
    message = str(info.value)
    assert message == f"invalid {run / 'results.json'}: systems.dora.kind: Field required"
    results = make_results()
    del results["comparisons"][0]["p_holm"]  # a run from before Holm-adjusted p-values were stored
    with pytest.raises(ReportError, match=r"comparisons\.0\.p_holm: Field required"):
        render_report(write_run(tmp_path / "old", results=results))
    (run / "results.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ReportError, match="expected a JSON object, got list"):
        render_report(run)


def test_numeric_correct_marks_cells(tmp_path):
    # harness run writes the headline score (1.0 / 0.0) as "correct"; partial scores stay neutral
    samples = make_samples()
    for s in samples:
        s["correct"] = float(s["correct"])
    samples[0]["correct"] = 0.5
    html = render_report(write_run(tmp_path / "run", samples=samples)).read_text(encoding="utf-8")
    assert html.count('data-correct="true"') == sum(1 for s in samples if s["correct"] == 1.0)
    assert html.count('data-correct="false"') == sum(1 for s in samples if s["correct"] == 0.0)
    assert html.count('data-correct=""') == 1
    assert 'data-failure="1"' in html and 'data-allwrong="1"' in html


def test_the_report_says_why_the_headline_is_the_headline(tmp_path):
    results = make_results()
    results["headline_reason"] = "the default for yes-no tasks"
    html = render_report(write_run(tmp_path / "run", results=results)).read_text(encoding="utf-8")
    assert "headline metric: accuracy (the default for yes-no tasks)" in html


def test_viewer_shows_the_generation_beside_the_extracted_answer(tmp_path):
    samples = make_samples(4, systems=("prompt",))
    samples[0].update(prediction="Mariehamn.", generation="The capital of Åland Islands is Mariehamn.")
    samples[1].update(prediction="Oslo", generation="Oslo")  # extraction changed nothing: shown once
    samples[2].update(truncated=True)
    html = render_report(write_run(tmp_path / "run", samples=samples)).read_text(encoding="utf-8")
    assert html.count('<div class="gen">generated: ') == 1
    assert 'generated: <span class="pred">The capital of Åland Islands is Mariehamn.</span>' in html
    assert html.count("cut off at max_new_tokens") == 1


def test_missing_samples_and_bad_lines(tmp_path):
    run = write_run(tmp_path / "run")
    with (run / "samples.jsonl").open("a", encoding="utf-8") as fh:
        fh.write("{truncated\n")
        fh.write(json.dumps({"system": "rag", "id": "q001"}) + "\n")  # valid JSON, not a sample
    html = render_report(run).read_text(encoding="utf-8")
    assert "skipped 2 malformed line(s) (61, 62); first: line 61: " in html
    (run / "samples.jsonl").unlink()
    (run / "manifest.json").unlink()
    html = render_report(run).read_text(encoding="utf-8")
    assert "samples.jsonl is missing" in html and "No manifest.json" in html


def test_compare_runs_deltas(tmp_path):
    first = write_run(tmp_path / "a")
    second_results = copy.deepcopy(make_results())
    second_results["run_id"] = "20261127-090000-ffff"
    second_results["seed"] = 1
    second_results["settings"]["threads"] = 4
    rag = second_results["systems"]["rag"]
    rag["metrics"]["accuracy"] = _m(0.8, 0.65, 0.92)
    rag["latency_s"]["p50"] = 0.2
    rag["peak_memory_mb"] = 2000.0
    del second_results["systems"]["prompt"]
    second = write_run(tmp_path / "b", results=second_results, manifest={**MANIFEST, "seed": 1})
    index = compare_runs([first, second], tmp_path / "cmp")
    assert index == tmp_path / "cmp" / "index.html"
    html = index.read_text(encoding="utf-8")
    assert "<link" not in html and "<script" not in html and "https://" not in html
    deltas = dict(
        re.findall(
            r'data-system="rag" data-run="20261127-090000-ffff">.*?'
            r'data-metric="(headline_delta)" data-value="([^"]*)"',
            html,
            re.S,
        )
    )
    assert float(deltas["headline_delta"]) == pytest.approx(-0.05)
    assert "absent from this run" in html and "settings.threads" in html
    md = (tmp_path / "cmp" / "summary.md").read_text(encoding="utf-8")
    rag_rows = [line for line in md.splitlines() if line.startswith("| rag |")]
    assert len(rag_rows) == 2 and "−0.050" in rag_rows[1] and "−110 ms" in rag_rows[1] and "−100 MB" in rag_rows[1]
    diff_rows = {line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ")}
    assert {"seed", "settings.threads"} <= diff_rows and "model" not in diff_rows
    assert not list((tmp_path / "cmp").glob(".*.tmp-*"))


def test_large_report_stays_small(tmp_path):
    results = make_results(n_test=150)
    results["systems"]["dora"].update(
        status="ok",
        error=None,
        metrics={"accuracy": _m(0.7, 0.6, 0.8)},
        latency_s={"p50": 0.12, "p95": 0.3, "mean": 0.14},
        peak_memory_mb=1900.0,
        build_s=90.0,
        artifact_mb=4.0,
    )
    samples = make_samples(150, systems=("prompt", "lora", "rag", "dora"), passage_chars=5000)
    run = write_run(tmp_path / "big", results=results, samples=samples)
    html = render_report(run).read_text(encoding="utf-8")
    assert len(html.encode("utf-8")) < 5 * 1024 * 1024
    assert html.count("<tr data-id=") == 150
    # passages are shown whole (in a folded <details>): 150 questions x 4 passages of 5,000 characters still fit
    assert "lorem ipsum " * 400 in html


def test_model_label_prefers_display_name():
    from harness.report.load import model_label

    manifest = {"model": {"display": "SmolLM2-135M-Instruct (Q4_1 GGUF)", "path": "/tmp/hh/models/smollm2"}}
    assert model_label(manifest) == "SmolLM2-135M-Instruct (Q4_1 GGUF)"
    assert model_label(MANIFEST) == "HuggingFaceTB/SmolLM2-135M-Instruct@abc123"


def test_truncation_is_reported_per_system(tmp_path):
    results = make_results()
    results["systems"]["prompt"]["truncated_share"] = 0.45
    results["systems"]["rag"]["truncated_share"] = 0.0
    run = write_run(tmp_path / "run", results=results)
    html = render_report(run).read_text(encoding="utf-8")
    expected = "Answers cut off at evaluation.max_new_tokens: prompt 45%, rag 0%."
    assert expected in html and expected in (run / "summary.md").read_text(encoding="utf-8")
    plain = render_report(write_run(tmp_path / "plain")).read_text(encoding="utf-8")
    assert "Answers cut off" not in plain  # choice tasks generate nothing


def test_prompt_parts_hold_each_passage_once():
    from harness.report.questions import prompt_parts

    prompt = "sys\n[1] alpha text\n[2] beta text\nQ?"
    parts = prompt_parts(prompt, ["alpha text", "not in the prompt", "beta text"])
    assert parts == [("sys\n[1] ", None), ("", 0), ("\n[2] ", None), ("", 2), ("\nQ?", None)]
    texts = ["alpha text", "not in the prompt", "beta text"]
    assert "".join(t if i is None else texts[i] for t, i in parts) == prompt
    assert prompt_parts(None, []) is None and prompt_parts("plain", []) == [("plain", None)]
