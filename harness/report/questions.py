"""Rows of the per-question viewer: samples.jsonl grouped by question id, systems side by side."""

from __future__ import annotations

from typing import Any

from . import fmt

PASSAGE_CHARS = 600
ANSWER_CHARS = 1000


def truncate(text: Any, limit: int) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _norm(pred: Any) -> str:
    return " ".join(str(pred if pred is not None else "").split()).casefold()


def viewer_systems(results: dict[str, Any], samples: list[dict[str, Any]]) -> list[str]:
    """Systems with samples, in results.json order, then any others in order of appearance."""
    seen = list(dict.fromkeys(str(s["system"]) for s in samples))
    ordered = [n for n in (results.get("systems") or {}) if n in seen]
    return ordered + [n for n in seen if n not in ordered]


def verdict(correct: Any) -> bool | None:
    """True / False for a right / wrong answer; None when unknown or partial.

    samples.jsonl may hold a bool or the headline metric's score (1.0 / 0.0 for binary metrics)."""
    if isinstance(correct, bool):
        return correct
    if fmt.is_number(correct) and correct in (0, 1):
        return bool(correct)
    return None


def _cell(s: dict[str, Any]) -> dict[str, Any]:
    retrieved = s.get("retrieved")
    passages = None
    if isinstance(retrieved, list):
        passages = [
            {
                "doc_id": p.get("doc_id"),
                "chunk_id": p.get("chunk_id"),
                "score": p.get("score"),
                "text": truncate(p.get("text"), PASSAGE_CHARS),
            }
            for p in retrieved
            if isinstance(p, dict)
        ]
    return {
        "prediction": truncate(s.get("prediction"), ANSWER_CHARS),
        "correct": verdict(s.get("correct")),
        "latency_s": s.get("latency_s") if fmt.is_number(s.get("latency_s")) else None,
        "margin": s.get("margin") if fmt.is_number(s.get("margin")) else None,
        "passages": passages,
    }


def question_rows(results: dict[str, Any], samples: list[dict[str, Any]]) -> tuple[list[str], list[dict]]:
    systems = viewer_systems(results, samples)
    by_id: dict[str, dict[str, Any]] = {}
    for s in samples:
        qid = str(s["id"])
        row = by_id.get(qid)
        if row is None:
            row = by_id[qid] = {
                "id": qid,
                "question": truncate(s.get("question"), ANSWER_CHARS),
                "gold": truncate(s.get("gold"), ANSWER_CHARS),
                "category": s.get("category") or "",
                "cells": {},
            }
        row["cells"][str(s["system"])] = _cell(s)
    rows = list(by_id.values())
    for row in rows:
        cells = list(row["cells"].values())
        verdicts = [c["correct"] for c in cells if c["correct"] is not None]
        row["disagreement"] = len({_norm(c["prediction"]) for c in cells}) > 1
        row["failure"] = any(v is False for v in verdicts)
        row["allwrong"] = bool(verdicts) and all(v is False for v in verdicts)
    return systems, rows


def retrieval_systems(samples: list[dict[str, Any]]) -> set[str]:
    return {str(s["system"]) for s in samples if isinstance(s.get("retrieved"), list)}
