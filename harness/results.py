"""Turn per-question records into results: metrics with intervals, model-free baselines, paired tests.

Every figure here is computed from the per-question records, so results.json can always be re-derived
from samples.jsonl.
"""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np

from harness import scorers, stats
from harness.data import Question

CHOICE = ("yes-no", "multiple-choice")


def headline_metric(answer_format: str) -> str:
    return "accuracy" if answer_format in CHOICE else "token_f1"


def metric_list(spec) -> list[str]:
    if spec.metrics:
        return scorers.validate_metric_names(spec.metrics, spec.answer_format)
    names = scorers.metric_names_for(spec.answer_format)
    if spec.answer_format in CHOICE:  # a one-word option's length says nothing
        names = [n for n in names if n != "answer_length"]
    return names


def is_binary(metric: str) -> bool:
    s = scorers.SCORERS.get(metric)
    return bool(s and s.binary) or metric in ("accuracy", "calibrated_accuracy")


# ---------------------------------------------------------------- baselines


def baselines(train: list[Question], test: list[Question], answer_format: str) -> dict[str, dict]:
    """Predictions that need no model. Each maps question id -> predicted answer."""
    if answer_format == "free-text":
        common = Counter(q.answers[0] for q in train).most_common(1)[0][0]
        return {
            "majority": {
                "predictions": {q.id: common for q in test},
                "description": f"always answers the most common training answer ({common!r})",
            }
        }
    overall = Counter(q.answers[0] for q in train).most_common(1)[0][0]
    out = {}
    if answer_format == "yes-no" or all(q.choices == test[0].choices for q in test):
        out["majority"] = {
            "predictions": {q.id: overall for q in test},
            "description": f"always answers the training split's majority answer ({overall})",
        }
    if any(q.category for q in train):
        by_cat: dict[str, Counter] = {}
        for q in train:
            by_cat.setdefault(q.category, Counter())[q.answers[0]] += 1
        preds = {q.id: (by_cat[q.category].most_common(1)[0][0] if q.category in by_cat else overall) for q in test}
        out["category_prior"] = {
            "predictions": preds,
            "description": "answers each category's majority answer in the training split",
        }
    return out


def baseline_results(base: dict[str, dict], test: list[Question], answer_format: str, n_boot: int, seed: int) -> dict:
    out = {}
    for name, b in base.items():
        if answer_format in CHOICE:
            correct = [float(b["predictions"][q.id] == q.answers[0]) for q in test]
            metric = "accuracy"
        else:
            correct = [
                scorers.SCORERS["token_f1"].fn(b["predictions"][q.id], q.answers, {}, scorers.ScoreContext())
                for q in test
            ]
            metric = "token_f1"
        ci = stats.bootstrap_ci(correct, n_boot=n_boot, seed=seed)
        out[name] = {
            metric: ci["value"],
            "metrics": {metric: ci},
            "description": b["description"],
            "per_question": correct,
        }
    if answer_format == "multiple-choice":
        expected = [1.0 / len(q.choices) for q in test]
        ci = stats.bootstrap_ci(expected, n_boot=n_boot, seed=seed)
        out["uniform_random"] = {
            "accuracy": ci["value"],
            "metrics": {"accuracy": ci},
            "description": "expected accuracy of picking an option uniformly at random",
            "per_question": None,
        }
    return out


# ---------------------------------------------------------------- systems


def score_system(records: list[dict], questions: list[Question], spec, embed, threshold: float | None) -> dict:
    """Fill each record's scores; return metrics with intervals."""
    by_id = {q.id: q for q in questions}
    names = metric_list(spec)
    for r in records:
        r["golds"] = by_id[r["id"]].answers
    scorers.score_samples(records, names, spec.answer_format, scorers.ScoreContext(embed=embed))
    n_boot, seed = spec.evaluation.bootstrap, spec.seed
    metrics = {}
    for name in names:
        values = [r["scores"].get(name) for r in records]
        values = [v for v in values if v is not None]
        if values:
            metrics[name] = stats.bootstrap_ci(values, n_boot=n_boot, seed=seed)
    if spec.answer_format == "yes-no":
        labels = [int(by_id[r["id"]].answers[0] == "Yes") for r in records]
        margins = [r["margin"] for r in records]
        auc = stats.bootstrap_ci_auc(labels, margins, n_boot=min(n_boot, 1000), seed=seed)
        if auc["value"] is not None:
            metrics["auc"] = auc
        if threshold is not None:
            for r, y in zip(records, labels):
                r["calibrated_prediction"] = "Yes" if r["margin"] > threshold else "No"
                r["scores"]["calibrated_accuracy"] = float((r["margin"] > threshold) == bool(y))
            metrics["calibrated_accuracy"] = stats.bootstrap_ci(
                [r["scores"]["calibrated_accuracy"] for r in records], n_boot=n_boot, seed=seed
            )
            metrics["calibrated_accuracy"]["threshold"] = threshold
    return metrics


def per_question(records: list[dict], metric: str) -> dict[str, float]:
    return {r["id"]: r["scores"][metric] for r in records if r.get("scores", {}).get(metric) is not None}


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


def comparisons(system_records: dict[str, list[dict]], metrics: list[str], seed: int) -> list[dict]:
    """Every pair of systems on each headline metric, with Holm-adjusted p-values per metric."""
    out = []
    for metric in metrics:
        rows = []
        for a, b in itertools.combinations(sorted(system_records), 2):
            res = compare(
                per_question(system_records[a], metric), per_question(system_records[b], metric), metric, seed
            )
            if res:
                rows.append({"a": a, "b": b, **res})
        for row, adj in zip(rows, stats.holm([r["p_value"] for r in rows])):
            row["p_holm"] = adj
            row["significant"] = adj < 0.05
        out.extend(rows)
    return out


def vs_best_baseline(records: list[dict], base: dict[str, dict], metric: str, seed: int) -> dict | None:
    candidates = {n: b for n, b in base.items() if b.get("per_question") is not None}
    if not candidates:
        return None
    best = max(candidates, key=lambda n: candidates[n]["metrics"][metric]["value"])
    ids = [r["id"] for r in records]
    ref = dict(zip(ids, candidates[best]["per_question"]))
    res = compare(per_question(records, metric), ref, metric, seed)
    if res is None:
        return None
    significant = res["p_value"] < 0.05
    return {"baseline": best, **res, "significant": significant, "beats": significant and res["diff"] > 0}
