"""rag+lora (RAFT-style training with retrieved passages), oracle (the gold document in the prompt), and
the bad inputs retrieval must reject or warn about, on the tiny model and task. One end-to-end run
(prompt, rag, rag+lora, oracle) checks that the report shows them side by side."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness import cache, files, systems
from harness.context import Reporter, RunContext
from harness.data import Document, load_task_data
from harness.errors import HarnessError
from harness.manifest import package_versions
from harness.models import resolve_model
from harness.records import GoldCut
from harness.retrieval import Embedder
from harness.spec import load_spec
from harness.systems import oracle
from harness.systems.rag_finetune import DISTRACTOR_FRACTION, _raft_note, micro_batch
from tests.conftest import tiny_docs, write_tiny_task


@pytest.fixture(scope="module")
def embedder():
    return Embedder.load("default")  # the packaged MiniLM, loaded once for the module


def make_ctx(task_path, tmp_path, embedder=None, **updates) -> RunContext:
    spec = load_spec(task_path)
    if updates:
        spec = spec.model_copy(update=updates)
    ctx = RunContext(
        spec, load_task_data(spec), resolve_model(spec.model), Reporter(), indices_dir=tmp_path / "indices"
    )
    ctx._embedder = embedder
    return ctx


@pytest.fixture
def ctx(tiny_task, tmp_path, embedder):
    return make_ctx(tiny_task, tmp_path, embedder)


def test_micro_batch():
    assert micro_batch(8, 100) == 8 and micro_batch(8, 300) == 2 and micro_batch(8, 509) == 2
    assert micro_batch(8, 2000) == 1 and micro_batch(6, 256) == 3 and micro_batch(5, 300) == 1


def test_registered_names_kinds_and_methods():
    names = systems.available()
    assert {"rag+lora", "rag+qlora", "rag+dora", "oracle"} <= set(names)
    for method in ("lora", "qlora", "dora"):
        s = systems.SYSTEMS[f"rag+{method}"](f"rag+{method}", None)
        assert s.method == method and s.kind == "rag+finetune"
    assert systems.SYSTEMS["oracle"].kind == "oracle"


# ---------------------------------------------------------------- rag+lora: training prompts


def test_raft_rows_carry_retrieved_passages_and_a_seeded_share_of_distractors(ctx, tiny_task, tmp_path, embedder):
    s = systems.make_system("rag+lora", ctx)
    s.validate()
    train = ctx.data.train
    rows = s.raft.raft_rows(train)
    assert [r["id"] for r in rows] == [q.id for q in train]
    assert all(r["passages"] and "Passages:\n[1] " in r["prompt"] for r in rows)
    distract = [r for r in rows if r["raft"] == "distractors"]
    assert len(distract) == round(DISTRACTOR_FRACTION * len(train)) > 0
    by_id = {q.id: q for q in train}
    for r in rows:
        own = by_id[r["id"]].doc_id
        if r["raft"] == "distractors":  # not one passage of the gold document
            assert all(p["doc_id"] != own for p in r["passages"]) and not r["gold_in_prompt"]
        else:
            assert r["raft"] == "gold" and any(p["doc_id"] == own for p in r["passages"])
        for p in r["passages"]:
            assert p["text"] in r["prompt"]
        assert r["completion"] == by_id[r["id"]].answers[0]
    # every training prompt leaves room for the answer within finetune.max_length
    budget = s.raft.budget()
    assert max(len(ctx.tokenizer(r["prompt"]).input_ids) for r in rows) <= budget < s.adapter.settings.max_length
    # rows() hands trl only prompt/completion, and counts what went into them for the training record
    assert s.raft.rows(train) == [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows]
    assert s.raft.record()["raft"]["rows"] == len(train) and s.raft.record()["raft"]["k"] == ctx.retriever().k
    # deterministic under the seed; another seed picks another share
    again = systems.make_system("rag+lora", make_ctx(tiny_task, tmp_path, embedder))
    assert [r["prompt"] for r in again.raft.raft_rows(train)] == [r["prompt"] for r in rows]
    other = systems.make_system("rag+lora", make_ctx(tiny_task, tmp_path, embedder, seed=1))
    assert other.raft.distractor_ids(train) != s.raft.distractor_ids(train)
    assert len(other.raft.distractor_ids(train)) == len(distract)


def test_evaluation_prompts_get_the_budget_the_adapter_trained_with(tiny_task, tmp_path, embedder):
    """A short finetune.max_length holds rag+lora's test prompts to its training budget; rag keeps its own."""
    spec = load_spec(tiny_task)
    c = make_ctx(
        tiny_task,
        tmp_path,
        embedder,
        finetune=spec.finetune.model_copy(update={"max_length": 120}),
        rag=spec.rag.model_copy(update={"k": 4}),
    )
    s, rag = systems.make_system("rag+lora", c), systems.make_system("rag", c)
    budget, rag_budget = s.raft.budget(), c.retriever().prompt_budget()
    assert budget < rag_budget
    qs = c.data.test
    ours, theirs = s.prompts(qs), rag.prompts(qs)
    lengths = [len(c.tokenizer(t).input_ids) for t in ours.texts]
    assert max(lengths) <= budget
    assert max(len(c.tokenizer(t).input_ids) for t in theirs.texts) > budget  # rag alone is not held back
    assert all(p["text"] in t for t, ps in zip(ours.texts, ours.retrieved) for p in ps)
    # the training rows were held to the same budget
    assert max(len(c.tokenizer(r["prompt"]).input_ids) for r in s.raft.raft_rows(c.data.train)) <= budget
    s.raft.rows(c.data.train)
    note = " ".join(_raft_note(s.raft.record()["raft"], s.raft.settings, s.name))
    assert f"training and evaluation prompts are held to {budget} tokens by finetune.max_length=120" in note
    assert f"rag alone allows {rag_budget}" in note


