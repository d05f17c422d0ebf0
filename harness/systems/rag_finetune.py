"""rag+lora, rag+qlora, rag+dora: a PEFT adapter trained to answer *with retrieved passages in the
prompt*, then evaluated with retrieval, as RAFT (Zhang et al., 2024, "Retrieval-Augmented Fine-Tuning")
does.

Training prompts are built by the same machinery `rag` evaluates with (its index, its context template,
its prompt budget), for each training question:
  - most rows: the top-k retrieved passages; when retrieval missed the question's own (gold) document, its
    best chunk replaces the weakest passage, so the model learns to find and use the right passage among
    distractors;
  - a seeded DISTRACTOR_FRACTION of rows: distractor passages only (every chunk of the gold document
    removed), so the model also learns to answer when retrieval fails, as it sometimes will at test time.
Passages from test documents may appear as distractors (retrieval searches the whole corpus); that is just
text, and the gold answer of a training row always comes from its own question. Without a corpus, RAG
indexes the training Q&A pairs; then a training question's own pair is always left out (it would hand the
model its answer).

Training prompts must fit finetune.max_length with the answer (trl drops the answer of a longer row), so
they get at most that many tokens, and evaluation prompts get the same budget: an adapter scored on longer
prompts than it learned from did worse (legal-qa: 0.635 with rag's 2016-token budget, 0.682 with the
509 tokens it trained on, same adapter). When finetune.max_length leaves less than rag's budget, the note
says so: rag+lora then sees fewer passage tokens than rag. The cache key holds every retrieval setting, so
the adapter is separate from plain `lora` and retrains when retrieval changes.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from harness import cache
from harness.errors import HarnessError
from harness.prompts import chat_prompt, user_turn
from harness.systems import BuildInfo, register_system
from harness.systems.finetune import METHODS, FinetuneSystem
from harness.systems.rag import RagSystem

DISTRACTOR_FRACTION = 0.2  # RAFT's (1 - P): share of training prompts with distractor passages only
RAFT_VERSION = 1  # bump when the way training prompts are made changes, so cached adapters retrain
_MAX_EXTRA_DEPTH = 256  # retrieval depth beyond k, to find k distractors behind a long gold document
# Tokens per forward/backward pass, about what plain lora's batches of short prompts hold. Prompts with
# passages are several times longer; at finetune.batch_size rows a pass, the activations and the
# (rows x length x vocabulary) logits took 12 GB for SmolLM2-135M on legal-qa and the run was OOM-killed.
# Larger batches are split into micro-batches with gradient accumulation: same optimiser steps, same batch.
MICRO_BATCH_TOKENS = 1024


def micro_batch(batch_size: int, prompt_tokens: int) -> int:
    """The largest divisor of batch_size whose rows hold at most MICRO_BATCH_TOKENS tokens (at least 1)."""
    fit = max(1, MICRO_BATCH_TOKENS // max(prompt_tokens, 1))
    return max(d for d in range(1, batch_size + 1) if batch_size % d == 0 and d <= fit)


@register_system(*(f"rag+{m}" for m in METHODS))
class RagFinetuneSystem(FinetuneSystem):
    kind = "rag+finetune"

    def __init__(self, name: str, ctx):
        super().__init__(name, ctx)
        self.rag = RagSystem("rag", ctx) if ctx is not None else None
        self._building = False
        self._raft_stats: dict | None = None
        self._batching: dict | None = None

    @property
    def method(self) -> str:
        return self.name.split("+", 1)[1]

    def validate(self) -> None:
        super().validate()
        self.rag.validate()

    # ------------------------------------------------------------ cache identity

    def extra_key(self):
        spec = self.ctx.spec
        return {
            "rag": spec.rag.model_dump(mode="json"),
            "embedder": self.ctx.embedder().fingerprint,
            "max_new_tokens": spec.evaluation.max_new_tokens,
            "raft": {"distractor_fraction": DISTRACTOR_FRACTION, "version": RAFT_VERSION},
        }

    def adapter_dir(self) -> Path:
        return cache.home() / "adapters" / self.ctx.spec.name / f"rag-{self.method}-{self.key()}"

    # ------------------------------------------------------------ training prompts

    def train_budget(self) -> int:
        """Prompt tokens a training row may take: rag's budget, but never so many that trl would cut the answer."""
        tok = self.ctx.tokenizer
        answers = {a for q in self.ctx.data.train + self.ctx.data.dev for a in q.answers[:1]}
        answer_tokens = max(
            (len(tok(a + (tok.eos_token or ""), add_special_tokens=False).input_ids) for a in answers), default=1
        )
        return min(self.rag.prompt_budget(), self.settings.max_length - answer_tokens - 1)

    def distractor_ids(self, questions) -> set[str]:
        """The seeded DISTRACTOR_FRACTION of questions (with a gold document) whose prompts get distractors only."""
        eligible = sorted(q.id for q in questions if q.doc_id)
        n = round(DISTRACTOR_FRACTION * len(eligible))
        return set(random.Random(f"raft:{self.ctx.spec.seed}").sample(eligible, n))

    def raft_rows(self, questions) -> list[dict]:
        """Training rows with what went into each: `raft` is 'gold' (retrieved, gold passage ensured),
        'distractors' (gold document removed) or 'retrieved' (no gold document to manage)."""
        ctx, spec, rag = self.ctx, self.ctx.spec, self.rag
        if not questions:
            return []
        index, embedder, tok = rag._index(), ctx.embedder(), ctx.tokenizer
        k, budget = rag.k(index), self.train_budget()
        fallback = ctx.data.corpus_is_fallback
        distract = set() if fallback else self.distractor_ids(questions)
        longest = max(len(index.chunk_ids_of(d)) for d in {c.doc_id for c in index.chunks})
        depth = min(len(index.chunks), k + min(longest, _MAX_EXTRA_DEPTH))
        vecs = embedder.encode([user_turn(spec.question_template, q) for q in questions])
        rows = []
        for q, vec, hits in zip(questions, vecs, index.search(vecs, depth)):
            base = len(tok(chat_prompt(tok, spec.system_prompt, rag.user_text(q, []))).input_ids)
            if base > budget:
                raise HarnessError(
                    f"{self.name}: training question '{q.id}' alone takes {base} tokens, more than the "
                    f"{budget} a training prompt may take (finetune.max_length "
                    f"{self.settings.max_length} minus the answer); raise finetune.max_length"
                )
            own = q.id if fallback else q.doc_id  # the document that holds the answer
            others = [h for h in hits if h[0].doc_id != own]
            inserted = False
            if fallback or own is None:
                kind, chosen = "retrieved", (others if fallback else hits)[:k]
            elif q.id in distract:
                kind, chosen = "distractors", others[:k]
            else:
                kind, chosen = "gold", hits[:k]
                if k and not any(c.doc_id == own for c, _ in chosen):
                    best = index.rank_within(vec, own, 1)
                    chosen, inserted = sorted(chosen[: k - 1] + best, key=lambda h: -h[1]), bool(best)
            passages = rag.fit_passages(q, chosen, budget)
            if kind == "gold" and not any(p["doc_id"] == own for p in passages):
                # The budget dropped the gold passage from the end: put it first instead.
                gold = [h for h in chosen if h[0].doc_id == own]
                passages = rag.fit_passages(q, gold + [h for h in chosen if h[0].doc_id != own], budget)
            rows.append(
                {
                    "prompt": chat_prompt(tok, spec.system_prompt, rag.user_text(q, passages)),
                    "completion": q.answers[0],
                    "id": q.id,
                    "raft": kind,
                    "gold_inserted": inserted,
                    "gold_in_prompt": own is not None and any(p["doc_id"] == own for p in passages),
                    "passages": passages,
                }
            )
        self._note_stats(rows, budget, k)
        return rows

    def rows(self, questions):
        return [{"prompt": r["prompt"], "completion": r["completion"]} for r in self.raft_rows(questions)]

    def _note_stats(self, rows: list[dict], budget: int, k: int) -> None:
        stats = self._raft_stats or {
            "rows": 0,
            "distractor_only": 0,
            "gold_in_prompt": 0,
            "gold_inserted": 0,
            "passages": 0,
            "truncated_passages": 0,
        }
        stats["rows"] += len(rows)
        stats["distractor_only"] += sum(r["raft"] == "distractors" for r in rows)
        stats["gold_in_prompt"] += sum(r["gold_in_prompt"] for r in rows)
        stats["gold_inserted"] += sum(r["gold_inserted"] for r in rows)
        stats["passages"] += sum(len(r["passages"]) for r in rows)
        stats["truncated_passages"] += sum(bool(p.get("truncated")) for r in rows for p in r["passages"])
        stats.update(
            k=k,
            train_prompt_budget=budget,
            rag_prompt_budget=self.rag.prompt_budget(),
            distractor_fraction=DISTRACTOR_FRACTION,
        )
        self._raft_stats = stats

    # ------------------------------------------------------------ build

    def _sft_config(self, workdir, phase, has_eval):
        config = super()._sft_config(workdir, phase, has_eval)
        if phase != "corpus":  # the corpus phase (finetune.objective) has its own, short pieces
            size = config.per_device_train_batch_size
            micro = micro_batch(size, self.train_budget())
            if micro < size:
                config.per_device_train_batch_size = config.per_device_eval_batch_size = micro
                config.gradient_accumulation_steps *= size // micro
            self._batching = {
                "micro_batch_size": micro,
                "gradient_accumulation_steps": config.gradient_accumulation_steps,
            }
        return config

    def _train(self, final: Path) -> dict:
        self._raft_stats, self._batching = None, None
        training = super()._train(final)
        if self._raft_stats is not None:
            training["raft"] = {**self._raft_stats, **(self._batching or {})}
            manifest = final / cache.MANIFEST
            if manifest.exists():  # the manifest is outside the checksums: the stats travel with the adapter
                meta = json.loads(manifest.read_text())
                meta.setdefault("training", {})["raft"] = training["raft"]
                cache.write_json_atomic(manifest, meta)
        return training

    def build(self) -> BuildInfo:
        if self._building:  # FinetuneSystem.build re-enters build() after waiting on another process's lock
            return super().build()
        self._building = True
        try:
            index_info = self.rag.build()
            info = super().build()
        finally:
            self._building = False
        adapter_cost = info.build_cost_s if info.cached else info.build_s
        info.build_cost_s = (
            None if adapter_cost is None or index_info.build_cost_s is None else adapter_cost + index_info.build_cost_s
        )
        info.index = index_info.index
        info.build_s += 0.0 if index_info.cached else index_info.build_s
        info.cached = info.cached and index_info.cached
        info.artifact_mb += index_info.artifact_mb
        info.notes = (
            index_info.notes + info.notes + _raft_note((info.training or {}).get("raft"), self.settings, self.name)
        )
        return info

    # ------------------------------------------------------------ evaluation: rag's prompts, this adapter

    def prompts(self, questions):
        # The budget the adapter was trained with, not rag's: the prompts it is scored on look like its training rows.
        return self.rag.prompts(questions, self.train_budget())


def _raft_note(stats: dict | None, settings, name: str) -> list[str]:
    if not stats or not stats.get("rows"):
        return []
    n = stats["rows"]
    note = (
        f"RAFT training: {stats['distractor_only']} of {n} training/validation prompts hold distractor passages only; the gold "
        f"document's passage is in {stats['gold_in_prompt']} ({stats['gold_inserted']} added where retrieval "
        f"missed it); {stats['passages'] / n:.1f} passages per prompt (k={stats['k']})"
    )
    rag_budget = stats.get("rag_prompt_budget", stats.get("eval_prompt_budget"))  # adapters trained before the rename
    if stats["train_prompt_budget"] < rag_budget:
        note += (
            f"; training and evaluation prompts are held to {stats['train_prompt_budget']} tokens by "
            f"finetune.max_length={settings.max_length} (rag alone allows {rag_budget}), "
            f"{stats['truncated_passages']} training passages were cut: raise finetune.max_length to give "
            f"{name} the passages rag gets"
        )
    return [note]
