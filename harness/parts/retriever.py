"""The run's retriever: the task's corpus chunked, embedded and indexed in FAISS (saved under indices/), and
the top-k passages for a question fitted into a prompt budget.

One per run (`ctx.retriever()`), handed to every system that retrieves (rag, oracle, rag+lora, rag+fewshot),
so the index is built or loaded once and the k-clamping warning is logged once. Retrieval runs before lm-eval
sees the prompt, so lm-eval scores the exact text the model reads, and the retrieval latency (embed + search
per question) is measured apart from the model's.
"""

from __future__ import annotations

from collections.abc import Callable

from harness import retrieval
from harness.errors import HarnessError
from harness.measure import PeakMemory, timer
from harness.parts.outputs import BuildInfo, Prompts
from harness.parts.prompt_builder import template
from harness.retrieval import Chunk, RetrievalIndex

Hits = list[tuple[Chunk, float]]  # chunks with their similarity to the question, best first


def check_question_fits(builder, q, render, budget: int) -> None:
    """The prompt without passages (system prompt and question, never cut) must fit `budget` tokens: the one
    check every passage-filling prompt (rag's ranked chunks, the oracle's gold documents) makes first."""
    base = builder.tokens(render([]))
    if base > budget:
        raise HarnessError(
            f"question '{q.id}' alone takes {base} tokens, more than the prompt budget {budget}; "
            "raise rag.max_prompt_tokens"
        )


def index_settings(rag) -> dict:
    """The `rag:` settings that make an index (its key): what the retriever and an incremental add both use."""
    keys = ("chunk_tokens", "overlap", "index", "nlist", "nprobe", "hnsw_m")
    return {k: getattr(rag, k) for k in keys}


class Retriever:
    def __init__(self, ctx):
        self.ctx = ctx
        self._index: RetrievalIndex | None = None
        self._info: dict | None = None  # what build_or_load said the first time, in this run

    # ------------------------------------------------------------ settings and the index

    def validate(self) -> None:
        # rag.overlap < rag.chunk_tokens is the schema's rule (spec.RagSpec); the template compiles here.
        template(self.ctx.spec.rag.context_template, "rag.context_template")

    def build(self) -> BuildInfo:
        """Build the index, or load it from indices/. Later calls in the same run return it as reused (0 s,
        cached, its recorded build time as the cost): what each further system spent on it."""
        if self._info is not None:
            self.ctx.memory.use("index")
            reused = {**self._info, "reused": True, "build_s": 0.0, "embed_s": 0.0}
            return BuildInfo(
                0.0, True, reused["size_mb"], None, index=reused, notes=self._notes(), build_cost_s=reused["built_s"]
            )
        rag, ctx = self.ctx.spec.rag, self.ctx
        embedder = ctx.embedder()
        settings = index_settings(rag)
        folder = ctx.indices_dir / ctx.spec.name
        with ctx.memory.loading("index"), PeakMemory() as mem, timer() as took:
            try:
                index, info = retrieval.build_or_load(ctx.data.corpus, embedder, settings, folder, log=ctx.log)
            except ValueError as e:
                raise HarnessError(f"rag: {e}") from None
        if not info["reused"]:
            # What serving holds is the saved index loaded back, not what building it left resident: load it
            # again (it was just saved) so that the index's memory is the same whether this run built it or not.
            ctx.memory.sizes.pop("index", None)
            del index
            with ctx.memory.loading("index"):
                index, _ = retrieval.build_or_load(ctx.data.corpus, embedder, settings, folder, log=ctx.log)
        self._index, self._info = index, info
        if rag.k > len(index.chunks):
            ctx.log(
                f"warning: rag.k is {rag.k} but the index has only {len(index.chunks)} chunks; k was clamped to "
                f"{len(index.chunks)} (set rag.k to {len(index.chunks)} or less, or add documents)"
            )
        build_s = 0.0 if info["reused"] else took()
        return BuildInfo(
            build_s,
            info["reused"],
            info["size_mb"],
            None if info["reused"] else mem.peak_mb,
            index=info,
            notes=self._notes(),
            build_cost_s=info["built_s"] if info["reused"] else build_s,
        )

    def _notes(self) -> list[str]:
        if self.ctx.data.corpus_is_fallback:
            return ["RAG indexes the training question-answer pairs (the task has no corpus)"]
        return []

    @property
    def index(self) -> RetrievalIndex:
        if self._index is None:
            self.build()
        self.ctx.memory.use("index")
        return self._index

    @property
    def k(self) -> int:
        """rag.k, clamped to the number of chunks (build() warns once when it clamps)."""
        return min(self.ctx.spec.rag.k, len(self.index.chunks))

    # ------------------------------------------------------------ passages within a budget

    def prompt_budget(self) -> int:
        """Tokens a whole prompt may take: the context length (or rag.max_prompt_tokens) minus the answer's room."""
        spec = self.ctx.spec
        return min(spec.rag.max_prompt_tokens, self.ctx.model_max_length()) - spec.evaluation.max_new_tokens

    def fit_passages(
        self, q, hits: Hits, budget: int | None = None, render: Callable[[list[dict]], str] | None = None
    ) -> list[dict]:
        """Keep passages, best first, while the prompt fits the budget; the last one may be cut. The system
        prompt and the question are never cut: a question that alone overflows the budget is an error.
        `render` makes the whole prompt from passages (default: the rag prompt, PromptBuilder.with_passages)."""
        builder, tok = self.ctx.prompts, self.ctx.tokenizer
        render = render or (lambda passages: builder.with_passages(q, passages))
        budget = self.prompt_budget() if budget is None else budget
        check_question_fits(builder, q, render, budget)
        kept: list[dict] = []
        for chunk, score in hits:
            p = {"doc_id": chunk.doc_id, "chunk": chunk.position, "score": round(float(score), 4), "text": chunk.text}
            trial = [*kept, p]
            used = builder.tokens(render(trial))
            if used <= budget:
                kept = trial
                continue
            ids = tok(chunk.text, add_special_tokens=False).input_ids
            room = budget - (used - len(ids))
            if room > 32:  # cut the passage to what fits, at a token boundary (re-checked: merges can differ)
                cut = {**p, "text": tok.decode(ids[: room - 8]), "truncated": True}
                if builder.tokens(render([*kept, cut])) <= budget:
                    kept.append(cut)
            break
        return kept

    # ------------------------------------------------------------ retrieval

    def top_k(self, questions) -> tuple[list[Hits], list[float]]:
        """The k best chunks per question (searched with its question turn), and each search's latency."""
        index, k = self.index, self.k
        queries = [self.ctx.prompts.user_text(q) for q in questions]
        return retrieval.retrieve(index, self.ctx.embedder(), queries, k)

    def retrieve(self, questions, budget: int | None = None) -> Prompts:
        """The rag prompt per question: the top-k passages that fit `budget` (default: prompt_budget())."""
        hits, latency = self.top_k(questions)
        texts, retrieved = [], []
        for q, h in zip(questions, hits):
            passages = self.fit_passages(q, h, budget)
            retrieved.append(passages)
            texts.append(self.ctx.prompts.with_passages(q, passages))
        return Prompts(texts, retrieved, latency, [[c.doc_id for c, _ in h] for h in hits])