def test_raft_adds_the_gold_passage_when_retrieval_misses_it(ctx):
    s = systems.make_system("rag+lora", ctx)
    index = ctx.retriever().index
    real = index.search

    def no_gold(q, k):  # a retriever that never finds the first training question's document
        return [[h for h in hits if h[0].doc_id != ctx.data.train[0].doc_id] for hits in real(q, k)]

    index.search = no_gold
    q = next(
        q
        for q in ctx.data.train
        if q.id not in s.raft.distractor_ids(ctx.data.train) and q.doc_id == ctx.data.train[0].doc_id
    )
    row = s.raft.raft_rows([q] + [x for x in ctx.data.train if x is not q])[0]
    assert row["raft"] == "gold" and row["gold_inserted"] and row["gold_in_prompt"]
    assert any(p["doc_id"] == q.doc_id for p in row["passages"])


def test_without_a_corpus_a_question_never_sees_its_own_answer(tmp_path, tiny_model_dir, embedder):
    task = write_tiny_task(tmp_path / "t", tiny_model_dir, data={"corpus": None})
    c = make_ctx(task, tmp_path, embedder)
    assert c.data.corpus_is_fallback
    rows = systems.make_system("rag+lora", c).raft.raft_rows(c.data.train)
    assert {r["raft"] for r in rows} == {"retrieved"}
    assert all(p["doc_id"] != r["id"] for r in rows for p in r["passages"])


def test_adapter_cached_apart_from_lora_and_keyed_on_retrieval(ctx, tiny_task, tmp_path, embedder, harness_home):
    rl = systems.make_system("rag+lora", ctx).adapter
    lora = systems.make_system("lora", ctx).adapter
    assert rl.folder.parent == lora.folder.parent == harness_home / "adapters" / "tiny-qa"
    assert rl.folder.name.startswith("rag-lora-") and rl.key != lora.key
    assert rl.key != systems.make_system("rag+dora", ctx).adapter.key
    assert rl.key == systems.make_system("rag+lora", make_ctx(tiny_task, tmp_path, embedder)).adapter.key
    spec = load_spec(tiny_task)
    for change in ({"k": 3}, {"chunk_tokens": 48}, {"index": "hnsw"}, {"max_prompt_tokens": 300}):
        other = make_ctx(tiny_task, tmp_path, embedder, rag=spec.rag.model_copy(update=change))
        assert systems.make_system("rag+lora", other).adapter.key != rl.key, change


