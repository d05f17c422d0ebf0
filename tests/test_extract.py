"""Answer extraction (`filters:`): each step, its checks, and what scoring and the report do with it."""

from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from harness import results, scorers
from harness.data import Question
from harness.extract import FilterStep, extract_answer
from harness.records import Measurement

Q = "Which city is the capital of Åland Islands?"


def steps(*specs):
    return [FilterStep.model_validate(s) for s in specs]


@pytest.mark.parametrize(
    "spec, text, expected",
    [
        ({"function": "first_line"}, "\n  Mariehamn\nIt is a port.", "Mariehamn"),
        ({"function": "first_sentence"}, "Mariehamn. It is a port.", "Mariehamn."),
        ({"function": "first_sentence"}, "Version 3.5 is out", "Version 3.5 is out"),  # a dot inside a number
        ({"function": "regex", "pattern": r"\bis (.+?)\.?$"}, "The capital is Mariehamn.", "Mariehamn"),
        ({"function": "regex", "pattern": r"\d+"}, "Dial +358 18", "358"),  # no group: the whole match
        ({"function": "regex", "pattern": r"is (\w+)"}, "Mariehamn", "Mariehamn"),  # no match: kept whole
        ({"function": "strip_question"}, "The capital of Åland Islands is Mariehamn.", "Mariehamn."),
        ({"function": "strip_question"}, "Mariehamn is the capital.", "Mariehamn is the capital."),
        ({"function": "strip_question"}, "The capital of Åland Islands.", "The capital of Åland Islands."),
    ],
)
def test_each_step(spec, text, expected):
    assert extract_answer(text, steps(spec), Q) == expected


@pytest.mark.parametrize(
    "question, text, expected",
    [
        ("What are people from Costa Rica called?", "People from Costa Rica are called Costa Rican.", "Costa Rican."),
        ("Kabul is the capital of which country?", "Kabul is the capital of Afghanistan.", "Afghanistan."),
        ("Which currency does Norway use?", "Norway uses the krone.", "Norway uses the krone."),
        ("What are people from Costa Rica called?", "Costa Rican", "Costa Rican"),  # no linking word: kept
        ("Which city is the capital of Norway?", "Norway: Oslo", "Norway: Oslo"),
    ],
)
def test_strip_question_keeps_an_answer_that_begins_with_a_word_of_the_question(question, text, expected):
    assert extract_answer(text, steps({"function": "strip_question"}), question) == expected


def test_steps_apply_in_order_and_none_keeps_the_generation():
    both = steps({"function": "strip_question"}, {"function": "first_sentence"})
    assert extract_answer("The capital of Åland Islands is Mariehamn. It lies on the coast.", both, Q) == "Mariehamn."
    people = "People from China are called Chinese."
    assert extract_answer(people, steps({"function": "strip_question"}), "What are people from China called?") == (
        "Chinese."
    )
    assert extract_answer(" as is ", [], Q) == " as is "


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"function": "regex"}, "a regex step needs a 'pattern'"),
        ({"function": "regex", "pattern": "(unclosed"}, "invalid regular expression '(unclosed'"),
        ({"function": "regex", "pattern": "(a)(b)", "group": 3}, "group 3 does not exist: the pattern has 2"),
        ({"function": "first_line", "pattern": "x"}, "'pattern' applies to the regex step only"),
        ({"function": "first_word"}, "first_line"),
    ],
)
def test_bad_steps_say_what_is_wrong(spec, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(")):
        FilterStep.model_validate(spec)


def test_issue_hand_made_generations_extraction_and_alias_match():
    """The issue's cases: a sentence, the bare answer, a list of two candidates, and a gold 'No' inside
    'Norway' - through extraction, then has_answer (with its guard) and exact match."""
    questions = [
        Question(id="s", question=Q, answers=["Mariehamn"], category="capital"),
        Question(id="y", question=Q, answers=["Mariehamn"], category="capital"),
        Question(id="zy", question=Q, answers=["Mariehamn"], category="capital"),
        Question(id="z", question="Which city is the capital of Norway?", answers=["Oslo"], category="capital"),
        Question(id="no", question="Is Oslo in Sweden?", answers=["No"], category="yes-no"),
    ]
    generations = {
        "s": "The capital of Åland Islands is Mariehamn.",
        "y": "Mariehamn",
        "zy": "Oslo or Mariehamn",
        "z": "The capital of Norway is Oslo. Bergen is larger.",
        "no": "Norway",
    }
    measured = [Measurement(id=i, prediction=g, latency_s=0.1, prompt_tokens=5) for i, g in generations.items()]
    spec = SimpleNamespace(
        answer_format="free-text",
        metrics=["has_answer", "exact_match"],
        filters=steps({"function": "strip_question"}, {"function": "first_sentence"}),
        seed=0,
        evaluation=SimpleNamespace(bootstrap=100),
    )
    pool = scorers.answer_pool(questions)
    scored = results.score_system(measured, questions, spec, None, None, "has_answer", pool)
    assert scored.extracted == ["Mariehamn.", "Mariehamn", "Oslo or Mariehamn", "Oslo.", "Norway"]
    assert [s["has_answer"] for s in scored.per_question] == [1.0, 1.0, 0.0, 1.0, 0.0]
    assert [s["exact_match"] for s in scored.per_question] == [1.0, 1.0, 0.0, 1.0, 0.0]
    # Without extraction the sentence scores 0 on exact match (the issue's headline of 0) but 1 on has_answer,
    # and "Bergen" (another capital) in the second sentence trips the guard.
    raw = results.score_system(measured, questions, SimpleNamespace(**{**vars(spec), "filters": []}), None, None)
    assert [s["exact_match"] for s in raw.per_question] == [0.0, 1.0, 0.0, 0.0, 0.0]
    pool_with_bergen = scorers.answer_pool(
        [*questions, Question(id="b", question="?", answers=["Bergen"], category="capital")]
    )
    raw = results.score_system(
        measured, questions, SimpleNamespace(**{**vars(spec), "filters": []}), None, None, None, pool_with_bergen
    )
    assert [s["has_answer"] for s in raw.per_question] == [1.0, 1.0, 0.0, 0.0, 0.0]
    # samples keep both: the extracted answer is scored, the generation kept
    samples = results.samples_of("prompt", questions, measured, scored, "has_answer")
    assert (samples[0].prediction, samples[0].generation) == ("Mariehamn.", generations["s"])
    assert samples[0].correct == 1.0


def test_filters_on_a_choice_task_are_one_clear_line(tmp_path):
    from harness.spec import TaskProblems, load_spec

    (tmp_path / "q.jsonl").write_text('{"id": "a", "question": "?", "answer": "Yes"}\n')
    path = tmp_path / "t.yaml"
    path.write_text(
        "name: t\nanswer_format: yes-no\ndata: {questions: {path: q.jsonl}}\nfilters: [{function: first_line}]\n"
    )
    with pytest.raises(TaskProblems) as e:
        load_spec(path)
    assert "'filters' apply to free-text answers only, not to yes-no tasks" in str(e.value)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
