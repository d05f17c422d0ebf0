"""fewshot: solved training examples in the prompt, chosen at random (seeded) or by embedding similarity."""

from __future__ import annotations

import numpy as np
import pytest

from harness import run
from harness.context import Reporter, RunContext
from harness.data import load_task_data
from harness.models import resolve_model
from harness.parts.example_selector import select_nearest, select_random
from harness.parts.prompt_builder import render_chat
from harness.spec import load_spec
from harness.systems import make_system
from tests.conftest import write_tiny_task


def make_ctx(task_path, tmp_path, **updates) -> RunContext:
    spec = load_spec(task_path)
    if updates:
        spec = spec.model_copy(update=updates)
    return RunContext(spec, load_task_data(spec), resolve_model(spec.model), Reporter(), indices_dir=tmp_path / "idx")


def fewshot_ctx(tmp_path, tiny_model_dir, seed=0, **fewshot):
    task = write_tiny_task(tmp_path / "tasks", tiny_model_dir, fewshot=fewshot or {"k": 3})
    return make_ctx(task, tmp_path, seed=seed)


class FakeEmbedder:
    """Embeds a question as a one-hot vector of its category (by the question's wording), counting calls."""

    fingerprint = "fake"

    def __init__(self, ctx):
        all_q = ctx.data.train + ctx.data.dev + ctx.data.test
        self.category = {q.question: q.category for q in all_q}
        self.names = sorted({q.category for q in all_q})
        self.batches: list[int] = []

    def encode(self, texts):
        self.batches.append(len(texts))
        out = np.zeros((len(texts), len(self.names)), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i, self.names.index(self.category[t])] = 1.0
        return out


# ---------------------------------------------------------------- the prompt


def test_prompt_is_a_multi_turn_chat_ending_with_the_question(tmp_path, tiny_model_dir):
    ctx = fewshot_ctx(tmp_path, tiny_model_dir, k=2)
    system = make_system("fewshot", ctx)
    q = ctx.data.test[0]
    picked = [ctx.data.train[i] for i in ctx.example_selector().select([q])[0]]
    assert len(picked) == 2
    turns = "".join(
        f"<|im_start|>user\n{e.question}<|im_end|>\n<|im_start|>assistant\n{e.answers[0]}<|im_end|>\n" for e in picked
    )
    assert system.prompts([q]).texts[0] == (
        f"<|im_start|>system\n{ctx.spec.system_prompt}<|im_end|>\n{turns}"
        f"<|im_start|>user\n{q.question}<|im_end|>\n<|im_start|>assistant\n"
    )
    # with no examples it is exactly the prompt system's prompt
    assert ctx.prompts.with_examples(q, []) == ctx.prompts.plain(q) == make_system("prompt", ctx).prompts([q]).texts[0]


def test_plain_transcript_without_a_chat_template():
    class NoTemplate:
        chat_template = None

    text = render_chat(NoTemplate(), "Be brief.", "Q2?", [("Q1?", "Yes")])
    assert text == "Be brief.\n\nQuestion: Q1?\nAnswer: Yes\n\nQuestion: Q2?\nAnswer: "


# ---------------------------------------------------------------- random selection


def test_random_selection_is_deterministic_under_a_seed(tmp_path, tiny_model_dir):
    a = make_system("fewshot", fewshot_ctx(tmp_path / "a", tiny_model_dir, seed=0, k=3))
    b = make_system("fewshot", fewshot_ctx(tmp_path / "b", tiny_model_dir, seed=0, k=3))
    c = make_system("fewshot", fewshot_ctx(tmp_path / "c", tiny_model_dir, seed=1, k=3))
    pick_a, pick_b, pick_c = (s.ctx.example_selector().select for s in (a, b, c))
    test = a.ctx.data.test
    first = pick_a(test)
    assert first == pick_a(test) == pick_b(test)
    assert a.prompts(test).texts == b.prompts(test).texts
    assert pick_c(test) != first, "another seed draws other examples"
    # a question's examples do not depend on which other questions are evaluated with it (--limit)
    assert pick_a(test[3:4]) == [first[3]]
    assert all(len(set(p)) == 3 for p in first)


def test_select_random_never_returns_the_question_itself():
    from harness.data import Question

    pool = [Question(f"q{i}", f"Question {i}?", ["Yes"]) for i in range(4)]
    picked = select_random(pool, [pool[1]], k=10, seed=0)[0]
    assert sorted(picked) == [0, 2, 3]


# ---------------------------------------------------------------- nearest selection


