"""Turn per-question measurements into results: scores, metrics with intervals, paired tests (the model-free
baselines are in harness/baselines.py).

Every figure here is computed from the per-question rows (`Sample`s), so results.json can always be re-derived
from samples.jsonl. Nothing here changes its inputs: each function returns what it computed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from harness import scorers, stats
from harness.constants import CHOICE_FORMATS, SIGNIFICANCE_LEVEL, AnswerFormat
from harness.data import Question
from harness.extract import extract_answer
from harness.records import Comparison, Interval, Measurement, Sample

SHORT_ANSWER_WORDS = 5  # a median gold answer of at most this many words is a short answer


@dataclass(frozen=True)
class Headline:
    """The metric a task's systems are ranked and tested on, why it was chosen, and the metrics compared
    between systems beside it."""

    metric: str
    reason: str
    also_compared: tuple[str, ...] = ()

    @property
    def compared(self) -> list[str]:
        return [self.metric, *(m for m in self.also_compared if m != self.metric)]


@dataclass(frozen=True)
class Scoring:
    """What every system of a run is scored with, derived once from the task's questions: the headline, and
    the task's answers by category that has_answer's guard checks a reply against."""

    headline: Headline
    pool: dict

    @classmethod
    def of(cls, spec, questions: list[Question]) -> Scoring:
        return cls(headline_of(spec, questions), scorers.answer_pool(questions))


def median_answer_words(questions: list[Question]) -> float | None:
    """The median length in words of the questions' first acceptable answers."""
    lengths = [len(q.answers[0].split()) for q in questions if q.answers]
    return float(np.median(lengths)) if lengths else None


def headline_of(spec, questions: list[Question]) -> Headline:
    """The task's headline metric: `headline:` if set; else the default for its answer shape (see
    spec.TaskSpec.headline), or the first of `metrics:` when that list leaves the default out."""
    also = ("calibrated_accuracy",) if spec.answer_format == AnswerFormat.YES_NO else ()
    if spec.headline:
        return Headline(spec.headline, "set by `headline:` in the task file", also)
    if spec.answer_format in CHOICE_FORMATS:
        default, reason = "accuracy", f"the default for {spec.answer_format} tasks"
    else:
        words = median_answer_words(questions)
        if words is not None and words <= SHORT_ANSWER_WORDS:
            default = "has_answer"
            reason = f"gold answers are short (median {words:g} words, at most {SHORT_ANSWER_WORDS})"
        else:
            default, also = "rouge_l", ("semantic_similarity",)
            shape = "unknown" if words is None else f"median {words:g} words"
            reason = f"gold answers are long ({shape}, more than {SHORT_ANSWER_WORDS}); semantic_similarity beside it"
    if spec.metrics and default not in spec.metrics:
        return Headline(spec.metrics[0], f"the first of `metrics:`, which leaves out {default} ({reason})", ())
    return Headline(default, reason, also)


def metric_list(spec, headline: str | None = None) -> list[str]:
    if spec.metrics:
        names = scorers.validate_metric_names(spec.metrics, spec.answer_format)
    else:
        names = scorers.metric_names_for(spec.answer_format)
        if spec.answer_format in CHOICE_FORMATS:  # a one-word option's length says nothing
            names = [n for n in names if n != "answer_length"]
    if headline and headline in scorers.SCORERS and headline not in names:
        names = [headline, *names]  # a `headline:` left out of `metrics:` is still scored
    return names


def is_binary(metric: str) -> bool:
    s = scorers.SCORERS.get(metric)
    return bool(s and s.binary) or metric in ("accuracy", "calibrated_accuracy")


# ---------------------------------------------------------------- systems


@dataclass(frozen=True)
class Scored:
    """A system's scores: every metric over the test set, and each question's scores and (yes-no, calibrated)
    answer, in the measurements' order."""

    metrics: dict[str, Interval]
    per_question: list[dict[str, float | None]]
    calibrated_predictions: list[str] | None = None
    extracted: list[str] | None = None  # free text with `filters:`: the answer each generation was scored as


