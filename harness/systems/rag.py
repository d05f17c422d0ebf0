"""rag: the task's corpus chunked, embedded, indexed in FAISS (saved under indices/), and the top-k
passages put into the user turn.

Retrieval runs before lm-eval sees the prompt, so lm-eval scores the exact text the model reads, and the
retrieval latency (embed + search per question) is measured apart from the model's.
"""

from __future__ import annotations

from harness.errors import HarnessError
from harness.measure import PeakMemory, timer
from harness.prompts import chat_prompt, template, user_turn
from harness.systems import BuildInfo, Prompts, System, register_system


@register_system("rag")
class RagSystem(System):
    kind = "rag"

    def validate(self) -> None:
        rag = self.ctx.spec.rag
        if rag.overlap >= rag.chunk_tokens:
            raise HarnessError(
                f"rag.overlap ({rag.overlap}) must be smaller than rag.chunk_tokens ({rag.chunk_tokens})"
            )
        template(rag.context_template, "rag.context_template")

    def build(self) -> BuildInfo:
        from harness import retrieval

        rag, ctx = self.ctx.spec.rag, self.ctx
        embedder = ctx.embedder()
        settings = {
            "chunk_tokens": rag.chunk_tokens,
            "overlap": rag.overlap,
            "index": rag.index,
            "nlist": rag.nlist,
            "nprobe": rag.nprobe,
            "hnsw_m": rag.hnsw_m,
        }
        with PeakMemory() as mem, timer() as took:
            try:
                index, info = retrieval.build_or_load(
                    ctx.data.corpus, embedder, settings, ctx.indices_dir / ctx.spec.name, log=ctx.log
                )
            except ValueError as e:
                raise HarnessError(f"rag: {e}") from None
        ctx.cache_put("rag_index", index)
        if rag.k > len(index.chunks) and not ctx.cache_get("rag_k_warned"):  # once per run, not once per system
            ctx.cache_put("rag_k_warned", True)
            ctx.log(
                f"warning: rag.k is {rag.k} but the index has only {len(index.chunks)} chunks; k was clamped to "
                f"{len(index.chunks)} (set rag.k to {len(index.chunks)} or less, or add documents)"
            )
        notes = (
            ["RAG indexes the training question-answer pairs (the task has no corpus)"]
            if ctx.data.corpus_is_fallback
            else []
        )
        build_s = 0.0 if info["reused"] else took()
        return BuildInfo(
            build_s,
            info["reused"],
            info["size_mb"],
            None if info["reused"] else mem.peak_mb,
            index=info,
            notes=notes,
            build_cost_s=info["built_s"] if info["reused"] else build_s,
        )

    def _index(self):
        index = self.ctx.cache_get("rag_index")
        if index is None:
            self.build()
            index = self.ctx.cache_get("rag_index")
        return index

    def user_text(self, q, passages: list[dict]) -> str:
        spec = self.ctx.spec
        return template(spec.rag.context_template, "rag.context_template").render(
            passages=passages, question=user_turn(spec.question_template, q)
        )

    def prompt_budget(self) -> int:
        """Tokens a whole prompt may take: the context length (or rag.max_prompt_tokens) minus the answer's room."""
        spec = self.ctx.spec
        return min(spec.rag.max_prompt_tokens, self.ctx.model_max_length()) - spec.evaluation.max_new_tokens

    def k(self, index) -> int:
        """rag.k, clamped to the number of chunks (build() warns once when it clamps)."""
        return min(self.ctx.spec.rag.k, len(index.chunks))

    def fit_passages(self, q, hits, budget: int | None = None) -> list[dict]:
        """Keep passages, best first, while the prompt fits the budget; the last one may be cut. The system
        prompt and the question are never cut: a question that alone overflows the budget is an error."""
        ctx, spec = self.ctx, self.ctx.spec
        tok = ctx.tokenizer
        budget = self.prompt_budget() if budget is None else budget
        base = len(tok(chat_prompt(tok, spec.system_prompt, self.user_text(q, []))).input_ids)
        if base > budget:
            raise HarnessError(
                f"question '{q.id}' alone takes {base} tokens, more than the prompt budget {budget}; "
                "raise rag.max_prompt_tokens"
            )
        kept: list[dict] = []
        for chunk, score in hits:
            p = {"doc_id": chunk.doc_id, "chunk": chunk.position, "score": round(float(score), 4), "text": chunk.text}
            trial = kept + [p]
            used = len(tok(chat_prompt(tok, spec.system_prompt, self.user_text(q, trial))).input_ids)
            if used <= budget:
                kept = trial
                continue
            ids = tok(chunk.text, add_special_tokens=False).input_ids
            room = budget - (used - len(ids))
            if room > 32:  # cut the passage to what fits, at a token boundary (re-checked: merges can differ)
                cut = {**p, "text": tok.decode(ids[: room - 8]), "truncated": True}
                if len(tok(chat_prompt(tok, spec.system_prompt, self.user_text(q, kept + [cut]))).input_ids) <= budget:
                    kept.append(cut)
            break
        return kept

    def prompts(self, questions, budget: int | None = None):
        from harness import retrieval

        ctx, spec = self.ctx, self.ctx.spec
        index = self._index()
        k = self.k(index)
        hits, latency = retrieval.retrieve(
            index, ctx.embedder(), [user_turn(spec.question_template, q) for q in questions], k
        )
        texts, retrieved = [], []
        for q, h in zip(questions, hits):
            passages = self.fit_passages(q, h, budget)
            retrieved.append(passages)
            texts.append(chat_prompt(ctx.tokenizer, spec.system_prompt, self.user_text(q, passages)))
        return Prompts(texts, retrieved, latency, [[c.doc_id for c, _ in h] for h in hits])
