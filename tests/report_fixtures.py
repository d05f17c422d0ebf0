"""A fake run directory for the report tests (tests/test_report.py, tests/test_report_browser.py).

make_results / make_samples / write_run build a small run with every section filled, a failed system and
markup injected into a question and an answer; legal_qa_run builds a realistic legal-qa run (prompt, lora,
rag) whose figures are computed from its own samples, for the screenshot in docs/.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

from harness.constants import SIGNIFICANCE_LEVEL
from harness.stats import holm

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
DATA_URL = "https://choosealicense.com/licenses/mit/"


def _m(v, lo, hi):
    return {"value": v, "ci_low": lo, "ci_high": hi}


def _vb(diff, p, n=20, baseline="category_prior", p_holm=None):
    """A system against the strongest baseline, as baselines.vs_best_baseline writes it: `p_holm` is the
    Holm-adjusted p over the run's systems (by default, a family of one: the raw p), and decides."""
    p_holm = p if p_holm is None else p_holm
    significant = p_holm < SIGNIFICANCE_LEVEL
    return {
        "baseline": baseline,
        "metric": "accuracy",
        "diff": diff,
        "p_value": p,
        "test": "mcnemar",
        "n": n,
        "p_holm": p_holm,
        "significant": significant,
        "beats": significant and diff > 0,
    }


def comparisons(rows, n=20, test="mcnemar", metric="accuracy") -> list[dict]:
    """Paired comparisons from (a, b, diff, p) as results.comparisons writes them: Holm-adjusted over the
    pairs of the metric, and significant on the adjusted p."""
    adjusted = holm([p for _, _, _, p in rows])
    return [
        {
            "a": a,
            "b": b,
            "metric": metric,
            "diff": diff,
            "p_value": p,
            "test": test,
            "n": n,
            "p_holm": p_holm,
            "significant": p_holm < SIGNIFICANCE_LEVEL,
        }
        for (a, b, diff, p), p_holm in zip(rows, adjusted)
    ]


