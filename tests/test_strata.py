"""The seeded stratified draws (harness.strata): the dev split, the calibration set and the --limit sample, on
hand-made questions with known answers, and on legal-qa's real split."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest

from harness import strata
from harness.calibration import calibration_questions
from harness.data import load_task_data, split_questions
from harness.dataspec import SplitSpec
from harness.spec import load_spec
from harness.tasks import find_task


@dataclass
class Q:
    id: str
    category: str | None
    answers: list[str]
    doc_id: str | None = None
    choices: list[str] | None = field(default_factory=lambda: ["Yes", "No"])


def yes_share(qs) -> float:
    return sum(q.answers[0] == "Yes" for q in qs) / len(qs)


def test_calibration_sample_has_the_training_answer_mix_spread_over_categories():
    # training: 60% Yes; in each of three categories 20 questions. dev: 30 Yes, 10 No (75% Yes).
    train = [Q(f"t{i}", f"c{i % 3}", ["Yes" if i % 5 < 3 else "No"]) for i in range(60)]
    dev = [Q(f"d{i}", f"c{i % 3}", ["Yes" if i < 30 else "No"]) for i in range(40)]
    got = strata.calibration_sample(dev, train, 100, seed=0, answer_format="yes-no")
    # 10 No in dev hold a 40% No share at 25 questions at most: 15 Yes + 10 No
    assert len(got) == 25 and Counter(q.answers[0] for q in got) == {"Yes": 15, "No": 10}
    assert yes_share(got) == pytest.approx(yes_share(train))
    assert all(q in dev for q in got) and [q.id for q in got] == [q.id for q in dev if q in got]  # dev order
    yes_cats = Counter(q.category for q in got if q.answers[0] == "Yes")
    assert sorted(yes_cats.values()) == [5, 5, 5]  # training's Yes questions are spread evenly over c0..c2
    # at most n; seeded: the same draw again, another seed another draw of the same mix
    small = strata.calibration_sample(dev, train, 10, seed=0, answer_format="yes-no")
    assert len(small) == 10 and yes_share(small) == pytest.approx(0.6)
    assert strata.calibration_sample(dev, train, 10, seed=0, answer_format="yes-no") == small
    other = strata.calibration_sample(dev, train, 10, seed=1, answer_format="yes-no")
    assert other != small and yes_share(other) == pytest.approx(0.6)


def test_dev_documents_are_chosen_to_match_the_training_mix():
    # ten documents: five answer Yes to everything, five No to everything; two go to dev.
    qs = [Q(f"{d}-{c}", f"c{c}", ["Yes" if d < 5 else "No"], doc_id=f"doc{d}") for d in range(10) for c in range(4)]
    keys = [f"doc{d}" for d in range(10)]
    chosen = strata.choose_dev_keys(qs, lambda q: q.doc_id, keys, 2, "yes-no")
    assert len(chosen) == 2 and yes_share([q for q in qs if q.doc_id in chosen]) == 0.5  # one of each
    assert chosen == ["doc0", "doc5"]  # ties go to the earlier key of the seeded order
    # one question per key (by question): allocated over the strata in proportion
    single = [Q(f"q{i}", "c0" if i < 20 else "c1", ["Yes" if i % 4 == 0 else "No"]) for i in range(40)]
    picked = set(strata.choose_dev_keys(single, lambda q: q.id, [q.id for q in single], 8, "yes-no"))
    got = [q for q in single if q.id in picked]
    assert Counter((q.category, q.answers[0]) for q in got) == {
        ("c0", "Yes"): 1,
        ("c0", "No"): 3,
        ("c1", "Yes"): 1,
        ("c1", "No"): 3,
    }


def test_split_keeps_the_test_documents_and_gives_dev_a_representative_mix():
    qs = [Q(f"{d}-{c}", f"c{c}", ["Yes" if d % 2 else "No"], doc_id=f"doc{d}") for d in range(20) for c in range(3)]
    split = SplitSpec(by="doc", test_fraction=0.2, dev_fraction=0.2, seed=3)
    train, dev, test = split_questions(qs, split, "t.yaml", "yes-no")
    plain_test = split_questions(qs, split, "t.yaml", "free-text")[2]
    assert test == plain_test  # the test split does not depend on how dev is chosen
    assert yes_share(dev) == 0.5 and {q.id for q in dev}.isdisjoint({q.id for q in train + test})


def test_limited_sample_is_spread_over_documents_and_categories_and_seeded():
    test = [Q(f"{d}-{c}", f"c{c}", ["Yes"], doc_id=f"doc{d}") for d in range(10) for c in range(17)]
    got = strata.limited_sample(test, 10, seed=0)
    assert len(got) == 10 and len({q.doc_id for q in got}) == 10 and len({q.category for q in got}) == 10
    assert got == strata.limited_sample(test, 10, seed=0) != strata.limited_sample(test, 10, seed=1)
    assert [test.index(q) for q in got] == sorted(test.index(q) for q in got)  # in test order
    twenty = strata.limited_sample(test, 20, seed=0)
    assert set(Counter(q.doc_id for q in twenty).values()) == {2}
    assert strata.limited_sample(test, 500, seed=0) == test
    # documents in proportion: one document holds half the questions, so half the sample
    skewed = [Q(f"a{i}", "c", ["Yes"], doc_id="big") for i in range(50)]
    skewed += [Q(f"b{i}", "c", ["Yes"], doc_id=f"small{i % 5}") for i in range(50)]
    assert Counter(q.doc_id for q in strata.limited_sample(skewed, 10, seed=0))["big"] == 5


def test_legal_qa_calibration_set_matches_training_and_never_touches_train_few_shot_or_test():
    spec = load_spec(find_task("legal-qa", []))
    data = load_task_data(spec)

    class Ctx:
        limit = None

    ctx = Ctx()
    ctx.spec, ctx.data = spec, data
    cal = calibration_questions(ctx)
    ids = {q.id for q in cal}
    assert len(cal) == spec.evaluation.calibration_limit and ids <= {q.id for q in data.dev}
    # train is also the few-shot pool (ExampleSelector draws from data.train only)
    assert ids.isdisjoint(q.id for q in data.train) and ids.isdisjoint(q.id for q in data.test)
    assert {q.doc_id for q in cal}.isdisjoint(q.doc_id for q in data.train + data.test)
    assert abs(yes_share(cal) - yes_share(data.train)) < 0.01
    # the first dev split (five permissive licences) had a Yes-rate of 0.39 against training's 0.54
    assert abs(yes_share(data.dev) - yes_share(data.train)) < 0.05
    ctx.limit = 10  # --limit 10: at most ten calibration questions, with the same mix
    small = calibration_questions(ctx)
    assert len(small) == 10 and {q.id for q in small} <= ids | {q.id for q in data.dev}
    assert Counter(q.answers[0] for q in small) == {"Yes": 5, "No": 5}