def test_adapter_keys_and_folders_are_made_of_what_determines_the_adapter(ctx, tiny_task, tmp_path):
    """lora, dpo and rag+lora keys, spelt out: the method, its settings, the base model by content, the training
    data (train, dev, corpus: not the test split), the prompts, the seed, library versions and the extras."""
    import torch

    spec = ctx.spec
    versions = package_versions(("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate"))

    # training workers resolved: 2 where torch has 2 threads, and then in the key; dpo's trl trainer takes 1
    workers = min(2, torch.get_num_threads())

    def old_key(method, settings_of, extra, workers=workers):
        return cache.key_of(
            method,
            spec.finetune.for_method(settings_of).model_dump(exclude={"workers"}),
            ctx.model_ref.fingerprint,
            ctx.data.fingerprint(("train", "dev")),
            spec.system_prompt,
            spec.question_template,
            spec.seed,
            versions,
            extra,
            *([f"workers-{workers}"] if workers > 1 else []),
        )

    lora_key = old_key("lora", "lora", None)
    dpo_extra = {
        "preference": spec.preference.model_dump(exclude={"start_from"}),
        "start_from": "sft",
        "sft": lora_key,
        "pairs_file": None,
        "pairs_version": 1,
    }
    rag_extra = {
        "rag": spec.rag.model_dump(mode="json"),
        "embedder": ctx.embedder().fingerprint,
        "max_new_tokens": spec.evaluation.max_new_tokens,
        "raft": {"distractor_fraction": 0.2, "version": 1},
    }
    expected = {
        "lora": f"lora-{lora_key}",
        "dpo": f"dpo-{old_key('dpo', 'lora', dpo_extra, workers=1)}",
        "rag+lora": f"rag-lora-{old_key('lora', 'lora', rag_extra)}",
    }
    assert {name: systems.make_system(name, ctx).adapter.folder.name for name in expected} == expected


def test_an_adapter_written_by_earlier_versions_still_loads_with_its_raft_record(ctx):
    """Earlier versions rewrote the manifest after sealing it, to add the RAFT statistics (outside the
    checksums, with `eval_prompt_budget` in the oldest ones): such an adapter is reused with its record."""
    s = systems.make_system("rag+lora", ctx)
    folder = s.adapter.folder
    training = {"method": "lora", "objective": "supervised-qa", "seconds": 12.5, "steps": 4}
    with files.build_atomically(folder, {"training": training}) as tmp:
        (tmp / "adapter_model.safetensors").write_bytes(b"weights")
    raft = {"rows": 40, "distractor_only": 8, "gold_in_prompt": 32, "gold_inserted": 3, "passages": 80}
    raft.update(truncated_passages=5, k=2, train_prompt_budget=200, eval_prompt_budget=400)
    meta = json.loads((folder / files.MANIFEST).read_text())
    meta["training"]["raft"] = raft
    files.write_json_atomic(folder / files.MANIFEST, meta)
    ctx.retriever().build()  # the run's index, built by an earlier system
    info = s.build()
    assert info.cached and info.training == {**training, "raft": raft}
    assert info.build_cost_s == pytest.approx(12.5 + ctx.retriever().build().build_cost_s)
    assert any("RAFT training: 8 of 40" in n and "rag alone allows 400" in n for n in info.notes)


# ---------------------------------------------------------------- oracle


def test_oracle_prompt_holds_the_whole_gold_document(ctx):
    o = systems.make_system("oracle", ctx)
    o.validate()
    assert not o.build().cached and ctx.retriever()._index is None  # no index: it looks the document up
    qs = ctx.data.test[:4]
    p = o.prompts(qs)
    docs = {d.doc_id: d.text for d in ctx.data.corpus}
    for q, text, passages, ranked, cut in zip(qs, p.texts, p.retrieved, p.ranked_doc_ids, p.gold_cuts):
        assert [x["doc_id"] for x in passages] == [q.doc_id] and passages[0]["text"] == docs[q.doc_id]
        assert docs[q.doc_id] in text and ranked == [q.doc_id] and text.rstrip().endswith("<|im_start|>assistant")
        assert cut["kept_tokens"] == cut["total_tokens"] and cut["kept_chars"] == cut["total_chars"] == len(
            docs[q.doc_id]
        )
    assert p.budget_tokens == ctx.retriever().prompt_budget()


