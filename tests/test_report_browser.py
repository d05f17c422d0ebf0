"""The report in a real browser: Debian's headless Chromium, driven over the DevTools protocol (CDP).

No driver and no websocket library: tests/cdp.py starts Chromium with --remote-debugging-pipe and speaks CDP
as NUL-terminated JSON on file descriptors 3 (commands in) and 4 (replies and events out).

Checked on rendered fake runs (tests/report_fixtures.py):
  * the summary table's data-value cells match results.json, and the shown text agrees;
  * the per-question filter (disagreements, failures, all wrong) and the search box show exactly the
    questions computed in Python from samples.jsonl;
  * no console errors, no uncaught exceptions, no log errors, no network request but the report itself;
  * markup injected into a question, an answer, a passage, a question id and an error message is inert
    (the payloads would set window.__xss) and shows as text;
  * a 150-question x 4-system report is under 5 MB and its load event ends in under a second (median of 3);
  * the viewer's search over ids, categories and documents, its filters (category, document, system A right
    and B wrong) and sorts (margin, latency) show exactly the rows computed from samples.jsonl, and the full
    prompt and passages expand;
  * at 420 px and 1280 px the page does not scroll sideways, every system's answer is on screen and chart
    labels keep a readable size;
  * a screenshot of a legal-qa report (systems prompt, lora, rag) can be taken. To refresh the one in docs/:
        REPORT_SCREENSHOT=docs/report-screenshot.png \
            .venv/bin/python -m pytest tests/test_report_browser.py -k screenshot

Skipped only when no Chromium is installed (`apt-get install -y chromium`; .ci/run does that).
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import struct
import time
from pathlib import Path

import pytest
from cdp import BASH, CHROMIUM, VIEWPORT, Browser, Tab
from report_fixtures import (
    MANIFEST,
    legal_qa_results,
    legal_qa_run,
    legal_qa_samples,
    make_results,
    make_samples,
    write_run,
)

from harness.report import render_report

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or BASH is None,
    reason="Chromium is not installed: run `apt-get update && apt-get install -y chromium` "
    "(Debian's package; .ci/run installs it) to run the report's browser tests",
)


# Each payload would set window.__xss if the report let it run.
XSS_ANSWER = '<script>window.__xss = "answer"</script>'
XSS_QUESTION = "Is this markup harmless <img src=x onerror=\"window.__xss = 'question'\">?"
XSS_PASSAGE = "<svg onload=\"window.__xss = 'passage'\"></svg> licence text"
XSS_ID = 'q"><img src=x onerror="window.__xss = \'id\'">'
XSS_ERROR = "OOM <iframe srcdoc=\"<script>parent.__xss = 'error'</script>\"></iframe>"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


@pytest.fixture
def tab(browser):
    t = Tab(browser)
    yield t
    t.close()


# ------------------------------------------------------------------------------------ fake runs ---


def xss_samples() -> list[dict]:
    samples = make_samples()
    for s in samples:
        if s["id"] == "q003":
            s["question"] = XSS_QUESTION
        if s["id"] == "q005" and s["system"] == "prompt":
            s["prediction"] = XSS_ANSWER
        if s["id"] == "q009":
            s["id"] = XSS_ID
        if s["system"] == "rag" and s["id"] == "q011":
            s["retrieved"][0]["text"] = XSS_PASSAGE
    return samples


def xss_results() -> dict:
    results = make_results()
    results["systems"]["dora"]["error"] = XSS_ERROR
    return results


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run = write_run(tmp_path_factory.mktemp("report") / "run", results=xss_results(), samples=xss_samples())
    return render_report(run)


def read_samples(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "samples.jsonl").read_text(encoding="utf-8").splitlines() if line]


def expected_rows(samples: list[dict]) -> dict[str, dict]:
    """Per question id: the flags the viewer filters on, computed from samples.jsonl."""
    by_id: dict[str, list[dict]] = {}
    for s in samples:
        by_id.setdefault(s["id"], []).append(s)
    out = {}
    for qid, rows in by_id.items():
        verdicts = [r["correct"] for r in rows if isinstance(r["correct"], bool)]
        first = rows[0]  # the search covers the question, answers, id, category and document
        texts = [first["question"], first["gold"], qid, first["category"], first["doc_id"]]
        texts += [r["prediction"] for r in rows]
        out[qid] = {
            "disagreement": len({" ".join(r["prediction"].split()).casefold() for r in rows}) > 1,
            "failure": False in verdicts,
            "allwrong": bool(verdicts) and all(v is False for v in verdicts),
            "text": "\n".join(texts).lower(),
        }
    return out


VISIBLE_ROWS = """JSON.stringify([...document.querySelectorAll('#q-table tbody tr')]
    .filter(r => r.getClientRects().length > 0).map(r => r.getAttribute('data-id')))"""


def visible(tab: Tab) -> list[str]:
    return json.loads(tab.eval(VISIBLE_ROWS))


# ---------------------------------------------------------------------------------------- tests ---


def test_the_checks_see_problems(tab, tmp_path):
    """A page with a request, a console error and an exception: each shows up, so a clean report means clean."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><title>bad</title><img src="http://127.0.0.1:9/x.png" alt="">'
        '<script>console.error("boom"); window.__xss = 1; undefinedFunction();</script>',
        encoding="utf-8",
    )
    tab.goto(page)
    problems = "\n".join(tab.problems())
    assert "network request: http://127.0.0.1:9/x.png" in problems
    assert "console.error: boom" in problems
    assert "exception:" in problems and "undefinedFunction" in problems
    assert tab.eval("window.__xss") == 1


