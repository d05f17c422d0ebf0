"""rag's refresh in the documents-change scenario: a wave's chunks added to the existing FAISS index, not a
rebuild. The grown index is saved under the key of the whole corpus it now holds (harness.retrieval.index_key of
the earlier documents then the wave's, in that order), so the retriever of the next stage loads it as it would a
rebuilt one, and an interrupted scenario finds it in the cache.

A flat index (the default) grown this way holds the same vectors, ids and search results as one rebuilt from the
whole corpus (tests/test_scenario.py); an ivf index keeps the centroids trained on the first wave, as an
incremental add in production does.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from filelock import FileLock

from harness import retrieval
from harness.chunking import chunk_documents, validate_docs
from harness.parts.retriever import index_settings
from harness.retrieval import IndexCorrupt, RetrievalIndex, index_key, max_content_tokens


def folder_of(root: Path, rag, embedder, docs: Sequence) -> Path:
    return Path(root) / index_key(index_settings(rag), embedder.fingerprint, docs)


def extend_index(known: Sequence, wave: Sequence, embedder, rag, root: Path, log=print) -> dict:
    """The index of `known` + `wave`, grown from the saved index of `known` by adding `wave`'s chunks.
    Returns {"seconds": the add's time (or the one recorded when it was made), "reused": bool, "path"}."""
    validate_docs([*known, *wave])
    root = Path(root)
    before, after = folder_of(root, rag, embedder, known), folder_of(root, rag, embedder, [*known, *wave])
    with FileLock(str(after) + ".lock"):
        if after.exists():
            try:
                idx = RetrievalIndex.load(after)
                return {"seconds": idx.manifest.get("build_s"), "reused": True, "path": str(after)}
            except IndexCorrupt as e:
                log(f"warning: index at {after} failed its checksum ({e.reason}); adding the wave again")
        if not before.exists():  # the earlier stage's index (built, or grown, by the stage before)
            retrieval.build_or_load(known, embedder, index_settings(rag), root, log=log)
        t0 = time.perf_counter()
        idx = RetrievalIndex.load(before)
        chunks = chunk_documents(wave, embedder.tokenizer, rag.chunk_tokens, rag.overlap, max_content_tokens(embedder))
        vectors = embedder.encode([c.text for c in chunks])
        idx.index.add(vectors.astype("float32"))
        idx.chunks = [*idx.chunks, *chunks]
        idx.manifest["n_docs"] = len(known) + len(wave)
        idx.manifest["build_s"] = seconds = round(time.perf_counter() - t0, 3)
        idx.manifest["grown_from"] = {"index": before.name, "added_docs": len(wave), "added_chunks": len(chunks)}
        idx.save(after)
    return {"seconds": seconds, "reused": False, "path": str(after)}
