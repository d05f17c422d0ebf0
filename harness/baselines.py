"""Model-free baselines, fitted on the training split and scored on test, and each system's test against the
strongest of them.

- free text: `majority` (the most common training answer);
- yes-no: `majority` and `category_prior` (each category's most common training answer);
- multiple choice, where an answer's text rarely recurs across questions, by *position*: `majority_position`
  (the option at the most common gold position), `category_majority_position` (the same per category),
  `category_position_prior` (guessing a position with the category's training distribution of gold positions)
  and `uniform_random` (guessing uniformly). The last two are guessing baselines: they have no answers, only
  each question's chance of being right, and their accuracy is that chance's mean.

Ties are broken deterministically (`most_common`): the most frequent answer, then the first in the task's
order of options (Yes before No; option 1 before option 2), then alphabetically (free text).

A system is tested against the strongest baseline on the headline metric: paired by question id (McNemar, or a
paired permutation test) where the baseline answers each question, and an exact one-sample test against the
guessing chances where it only guesses (`stats.chance_test`). The run's tests of every system against the
baseline are one family: `holm_over_systems` adjusts their p-values, and `significant` / `beats` follow the
adjusted p.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from harness import scorers, stats
from harness.constants import SIGNIFICANCE_LEVEL, AnswerFormat
from harness.data import YES_NO, Question
from harness.records import BaselineResult, BaselineTest, Interval, Sample
from harness.results import compare, per_question

# The baseline whose prediction is "the category's usual answer" (the prior-breaking subset is defined by it).
CATEGORY_PRIOR = {
    AnswerFormat.YES_NO.value: "category_prior",
    AnswerFormat.MULTIPLE_CHOICE.value: "category_majority_position",
}


def most_common(counts: Counter, order: list | tuple = ()):
    """The most frequent key of `counts`; a tie goes to the key that comes first in `order`, then to the
    smallest key (alphabetical for text, lowest for positions)."""
    rank = {k: i for i, k in enumerate(order)}
    return min(counts, key=lambda k: (-counts[k], rank.get(k, len(rank)), k))


def option_label(position: int) -> str:
    """How a position is named in descriptions and the report: "option 1" is the first option."""
    return f"option {position + 1}"


def _position_for(counts: Counter, q: Question) -> int:
    """The most common position in `counts` that `q` has (questions may have fewer options); else option 1."""
    valid = Counter({p: n for p, n in counts.items() if p < len(q.choices)})
    return most_common(valid) if valid else 0


def _by_category(train: list[Question], value) -> dict[str, Counter]:
    out: dict[str, Counter] = {}
    for q in train:
        out.setdefault(q.category, Counter())[value(q)] += 1
    return out


def _position_baselines(train: list[Question], test: list[Question]) -> dict[str, dict]:
    overall = Counter(q.gold_index for q in train)
    top = most_common(overall)
    share = overall[top] / len(train)
    out = {
        "majority_position": {
            "predictions": {q.id: q.choices[_position_for(overall, q)] for q in test},
            "description": f"always answers the option at the training split's most common gold position "
            f"({option_label(top)}, {share:.0%} of training questions)",
        }
    }
    if any(q.category for q in train):
        by_cat = _by_category(train, lambda q: q.gold_index)
        out["category_majority_position"] = {
            "predictions": {q.id: q.choices[_position_for(by_cat.get(q.category, overall), q)] for q in test},
            "description": "answers the option at each category's most common gold position in the training split",
        }

        def chance(q: Question) -> float:
            counts = by_cat.get(q.category, overall)
            valid = sum(n for p, n in counts.items() if p < len(q.choices))
            return counts[q.gold_index] / valid if valid else 1.0 / len(q.choices)

        out["category_position_prior"] = {
            "chances": {q.id: chance(q) for q in test},
            "description": "expected accuracy of guessing a position with its category's share of training "
            "gold answers",
        }
    out["uniform_random"] = {
        "chances": {q.id: 1.0 / len(q.choices) for q in test},
        "description": "expected accuracy of picking an option uniformly at random",
    }
    return out


def baselines(train: list[Question], test: list[Question], answer_format: str) -> dict[str, dict]:
    """Each baseline's "predictions" (question id -> answer) or, for a guessing baseline, "chances" (question
    id -> probability of being right), with its "description"."""
    if answer_format == AnswerFormat.MULTIPLE_CHOICE:
        return _position_baselines(train, test)
    order = YES_NO if answer_format == AnswerFormat.YES_NO else ()
    overall = most_common(Counter(q.answers[0] for q in train), order)
    if answer_format == AnswerFormat.FREE_TEXT:
        return {
            "majority": {
                "predictions": {q.id: overall for q in test},
                "description": f"always answers the most common training answer ({overall!r})",
            }
        }
    out = {
        "majority": {
            "predictions": {q.id: overall for q in test},
            "description": f"always answers the training split's majority answer ({overall})",
        }
    }
    if any(q.category for q in train):
        by_cat = _by_category(train, lambda q: q.answers[0])
        preds = {q.id: most_common(by_cat[q.category], order) if q.category in by_cat else overall for q in test}
        out["category_prior"] = {
            "predictions": preds,
            "description": "answers each category's majority answer in the training split (a tie: Yes)",
        }
    return out


@dataclass(frozen=True)
class Baseline:
    """A baseline's entry in results.json, and what a system is tested against: its per-question scores by
    question id, or (a guessing baseline) each question's chance of being right."""

    result: BaselineResult
    per_question: dict[str, float] | None = None
    chances: dict[str, float] | None = None