def test_oracle_cuts_only_what_the_budget_cannot_hold_and_says_how_much(tiny_task, tmp_path, embedder):
    spec = load_spec(tiny_task)
    c = make_ctx(tiny_task, tmp_path, embedder)
    q = c.data.test[0]
    doc = {d.doc_id: d.text for d in c.data.corpus}[q.doc_id]
    whole = len(c.tokenizer(c.prompts.with_passages(q, [{"text": doc}])).input_ids)
    budget = whole - 10 + spec.evaluation.max_new_tokens  # ten tokens short of the whole document
    c = make_ctx(tiny_task, tmp_path, embedder, rag=spec.rag.model_copy(update={"max_prompt_tokens": budget}))
    p = systems.make_system("oracle", c).prompts([q])
    (passage,), cut = p.retrieved[0], p.gold_cuts[0]
    assert passage["truncated"] and doc.startswith(passage["text"].rstrip()) and len(passage["text"]) < len(doc)
    used = len(c.tokenizer(p.texts[0]).input_ids)
    assert used <= p.budget_tokens and used >= p.budget_tokens - 3  # filled to the budget, not short of it
    total = len(c.tokenizer(doc, add_special_tokens=False).input_ids)
    assert cut["total_tokens"] == total and total - 13 <= cut["kept_tokens"] < total
    assert cut["kept_chars"] == len(passage["text"]) and cut["total_chars"] == len(doc)
    summary = oracle.gold_context(
        [GoldCut(**cut), GoldCut(kept_tokens=5, total_tokens=5, kept_chars=9, total_chars=9)], 90
    )
    assert (summary.n, summary.cut, summary.cut_share) == (2, 1, 0.5)
    assert summary.kept_token_share == round((cut["kept_tokens"] / total + 1) / 2, 4)
    assert "cut the gold document for 1 of 2 questions (50%)" in oracle.gold_context_note(summary)


def test_gold_doc_chunks_ranks_the_gold_documents_chunks(ctx):
    o = systems.make_system("gold-doc-chunks", ctx)
    o.validate()
    qs = ctx.data.test[:4]
    p = o.prompts(qs)
    docs = tiny_docs()
    for q, text, passages, ranked in zip(qs, p.texts, p.retrieved, p.ranked_doc_ids):
        assert passages and len(passages) <= ctx.spec.rag.k
        assert all(x["doc_id"] == q.doc_id and x["text"] in docs[q.doc_id] and x["text"] in text for x in passages)
        assert [x["score"] for x in passages] == sorted((x["score"] for x in passages), reverse=True)
        assert set(ranked) == {q.doc_id} and text.rstrip().endswith("<|im_start|>assistant")
    assert len(p.retrieval_latency_s) == len(qs) and all(t > 0 for t in p.retrieval_latency_s)
    # the chunks it picks are the gold document's most similar ones, exactly ranked
    index = ctx.retriever().index
    qv = ctx.embedder().encode([qs[0].question])[0]
    ids = index.chunk_ids_of(qs[0].doc_id)
    best = max(ids, key=lambda i: float(index.vectors()[i] @ qv))
    assert p.retrieved[0][0]["chunk"] == index.chunks[best].position


def test_oracle_needs_a_corpus_and_doc_ids(tmp_path, tiny_model_dir, embedder):
    no_corpus = write_tiny_task(tmp_path / "a", tiny_model_dir, data={"corpus": None})
    with pytest.raises(HarnessError, match="oracle needs a corpus.*add data.corpus"):
        systems.make_system("oracle", make_ctx(no_corpus, tmp_path, embedder)).validate()
    no_ids = write_tiny_task(
        tmp_path / "b",
        tiny_model_dir,
        data={
            "questions": {"path": "tiny-qa/questions.jsonl", "fields": {"doc_id": None}},
            "split": {"by": "question", "test_fraction": 0.3, "dev_fraction": 0.17, "seed": 0},
        },
    )
    with pytest.raises(HarnessError, match=r"oracle needs every test and dev question's doc_id.*fields.doc_id"):
        systems.make_system("oracle", make_ctx(no_ids, tmp_path, embedder)).validate()


# ---------------------------------------------------------------- bad input


def test_empty_corpus_folder(tmp_path, tiny_model_dir):
    task = write_tiny_task(tmp_path / "t", tiny_model_dir)
    for f in (tmp_path / "t" / "tiny-qa" / "corpus").iterdir():
        f.unlink()
    with pytest.raises(HarnessError, match="the corpus is empty"):
        load_task_data(load_spec(task))


def test_document_with_no_text(tmp_path, tiny_model_dir):
    task = write_tiny_task(tmp_path / "t", tiny_model_dir)
    (tmp_path / "t" / "tiny-qa" / "corpus" / "golf.txt").write_text("  \n\n ")
    with pytest.raises(
        HarnessError, match=r"golf.txt: document has no text; remove it or add it to data.corpus.exclude"
    ):
        load_task_data(load_spec(task))