def make_results(n_test: int = 20) -> dict:
    base = {"error": None, "cached": False, "training": None, "retrieval": None, "retrieval_latency_s": None}
    return {
        "task": "legal-qa",
        "run_id": "20261126-103000-1a2b",
        "created": "2026-11-26T10:30:00+00:00",
        "answer_format": "yes-no",
        "headline_metric": "accuracy",
        "n_test": n_test,
        "seed": 0,
        "systems": {
            "prompt": {
                **base,
                "kind": "prompt",
                "status": "ok",
                "metrics": {
                    "accuracy": _m(0.55, 0.35, 0.75),
                    "auc": _m(0.52, 0.3, 0.74),
                    "calibrated_accuracy": _m(0.6, 0.4, 0.8),
                },
                "latency_s": {"p50": 0.09, "p95": 0.2, "mean": 0.11},
                "peak_memory_mb": 1400.0,
                "build_s": 0.0,
                "artifact_mb": 0.0,
                "vs_best_baseline": _vb(-0.2, 0.001, p_holm=0.003),
            },
            "lora": {
                **base,
                "kind": "finetune",
                "status": "ok",
                "metrics": {
                    "accuracy": _m(0.8, 0.6, 0.95),
                    "auc": _m(0.81, 0.62, 0.96),
                    "calibrated_accuracy": _m(0.78, 0.58, 0.93),
                },
                "latency_s": {"p50": 0.1, "p95": 0.25, "mean": 0.12},
                "peak_memory_mb": 1800.0,
                "build_s": 81.0,
                "artifact_mb": 3.6,
                "vs_best_baseline": _vb(0.05, 0.5, p_holm=0.5),
                "training": {
                    "method": "lora",
                    "seconds": 81.0,
                    "tokens_per_s": 950.0,
                    "peak_memory_mb": 2600.0,
                    "trainable_params": 921600,
                    "total_params": 135436800,
                    "epochs": 1,
                    "steps": 70,
                    "loss_curve": [
                        {
                            "step": s,
                            "train_loss": 2.0 / (1 + s / 20),
                            "eval_loss": (2.1 / (1 + s / 25)) if s % 20 == 0 else None,
                        }
                        for s in range(10, 80, 10)
                    ],
                },
            },
            "rag": {
                **base,
                "kind": "rag",
                "status": "ok",
                "metrics": {
                    "accuracy": _m(0.85, 0.7, 0.95),
                    "auc": _m(0.88, 0.72, 0.97),
                    "calibrated_accuracy": _m(0.83, 0.66, 0.95),
                },
                "latency_s": {"p50": 0.31, "p95": 0.55, "mean": 0.34},
                "peak_memory_mb": 2100.0,
                "build_s": 0.0,
                "build_cost_s": 12.5,
                "cached": True,
                "artifact_mb": 1.2,
                "vs_best_baseline": _vb(0.1, 0.01, p_holm=0.02),
                "retrieval": {"k": 4, "recall_at_k": 0.82, "mrr": 0.7},
                "retrieval_latency_s": {"p50": 0.02, "p95": 0.04, "mean": 0.025},
            },
            "dora": {
                **base,
                "kind": "finetune",
                "status": "failed",
                "error": "CUDA out of memory: tried to allocate 2.00 GiB",
                "metrics": {},
                "latency_s": None,
                "peak_memory_mb": None,
                "build_s": None,
                "artifact_mb": None,
                "vs_best_baseline": None,
            },
        },
        "baselines": {
            "majority": {
                "accuracy": 0.5,
                "metrics": {"accuracy": _m(0.5, 0.3, 0.7)},
                "description": "always answers the training split's majority answer (No)",
            },
            "category_prior": {
                "accuracy": 0.75,
                "metrics": {"accuracy": _m(0.75, 0.55, 0.9)},
                "description": "answers each category's majority answer in the training split",
            },
        },
        "comparisons": comparisons(
            [("rag", "lora", 0.05, 0.4), ("rag", "prompt", 0.3, 0.001), ("lora", "prompt", 0.25, 0.01)]
        ),
        "settings": {"threads": 2, "batch_size": 1, "dtype": "float32", "warmup": 2, "device": "cpu"},
    }


def make_samples(n: int = 20, systems=("prompt", "lora", "rag"), passage_chars: int = 300) -> list[dict]:
    docs = ["mit", "gpl-3.0", "apache-2.0", "bsd-3-clause"]
    out = []
    for i in range(n):
        gold = "Yes" if i % 2 else "No"
        question = f"Does the {docs[i % 4]} license permit commercial use (case {i})?"
        if i == 3:
            question = f"Is this markup harmless {IMG}?"
        for j, system in enumerate(systems):
            wrong = (i + j) % (3 + j) == 0 or i == 7
            pred = ("No" if gold == "Yes" else "Yes") if wrong else gold
            if i == 5 and system == "prompt":
                pred, wrong = SCRIPT, True
            retrieved = None
            if system == "rag":
                text = f"Passage about {docs[(i + 1) % 4]} terms; see {DATA_URL}. " + "lorem ipsum " * 400
                retrieved = [
                    {"doc_id": docs[(i + k) % 4], "chunk": k, "score": 0.9 - 0.1 * k, "text": text[:passage_chars]}
                    for k in range(4)
                ]
            out.append(
                {
                    "system": system,
                    "id": f"q{i:03d}",
                    "question": question,
                    "gold": gold,
                    "golds": [gold],
                    "prediction": pred,
                    "correct": not wrong,
                    "latency_s": 0.1 + 0.01 * j,
                    "prompt_tokens": 60 + i,
                    "category": "permissions/commercial-use",
                    "doc_id": docs[i % 4],
                    "margin": 1.5 if pred == "Yes" else -1.5,
                    "scores": {"accuracy": float(not wrong)},
                    "retrieved": retrieved,
                }
            )
    return out