def test_summary_table_matches_results_json(tab, report):
    tab.goto(report)
    cells = json.loads(
        tab.eval("""JSON.stringify([...document.querySelectorAll(
        '#summary-table td[data-system][data-metric]')].map(td => ({system: td.dataset.system,
        metric: td.dataset.metric, value: td.dataset.value, text: td.innerText.trim()})))""")
    )
    got = {(c["system"], c["metric"]): c for c in cells}
    results = json.loads((report.parent / "results.json").read_text(encoding="utf-8"))
    expected: dict[tuple[str, str], object] = {}
    for name, e in results["systems"].items():
        for metric, m in e["metrics"].items():
            expected[(name, metric)] = m["value"]
        if e["status"] == "failed":
            expected[(name, "error")] = e["error"]
            continue
        for key in ("p50", "p95"):
            expected[(name, f"latency_{key}")] = e["latency_s"][key]
            if e.get("retrieval_latency_s"):
                expected[(name, f"retrieval_latency_{key}")] = e["retrieval_latency_s"][key]
        for key in ("peak_memory_mb", "build_s", "artifact_mb"):
            expected[(name, key)] = e[key]
    for name, b in results["baselines"].items():
        for metric, m in b["metrics"].items():
            expected[(name, metric)] = m["value"]
    for key, want in expected.items():
        assert key in got, f"summary table has no cell for {key}"
        value = got[key]["value"]
        if isinstance(want, str):
            assert value == want and want in got[key]["text"], key
        else:
            assert float(value) == pytest.approx(want, abs=1e-12), key
    # the numbers a reader sees agree with the data (metrics are shown to 3 decimals)
    for (name, metric), want in expected.items():
        if metric in ("accuracy", "auc", "calibrated_accuracy"):
            assert got[(name, metric)]["text"].startswith(f"{want:.3f}"), (name, metric, got[(name, metric)]["text"])
    rows = tab.eval("[...document.querySelectorAll('#summary-table tbody tr')].map(r => r.dataset.system)")
    assert rows == list(results["systems"]) + list(results["baselines"])
    assert got[("rag", "beats_best_baseline")]["value"] == "better"
    assert got[("lora", "beats_best_baseline")]["value"] == "not different"
    assert got[("prompt", "beats_best_baseline")]["value"] == "worse"


