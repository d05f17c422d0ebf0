"""The report's error analysis (harness/report/errors_analysis.py): figures computed from samples by hand."""

from __future__ import annotations

import re

from report_fixtures import make_results, make_samples, write_run

from harness.records import RunResults, Sample
from harness.report import render_report
from harness.report.errors_analysis import boilerplate_lines, boilerplate_share, error_analysis

COPYRIGHT = "Copyright (c) [year] [fullname]"
DISCLAIMER = 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND.'


def _passage(doc, chunk, text):
    return {"doc_id": doc, "chunk": chunk, "score": 0.5, "text": text}


def _sample(system, i, gold, pred, doc, category, retrieved=None):
    return Sample.model_validate(
        {
            "system": system,
            "id": f"q{i}",
            "question": f"question {i}?",
            "gold": gold,
            "golds": [gold],
            "prediction": pred,
            "correct": float(gold == pred),
            "latency_s": 0.1,
            "prompt_tokens": 50,
            "category": category,
            "doc_id": doc,
            "scores": {"accuracy": float(gold == pred)},
            "retrieved": retrieved,
        }
    )


def _run():
    """10 questions on docs a (q0-4) and b (q5-9); gold alternates No/Yes. prompt is right on every question
    of doc a and wrong on every one of b; rag always says Yes, and has the gold document in its passages for
    q0-q7 only. rag's passages: a's title chunk (boilerplate), a copyright+disclaimer chunk shared by a and b
    (boilerplate), and one licence-specific chunk."""
    results = make_results(10)
    results["systems"] = {k: v for k, v in results["systems"].items() if k in ("prompt", "rag")}
    results["systems"]["prompt"]["prompt_tokens_mean"] = 60.0
    results["systems"]["rag"]["prompt_tokens_mean"] = 600.0
    samples = []
    for i in range(10):
        gold = "Yes" if i % 2 else "No"
        doc = "a" if i < 5 else "b"
        cat = "permissions" if i % 3 else "conditions"
        wrong = "No" if gold == "Yes" else "Yes"
        samples.append(_sample("prompt", i, gold, gold if doc == "a" else wrong, doc, cat))
        gold_doc = doc if i < 8 else "c"
        retrieved = [
            _passage("a", 0, f"The A Licence\n\n{COPYRIGHT}\n"),
            _passage("b" if i in (1, 3) else "a", 3, f"{COPYRIGHT}\n{DISCLAIMER}\n"),
            _passage(gold_doc, 7, f"Under licence {gold_doc} you must disclose the source of what you distribute."),
        ]
        samples.append(_sample("rag", i, gold, "Yes", doc, cat, retrieved))
    return RunResults.model_validate(results), samples


def test_breakdowns_are_means_per_group():
    results, samples = _run()
    a = error_analysis(results, samples)
    docs = dict(a.documents.rows)
    assert (docs["a"]["prompt"].n, docs["a"]["prompt"].score) == (5, 1.0)
    assert (docs["b"]["prompt"].n, docs["b"]["prompt"].score) == (5, 0.0)
    cats = dict(a.categories.rows)
    # conditions: q0, q3, q6, q9 -> gold No, Yes, No, Yes; rag says Yes: right on q3, q9
    assert cats["conditions"]["rag"].n == 4 and cats["conditions"]["rag"].score == 0.5
    assert a.systems == ["prompt", "rag"]


def test_answer_bias_against_the_gold_mix():
    results, samples = _run()
    a = error_analysis(results, samples)
    assert a.gold_mix == [("No", 5, 0.5), ("Yes", 5, 0.5)]
    rag = next(b for b in a.bias if b.system == "rag")
    assert rag.answers == [("Yes", 10, 1.0)]
    assert "rag answers Yes on 10 of 10 questions (100%), where Yes is the gold answer on 50%." in a.paragraph
    assert "prompt answers" not in a.paragraph  # prompt's 50/50 matches the gold mix


def test_retrieval_split_and_boilerplate():
    results, samples = _run()
    a = error_analysis(results, samples)
    (r,) = a.retrieval
    assert r.system == "rag"
    # gold document among the passages for q0-q7: right on the 4 Yes questions among them; q8 No, q9 Yes
    assert (r.with_gold.n, r.with_gold.score) == (8, 0.5)
    assert (r.without_gold.n, r.without_gold.score) == (2, 0.5)
    assert (r.passages, r.boilerplate) == (30, 20)
    assert "has the gold document among its passages for 8 of 10 questions" in a.paragraph
    assert "20 of its 30 passages (67%) are mostly boilerplate" in a.paragraph
    assert "Its prompts average 600 tokens against 60 for prompt" in a.paragraph


def test_boilerplate_is_found_in_the_data():
    rag = [s for s in _run()[1] if s.system == "rag"]
    lines = boilerplate_lines(rag)
    assert boilerplate_share(f"{COPYRIGHT}\n{DISCLAIMER}", lines) == 1.0  # recurs in documents a and b
    assert boilerplate_share("The A Licence", lines) == 1.0  # a document's title
    assert boilerplate_share("You must disclose the source code of any modified version.", lines) == 0.0
    # a line only one document has is not boilerplate, however often it is retrieved
    only_a = [s.model_copy(update={"retrieved": s.retrieved[1:2]}) for s in rag if s.retrieved[1].doc_id == "a"]
    assert boilerplate_share(DISCLAIMER, boilerplate_lines(only_a)) == 0.0


def test_weakest_group_needs_enough_questions():
    results, samples = _run()
    a = error_analysis(results, samples)
    assert "prompt's weakest group is document b: 0.000 on 5 questions, against 0.500 overall." in a.paragraph


def test_report_has_the_section_with_sortable_tables(tmp_path):
    run = write_run(tmp_path / "run", make_results(20), make_samples(20))
    html = render_report(run).read_text(encoding="utf-8")
    assert 'id="errors"' in html and 'href="#errors"' in html
    assert 'id="by-category-table" class="sortable"' in html and 'id="by-document-table" class="sortable"' in html
    assert 'id="bias-table"' in html and 'id="retrieval-split-table"' in html
    paragraph = re.search(r'<p class="rec" id="errors-text">(.*?)</p>', html, re.S).group(1)
    assert paragraph.strip()


def test_no_samples_says_so():
    results, _ = _run()
    a = error_analysis(results, [])
    assert a.empty and "no errors to analyse" in a.paragraph