MANIFEST = {
    "model": {"name": "HuggingFaceTB/SmolLM2-135M-Instruct", "revision": "abc123"},
    "task": {"name": "legal-qa", "hash": "sha256:1f2e"},
    "data_hash": "sha256:9a8b",
    "versions": {"torch": "2.13.0", "transformers": "5.24.0", "peft": "0.21.0"},
    "machine": {"cpu": "AMD EPYC 7B13", "cores": 16, "ram_gb": 128, "gpu": None, "os": "Linux 6.8"},
    "seed": 0,
    "command": ["harness", "run", "tasks/legal-qa.yaml", "--seed", "0"],
}


def write_run(folder: Path, results=None, samples=None, manifest=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results or make_results()), encoding="utf-8")
    lines = samples if samples is not None else make_samples()
    (folder / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in lines), encoding="utf-8")
    (folder / "manifest.json").write_text(json.dumps(manifest or MANIFEST), encoding="utf-8")
    return folder


# ---- a realistic legal-qa run (for the screenshot in docs/) ----

# (doc_id, name, the topics the licence answers "Yes" to); roughly choosealicense.com's metadata
LICENCES = [
    ("mit", "MIT License", {"commercial-use", "include-copyright", "liability", "private-use"}),
    (
        "apache-2.0",
        "Apache License 2.0",
        {
            "commercial-use",
            "include-copyright",
            "document-changes",
            "patent-use",
            "trademark-use",
            "liability",
            "private-use",
        },
    ),
    (
        "gpl-3.0",
        "GNU General Public License v3.0",
        {
            "commercial-use",
            "disclose-source",
            "include-copyright",
            "same-license",
            "document-changes",
            "patent-use",
            "liability",
            "private-use",
        },
    ),
    (
        "agpl-3.0",
        "GNU Affero General Public License v3.0",
        {
            "commercial-use",
            "disclose-source",
            "include-copyright",
            "same-license",
            "document-changes",
            "network-use-disclose",
            "patent-use",
            "liability",
            "private-use",
        },
    ),
    (
        "lgpl-2.1",
        "GNU Lesser General Public License v2.1",
        {
            "commercial-use",
            "disclose-source",
            "include-copyright",
            "same-license",
            "document-changes",
            "liability",
            "private-use",
        },
    ),
    (
        "mpl-2.0",
        "Mozilla Public License 2.0",
        {
            "commercial-use",
            "disclose-source",
            "include-copyright",
            "same-license",
            "patent-use",
            "trademark-use",
            "liability",
            "private-use",
        },
    ),
    (
        "bsd-3-clause",
        'BSD 3-Clause "New" or "Revised" License',
        {"commercial-use", "include-copyright", "liability", "private-use"},
    ),
    ("bsl-1.0", "Boost Software License 1.0", {"commercial-use", "include-copyright", "liability", "private-use"}),
    ("isc", "ISC License", {"commercial-use", "include-copyright", "liability", "private-use"}),
    ("unlicense", "The Unlicense", {"commercial-use", "liability", "private-use"}),
    (
        "epl-2.0",
        "Eclipse Public License 2.0",
        {
            "commercial-use",
            "disclose-source",
            "include-copyright",
            "same-license",
            "patent-use",
            "liability",
            "private-use",
        },
    ),
]

QUESTIONS = {
    "commercial-use": ("permissions", "May software under the {name} be used for commercial purposes?"),
    "private-use": ("permissions", "Can material under the {name} be used and modified in private?"),
    "patent-use": ("permissions", "Does the {name} expressly grant the contributors' patent rights?"),
    "disclose-source": (
        "conditions",
        "When software under the {name} is distributed, does the licence require the source code to be disclosed?",
    ),
    "include-copyright": (
        "conditions",
        "When redistributing material under the {name}, must I include the licence text and the copyright notice?",
    ),
    "same-license": (
        "conditions",
        "Must modifications of material under the {name} be released under the same licence?",
    ),
    "document-changes": (
        "conditions",
        "Is a licensee who alters the licensed material obliged by the {name} to document those changes?",
    ),
    "network-use-disclose": (
        "conditions",
        "Does the {name} treat users interacting with the software over a "
        "network as a distribution that triggers source disclosure?",
    ),
    "trademark-use": (
        "limitations",
        "Does the {name} explicitly withhold any right to use the licensor's trademarks?",
    ),
    "liability": ("limitations", "Does the {name} limit the liability of the licensor?"),
}