def test_disagreement_filter_and_search(tab, report):
    tab.goto(report)
    rows = expected_rows(read_samples(report.parent))
    total = len(rows)
    assert sorted(visible(tab)) == sorted(rows)
    options = tab.eval("[...document.querySelectorAll('#q-filter option')].map(o => [o.value, o.text])")
    assert any("disagreement" in text for _, text in options), options

    def choose(mode: str) -> list[str]:
        tab.eval(f"""(() => {{ const f = document.getElementById('q-filter'); f.value = {json.dumps(mode)};
                     f.dispatchEvent(new Event('change', {{bubbles: true}})); }})()""")
        return visible(tab)

    def search(text: str) -> list[str]:
        tab.eval("(() => { const s = document.getElementById('q-search'); s.value = ''; s.focus(); })()")
        if text:
            tab.send("Input.insertText", {"text": text})  # typed for real: the page sees native input events
        else:
            tab.eval("document.getElementById('q-search').dispatchEvent(new Event('input', {bubbles: true}))")
        return visible(tab)

    for mode in ("disagreement", "failure", "allwrong"):
        want = sorted(q for q, r in rows.items() if r[mode])
        assert 0 < len(want) < total, mode  # the fake run exercises every filter
        shown = choose(mode)
        assert sorted(shown) == want, mode
        assert tab.eval("document.getElementById('q-count').textContent") == f"{len(want)} of {total} questions shown"
    choose("disagreement")
    disagreements = [q for q, r in rows.items() if r["disagreement"]]
    for needle in ("GPL-3.0", "window.__XSS", "Case 1"):  # case-insensitive, and searches the payload as text
        want = sorted(q for q in disagreements if needle.lower() in rows[q]["text"])
        assert 0 < len(want) < len(disagreements), needle
        assert sorted(search(needle)) == want, needle
    assert search("no such text anywhere") == []
    assert tab.eval("document.getElementById('q-count').textContent") == f"0 of {total} questions shown"
    search("")
    assert sorted(choose("all")) == sorted(rows)
    assert tab.problems() == []


def test_no_console_errors_and_no_network(tab, report):
    tab.goto(report)
    # open every retrieved-passage panel and scroll through, so nothing lazy hides an error
    tab.eval("""(() => { document.querySelectorAll('details').forEach(d => d.open = true);
                window.scrollTo(0, document.body.scrollHeight); })()""")
    time.sleep(0.2)
    assert tab.problems() == []
    requests = [
        ev["params"]["request"]["url"]
        for ev in tab.b.events[tab.mark :]
        if ev.get("method") == "Network.requestWillBeSent" and ev.get("sessionId") == tab.session
    ]
    assert requests and all(u == tab.url for u in requests)  # the report itself, nothing else
    assert tab.eval("document.scripts.length") == 1


def test_injected_markup_is_inert(tab, report):
    tab.goto(report)
    time.sleep(0.2)  # give any injected handler (onerror, onload) the chance to fire
    assert tab.eval("typeof window.__xss") == "undefined"
    assert tab.eval("document.querySelectorAll('img, iframe, object, embed, [onerror], [onload]').length") == 0
    assert tab.eval("document.querySelectorAll('svg').length") == tab.eval(
        "document.querySelectorAll('figure.chart svg').length"
    )  # only the charts' own SVGs
    texts = json.loads(
        tab.eval("""JSON.stringify({
        q: [...document.querySelectorAll('#q-table td.q .s')].map(e => e.textContent),
        a: [...document.querySelectorAll('#q-table .pred')].map(e => e.textContent),
        p: [...document.querySelectorAll('#q-table .psg')].map(e => e.textContent),
        ids: [...document.querySelectorAll('#q-table tbody tr')].map(e => e.getAttribute('data-id')),
        err: document.querySelector('#summary-table [data-metric=error]').textContent})""")
    )
    assert XSS_QUESTION in texts["q"]
    assert XSS_ANSWER in texts["a"]
    assert any(XSS_PASSAGE in t for t in texts["p"])
    assert XSS_ID in texts["ids"]
    assert XSS_ERROR in texts["err"]
    assert tab.problems() == []


