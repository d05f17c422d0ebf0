"""rag+fewshot: retrieved passages and solved examples in one prompt, a system made only of the run's parts,
run for real on the tiny model and task (the packaged MiniLM retrieves)."""

from __future__ import annotations

import pytest

from harness import run, systems
from harness.context import Reporter, RunContext
from harness.data import load_task_data
from harness.models import resolve_model
from harness.retrieval import Embedder
from harness.spec import load_spec
from harness.systems import make_system
from tests.conftest import write_tiny_task


@pytest.fixture(scope="module")
def embedder():
    return Embedder.load("default")


def make_ctx(tmp_path, tiny_model_dir, embedder, **overrides) -> RunContext:
    task = write_tiny_task(tmp_path / "tasks", tiny_model_dir, fewshot={"k": 2}, **overrides)
    spec = load_spec(task)
    ctx = RunContext(spec, load_task_data(spec), resolve_model(spec.model), Reporter(), indices_dir=tmp_path / "idx")
    ctx._embedder = embedder
    return ctx


def test_registered_as_a_retrieval_system():
    assert "rag+fewshot" in systems.available()
    assert systems.SYSTEMS["rag+fewshot"].kind == "rag"


def test_prompt_holds_the_examples_then_the_passages_and_the_question(tmp_path, tiny_model_dir, embedder):
    ctx = make_ctx(tmp_path, tiny_model_dir, embedder)
    system = systems.make_system("rag+fewshot", ctx)
    system.validate()
    info = system.build()
    assert any("2 random solved examples" in n for n in info.notes)
    qs = ctx.data.test[:4]
    p = system.prompts(qs)
    budget = ctx.retriever().prompt_budget()
    for q, text, passages, examples in zip(qs, p.texts, p.retrieved, ctx.example_selector().examples(qs)):
        assert len(examples) == 2 and passages
        # each example is an earlier user turn with its gold answer as the assistant's turn
        for e in examples:
            assert f"<|im_start|>user\n{e.question}<|im_end|>\n<|im_start|>assistant\n{e.answers[0]}<|im_end|>" in text
        # the last user turn is rag's: the passages, then the question
        last = text.rsplit("<|im_start|>user\n", 1)[1]
        assert last.startswith("Passages:\n[1] ") and all(x["text"] in last for x in passages)
        assert last.endswith(f"Question: {q.question}<|im_end|>\n<|im_start|>assistant\n")
        assert text.index(examples[-1].question) < text.index(passages[0]["text"])
        assert text == ctx.prompts.with_examples(q, examples, passages)
        assert ctx.prompts.tokens(text) <= budget
    # the same retrieval as rag: the same ranking and the same passages, only the examples come on top
    rag = systems.make_system("rag", ctx).prompts(qs)
    assert p.ranked_doc_ids == rag.ranked_doc_ids and len(p.retrieval_latency_s) == len(qs)
    assert all(r["text"] in t for t, rs in zip(p.texts, rag.retrieved) for r in rs)


def test_a_tight_budget_holds_the_whole_prompt_dropping_examples_last(tmp_path, tiny_model_dir, embedder):
    ctx = make_ctx(tmp_path, tiny_model_dir, embedder, rag={"k": 2, "chunk_tokens": 64, "overlap": 8})
    q = ctx.data.test[0]
    examples = ctx.example_selector().examples([q])[0]
    with_both = ctx.prompts.tokens(ctx.prompts.with_examples(q, examples, []))
    for room in (40, -1):  # room for a cut passage; then not even for both examples
        ctx.spec.rag.max_prompt_tokens = with_both + room + ctx.spec.evaluation.max_new_tokens
        p = systems.make_system("rag+fewshot", ctx).prompts([q])
        assert ctx.prompts.tokens(p.texts[0]) <= with_both + room
        shots = p.texts[0].count("<|im_start|>assistant\n") - 1
        assert shots == (2 if room > 0 else 1)


def test_runs_end_to_end(tmp_path, tiny_model_dir, embedder):
    ctx = make_ctx(tmp_path, tiny_model_dir, embedder)
    done = run.run_system(make_system("rag+fewshot", ctx), ctx, baselines={})
    entry = done.result
    assert entry.ok, entry.traceback
    assert entry.kind == "rag" and entry.retrieval.k == 2 and entry.retrieval_latency_s.mean > 0
    assert len(done.samples) == len(ctx.data.test) and all(s.retrieved for s in done.samples)
    rag = run.run_system(make_system("rag", ctx), ctx, baselines={}).result
    assert entry.prompt_tokens_mean > rag.prompt_tokens_mean  # the examples' turns on top of rag's prompt
    assert rag.cached and entry.index["path"] == rag.index["path"]  # one index for the run
