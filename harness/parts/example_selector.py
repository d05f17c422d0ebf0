"""Which solved training questions go before a question, for few-shot prompts.

`random`: k drawn per question with a generator seeded by (seed, question id), so a question's examples do
not depend on which other questions are evaluated. `nearest`: the k training questions closest to the
question in the embedder's space. Examples come from the training split only, never from dev or test.

One per run (`ctx.example_selector()`): the training questions are embedded once, whichever systems use it.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np

from harness.data import Question
from harness.errors import HarnessError


def _candidates(pool: list[Question], q: Question) -> list[int]:
    # The pool is the training split, disjoint from test; still, never show a question its own answer.
    return [i for i, p in enumerate(pool) if p.id != q.id and p.question != q.question]


def select_random(pool: list[Question], questions: list[Question], k: int, seed: int) -> list[list[int]]:
    """k pool indices per question, drawn with a generator seeded by (seed, question id)."""
    out = []
    for q in questions:
        cands = _candidates(pool, q)
        rng = random.Random(f"fewshot:{seed}:{q.id}")
        out.append(rng.sample(cands, min(k, len(cands))))
    return out


def select_nearest(
    pool: list[Question], pool_vecs: np.ndarray, questions: list[Question], query_vecs: np.ndarray, k: int
) -> list[list[int]]:
    """The k most similar pool indices per question (cosine; vectors are normalised), least similar first,
    so the closest example sits next to the question. Ties go to the earlier pool entry."""
    sims = np.asarray(query_vecs, dtype=np.float32) @ np.asarray(pool_vecs, dtype=np.float32).T
    out = []
    for row, q in zip(sims, questions):
        allowed = set(_candidates(pool, q))
        order = sorted(range(len(pool)), key=lambda i: (-float(row[i]), i))
        best = [i for i in order if i in allowed][:k]
        out.append(best[::-1])
    return out


class ExampleSelector:
    """Picks `settings.k` examples (a FewshotSpec) from `pool` (the training split); `embed` turns texts into
    normalised vectors (called only for `nearest`, and only when first needed)."""

    def __init__(self, pool: list[Question], settings, seed: int, embed: Callable[[list[str]], np.ndarray]):
        self.pool, self.settings, self.seed, self.embed = pool, settings, seed, embed
        self._pool_vecs: np.ndarray | None = None

    def validate(self) -> None:
        if not self.pool:
            raise HarnessError("fewshot needs solved examples, but the training split is empty")

    def pool_vectors(self) -> np.ndarray:
        """Embeddings of the training questions, computed once."""
        if self._pool_vecs is None:
            self._pool_vecs = self.embed([q.question for q in self.pool])
        return self._pool_vecs

    def select(self, questions: list[Question]) -> list[list[int]]:
        """Indices into the pool, per question, in prompt order."""
        s = self.settings
        if s.selection == "random":
            return select_random(self.pool, questions, s.k, self.seed)
        pool_vecs = self.pool_vectors()
        return select_nearest(self.pool, pool_vecs, questions, self.embed([q.question for q in questions]), s.k)

    def examples(self, questions: list[Question]) -> list[list[Question]]:
        """The selected training questions themselves, per question."""
        return [[self.pool[i] for i in picked] for picked in self.select(questions)]

    def notes(self) -> list[str]:
        """What the report says about the examples (before the prompt-length note the system adds)."""
        s, n = self.settings, len(self.pool)
        k = min(s.k, n)
        examples = f"{k} {s.selection} solved example{'s' * (k != 1)}"
        notes = [f"{examples} from the training split ({n} questions) before each question"]
        if s.k > n:
            notes.append(f"fewshot.k is {s.k} but the training split has only {n} questions")
        return notes