def test_large_report_is_small_and_fast(tab, tmp_path):
    results = make_results(n_test=150)
    results["systems"]["dora"].update(
        status="ok",
        error=None,
        metrics=results["systems"]["lora"]["metrics"],
        latency_s={"p50": 0.12, "p95": 0.3, "mean": 0.14},
        peak_memory_mb=1900.0,
        build_s=90.0,
        artifact_mb=4.0,
    )
    samples = make_samples(150, systems=("prompt", "lora", "rag", "dora"), passage_chars=5000)
    index = render_report(write_run(tmp_path / "big", results=results, samples=samples))
    size = index.stat().st_size
    assert size < 5 * 1024 * 1024, f"index.html is {size / 1e6:.2f} MB"
    times = []
    for _ in range(3):
        tab.goto(index)
        nav = json.loads(
            tab.eval("""new Promise(done => { const poll = () => {
            const n = performance.getEntriesByType('navigation')[0];
            if (n && n.loadEventEnd > 0) { done(JSON.stringify(n.toJSON())); } else { setTimeout(poll, 10); } };
            poll(); })""")
        )
        times.append((nav["loadEventEnd"] - nav["startTime"]) / 1000)
        assert tab.problems() == []
        tab.goto("about:blank")
    load = statistics.median(times)
    assert load < 1.0, f"load event ended after {load:.3f} s (median of {[round(t, 3) for t in times]})"
    tab.goto(index)
    assert tab.eval("document.querySelectorAll('#q-table tbody tr').length") == 150
    assert tab.eval("document.querySelectorAll('#q-table thead th').length") == 2 + 4


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_screenshot_of_legal_qa_report(tab, tmp_path):
    index = render_report(legal_qa_run(tmp_path / "legal-qa"))
    tab.goto(index)
    assert tab.problems() == []
    assert tab.eval("document.querySelector('h1').textContent").startswith("legal-qa")
    assert tab.eval("[...document.querySelectorAll('#summary-table tbody tr')].map(r => r.dataset.system)") == [
        "prompt",
        "lora",
        "rag",
        "majority",
        "category_prior",
    ]
    height = tab.eval("Math.ceil(document.documentElement.scrollHeight)")
    shot = base64.b64decode(
        tab.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": VIEWPORT[0], "height": height, "scale": 1},
            },
            timeout=60,
        )["data"]
    )
    assert _png_size(shot) == (VIEWPORT[0], height)
    (tmp_path / "report-screenshot.png").write_bytes(shot)
    target = os.environ.get("REPORT_SCREENSHOT")
    if target:
        Path(target).write_bytes(shot)


def test_decision_paragraph_and_break_even_charts_render(tab, tmp_path):
    run = legal_qa_run(tmp_path / "legal-qa", queries_per_day=5000, updates_per_month=4, usd_per_hour=0.9)
    index = render_report(run)
    tab.goto(index)
    assert tab.problems() == []
    decision = json.loads((run / "results.json").read_text(encoding="utf-8"))["decision"]
    # the paragraph comes first in the page, before the recommendation, and is the one results.json holds
    first = tab.eval("document.querySelector('h2').id")
    assert first == "decision"
    assert tab.eval("document.getElementById('decision-text').innerText.trim()") == decision["text"]
    charts = json.loads(
        tab.eval("""JSON.stringify([...document.querySelectorAll('#decision-detail svg')].map(s => ({
        w: s.getBoundingClientRect().width, h: s.getBoundingClientRect().height,
        lines: s.querySelectorAll('polyline').length, profile: s.querySelectorAll('.profile-point').length,
        title: s.getAttribute('aria-label')})))""")
    )
    assert [c["title"] for c in charts] == [
        "Cost per month vs questions per day",
        "Cost per month vs document updates per month",
    ]
    for c in charts:
        assert c["w"] > 300 and c["h"] > 200, c
        assert c["lines"] == 3 and c["profile"] == 1, c  # one line per system, the profile's point marked
    rows = tab.eval("[...document.querySelectorAll('#cost-table tbody tr')].map(r => r.dataset.system)")
    assert rows == ["prompt", "lora", "rag"]
    # self-contained: no external reference anywhere in the file
    html = index.read_text(encoding="utf-8")
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and 'src="http' not in html


