"""Does a system know more than the label prior? The prior-breaking subset of a choice task with categories.

The category prior (baselines.CATEGORY_PRIOR: each category's most common training answer, or gold position for
multiple choice) scores 0 by construction on the test questions whose gold answer differs from its prediction.
Those questions separate knowing from guessing: a fine-tune that only learned each category's usual answer
scores near 0 there too. For each system this computes, on that subset, accuracy, balanced accuracy (so that a
system saying Yes to everything does not look good on a Yes-heavy subset) and, for yes-no, the AUC of its
Yes-No margin, each with a bootstrap interval; the systems' paired tests on subset accuracy, Holm-adjusted
like every comparison; and each system's answer bias: the share of each answer (Yes / No, or the position
"option k") beside the gold share, on the whole test set and on the subset.
"""

from __future__ import annotations

from collections import Counter

from harness import stats
from harness.baselines import CATEGORY_PRIOR, option_label
from harness.constants import AnswerFormat
from harness.data import Question
from harness.records import Interval, PriorBreaking, PriorBreakingSystem, Sample
from harness.results import comparisons


def answer_key(q: Question, answer: str, answer_format: str) -> str:
    """The answer as the bias is counted: Yes / No, or for multiple choice its position ("option 2")."""
    if answer_format == AnswerFormat.MULTIPLE_CHOICE and q.choices and answer in q.choices:
        return option_label(q.choices.index(answer))
    return answer


def shares(keys: list[str]) -> dict[str, float]:
    """Share of each key, keys sorted (Yes / No stay in that order; "option 1" before "option 2")."""
    counts = Counter(keys)
    order = sorted(counts, key=lambda k: (k != "Yes", k))
    return {k: counts[k] / len(keys) for k in order} if keys else {}


def _on_subset(
    prior_predictions: dict[str, str],
    samples: list[Sample],
    questions: dict[str, Question],
    subset: set[str],
    fmt: str,
    n_boot: int,
    seed: int,
):
    """One system's figures: metrics on the subset and its answer shares."""
    keys = {s.id: answer_key(questions[s.id], s.prediction, fmt) for s in samples}
    inside = [s for s in samples if s.id in subset]
    metrics: dict[str, Interval] = {}
    correct = [s.scores.get("accuracy") for s in inside]
    if inside and all(c is not None for c in correct):
        metrics["accuracy"] = Interval.model_validate(stats.bootstrap_ci(correct, n_boot=n_boot, seed=seed))
        golds = [answer_key(questions[s.id], s.gold, fmt) for s in inside]
        ci = stats.bootstrap_ci_balanced_accuracy(golds, correct, n_boot=n_boot, seed=seed)
        metrics["balanced_accuracy"] = Interval.model_validate(ci)
        margins = [s.margin for s in inside]
        if fmt == AnswerFormat.YES_NO and all(m is not None for m in margins):
            labels = [int(s.gold == "Yes") for s in inside]
            auc = stats.bootstrap_ci_auc(labels, margins, n_boot=min(n_boot, 1000), seed=seed)
            if auc["value"] is not None:
                metrics["auc"] = Interval.model_validate(auc)
    return PriorBreakingSystem(
        metrics=metrics,
        answer_share=shares(list(keys.values())),
        answer_share_subset=shares([keys[s.id] for s in inside]),
        prior_agreement=sum(s.prediction == prior_predictions[s.id] for s in samples) / len(samples),
    )


def prior_breaking(
    test: list[Question],
    prior: str,
    prior_predictions: dict[str, str],
    system_samples: dict[str, list[Sample]],
    answer_format: str,
    n_boot: int,
    seed: int,
) -> PriorBreaking:
    """The prior-breaking subset of `test` (gold differs from `prior_predictions`), and every system on it."""
    questions = {q.id: q for q in test}
    ids = [q.id for q in test if q.answers[0] != prior_predictions[q.id]]
    subset = set(ids)
    gold = {q.id: answer_key(q, q.answers[0], answer_format) for q in test}
    systems = {
        name: _on_subset(prior_predictions, samples, questions, subset, answer_format, n_boot, seed)
        for name, samples in system_samples.items()
    }
    inside = {name: [s for s in samples if s.id in subset] for name, samples in system_samples.items()}
    return PriorBreaking(
        prior=prior,
        n=len(ids),
        n_test=len(test),
        ids=ids,
        gold_share=shares(list(gold.values())),
        gold_share_subset=shares([gold[i] for i in ids]),
        chance=sum(1 / len(questions[i].choices) for i in ids) / len(ids) if ids else None,
        systems=systems,
        comparisons=comparisons(inside, ["accuracy"], seed) if len(ids) >= 2 else [],
    )


def of_run(
    base: dict[str, dict],
    test: list[Question],
    system_samples: dict[str, list[Sample]],
    answer_format: str,
    n_boot: int,
    seed: int,
) -> PriorBreaking | None:
    """The run's prior-breaking figures; None unless the task is a choice task with a category prior."""
    prior = CATEGORY_PRIOR.get(answer_format)
    if prior not in base:
        return None
    return prior_breaking(test, prior, base[prior]["predictions"], system_samples, answer_format, n_boot, seed)
