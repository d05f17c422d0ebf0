"""fewshot: the base model with k solved training questions in the prompt, as earlier chat turns.

The prompt is the chat the prompt system sends, with k (question, gold answer) pairs from the training
split placed before the question as prior user/assistant turns, so the model sees the answer format it
should follow. Which k: `random` (seeded per question, so a question's examples do not depend on which
other questions are evaluated) or `nearest` (the training questions closest to the question in the
embedder's space). Examples come from the training split only, never from dev or test.

What it costs is longer prompts: the report's prompt tokens and latency against the prompt system.
"""

from __future__ import annotations

import random

import numpy as np

from harness.data import Question
from harness.errors import HarnessError
from harness.measure import timer
from harness.prompts import user_turn
from harness.systems import BuildInfo, Prompts, System, register_system


def fewshot_prompt(tokenizer, system_prompt: str, examples: list[tuple[str, str]], user: str) -> str:
    """The full prompt: system turn, then each example as a user turn and an assistant turn, then the question."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for question, answer in examples:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": user})
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # Base models without a chat template get a plain transcript (as prompts.chat_prompt does).
    head = f"{system_prompt}\n\n" if system_prompt else ""
    shots = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in examples)
    return f"{head}{shots}Question: {user}\nAnswer: "


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


@register_system("fewshot")
class FewshotSystem(System):
    kind = "prompt"

    @property
    def settings(self):
        return self.ctx.spec.fewshot

    def validate(self) -> None:
        if not self.ctx.data.train:
            raise HarnessError("fewshot needs solved examples, but the training split is empty")

    # ------------------------------------------------------------ selection

    def _pool_vectors(self) -> np.ndarray:
        """Embeddings of the training questions, computed once per run (kept in the run context)."""
        ctx = self.ctx
        embedder = ctx.embedder()
        key = ("fewshot_pool_vectors", getattr(embedder, "fingerprint", None), ctx.data_fingerprint)
        vecs = ctx.cache_get(key)
        if vecs is None:
            vecs = embedder.encode([q.question for q in ctx.data.train])
            ctx.cache_put(key, vecs)
        return vecs

    def select(self, questions: list[Question]) -> list[list[int]]:
        """Indices into the training split, per question."""
        s, pool = self.settings, self.ctx.data.train
        if s.selection == "random":
            return select_random(pool, questions, s.k, self.ctx.spec.seed)
        pool_vecs = self._pool_vectors()
        query_vecs = self.ctx.embedder().encode([q.question for q in questions])
        return select_nearest(pool, pool_vecs, questions, query_vecs, s.k)

    # ------------------------------------------------------------ build and prompts

    def build(self) -> BuildInfo:
        s, ctx = self.settings, self.ctx
        took = lambda: 0.0
        if s.selection == "nearest":
            with timer() as took:
                self._pool_vectors()
        k = min(s.k, len(ctx.data.train))
        notes = [
            f"{k} {s.selection} solved example{'s' * (k != 1)} from the training split "
            f"({len(ctx.data.train)} questions) before each question"
        ]
        if s.k > len(ctx.data.train):
            notes.append(f"fewshot.k is {s.k} but the training split has only {len(ctx.data.train)} questions")
        if ctx.data.test:
            tok, spec = ctx.tokenizer, ctx.spec
            from harness.prompts import chat_prompt

            plain = [
                len(tok(chat_prompt(tok, spec.system_prompt, user_turn(spec.question_template, q))).input_ids)
                for q in ctx.data.test
            ]
            shots = [len(tok(t).input_ids) for t in self.prompts(ctx.data.test).texts]
            added = (sum(shots) - sum(plain)) / len(plain)
            notes.append(
                f"adds {added:.0f} prompt tokens per question on average "
                f"({sum(shots) / len(shots):.0f} against {sum(plain) / len(plain):.0f} without examples)"
            )
        return BuildInfo(build_s=took(), cached=False, notes=notes)

    def prompts(self, questions):
        ctx, spec = self.ctx, self.ctx.spec
        tok, pool = ctx.tokenizer, ctx.data.train
        budget = ctx.model_max_length() - spec.evaluation.max_new_tokens
        texts, trimmed = [], 0
        for q, picked in zip(questions, self.select(questions)):
            examples = [(user_turn(spec.question_template, pool[i]), pool[i].answers[0]) for i in picked]
            user = user_turn(spec.question_template, q)
            text = fewshot_prompt(tok, spec.system_prompt, examples, user)
            # Drop examples, least similar (or first drawn) first, until the prompt fits the model's window.
            while examples and len(tok(text).input_ids) > budget:
                examples = examples[1:]
                text = fewshot_prompt(tok, spec.system_prompt, examples, user)
                trimmed += 1
            texts.append(text)
        if trimmed:
            ctx.log(
                f"warning: {self.name}: dropped {trimmed} example(s) so prompts fit the model's {budget}-token window"
            )
        return Prompts(texts)