# ----------------------------------------------------------------------- the viewer's controls ---


def prompted_run(folder: Path) -> Path:
    """legal_qa_run with the full prompt of every sample, passages included for rag, as run.py stores it."""
    samples = legal_qa_samples(0)
    for smp in samples:
        context = "".join(f"[{p['doc_id']}] {p['text']}\n" for p in smp["retrieved"] or [])
        smp["prompt"] = f"<|im_start|>system\nAnswer Yes or No.\n{context}<|im_end|>\n{smp['question']}\n"
    return write_run(folder, results=legal_qa_results(samples), samples=samples, manifest=MANIFEST)


def _set(tab: Tab, element: str, value: str) -> list[str]:
    tab.eval(f"""(() => {{ const f = document.getElementById({json.dumps(element)}); f.value = {json.dumps(value)};
                 f.dispatchEvent(new Event('change', {{bubbles: true}})); }})()""")
    return visible(tab)


def _search(tab: Tab, text: str) -> list[str]:
    tab.eval("(() => { const s = document.getElementById('q-search'); s.value = ''; s.focus(); })()")
    if text:
        tab.send("Input.insertText", {"text": text})
    else:
        tab.eval("document.getElementById('q-search').dispatchEvent(new Event('input', {bubbles: true}))")
    return visible(tab)


def test_viewer_search_filters_sorts_and_full_prompt(tab, tmp_path):
    run = prompted_run(tmp_path / "run")
    tab.goto(render_report(run))
    samples = read_samples(run)
    by = {(s["system"], s["id"]): s for s in samples}
    ids = list(dict.fromkeys(s["id"] for s in samples))
    first = {s["id"]: s for s in samples if s["system"] == "prompt"}
    # search: ids, categories and documents (shown under each question)
    for needle in ("apache-2.0--conditions", "limitations/liability", "bsl-1.0"):
        want = sorted(q for q in ids if needle in q or needle in first[q]["category"] or needle == first[q]["doc_id"])
        assert 0 < len(want) < len(ids), needle
        assert sorted(_search(tab, needle)) == want, needle
    _search(tab, "")
    # category and document filters
    want = sorted(q for q in ids if first[q]["category"] == "conditions/same-license")
    assert sorted(_set(tab, "q-cat", "conditions/same-license")) == want
    _set(tab, "q-cat", "")
    want = sorted(q for q in ids if first[q]["doc_id"] == "gpl-3.0")
    assert sorted(_set(tab, "q-doc", "gpl-3.0")) == want
    _set(tab, "q-doc", "")
    # system A right and system B wrong
    _set(tab, "q-a", "rag")
    shown = _set(tab, "q-b", "prompt")
    want = sorted(q for q in ids if by[("rag", q)]["correct"] and not by[("prompt", q)]["correct"])
    assert 0 < len(want) < len(ids) and sorted(shown) == want
    assert tab.eval("document.getElementById('q-count').textContent") == f"{len(want)} of {len(ids)} questions shown"
    _set(tab, "q-a", "")
    _set(tab, "q-b", "")
    # sorts: margin lowest first, latency slowest first, and back to the test order
    margins = [by[("rag", q)]["margin"] for q in _set(tab, "q-sort", "margin|rag")]
    assert margins == sorted(margins) and len(margins) == len(ids)
    latencies = [by[("lora", q)]["latency_s"] for q in _set(tab, "q-sort", "latency|lora")]
    assert latencies == sorted(latencies, reverse=True)
    assert _set(tab, "q-sort", "") == ids
    # the full prompt and every passage, whole, one click away
    q = ids[3]
    cell = f"document.querySelector('#q-table tr[data-id={json.dumps(q)}] td[data-system=rag]')"
    before = tab.eval(f"{cell}.querySelector('details.prompt pre').textContent")
    assert before != by[("rag", q)]["prompt"]  # the report holds each passage once: not yet in the prompt
    tab.eval(f"{cell}.querySelectorAll('details summary').forEach(s => s.click())")  # as a user opens them
    shown = json.loads(
        tab.eval(f"""new Promise(done => setTimeout(() => {{ const cell = {cell};
        done(JSON.stringify({{prompt: cell.querySelector('details.prompt pre').textContent,
            passages: [...cell.querySelectorAll('.psg')].map(p => p.textContent), visible:
            cell.querySelector('details.prompt pre').getClientRects().length > 0}})); }}, 50))""")
    )
    assert shown["prompt"] == by[("rag", q)]["prompt"] and shown["visible"]
    for text, p in zip(shown["passages"], by[("rag", q)]["retrieved"]):
        assert text.endswith(p["text"])
    assert tab.problems() == []