def test_retrieval_rejects_empty_corpus_and_empty_documents(ctx):
    # The same checks guard the index itself, for corpora that do not come through the task loader.
    ctx.data.corpus = [Document("alpha", "The Alpha licence."), Document("blank", " \n ")]
    with pytest.raises(HarnessError, match="rag: document 'blank' has no text"):
        systems.make_system("rag", ctx).build()
    ctx.data.corpus = []
    with pytest.raises(HarnessError, match="rag: the corpus is empty"):
        systems.make_system("rag", ctx).build()


def test_k_larger_than_the_chunks_is_clamped_with_a_warning(tiny_task, tmp_path, embedder):
    spec = load_spec(tiny_task)
    c = make_ctx(tiny_task, tmp_path, embedder, rag=spec.rag.model_copy(update={"k": 1000}))
    rag = systems.make_system("rag", c)
    rag.build()
    n = len(c.retriever().index.chunks)
    warnings = [line for line in c.reporter.lines if line.startswith("warning")]
    assert warnings == [
        f"warning: rag.k is 1000 but the index has only {n} chunks; k was clamped to {n} "
        f"(set rag.k to {n} or less, or add documents)"
    ]
    p = rag.prompts(c.data.test[:1])
    assert len(p.ranked_doc_ids[0]) == n
    systems.make_system("gold-doc-chunks", c).build()  # a second system on the same run does not repeat the warning
    assert len([line for line in c.reporter.lines if line.startswith("warning")]) == 1


def test_the_run_builds_the_index_once_and_later_systems_see_it_reused(ctx, tiny_task, tmp_path, embedder):
    assert ctx.retriever() is ctx.retriever()
    first = systems.make_system("rag", ctx).build()
    again = systems.make_system("gold-doc-chunks", ctx).build()
    assert not first.cached and first.build_s > 0 and first.build_cost_s == first.build_s
    assert again.cached and again.build_s == 0 and again.peak_memory_mb is None
    assert again.build_cost_s == first.index["built_s"] and again.artifact_mb == first.artifact_mb
    # exactly what loading it from disk says (what every further system reported before the run shared it)
    loaded = make_ctx(tiny_task, tmp_path, embedder).retriever().build()
    assert again.index == loaded.index == {**first.index, "reused": True, "build_s": 0.0, "embed_s": 0.0}
    assert (again.cached, again.build_s, again.build_cost_s) == (loaded.cached, loaded.build_s, loaded.build_cost_s)


class _Truncated:
    """The real embedder cut to a different dimension but with the same fingerprint: the cached index no
    longer fits it."""

    def __init__(self, real, dim):
        self.real, self.dim = real, dim
        self.tokenizer, self.max_seq_length, self.fingerprint = real.tokenizer, real.max_seq_length, real.fingerprint
        self.name = "cut-minilm"

    def encode(self, texts, **kw):
        v = self.real.encode(texts)[:, : self.dim]
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_embedder_dimension_differs_from_the_existing_index(ctx, tiny_task, tmp_path, embedder):
    systems.make_system("rag", ctx).build()
    (folder,) = [p.parent for p in (tmp_path / "indices" / "tiny-qa").glob("*/_artifact.json")]
    other = make_ctx(tiny_task, tmp_path, _Truncated(embedder, 128))
    with pytest.raises(HarnessError) as err:
        systems.make_system("rag", other).build()
    msg = str(err.value)
    assert "dim 384" in msg and "dim 128" in msg and str(folder) in msg
    assert f"delete {folder}" in msg and "rag.embedder" in msg


# ---------------------------------------------------------------- end to end


