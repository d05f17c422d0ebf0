"""The documents-change scenario's plan (`harness run TASK --scenario updates`): the task's `scenario:` settings,
and the seeded split of the documents into waves W0 ... Wn-1 with each document's questions split into train /
dev / test, so that every document has test questions.

Questions and documents are duck-typed (`id`, `doc_id`, `category`, `answers`; `doc_id`), like harness.strata:
this module imports nothing of the harness above the foundation, so the schema (spec.py) can hold its settings.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from pydantic import Field

from harness.dataspec import Strict
from harness.errors import HarnessError
from harness.strata import answer_stratum

SCENARIOS = ("updates",)
MODES = ("retrain", "continue")


class ScenarioSpec(Strict):
    """Settings of `harness run TASK --scenario updates`: the documents arrive in waves and every system is
    refreshed after each one (see docs/scenario.md). Needs a corpus and a `doc_id` on every question."""

    example: ClassVar[str] = """\
scenario: {kind: updates, waves: 3, seed: 0, modes: [retrain, continue]}"""
    kind: Literal["updates"] = Field(
        "updates", description="The scenario `--scenario` runs: `updates` (documents arrive in waves)."
    )
    waves: int = Field(3, ge=2, le=50, description="Waves W0 ... Wn-1 the documents are split into (seeded).")
    seed: int | None = Field(
        None, ge=0, description="Seed of the wave split and of the per-document question split; null: the task's seed."
    )
    modes: list[Literal["retrain", "continue"]] = Field(
        default_factory=lambda: list(MODES),
        min_length=1,
        description=(
            "How fine-tunes absorb a wave: `retrain` (a new adapter on everything known so far), `continue` (the "
            "previous adapter trained further on the new wave only); each mode is a system of its own "
            "(`lora-retrain`, `lora-continue`)."
        ),
    )


@dataclass
class Wave:
    """One wave: its documents and, per split, the questions about them."""

    index: int
    doc_ids: list[str]
    train: list = field(default_factory=list)
    dev: list = field(default_factory=list)
    test: list = field(default_factory=list)


def check_questions(questions: Sequence, corpus: Sequence, n_waves: int, where) -> None:
    """The plan-time checks, one line each: every question names its document, enough documents for the waves.
    `where(field)` names the task file and field."""
    missing = [q for q in questions if not q.doc_id]
    if missing:
        raise HarnessError(
            f"{where('data.questions.fields.doc_id')}: --scenario updates needs the document of every question, "
            f"but {len(missing)} of {len(questions)} questions have no doc_id (e.g. "
            f"{missing[0].origin or missing[0].id}); map data.questions.fields.doc_id"
        )
    if n_waves > len(corpus):
        raise HarnessError(
            f"{where('scenario.waves')}: {n_waves} waves but the corpus has only {len(corpus)} documents; "
            f"set scenario.waves to {len(corpus)} or less"
        )


def _split_document(questions: list, rng: random.Random, test_fraction: float, dev_fraction: float, fmt: str):
    """One document's questions -> train, dev, test. Seeded, and spread over the answers: the questions are
    dealt round-robin from their (category, answer) strata, so each split takes a share of every stratum."""
    strata: dict = {}
    for q in sorted(questions, key=lambda q: q.id):
        strata.setdefault((q.category or "", str(answer_stratum(q, fmt))), []).append(q)
    for key in sorted(strata):
        rng.shuffle(strata[key])
    dealt, groups = [], [strata[k] for k in sorted(strata)]
    while any(groups):
        for g in groups:
            if g:
                dealt.append(g.pop())
    n = len(dealt)
    n_test = max(1, round(n * test_fraction))
    n_dev = min(round(n * dev_fraction), max(n - n_test - 1, 0))
    return dealt[n_test + n_dev :], dealt[n_test : n_test + n_dev], dealt[:n_test]


def make_waves(
    questions: Sequence, corpus: Sequence, n_waves: int, seed: int, test_fraction: float, dev_fraction: float, fmt: str
) -> list[Wave]:
    """The corpus's documents in `n_waves` seeded waves (sizes differ by at most one), each document's questions
    split within it. A document with one question has it in test."""
    doc_ids = [d.doc_id for d in corpus]
    rng = random.Random(seed)
    rng.shuffle(doc_ids)
    waves = [Wave(i, sorted(doc_ids[i::n_waves])) for i in range(n_waves)]
    by_doc: dict[str, list] = {}
    for q in questions:
        by_doc.setdefault(q.doc_id, []).append(q)
    for w in waves:
        for doc in w.doc_ids:
            train, dev, test = _split_document(by_doc.get(doc, []), rng, test_fraction, dev_fraction, fmt)
            w.train += train
            w.dev += dev
            w.test += test
    return waves


def group_of(question_wave: int, stage: int) -> str:
    """A test question's group after `stage`: its wave is the stage's own (new), earlier, or still to come."""
    return "new" if question_wave == stage else "earlier" if question_wave < stage else "future"


GROUPS = ("new", "earlier", "future")