def test_select_nearest_orders_by_similarity_closest_last():
    from harness.data import Question

    pool = [Question(f"p{i}", f"P{i}", ["Yes"]) for i in range(4)]
    vecs = np.array([[1, 0, 0], [0, 1, 0], [0.8, 0.6, 0], [0, 0, 1]], dtype=np.float32)
    query = np.array([[1, 0, 0]], dtype=np.float32)
    assert select_nearest(pool, vecs, [Question("t", "T", ["No"])], query, k=2) == [[2, 0]]
    assert select_nearest(pool, vecs, [Question("t", "T", ["No"])], query, k=3) == [[1, 2, 0]]  # tie 1/3: earlier wins


def test_nearest_picks_the_most_similar_training_questions(tmp_path, tiny_model_dir):
    ctx = fewshot_ctx(tmp_path, tiny_model_dir, k=2, selection="nearest")
    fake = FakeEmbedder(ctx)
    ctx.embedder = lambda: fake
    system = make_system("fewshot", ctx)
    info = system.build()
    for q, picked in zip(ctx.data.test, ctx.example_selector().select(ctx.data.test)):
        assert len(picked) == 2
        assert all(ctx.data.train[i].category == q.category for i in picked)
    system.prompts(ctx.data.test)
    n_train = len(ctx.data.train)
    assert fake.batches[0] == n_train and n_train not in fake.batches[1:], "the training split is embedded once"
    assert any("nearest" in n for n in info.notes)


# ---------------------------------------------------------------- never from test


@pytest.mark.parametrize("selection", ["random", "nearest"])
def test_examples_come_from_the_training_split_only(tmp_path, tiny_model_dir, selection):
    ctx = fewshot_ctx(tmp_path, tiny_model_dir, k=100, selection=selection)
    if selection == "nearest":
        fake = FakeEmbedder(ctx)
        ctx.embedder = lambda: fake
    system = make_system("fewshot", ctx)
    train_ids = {q.id for q in ctx.data.train}
    held_out = [q.question for q in ctx.data.test + ctx.data.dev]
    for split in (ctx.data.test, ctx.data.dev):
        for picked in ctx.example_selector().select(split):
            assert len(picked) == len(ctx.data.train)  # k beyond the split: every training question, once
            assert {ctx.data.train[i].id for i in picked} == train_ids
    text = system.prompts(ctx.data.test[:1]).texts[0]
    assert sum(q in text for q in held_out) == 1  # only the question itself
    assert any("only" in n for n in system.build().notes)  # k larger than the split is said


# ---------------------------------------------------------------- costs and limits


def test_build_reports_the_added_prompt_tokens(tmp_path, tiny_model_dir):
    ctx = fewshot_ctx(tmp_path, tiny_model_dir, k=2)
    info = make_system("fewshot", ctx).build()
    assert info.build_s == 0.0 and not info.cached
    assert any(n.startswith("adds ") and "prompt tokens per question" in n for n in info.notes)


def test_examples_are_dropped_until_the_prompt_fits(tmp_path, tiny_model_dir):
    ctx = fewshot_ctx(tmp_path, tiny_model_dir, k=4)
    system = make_system("fewshot", ctx)
    q = ctx.data.test[0]
    one = len(
        ctx.tokenizer(
            render_chat(ctx.tokenizer, ctx.spec.system_prompt, q.question, [(ctx.data.train[0].question, "Yes")])
        ).input_ids
    )
    ctx.model_max_length = lambda: one + ctx.spec.evaluation.max_new_tokens + 4  # room for about one example
    text = system.prompts([q]).texts[0]
    assert text.count("<|im_start|>assistant\n") in (1, 2)  # at most one example kept, plus the answer header
    assert len(ctx.tokenizer(text).input_ids) <= one + 4
    assert any("dropped" in line for line in ctx.reporter.lines)


def test_run_records_prompt_tokens_above_the_prompt_system(tmp_path, tiny_model_dir):
    ctx = fewshot_ctx(tmp_path, tiny_model_dir, k=2)
    done = run.run_system(make_system("fewshot", ctx), ctx, baselines={})
    assert done.result.ok, done.result.traceback
    plain = [len(ctx.tokenizer(t).input_ids) for t in make_system("prompt", ctx).prompts(ctx.data.test).texts]
    assert done.result.prompt_tokens_mean > sum(plain) / len(plain)
    assert done.result.latency_s.p50 > 0 and done.result.kind == "prompt"
    assert len(done.samples) == len(ctx.data.test)
