"""oracle: the question's gold document(s) in the prompt, whole where the prompt budget allows.

It is the ceiling of what retrieval can add with this model and this prompt: each question gets the text of
the document(s) that answer it, in document order, in the same prompt shape as `rag` (rag.context_template) and
within the same prompt budget (rag.max_prompt_tokens or the model's window, less the answer's room). Only what
the budget cannot hold is cut, from the end; each question records how much of its gold text it kept
(records.GoldCut) and the system how often the budget cut it (records.GoldContext), because an oracle that
holds a third of a long licence is not a ceiling for questions about the other two thirds.

The gap between `rag` and `oracle` is what better retrieval could still win; the gap between `oracle` and
`prompt` is what the documents themselves are worth to the model. `gold-doc-chunks` is the other question:
the gold document's chunks, ranked by the retriever's embedder, up to rag.k: retrieval that always finds the
right document but still has to pick the passages.
"""

from __future__ import annotations

import time

from harness.errors import HarnessError
from harness.parts.outputs import BuildInfo, Prompts
from harness.parts.retriever import check_question_fits
from harness.records import GoldContext, GoldCut
from harness.systems import System, register_system


def gold_documents(q, corpus: dict) -> list:
    """The documents that answer `q`, in document order (a question names one, `doc_id`)."""
    return [corpus[q.doc_id]]


def fit_documents(ctx, q, docs: list, budget: int) -> tuple[list[dict], dict]:
    """The gold documents as passages of the rag prompt, in order, whole while they fit `budget` tokens; the one
    that overflows is cut at a token boundary to what fits, and any after it left out. Returns the passages and
    the cut record (kept and total tokens and characters). The system prompt and question are never cut."""
    builder, tok = ctx.prompts, ctx.tokenizer
    render = lambda passages: builder.with_passages(q, passages)
    check_question_fits(builder, q, render, budget)
    kept: list[dict] = []
    cut = {"kept_tokens": 0, "total_tokens": 0, "kept_chars": 0, "total_chars": 0}
    full = True
    for doc in docs:
        ids = tok(doc.text, add_special_tokens=False).input_ids
        cut["total_tokens"] += len(ids)
        cut["total_chars"] += len(doc.text)
        if not full:
            continue
        p = {"doc_id": doc.doc_id, "chunk": 0, "score": 1.0, "text": doc.text}
        if builder.tokens(render([*kept, p])) <= budget:
            kept.append(p)
            cut["kept_tokens"] += len(ids)
            cut["kept_chars"] += len(doc.text)
            continue
        full = False
        # Start from the room the empty passage leaves, and shrink by what the re-encoded prompt still overflows
        # (decoding and encoding again can merge tokens differently at the cut).
        m = min(len(ids), budget - builder.tokens(render([*kept, {**p, "text": ""}])))
        text = ""
        while m > 0:
            text = tok.decode(ids[:m])
            over = builder.tokens(render([*kept, {**p, "text": text}])) - budget
            if over <= 0:
                break
            m -= over
        if m > 0:
            kept.append({**p, "text": text, "truncated": True})
            cut["kept_tokens"] += m
            cut["kept_chars"] += len(text)
    return kept, cut


class _GoldSystem(System):
    """What both gold-document systems check: a real corpus, and a known gold document for every question."""

    def validate(self) -> None:
        self.ctx.retriever().validate()  # the rag.context_template both render their passages with
        data, spec = self.ctx.data, self.ctx.spec
        if data.corpus_is_fallback:
            raise HarnessError(
                f"{spec.where('data.corpus')}: {self.name} needs a corpus of documents to give the gold one; "
                "this task has none (RAG falls back to indexing training answers), so it does not "
                f"apply: add data.corpus or drop {self.name} from the systems"
            )
        # Test questions are evaluated; dev questions fit the calibration threshold. Both need their document.
        missing = [q for q in data.test + data.dev if not q.doc_id]
        if missing:
            raise HarnessError(
                f"{self.name} needs every test and dev question's doc_id (the document that answers it); "
                f"{len(missing)} have none, e.g. '{missing[0].id}': map data.questions.fields.doc_id "
                f"to the field that names the document, or drop {self.name} from the systems"
            )
        known = {d.doc_id for d in data.corpus}
        unknown = sorted({q.doc_id for q in data.test + data.dev if q.doc_id not in known})
        if unknown:
            raise HarnessError(
                f"{self.name}: doc_id '{unknown[0]}' is not a document of the corpus ({len(unknown)} unknown ids)"
            )


