"""oracle: the question's own (gold) document in the prompt, as if retrieval were perfect.

It is the ceiling of what retrieval can add with this model and this prompt: the corpus is chunked and
embedded exactly as for `rag` (the run's one retriever and its index), but each question's passages come
from its gold document only, the chunks of that document most similar to the question, up to `rag.k`,
fitted into the same prompt budget. The gap between `rag` and `oracle` is what better retrieval could still
win; the gap between `oracle` and `prompt` is what the documents themselves are worth to the model.
"""

from __future__ import annotations

import time

from harness.errors import HarnessError
from harness.parts.outputs import BuildInfo, Prompts
from harness.systems import System, register_system


def gold_passages(q, index, query_vec, k: int) -> list[tuple]:
    """The gold document's chunks ranked by similarity to the question, best first, up to k."""
    if not index.chunk_ids_of(q.doc_id):
        raise HarnessError(f"oracle: question '{q.id}' names doc_id '{q.doc_id}', which has no chunks in the index")
    return index.rank_within(query_vec, q.doc_id, k)


@register_system("oracle")
class OracleSystem(System):
    kind = "oracle"

    def validate(self) -> None:
        self.ctx.retriever().validate()
        data, spec = self.ctx.data, self.ctx.spec
        if data.corpus_is_fallback:
            raise HarnessError(
                f"{spec.where('data.corpus')}: oracle needs a corpus of documents to give the gold one; "
                "this task has none (RAG falls back to indexing training answers), so oracle does not "
                "apply: add data.corpus or drop oracle from the systems"
            )
        # Test questions are evaluated; dev questions fit the calibration threshold. Both need their document.
        missing = [q for q in data.test + data.dev if not q.doc_id]
        if missing:
            raise HarnessError(
                f"oracle needs every test and dev question's doc_id (the document that answers it); "
                f"{len(missing)} have none, e.g. '{missing[0].id}': map data.questions.fields.doc_id "
                "to the field that names the document, or drop oracle from the systems"
            )
        known = {d.doc_id for d in data.corpus}
        unknown = sorted({q.doc_id for q in data.test + data.dev if q.doc_id not in known})
        if unknown:
            raise HarnessError(
                f"oracle: doc_id '{unknown[0]}' is not a document of the corpus ({len(unknown)} unknown ids)"
            )

    def build(self) -> BuildInfo:
        info = self.ctx.retriever().build()  # the index rag uses; built once per run
        info.notes = [
            *info.notes,
            "oracle gives each question the chunks of its own gold document (no retrieval errors): the ceiling "
            "of what retrieval can add",
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
            if not q.doc_id:
                raise HarnessError(f"oracle needs a doc_id for question '{q.id}'")
            t0 = time.perf_counter()
            hits = gold_passages(q, index, embedder.encode([query]), k)
            latency.append(time.perf_counter() - t0)
            passages = retriever.fit_passages(q, hits)
            retrieved.append(passages)
            ranked.append([c.doc_id for c, _ in hits])
            texts.append(ctx.prompts.with_passages(q, passages))
        return Prompts(texts, retrieved, latency, ranked)