PASSAGES = {
    "commercial-use": "Permission is hereby granted, free of charge, to any person obtaining a copy of this "
    "software ... to use, copy, modify, merge, publish, distribute, sublicense, and/or sell "
    "copies of the Software",
    "disclose-source": "You must make the Corresponding Source available to anyone who possesses the object code, "
    "under the terms of this License",
    "include-copyright": "The above copyright notice and this permission notice shall be included in all copies "
    "or substantial portions of the Software.",
    "same-license": "You may convey a work based on the Program ... provided that the work is released under "
    "this License and any conditions added under section 7.",
    "patent-use": "Each Contributor hereby grants to You a perpetual, worldwide, non-exclusive, no-charge, "
    "royalty-free, irrevocable patent license to make, have made, use, offer to sell, sell ...",
    "private-use": "Permission is hereby granted ... to deal in the Software without restriction, including "
    "without limitation the rights to use, copy, modify ...",
    "document-changes": "You must cause any modified files to carry prominent notices stating that You changed "
    "the files",
    "network-use-disclose": "if you modify the Program, your modified version must prominently offer all users "
    "interacting with it remotely through a computer network ... an opportunity to "
    "receive the Corresponding Source",
    "trademark-use": "This License does not grant permission to use the trade names, trademarks, service marks, "
    "or product names of the Licensor",
    "liability": "IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER "
    "LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE ...",
}

SKILL = {"prompt": 0.62, "lora": 0.8, "rag": 0.88}  # chance of answering correctly
LATENCY = {"prompt": 0.19, "lora": 0.21, "rag": 0.86}  # median seconds per question


def _bootstrap(values: list[float], seed: int, n_boot: int = 1000) -> dict:
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choice(values) for _ in range(n)) / n for _ in range(n_boot))
    return {"value": sum(values) / n, "ci_low": means[int(0.025 * n_boot)], "ci_high": means[int(0.975 * n_boot)]}


def _auc(labels: list[int], scores: list[float]) -> float:
    pos = [s for y, s in zip(labels, scores) if y]
    neg = [s for y, s in zip(labels, scores) if not y]
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def _mcnemar(a: list[bool], b: list[bool]) -> float:
    b01 = sum(1 for x, y in zip(a, b) if not x and y)
    b10 = sum(1 for x, y in zip(a, b) if x and not y)
    n = b01 + b10
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b01, b10) + 1)) / 2**n
    return min(1.0, 2 * tail)


