"""rag+lora, rag+qlora, rag+dora: a PEFT adapter trained to answer *with retrieved passages in the
prompt*, then evaluated with retrieval, as RAFT (Zhang et al., 2024, "Retrieval-Augmented Fine-Tuning")
does. A composition: the run's Retriever makes the training rows (below) and the evaluation prompts; the
AdapterTrainer trains the adapter on those rows with the supervised recipe.

Training prompts are built by the same machinery `rag` evaluates with (the run's index, its context
template, its prompt budget), for each training question:
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
they get at most that many tokens, and evaluation prompts get the same budget: on the dev split, the adapter
scored on rag's longer prompts did no better and cost more (see docs/performance.md, "rag+lora prompt budget"). When
finetune.max_length leaves less than rag's budget, the note says so: rag+lora then sees fewer passage tokens
than rag. The cache key holds every retrieval setting, so the adapter is separate from plain `lora` and
retrains when retrieval changes.
"""

from __future__ import annotations

import random
from functools import cached_property

from harness.errors import HarnessError
from harness.parts.adapter_trainer import AdapterTrainer
from harness.parts.outputs import BuildInfo, Prompts
from harness.parts.trainers import SupervisedRecipe
from harness.systems import AdapterSystem, register_system
from harness.systems.finetune import METHODS

DISTRACTOR_FRACTION = 0.2  # RAFT's (1 - P): share of training prompts with distractor passages only
RAFT_VERSION = 1  # bump when the way training prompts are made changes, so cached adapters retrain
_MAX_EXTRA_DEPTH = 256  # retrieval depth beyond k, to find k distractors behind a long gold document
# Tokens per forward/backward pass, about what plain lora's batches of short prompts hold. Prompts with
# passages are several times longer, and at finetune.batch_size rows a pass the activations and logits ran
# out of memory (see docs/performance.md, "rag+lora micro-batches"). Larger batches are split into
# micro-batches with gradient accumulation: same optimiser steps, same batch.
MICRO_BATCH_TOKENS = 1024


