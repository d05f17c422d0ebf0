"""FAISS index choices on a synthetic corpus: build time, per-query search latency, recall@10 vs exact search.

    .venv/bin/python bench/index_bench.py            # 100,000 chunks x 384 dims, 1,000 queries (~2-3 min, 2 cores)
    .venv/bin/python bench/index_bench.py --n 20000  # quicker

The vectors stand in for MiniLM chunk embeddings: 384 dims, L2-normalised float32, drawn from a seeded
Gaussian mixture of 200 centres, each cluster spread along its own 32-dim subspace (real corpora cluster by
topic and lie near a low-dimensional manifold, which is what IVF and HNSW exploit). The queries come from
the same mixture but are not in the corpus. Every index is built by `harness.retrieval.build_faiss_index`,
the function the rag system uses, so `rag.index` / `rag.nprobe` / `rag.hnsw_m` in a task file mean the same
as here. Latency is one query at a time on one faiss thread, as `retrieve` searches a user's question;
exact top-10 comes from the flat index. Writes bench/index_results.json beside this script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness.retrieval import build_faiss_index

K = 10


def synthetic(
    n: int, n_queries: int, dim: int, centres: int, latent: int, spread: float, noise: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded mixture: each cluster spreads along its own `latent`-dim subspace around a unit centre, plus
    a little isotropic noise, then every vector is normalised. (Pure isotropic noise in 384 dims makes
    neighbours within a cluster arbitrary and every index look perfect; text embeddings lie near a
    low-dimensional manifold instead.)"""
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((centres, dim)).astype(np.float32)
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    basis = rng.standard_normal((centres, latent, dim)).astype(np.float32) / np.sqrt(dim)
    weights = rng.dirichlet(np.full(centres, 2.0))  # uneven cluster sizes, as topics in a corpus are

    def draw(m: int) -> np.ndarray:
        out = np.empty((m, dim), dtype=np.float32)
        for s in range(0, m, 10_000):  # in blocks, to keep the (block, latent, dim) gather small
            e = min(s + 10_000, m)
            c = rng.choice(centres, size=e - s, p=weights)
            z = rng.standard_normal((e - s, latent)).astype(np.float32) * spread
            x = (
                mu[c]
                + np.einsum("ml,mld->md", z, basis[c])
                + rng.standard_normal((e - s, dim), dtype=np.float32) * noise
            )
            out[s:e] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out

    return draw(n), draw(n_queries)


def one_at_a_time(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.empty((len(queries), k), dtype=np.int64)
    lat = np.empty(len(queries))
    index.search(queries[:1], k)  # warm-up
    for i in range(len(queries)):
        t0 = time.perf_counter()
        _, ids[i] = index.search(queries[i : i + 1], k)
        lat[i] = time.perf_counter() - t0
    return ids, lat


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="chunks in the corpus")
    ap.add_argument("--queries", type=int, default=1_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--centres", type=int, default=200)
    ap.add_argument("--latent", type=int, default=32, help="dimensions each cluster spreads along")
    ap.add_argument("--spread", type=float, default=0.5, help="scale of the spread along those dimensions")
    ap.add_argument("--noise", type=float, default=0.02, help="isotropic per-dimension noise")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="faiss threads while searching; 1 is what harness.retrieval.retrieve uses per question",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "index_results.json")
    a = ap.parse_args()

    import faiss
    import torch

    t0 = time.perf_counter()
    x, q = synthetic(a.n, a.queries, a.dim, a.centres, a.latent, a.spread, a.noise, a.seed)
    print(
        f"{a.n:,} x {a.dim} vectors, {a.queries:,} queries ({a.centres} centres, {a.latent}-dim spread {a.spread}, "
        f"noise {a.noise}) made in {time.perf_counter() - t0:.1f} s; faiss {faiss.__version__}; "
        f"build on {torch.get_num_threads()} threads, search on {a.threads}"
    )

    nlist = round(4 * a.n**0.5)
    configs = [  # (label, kind, build kwargs, search-time parameter to set, its values)
        ("flat", "flat", {}, None, [None]),
        ("hnsw M=32", "hnsw", {"hnsw_m": 32}, "efSearch", [64, 128]),
        (f"ivf nlist={nlist}", "ivf", {"nlist": nlist, "seed": a.seed}, "nprobe", [8, 16, 32]),
    ]
    rows, exact = [], None
    for label, kind, kwargs, param, values in configs:
        t0 = time.perf_counter()
        index = build_faiss_index(x, kind, **kwargs)
        build_s = time.perf_counter() - t0
        if kind == "flat":
            _, exact = index.search(q, K)  # batched: the ground truth
        faiss.omp_set_num_threads(a.threads)
        for v in values:
            if param == "efSearch":
                index.hnsw.efSearch = v
            elif param == "nprobe":
                index.nprobe = v
            ids, lat = one_at_a_time(index, q, K)
            rows.append(
                {
                    "index": label,
                    "param": f"{param}={v}" if param else "exact",
                    "build_s": round(build_s, 2),
                    "search_ms_mean": round(1e3 * lat.mean(), 3),
                    "search_ms_p95": round(1e3 * float(np.percentile(lat, 95)), 3),
                    f"recall_at_{K}": round(recall(ids, exact), 4),
                }
            )
            print(f"  done: {label} {rows[-1]['param']}", flush=True)

    head = f"{'index':<18}{'search param':<14}{'build s':>9}{'mean ms':>10}{'p95 ms':>10}{'recall@10':>11}"
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        print(
            f"{r['index']:<18}{r['param']:<14}{r['build_s']:>9.2f}{r['search_ms_mean']:>10.3f}"
            f"{r['search_ms_p95']:>10.3f}{r[f'recall_at_{K}']:>11.4f}"
        )
    print("(build time is shared by the rows of one index; latency is one query at a time)")
    result = {
        "n": a.n,
        "dim": a.dim,
        "queries": a.queries,
        "k": K,
        "centres": a.centres,
        "latent": a.latent,
        "spread": a.spread,
        "noise": a.noise,
        "seed": a.seed,
        "faiss": faiss.__version__,
        "build_threads": torch.get_num_threads(),
        "search_threads": a.threads,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "results": rows,
    }
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