def score_system(
    measurements: list[Measurement],
    questions: list[Question],
    spec,
    embed,
    threshold: float | None,
    headline: str | None = None,
    pool: dict | None = None,
) -> Scored:
    """Score each measurement with the task's metrics; metrics with intervals over all of them. `pool`: the
    task's answers by category (scorers.answer_pool), for has_answer's guard."""
    by_id = {q.id: q for q in questions}
    names = metric_list(spec, headline)
    # The scorers' registry works on plain dicts (a scorer may read any field, e.g. the retrieved passages):
    # give it each measurement with its question and acceptable answers, and read back the scores it fills in.
    extracted = None
    if spec.answer_format == AnswerFormat.FREE_TEXT and getattr(spec, "filters", None):
        extracted = [extract_answer(m.prediction, spec.filters, by_id[m.id].question) for m in measurements]
    rows = [
        {
            **m.model_dump(),
            "prediction": m.prediction if extracted is None else extracted[i],
            "golds": by_id[m.id].answers,
            "question": by_id[m.id].question,
            "category": by_id[m.id].category,
        }
        for i, m in enumerate(measurements)
    ]
    scorers.score_samples(rows, names, spec.answer_format, scorers.ScoreContext(embed=embed, pool=pool or {}))
    scores: list[dict[str, float | None]] = [row["scores"] for row in rows]
    n_boot, seed = spec.evaluation.bootstrap, spec.seed
    metrics = {}
    for name in names:
        values = [s.get(name) for s in scores]
        values = [v for v in values if v is not None]
        if values:
            metrics[name] = Interval.model_validate(stats.bootstrap_ci(values, n_boot=n_boot, seed=seed))
    calibrated = None
    if spec.answer_format == AnswerFormat.YES_NO:
        labels = [int(by_id[m.id].answers[0] == "Yes") for m in measurements]
        margins = [m.margin for m in measurements]
        auc = stats.bootstrap_ci_auc(labels, margins, n_boot=min(n_boot, 1000), seed=seed)
        if auc["value"] is not None:
            metrics["auc"] = Interval.model_validate(auc)
        if threshold is not None:
            calibrated = ["Yes" if m > threshold else "No" for m in margins]
            for s, m, y in zip(scores, margins, labels):
                s["calibrated_accuracy"] = float((m > threshold) == bool(y))
            ci = stats.bootstrap_ci([s["calibrated_accuracy"] for s in scores], n_boot=n_boot, seed=seed)
            metrics["calibrated_accuracy"] = Interval(**ci, threshold=threshold)
    return Scored(metrics, scores, calibrated, extracted)


def samples_of(
    system: str, questions: list[Question], measurements: list[Measurement], scored: Scored, metric: str
) -> list[Sample]:
    """samples.jsonl's rows for one system: each question with its measurement and scores."""
    by_id = {q.id: q for q in questions}
    calibrated = scored.calibrated_predictions or [None] * len(measurements)
    extracted = scored.extracted or [None] * len(measurements)
    rows = []
    for m, scores, cal, answer in zip(measurements, scored.per_question, calibrated, extracted):
        q = by_id[m.id]
        rows.append(
            Sample(
                system=system,
                id=q.id,
                question=q.question,
                gold=q.answers[0],
                golds=q.answers,
                prediction=m.prediction if answer is None else answer,
                generation=None if answer is None else m.prediction,
                truncated=m.hit_max_new_tokens,
                correct=scores.get(metric),
                calibrated_prediction=cal,
                latency_s=m.latency_s,
                retrieval_latency_s=m.retrieval_latency_s,
                category=q.category,
                doc_id=q.doc_id,
                margin=m.margin,
                prompt_tokens=m.prompt_tokens,
                scores=scores,
                retrieved=m.retrieved,
                gold_context=m.gold_context,
            )
        )
    return rows


# ---------------------------------------------------------------- paired tests


def per_question(samples: list[Sample], metric: str) -> dict[str, float]:
    return {s.id: s.scores[metric] for s in samples if s.scores.get(metric) is not None}


def compare(a: dict[str, float], b: dict[str, float], metric: str, seed: int) -> dict | None:
    ids = sorted(set(a) & set(b))
    if len(ids) < 2:
        return None
    x, y = [a[i] for i in ids], [b[i] for i in ids]
    res = stats.compare_paired(x, y, binary=is_binary(metric), seed=seed)
    return {
        "metric": metric,
        "diff": float(np.mean(x) - np.mean(y)),
        "p_value": float(res["p_value"]),
        "test": res["test"],
        "n": len(ids),
    }


def comparisons(system_samples: dict[str, list[Sample]], metrics: list[str], seed: int) -> list[Comparison]:
    """Every pair of systems on each headline metric, with Holm-adjusted p-values per metric."""
    out = []
    for metric in metrics:
        rows = []
        for a, b in itertools.combinations(sorted(system_samples), 2):
            res = compare(
                per_question(system_samples[a], metric), per_question(system_samples[b], metric), metric, seed
            )
            if res:
                rows.append({"a": a, "b": b, **res})
        for row, adj in zip(rows, stats.holm([r["p_value"] for r in rows])):
            out.append(Comparison(**row, p_holm=adj, significant=adj < SIGNIFICANCE_LEVEL))
    return out
