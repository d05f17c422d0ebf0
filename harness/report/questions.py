"""Rows of the per-question viewer: samples.jsonl grouped by question id, systems side by side."""

from __future__ import annotations

from typing import Any

from harness.records import RunResults, Sample

from . import fmt

ANSWER_CHARS = 1000  # a prediction or generation longer than this is cut (passages and prompts are shown whole)


def truncate(text: Any, limit: int) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _norm(pred: Any) -> str:
    return " ".join(str(pred if pred is not None else "").split()).casefold()


def viewer_systems(results: RunResults, samples: list[Sample]) -> list[str]:
    """Systems with samples, in results.json order, then any others in order of appearance."""
    seen = list(dict.fromkeys(s.system for s in samples))
    ordered = [n for n in results.systems if n in seen]
    return ordered + [n for n in seen if n not in ordered]


def verdict(correct: float | None) -> bool | None:
    """True / False for a right / wrong answer; None when unknown or partial.

    `correct` is the headline metric's score (1.0 / 0.0 for binary metrics)."""
    if fmt.is_number(correct) and correct in (0, 1):
        return bool(correct)
    return None


def prompt_parts(prompt: str | None, passages: list[str]) -> list[tuple[str, int | None]] | None:
    """The prompt as (text, None) pieces and ("", i) markers where passage i's text stands, so that the report
    holds each passage once: the viewer fills a marker from the passage shown above it when the prompt is
    opened. Passages are found in order; one the prompt does not hold verbatim stays in the text."""
    if prompt is None:
        return None
    parts: list[tuple[str, int | None]] = []
    rest = prompt
    for i, text in enumerate(passages):
        at = rest.find(text) if text else -1
        if at < 0:
            continue
        parts += [(rest[:at], None), ("", i)]
        rest = rest[at + len(text) :]
    return [*parts, (rest, None)]


def _cell(s: Sample) -> dict[str, Any]:
    passages = None
    if s.retrieved is not None:
        passages = [{"doc_id": p.doc_id, "chunk": p.chunk, "score": p.score, "text": p.text} for p in s.retrieved]
    return {
        "prediction": truncate(s.prediction, ANSWER_CHARS),
        # with `filters:`, the raw generation the answer was extracted from, when extraction changed it
        "generation": truncate(s.generation, ANSWER_CHARS) if s.generation not in (None, s.prediction) else None,
        "truncated": s.truncated is True,
        "correct": verdict(s.correct),
        "latency_s": s.latency_s if fmt.is_number(s.latency_s) else None,
        "margin": s.margin if fmt.is_number(s.margin) else None,
        "passages": passages,
        # yes-no with calibration: the answer at the dev-fitted threshold, and whether it differs
        "calibrated": s.calibrated_prediction,
        "calibrated_differs": s.calibrated_prediction not in (None, s.prediction),
        "prompt": prompt_parts(s.prompt, [p.text for p in s.retrieved or []]),
    }


def question_rows(results: RunResults, samples: list[Sample]) -> tuple[list[str], list[dict]]:
    systems = viewer_systems(results, samples)
    by_id: dict[str, dict[str, Any]] = {}
    for s in samples:
        row = by_id.get(s.id)
        if row is None:
            row = by_id[s.id] = {
                "id": s.id,
                "question": truncate(s.question, ANSWER_CHARS),
                "gold": truncate(s.gold, ANSWER_CHARS),
                "category": s.category or "",
                "doc": s.doc_id or "",
                "cells": {},
            }
        row["cells"][s.system] = _cell(s)
    rows = list(by_id.values())
    for row in rows:
        cells = list(row["cells"].values())
        verdicts = [c["correct"] for c in cells if c["correct"] is not None]
        row["disagreement"] = len({_norm(c["prediction"]) for c in cells}) > 1
        row["failure"] = any(v is False for v in verdicts)
        row["allwrong"] = bool(verdicts) and all(v is False for v in verdicts)
    return systems, rows


def groups(rows: list[dict], key: str) -> list[str]:
    """The distinct categories (key "category") or documents ("doc") of the viewer's rows, sorted."""
    return sorted({r[key] for r in rows if r[key]})


def retrieval_systems(samples: list[Sample]) -> set[str]:
    return {s.system for s in samples if s.retrieved is not None}