def _baseline(metric: str, values: list[float], n_boot: int, seed: int, description: str, **kw) -> Baseline:
    ci = stats.bootstrap_ci(values, n_boot=n_boot, seed=seed)
    result = BaselineResult(
        **{metric: ci["value"]}, metrics={metric: Interval.model_validate(ci)}, description=description
    )
    return Baseline(result, **kw)


def baseline_results(
    base: dict[str, dict],
    test: list[Question],
    answer_format: str,
    n_boot: int,
    seed: int,
    metric: str = "accuracy",
    ctx: scorers.ScoreContext | None = None,
) -> dict[str, Baseline]:
    """Each baseline scored with the headline `metric` (a baseline the metric says nothing about, such as
    groundedness without passages, is left out; guessing baselines exist for accuracy only)."""
    ctx = ctx or scorers.ScoreContext()
    out = {}
    for name, b in base.items():
        if "chances" in b:
            if metric == "accuracy":
                chances = [b["chances"][q.id] for q in test]
                out[name] = _baseline(metric, chances, n_boot, seed, b["description"], chances=b["chances"])
            continue
        rows = [
            {"prediction": b["predictions"][q.id], "golds": q.answers, "question": q.question, "category": q.category}
            for q in test
        ]
        scorers.score_samples(rows, [metric], answer_format, ctx)
        correct = [row["scores"].get(metric) for row in rows]
        if not correct or any(v is None for v in correct):
            continue
        scores = {q.id: v for q, v in zip(test, correct)}
        out[name] = _baseline(metric, correct, n_boot, seed, b["description"], per_question=scores)
    return out


def strongest(base: dict[str, Baseline], metric: str) -> str | None:
    """The baseline with the highest `metric`; on a tie, one that answers each question (a paired test), then
    the first in `base`'s order (the simpler one: majority before category prior)."""
    names = [n for n, b in base.items() if metric in b.result.metrics and b.result.metrics[metric].value is not None]
    if not names:
        return None
    return min(
        names, key=lambda n: (-base[n].result.metrics[metric].value, base[n].per_question is None, names.index(n))
    )


def vs_best_baseline(samples: list[Sample], base: dict[str, Baseline], metric: str, seed: int) -> BaselineTest | None:
    """One system against the strongest baseline, paired by question id. Alone it is a family of one test
    (p_holm = p_value); `holm_over_systems` adjusts the run's family."""
    best = strongest(base, metric)
    if best is None:
        return None
    mine = per_question(samples, metric)
    if base[best].per_question is not None:
        res = compare(mine, base[best].per_question, metric, seed)
    else:
        ids = sorted(set(mine) & set(base[best].chances))
        if not ids or any(mine[i] not in (0.0, 1.0) for i in ids):
            return None
        res = stats.chance_test([mine[i] for i in ids], [base[best].chances[i] for i in ids])
        res = {"metric": metric, **res, "n": len(ids)}
    if res is None:
        return None
    return _decided(BaselineTest(baseline=best, **res, p_holm=res["p_value"], significant=False, beats=False))


def _decided(test: BaselineTest) -> BaselineTest:
    significant = test.p_holm < SIGNIFICANCE_LEVEL
    return test.model_copy(update={"significant": significant, "beats": significant and test.diff > 0})


def holm_over_systems(tests: dict[str, BaselineTest | None]) -> dict[str, BaselineTest | None]:
    """The run's tests of every system against the strongest baseline, Holm-adjusted as one family."""
    done = {n: t for n, t in tests.items() if t is not None}
    adjusted = stats.holm([t.p_value for t in done.values()])
    out = dict(tests)
    for (name, t), p in zip(done.items(), adjusted):
        out[name] = _decided(t.model_copy(update={"p_holm": p}))
    return out