def micro_batch(batch_size: int, prompt_tokens: int) -> int:
    """The largest divisor of batch_size whose rows hold at most MICRO_BATCH_TOKENS tokens (at least 1)."""
    fit = max(1, MICRO_BATCH_TOKENS // max(prompt_tokens, 1))
    return max(d for d in range(1, batch_size + 1) if batch_size % d == 0 and d <= fit)


class RaftRows:
    """The supervised recipe's rows for rag+lora: prompts with retrieved passages, RAFT-style, and the
    statistics of what went into them (written into the adapter's training record as `raft`)."""

    def __init__(self, ctx, name: str, settings):
        self.ctx, self.name, self.settings = ctx, name, settings
        self.stats: dict | None = None
        self.batching: dict | None = None

    def start(self) -> None:
        self.stats, self.batching = None, None

    def budget(self) -> int:
        """Prompt tokens a training row may take: rag's budget, but never so many that trl would cut the answer."""
        tok, data = self.ctx.tokenizer, self.ctx.data
        answers = {a for q in data.train + data.dev for a in q.answers[:1]}
        answer_tokens = max(
            (len(tok(a + (tok.eos_token or ""), add_special_tokens=False).input_ids) for a in answers), default=1
        )
        return min(self.ctx.retriever().prompt_budget(), self.settings.max_length - answer_tokens - 1)

    def distractor_ids(self, questions) -> set[str]:
        """The seeded DISTRACTOR_FRACTION of questions (with a gold document) whose prompts get distractors only."""
        eligible = sorted(q.id for q in questions if q.doc_id)
        n = round(DISTRACTOR_FRACTION * len(eligible))
        return set(random.Random(f"raft:{self.ctx.spec.seed}").sample(eligible, n))

    def raft_rows(self, questions) -> list[dict]:
        """Training rows with what went into each: `raft` is 'gold' (retrieved, gold passage ensured),
        'distractors' (gold document removed) or 'retrieved' (no gold document to manage)."""
        ctx = self.ctx
        if not questions:
            return []
        retriever, prompts = ctx.retriever(), ctx.prompts
        index, k, budget = retriever.index, retriever.k, self.budget()
        fallback = ctx.data.corpus_is_fallback
        distract = set() if fallback else self.distractor_ids(questions)
        longest = max(len(index.chunk_ids_of(d)) for d in {c.doc_id for c in index.chunks})
        depth = min(len(index.chunks), k + min(longest, _MAX_EXTRA_DEPTH))
        vecs = ctx.embedder().encode([prompts.user_text(q) for q in questions])
        rows = []
        for q, vec, hits in zip(questions, vecs, index.search(vecs, depth)):
            base = prompts.tokens(prompts.with_passages(q, []))
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
            passages = retriever.fit_passages(q, chosen, budget)
            if kind == "gold" and not any(p["doc_id"] == own for p in passages):
                # The budget dropped the gold passage from the end: put it first instead.
                gold = [h for h in chosen if h[0].doc_id == own]
                passages = retriever.fit_passages(q, gold + [h for h in chosen if h[0].doc_id != own], budget)
            rows.append(
                {
                    "prompt": prompts.with_passages(q, passages),
                    "completion": q.answers[0],
                    "id": q.id,
                    "raft": kind,
                    "gold_inserted": inserted,
                    "gold_in_prompt": own is not None and any(p["doc_id"] == own for p in passages),
                    "passages": passages,
                }
            )
        return rows

    def rows(self, questions) -> list[dict]:
        rows = self.raft_rows(questions)
        if rows:
            self.stats = raft_stats(rows, self.stats)
            self.stats.update(
                k=self.ctx.retriever().k,
                train_prompt_budget=self.budget(),
                rag_prompt_budget=self.ctx.retriever().prompt_budget(),
                distractor_fraction=DISTRACTOR_FRACTION,
            )
        return [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows]

    def fit_batch(self, config) -> None:
        size = config.per_device_train_batch_size
        micro = micro_batch(size, self.budget())
        if micro < size:
            config.per_device_train_batch_size = config.per_device_eval_batch_size = micro
            config.gradient_accumulation_steps *= size // micro
        self.batching = {"micro_batch_size": micro, "gradient_accumulation_steps": config.gradient_accumulation_steps}

    def record(self) -> dict:
        return {} if self.stats is None else {"raft": {**self.stats, **(self.batching or {})}}


def raft_stats(rows: list[dict], so_far: dict | None = None) -> dict:
    """Counts of what went into the training prompts, added to those of earlier rows (train, then dev)."""
    stats = dict(so_far or {})
    for key in ("rows", "distractor_only", "gold_in_prompt", "gold_inserted", "passages", "truncated_passages"):
        stats.setdefault(key, 0)
    stats["rows"] += len(rows)
    stats["distractor_only"] += sum(r["raft"] == "distractors" for r in rows)
    stats["gold_in_prompt"] += sum(r["gold_in_prompt"] for r in rows)
    stats["gold_inserted"] += sum(r["gold_inserted"] for r in rows)
    stats["passages"] += sum(len(r["passages"]) for r in rows)
    stats["truncated_passages"] += sum(bool(p.get("truncated")) for r in rows for p in r["passages"])
    return stats


@register_system(*(f"rag+{m}" for m in METHODS))
class RagFinetuneSystem(AdapterSystem):
    kind = "rag+finetune"

    @property
    def method(self) -> str:
        return self.name.split("+", 1)[1]

    @cached_property
    def raft(self) -> RaftRows:
        return RaftRows(self.ctx, self.name, self.ctx.spec.finetune.for_method(self.method))

    @cached_property
    def adapter(self) -> AdapterTrainer:
        recipe = SupervisedRecipe(self.raft)
        return AdapterTrainer(self.ctx, self.name, self.method, recipe, key_extra=self.key_extra, folder_prefix="rag-")

    def key_extra(self) -> dict:
        spec = self.ctx.spec
        return {
            "rag": spec.rag.model_dump(mode="json"),
            "embedder": self.ctx.embedder().fingerprint,
            "max_new_tokens": spec.evaluation.max_new_tokens,
            "raft": {"distractor_fraction": DISTRACTOR_FRACTION, "version": RAFT_VERSION},
        }

    def validate(self) -> None:
        super().validate()
        self.ctx.retriever().validate()

    def build(self) -> BuildInfo:
        index_info = self.ctx.retriever().build()
        info = self.adapter.build()
        adapter_cost = info.build_cost_s if info.cached else info.build_s
        info.build_cost_s = (
            None if adapter_cost is None or index_info.build_cost_s is None else adapter_cost + index_info.build_cost_s
        )
        info.index = index_info.index
        info.build_s += 0.0 if index_info.cached else index_info.build_s
        info.cached = info.cached and index_info.cached
        info.artifact_mb += index_info.artifact_mb
        info.notes = (
            index_info.notes
            + info.notes
            + _raft_note((info.training or {}).get("raft"), self.raft.settings, self.name)
        )
        return info

    # ------------------------------------------------------------ evaluation: rag's prompts, this adapter

    def prompts(self, questions) -> Prompts:
        # The budget the adapter was trained with, not rag's: the prompts it is scored on look like its training rows.
        return self.ctx.retriever().retrieve(questions, self.raft.budget())


def _raft_note(stats: dict | None, settings, name: str) -> list[str]:
    if not stats or not stats.get("rows"):
        return []
    n = stats["rows"]
    note = (
        f"RAFT training: {stats['distractor_only']} of {n} training/validation prompts hold distractor passages "
        f"only; the gold document's passage is in {stats['gold_in_prompt']} ({stats['gold_inserted']} added where "
        f"retrieval missed it); {stats['passages'] / n:.1f} passages per prompt (k={stats['k']})"
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