def test_run_with_every_kind_of_system(tmp_path, tiny_model_dir, harness_home, monkeypatch):
    from harness.cli import main

    manifest_writes = []
    real_write = files.write_json_atomic
    monkeypatch.setattr(files, "write_json_atomic", lambda p, data: (manifest_writes.append(p), real_write(p, data)))

    # (plain lora is left out to keep this fast: test_run.py trains it, and its key test above keeps them apart)
    task = write_tiny_task(tmp_path / "t", tiny_model_dir, evaluation={"calibration_limit": 4})
    reports = tmp_path / "reports"
    names = ["prompt", "rag", "rag+lora", "oracle"]
    args = [
        "run",
        str(task),
        "--systems",
        ",".join(names),
        "--reports-dir",
        str(reports),
        "--indices-dir",
        str(tmp_path / "indices"),
        "--quiet",
        "--limit",
        "6",
    ]
    try:
        main(args)
    except SystemExit as e:
        assert not e.code
    run_dir = (reports / "tiny-qa" / "latest").resolve()
    res = json.loads((run_dir / "results.json").read_text())
    got = res["systems"]
    assert list(got) == names and all(got[n]["status"] == "ok" for n in names), {n: got[n]["error"] for n in names}
    assert got["rag+lora"]["kind"] == "rag+finetune" and got["oracle"]["kind"] == "oracle"
    training = got["rag+lora"]["training"]
    raft = training["raft"]
    assert raft["distractor_only"] > 0 and raft["rows"] == 30 + len(load_task_data(load_spec(task)).dev)
    # long prompts go through in micro-batches; the optimiser still sees batches of 8 (30 rows: 4 steps)
    assert raft["micro_batch_size"] * raft["gradient_accumulation_steps"] == 8 and raft["micro_batch_size"] < 8
    assert training["steps"] == 4
    assert any("RAFT training" in n for n in got["rag+lora"]["notes"])
    for n in ("rag", "rag+lora", "oracle"):
        assert got[n]["retrieval"]["k"] == (1 if n == "oracle" else 2) and got[n]["retrieval_latency_s"]["mean"] > 0
        assert got[n]["model_latency_s"]["mean"] > 0
    assert got["oracle"]["retrieval"]["recall_at_k"] == 1.0 and got["oracle"]["retrieval"]["mrr"] == 1.0
    # the tiny documents fit the budget whole: nothing cut, and the report says so
    assert got["oracle"]["gold_context"]["n"] == 6 and got["oracle"]["gold_context"]["cut"] == 0
    assert any("gold document fitted the prompt budget" in n for n in got["oracle"]["notes"])
    assert got["rag+lora"]["retrieval"] == got["rag"]["retrieval"]  # the same retriever
    # rag built the index, rag+lora reused it; oracle needs none: each cost is what was spent on its own artifacts
    assert got["rag"]["build_cost_s"] == got["rag"]["build_s"] > 0 and got["oracle"]["build_cost_s"] == 0
    index_s = got["rag"]["index"]["built_s"]  # results round to 0.01 s
    assert index_s > 0 and got["oracle"]["index"] is None
    # rag+lora trained here on the index rag built: its cost is its own build time plus the index's
    cost = got["rag+lora"]["build_cost_s"]
    assert cost == pytest.approx(got["rag+lora"]["build_s"] + index_s, abs=0.02)
    assert cost > got["rag+lora"]["training"]["seconds"]
    adapters = [p for p in (harness_home / "adapters" / "tiny-qa").iterdir() if p.is_dir()]
    assert len(adapters) == 1 and adapters[0].name.startswith("rag-lora-")
    # the adapter's manifest was sealed once, with the complete record: RAFT statistics included
    meta = json.loads((adapters[0] / files.MANIFEST).read_text())
    assert meta["checksums"] == files.folder_checksums(adapters[0]) and meta["training"]["raft"] == raft
    assert not [p for p in manifest_writes if p.name == files.MANIFEST], "nothing rewrote the sealed manifest"
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    # --limit 6: a seeded sample over the test documents and categories, the same questions for every system
    test = load_task_data(load_spec(task)).test
    assert res["limited"] == {"n": 6, "of": len(test), "drawn": "seeded sample, stratified by document and category"}
    ids = {n: [s["id"] for s in samples if s["system"] == n] for n in names}
    assert all(v == ids["prompt"] for v in ids.values()) and len(ids["prompt"]) == 6
    picked = [q for q in test if q.id in ids["prompt"]]
    assert len({q.doc_id for q in picked}) == len({q.doc_id for q in test})  # every test document
    assert ids["prompt"] != [q.id for q in test[:6]]  # not the first six
    assert "limited run: 6 of" in (run_dir / "summary.md").read_text()
    for s in samples:
        assert (s["retrieved"] is not None) == (s["system"] in ("rag", "rag+lora", "oracle"))
        if s["system"] == "oracle":
            assert [p["doc_id"] for p in s["retrieved"]] == [s["doc_id"]]
            assert s["gold_context"]["kept_tokens"] == s["gold_context"]["total_tokens"] > 0
    html = (run_dir / "index.html").read_text()
    assert "recall@2" in html and "rag+lora" in html and "oracle" in html