LAYOUT = """JSON.stringify({
    scroll: document.documentElement.scrollWidth,
    inner: window.innerWidth,
    cells: [...document.querySelectorAll('#q-table tbody tr:not(.hidden)')].slice(0, 3).flatMap(r =>
        [...r.cells].map(c => { const b = c.getBoundingClientRect(); return [b.left, b.right, b.width]; })),
    ticks: [...document.querySelectorAll('svg text')].map(t => t.getBoundingClientRect().height)
        .filter(h => h > 0),
})"""


@pytest.mark.parametrize("width", [420, 1280])
def test_layout_without_sideways_scroll(tab, tmp_path, width):
    index = render_report(prompted_run(tmp_path / "run"))
    tab.send(
        "Emulation.setDeviceMetricsOverride", {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}
    )
    tab.goto(index)
    got = json.loads(tab.eval(LAYOUT))
    assert got["inner"] == width
    assert got["scroll"] <= width, f"the page is {got['scroll']} px wide at {width} px"
    assert got["cells"] and all(w > 0 for _, _, w in got["cells"])
    if width < 700:  # stacked: question, gold and each system's answer each on screen, one under the other
        assert all(left >= 0 and right <= width for left, right, _ in got["cells"]), got["cells"]
    assert got["ticks"] and min(got["ticks"]) >= 9, f"chart labels shrink to {min(got['ticks']):.1f} px"
    assert tab.problems() == []


def test_error_analysis_tables_sort_on_a_header_click(tab, tmp_path):
    run = prompted_run(tmp_path / "run")
    tab.goto(render_report(run))
    column = "[...document.querySelectorAll('#by-category-table tbody tr')].map(r => r.cells[3].dataset.value)"
    tab.eval("document.querySelector('#by-category-table thead th:nth-child(4)').click()")  # lora, descending
    values = [float(v) for v in tab.eval(column)]
    assert values == sorted(values, reverse=True) and len(set(values)) > 1
    tab.eval("document.querySelector('#by-category-table thead th:nth-child(4)').click()")  # again: ascending
    assert [float(v) for v in tab.eval(column)] == sorted(values)
    names = "[...document.querySelectorAll('#by-document-table tbody tr')].map(r => r.dataset.group)"
    tab.eval("document.querySelector('#by-document-table thead th:nth-child(1)').click()")
    assert tab.eval(names) == sorted(tab.eval(names))
    assert tab.problems() == []
