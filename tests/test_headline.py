"""The headline metric: chosen per task (the `headline:` field, `metrics:`, or the answer shape), scored for
systems and baselines, checked before a run, and printed by `harness tasks show`."""

import json
from types import SimpleNamespace

import pytest

from harness import baselines, results, scorers
from harness.checks import name_problems
from harness.data import Question
from harness.records import Measurement
from harness.spec import load_spec
from harness.taskinfo import headline_note


def _spec(answer_format="free-text", headline=None, metrics=()):
    return SimpleNamespace(
        answer_format=answer_format,
        headline=headline,
        metrics=list(metrics),
        seed=0,
        evaluation=SimpleNamespace(bootstrap=200),
    )


def _q(i, answer, category=None, question="q?"):
    return Question(id=f"q{i}", question=question, answers=[answer], category=category)


SHORT = [_q(i, a) for i, a in enumerate(["Oslo", "New Delhi", "+44", "Mexico City"])]
LONG = [
    _q(i, "The licence lets you copy, change and share the work as long as you keep the notice.") for i in range(3)
]


def test_default_headline_follows_the_answer_shape():
    short = results.headline_of(_spec(), SHORT)
    assert short.metric == "has_answer" and "short" in short.reason and short.compared == ["has_answer"]
    long = results.headline_of(_spec(), LONG)
    assert long.metric == "rouge_l" and "long" in long.reason
    assert long.compared == ["rouge_l", "semantic_similarity"]  # the ranking is checked on meaning too
    yes_no = results.headline_of(_spec("yes-no"), [])
    assert yes_no.metric == "accuracy" and yes_no.compared == ["accuracy", "calibrated_accuracy"]


def test_headline_field_and_metrics_order():
    set_ = results.headline_of(_spec(headline="token_f1"), SHORT)
    assert set_.metric == "token_f1" and "headline:" in set_.reason
    first = results.headline_of(_spec(metrics=["exact_match", "token_f1"]), SHORT)
    assert first.metric == "exact_match" and "first of `metrics:`" in first.reason
    kept = results.headline_of(_spec(metrics=["token_f1", "has_answer"]), SHORT)
    assert kept.metric == "has_answer"  # the default, when the list keeps it
    # a headline left out of `metrics:` is scored all the same
    assert results.metric_list(_spec(metrics=["token_f1"]), "has_answer") == ["has_answer", "token_f1"]


def test_systems_and_baselines_are_scored_on_the_headline_with_the_guard():
    questions = [
        _q(0, "Oslo", "capital", "Which city is the capital of Norway?"),
        _q(1, "Paris", "capital", "Which city is the capital of France?"),
    ]
    pool = scorers.answer_pool(questions)
    measured = [
        Measurement(id="q0", prediction="The capital of Norway is Oslo.", latency_s=0.1, prompt_tokens=5),
        Measurement(id="q1", prediction="Oslo or Paris", latency_s=0.1, prompt_tokens=5),
    ]
    scored = results.score_system(measured, questions, _spec(), None, None, "has_answer", pool)
    assert [s["has_answer"] for s in scored.per_question] == [1.0, 0.0]
    assert [s["exact_match"] for s in scored.per_question] == [0.0, 0.0]
    assert scored.metrics["has_answer"].value == 0.5
    base = {"majority": {"predictions": {"q0": "Oslo", "q1": "Oslo"}, "description": "always Oslo"}}
    ctx = scorers.ScoreContext(pool=pool)
    out = baselines.baseline_results(base, questions, "free-text", 200, 0, "has_answer", ctx)
    assert out["majority"].per_question == {"q0": 1.0, "q1": 0.0}
    assert out["majority"].result.model_dump()["has_answer"] == 0.5


def _write_task(folder, extra="", answers=None):
    rows = [
        {"id": f"q{i}", "question": f"Question {i}?", "answer": a, "doc_id": f"d{i}"}
        for i, a in enumerate(answers or ["a short answer"] * 20)
    ]
    (folder / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = folder / "t.yaml"
    path.write_text(f"name: t\nanswer_format: free-text\ndata:\n  questions: {{path: q.jsonl}}\n{extra}")
    return path


def test_a_long_answer_task_from_the_docs_gets_rouge_l_without_any_setting(tmp_path):
    long = "You may copy and share it, but you must keep the copyright notice and the licence text with it."
    spec = load_spec(_write_task(tmp_path, answers=[long] * 20))
    assert headline_note(spec).startswith("# headline: rouge_l (gold answers are long (median 19 words")
    assert "semantic_similarity" in headline_note(spec)


def test_a_bad_headline_is_one_located_line(tmp_path):
    spec = load_spec(_write_task(tmp_path, "headline: accurcy\n"))
    (problem,) = name_problems(spec)
    assert problem.startswith(f"{tmp_path / 't.yaml'}:5: field 'headline': unknown metric 'accurcy'")
    spec = load_spec(_write_task(tmp_path, "headline: accuracy\n"))
    (problem,) = name_problems(spec)
    assert "field 'headline'" in problem and "does not apply to answer format 'free-text'" in problem


def test_geo_qa_ships_with_has_answer():
    from harness.tasks import find_task

    spec = load_spec(find_task("geo-qa", []))
    assert spec.headline == "has_answer"
    # and the default for its answer shape agrees
    assert headline_note(spec.model_copy(update={"headline": None})).startswith("# headline: has_answer (gold")


@pytest.mark.parametrize("fmt", ["yes-no", "multiple-choice"])
def test_choice_baselines_keep_accuracy(fmt):
    qs = [Question(id="a", question="?", answers=["Yes"], choices=["Yes", "No"])]
    base = {"majority": {"predictions": {"a": "Yes"}, "description": "d"}}
    out = baselines.baseline_results(base, qs, fmt, 100, 0)
    assert out["majority"].result.accuracy == 1.0