@register_system("oracle")
class OracleSystem(_GoldSystem):
    kind = "oracle"

    def build(self) -> BuildInfo:
        return BuildInfo(
            notes=[
                "oracle gives each question its gold document, whole where the prompt budget allows, cut at the "
                "end where it does not: the ceiling of what retrieval can add"
            ]
        )

    def prompts(self, questions):
        ctx = self.ctx
        corpus = {d.doc_id: d for d in ctx.data.corpus}
        budget = ctx.retriever().prompt_budget()
        texts, passages, latency, ranked, cuts = [], [], [], [], []
        for q in questions:
            t0 = time.perf_counter()
            docs = gold_documents(q, corpus)  # what a perfect retriever costs: a lookup
            latency.append(time.perf_counter() - t0)
            kept, cut = fit_documents(ctx, q, docs, budget)
            passages.append(kept)
            ranked.append([d.doc_id for d in docs])
            cuts.append(cut)
            texts.append(ctx.prompts.with_passages(q, kept))
        return Prompts(texts, passages, latency, ranked, gold_cuts=cuts, budget_tokens=budget)


def gold_passages(q, index, query_vec, k: int) -> list[tuple]:
    """The gold document's chunks ranked by similarity to the question, best first, up to k."""
    if not index.chunk_ids_of(q.doc_id):
        raise HarnessError(
            f"gold-doc-chunks: question '{q.id}' names doc_id '{q.doc_id}', which has no chunks in the index"
        )
    return index.rank_within(query_vec, q.doc_id, k)


@register_system("gold-doc-chunks")
class GoldDocChunksSystem(_GoldSystem):
    """The gold document's rag.k chunks most similar to the question (the run's index and embedder)."""

    kind = "gold-doc-chunks"

    def build(self) -> BuildInfo:
        info = self.ctx.retriever().build()  # the index rag uses; built once per run
        info.notes = [
            *info.notes,
            "gold-doc-chunks gives each question the rag.k chunks of its gold document that the embedder ranks "
            "closest to it: retrieval that always finds the right document, not the whole document",
        ]
        return info

    def prompts(self, questions):
        ctx, retriever = self.ctx, self.ctx.retriever()
        index, embedder = retriever.index, ctx.embedder()
        k = retriever.k
        queries = [ctx.prompts.user_text(q) for q in questions]
        if queries:
            embedder.encode([queries[0]])  # warm-up, as rag's retrieval does
        texts, retrieved, latency, ranked = [], [], [], []
        for q, query in zip(questions, queries):
            t0 = time.perf_counter()
            hits = gold_passages(q, index, embedder.encode([query]), k)
            latency.append(time.perf_counter() - t0)
            passages = retriever.fit_passages(q, hits)
            retrieved.append(passages)
            ranked.append([c.doc_id for c, _ in hits])
            texts.append(ctx.prompts.with_passages(q, passages))
        return Prompts(texts, retrieved, latency, ranked)


# ---------------------------------------------------------------- what the cuts add up to


def gold_context(cuts: list[GoldCut], budget: int | None) -> GoldContext:
    """oracle: how often, and how much, the prompt budget cut the gold documents."""
    n = len(cuts)
    n_cut = sum(c.cut for c in cuts)
    return GoldContext(
        n=n,
        cut=n_cut,
        cut_share=round(n_cut / n, 4),
        kept_token_share=round(sum(c.kept_tokens / max(c.total_tokens, 1) for c in cuts) / n, 4),
        kept_char_share=round(sum(c.kept_chars / max(c.total_chars, 1) for c in cuts) / n, 4),
        total_tokens_mean=round(sum(c.total_tokens for c in cuts) / n, 1),
        budget_tokens=budget or 0,
    )


def gold_context_note(g: GoldContext) -> str:
    if not g.cut:
        return f"every question's gold document fitted the prompt budget ({g.budget_tokens} tokens) whole"
    return (
        f"the prompt budget ({g.budget_tokens} tokens) cut the gold document for {g.cut} of {g.n} questions "
        f"({g.cut_share:.0%}); on average a prompt held {g.kept_token_share:.0%} of its gold document's tokens "
        f"(documents average {g.total_tokens_mean:.0f} tokens): for cut questions oracle is not a ceiling"
    )