def _percentiles(values: list[float]) -> dict:
    s = sorted(values)
    return {"p50": s[len(s) // 2], "p95": s[min(len(s) - 1, int(0.95 * len(s)))], "mean": sum(s) / len(s)}


def legal_qa_samples(seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for doc_id, name, yes in LICENCES:
        for topic, (group, template) in QUESTIONS.items():
            gold = "Yes" if topic in yes else "No"
            qid = f"{doc_id}--{group}--{topic}"
            for system in ("prompt", "lora", "rag"):
                right = rng.random() < SKILL[system]
                pred = gold if right else ("No" if gold == "Yes" else "Yes")
                margin = round((1 if pred == "Yes" else -1) * rng.uniform(0.1, 2.5), 3)
                retrieved = None
                if system == "rag":
                    others = [d for d, _, _ in LICENCES if d != doc_id]
                    docs = rng.sample(others, 3)
                    if rng.random() < 0.9:  # the licence asked about is retrieved, not always first
                        docs[rng.choice((0, 0, 0, 1, 2))] = doc_id
                    retrieved = [
                        {
                            "doc_id": d,
                            "chunk": rng.randrange(2, 30),
                            "score": round(0.78 - 0.07 * k, 3),
                            "text": PASSAGES[topic],
                        }
                        for k, d in enumerate(docs)
                    ]
                out.append(
                    {
                        "system": system,
                        "id": qid,
                        "question": template.format(name=name),
                        "gold": gold,
                        "golds": [gold],
                        "prediction": pred,
                        "correct": right,
                        "latency_s": round(LATENCY[system] * rng.uniform(0.7, 1.6), 4),
                        "prompt_tokens": 80 + len(template),
                        "category": f"{group}/{topic}",
                        "doc_id": doc_id,
                        "margin": margin,
                        "scores": {"accuracy": float(right)},
                        "retrieved": retrieved,
                    }
                )
    return out


def legal_qa_results(samples: list[dict]) -> dict:
    systems = list(dict.fromkeys(s["system"] for s in samples))
    per = {n: [s for s in samples if s["system"] == n] for n in systems}
    golds = [s["gold"] for s in per[systems[0]]]
    cats = [s["category"] for s in per[systems[0]]]
    n = len(golds)
    # model-free baselines: the majority answer, and each category's majority answer
    majority = max(("Yes", "No"), key=golds.count)
    by_cat = {c: max(("Yes", "No"), key=[g for g, k in zip(golds, cats) if k == c].count) for c in set(cats)}
    base_correct = {
        "majority": [g == majority for g in golds],
        "category_prior": [g == by_cat[c] for g, c in zip(golds, cats)],
    }
    baselines = {
        "majority": f"always answers the training split's majority answer ({majority})",
        "category_prior": "answers each category's majority answer in the training split",
    }
    base_fig = {b: _bootstrap([float(x) for x in c], seed=7) for b, c in base_correct.items()}
    best = max(base_fig, key=lambda b: base_fig[b]["value"])
    correct = {n_: [bool(s["correct"]) for s in rows] for n_, rows in per.items()}
    entries = {}
    for i, (name, rows) in enumerate(per.items()):
        acc = _bootstrap([float(c) for c in correct[name]], seed=i)
        labels = [int(s["gold"] == "Yes") for s in rows]
        auc = _auc(labels, [s["margin"] for s in rows])
        cal = _bootstrap([float(c or (j % 4 == 0)) for j, c in enumerate(correct[name])], seed=10 + i)
        p = _mcnemar(correct[name], base_correct[best])
        diff = acc["value"] - base_fig[best]["value"]
        entry = {
            "kind": {"prompt": "prompt", "lora": "finetune", "rag": "rag"}[name],
            "status": "ok",
            "error": None,
            "metrics": {
                "accuracy": acc,
                "auc": {"value": auc, "ci_low": max(0.0, auc - 0.13), "ci_high": min(1.0, auc + 0.11)},
                "calibrated_accuracy": cal,
            },
            "latency_s": _percentiles([s["latency_s"] for s in rows]),
            "peak_memory_mb": {"prompt": 1278.1, "lora": 1402.6, "rag": 2119.5}[name],
            "build_s": {"prompt": 0.0, "lora": 412.0, "rag": 34.6}[name],
            "cached": False,
            "artifact_mb": {"prompt": 0.0, "lora": 3.6, "rag": 1.7}[name],
            "training": None,
            "retrieval": None,
            "retrieval_latency_s": None,
            "vs_best_baseline": _vb(diff, p, n=n, baseline=best),
        }
        if name == "lora":
            entry["training"] = {
                "method": "lora",
                "seconds": 412.0,
                "tokens_per_s": 1430.0,
                "peak_memory_mb": 2650.0,
                "trainable_params": 921600,
                "total_params": 135436800,
                "epochs": 2,
                "steps": 120,
                "loss_curve": [
                    {
                        "step": s,
                        "train_loss": round(0.35 + 1.9 / (1 + s / 12), 4),
                        "eval_loss": round(0.45 + 1.8 / (1 + s / 14), 4) if s % 30 == 0 else None,
                    }
                    for s in range(10, 130, 10)
                ],
            }
        if name == "rag":
            hits = [any(p["doc_id"] == s["doc_id"] for p in s["retrieved"]) for s in rows]
            ranks = [
                next((k + 1 for k, p in enumerate(s["retrieved"]) if p["doc_id"] == s["doc_id"]), None) for s in rows
            ]
            entry["retrieval"] = {"k": 3, "recall_at_k": sum(hits) / n, "mrr": sum(1 / r for r in ranks if r) / n}
            entry["retrieval_latency_s"] = {"p50": 0.0118, "p95": 0.0138, "mean": 0.0122}
        entries[name] = entry
    adjusted = holm([e["vs_best_baseline"]["p_value"] for e in entries.values()])
    for e, p_holm in zip(entries.values(), adjusted):
        vb = e["vs_best_baseline"]
        e["vs_best_baseline"] = _vb(vb["diff"], vb["p_value"], n=n, baseline=best, p_holm=p_holm)
    pairs = []
    for a, b in (("rag", "lora"), ("rag", "prompt"), ("lora", "prompt")):
        if a in per and b in per:
            diff = entries[a]["metrics"]["accuracy"]["value"] - entries[b]["metrics"]["accuracy"]["value"]
            pairs.append((a, b, diff, _mcnemar(correct[a], correct[b])))
    return {
        "task": "legal-qa",
        "run_id": "20261126-104849-abb5",
        "created": "2026-11-26T10:48:49+00:00",
        "answer_format": "yes-no",
        "headline_metric": "accuracy",
        "n_test": n,
        "seed": 0,
        "systems": entries,
        "baselines": {
            b: {"accuracy": base_fig[b]["value"], "metrics": {"accuracy": base_fig[b]}, "description": baselines[b]}
            for b in baselines
        },
        "comparisons": comparisons(pairs, n=n, test="mcnemar-exact"),
        "settings": {"threads": 16, "batch_size": 1, "dtype": "float32", "warmup": 2, "device": "cpu"},
    }


# questions per second at the best batch size, as the throughput probe records them (fake figures)
LEGAL_QA_THROUGHPUT = {"prompt": (8, 14.2), "lora": (8, 13.8), "rag": (2, 2.4)}


def with_decision(results: dict, **profile) -> dict:
    """`results` with throughput figures, each system's cost and the decision for `profile` (harness.cost)."""
    from harness.cost import decide
    from harness.profile import Profile
    from harness.records import RunResults

    for name, (batch, qps) in LEGAL_QA_THROUGHPUT.items():
        if name in results["systems"]:
            tried = {str(b): round(qps * min(b, batch) / batch, 3) for b in (1, 2, 4, 8)}
            results["systems"][name]["throughput"] = {
                "batch_size": batch, "questions_per_s": qps, "tokens_per_s": qps * 180, "tried": tried,
                "n": 8, "seconds": 6.5, "peak_memory_mb": 1500.0,
            }  # fmt: skip
    if "rag" in results["systems"]:
        results["systems"]["rag"]["index"] = {"built_s": 34.6, "n_docs": 47, "n_chunks": 694}
    run = RunResults.model_validate(results)
    costs, decision = decide(run, Profile(**profile))
    out = run.model_copy(
        update={
            "systems": {n: e.model_copy(update={"cost": costs.get(n)}) for n, e in run.systems.items()},
            "decision": decision,
        }
    )
    return out.dump()


def legal_qa_run(folder: Path, seed: int = 0, **profile) -> Path:
    """A legal-qa run directory with systems prompt, lora and rag, figures consistent with its samples, and the
    decision for `profile` (the defaults when none is given)."""
    samples = legal_qa_samples(seed)
    manifest = {**MANIFEST, "command": ["harness", "run", "legal-qa"]}
    results = with_decision(legal_qa_results(samples), **profile)
    return write_run(folder, results=results, samples=samples, manifest=manifest)
