"""The systems registry and what each system sends to the model, on the tiny task (no training here)."""

from __future__ import annotations

import jinja2
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from harness import systems
from harness.context import Reporter, RunContext
from harness.data import Question, load_task_data
from harness.errors import HarnessError
from harness.models import resolve_model
from harness.parts.prompt_builder import PromptBuilder, question_turn, render_chat
from harness.parts.trainers import loss_curve
from harness.retrieval import Chunk
from harness.spec import load_spec
from harness.systems.finetune import training_rows


def make_ctx(task_path, tmp_path, **updates) -> RunContext:
    spec = load_spec(task_path)
    if updates:
        spec = spec.model_copy(update=updates)
    return RunContext(
        spec, load_task_data(spec), resolve_model(spec.model), Reporter(), indices_dir=tmp_path / "indices"
    )


@pytest.fixture
def ctx(tiny_task, tmp_path):
    return make_ctx(tiny_task, tmp_path)


# ---------------------------------------------------------------- registry


def test_registry_lists_every_system():
    names = systems.available()  # other modules may register more systems: check ours, and the order
    assert names == sorted(names)
    assert {"dora", "dpo", "fewshot", "lora", "orpo", "prompt", "qlora", "rag"} <= set(names)


def test_unknown_system_error():
    with pytest.raises(
        HarnessError, match=r"unknown system 'promt'; did you mean 'prompt'\? valid systems: dora, .*lora"
    ):
        systems.make_system("promt", None)
    with pytest.raises(HarnessError, match=r"^unknown system 'zzzzz'; valid systems: dora, "):
        systems.make_system("zzzzz", None)


def test_a_new_system_is_one_registered_class(ctx):
    @systems.register_system("echo-test")
    class Echo(systems.System):
        kind = "prompt"

        def prompts(self, questions):
            return systems.Prompts([q.question for q in questions])

    try:
        assert "echo-test" in systems.available()
        s = systems.make_system("echo-test", ctx)
        assert s.prompts(ctx.data.test[:2]).texts == [q.question for q in ctx.data.test[:2]]
        with pytest.raises(ValueError, match="registered twice"):
            systems.register_system("echo-test")(Echo)
    finally:
        systems.SYSTEMS.pop("echo-test")


# ---------------------------------------------------------------- prompt


def test_prompt_system_renders_chat_prompts(ctx):
    s = systems.make_system("prompt", ctx)
    assert s.kind == "prompt" and s.build().cached is False
    q = ctx.data.test[0]
    text = s.prompts([q]).texts[0]
    assert text == (
        f"<|im_start|>system\n{ctx.spec.system_prompt}<|im_end|>\n"
        f"<|im_start|>user\n{q.question}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert s.prompts([q]).retrieved is None
    with s.model() as model:
        assert model is ctx.base_model()


# ---------------------------------------------------------------- fine-tuning (no training)


def test_training_rows_use_the_evaluation_prompt(ctx):
    s = systems.make_system("lora", ctx)
    rows = training_rows(ctx, ctx.data.train[:3])
    assert [r["prompt"] for r in rows] == s.prompts(ctx.data.train[:3]).texts
    assert [r["completion"] for r in rows] == [q.answers[0] for q in ctx.data.train[:3]]


def test_adapter_key_follows_what_determines_it(ctx, tiny_task, tmp_path, harness_home):
    lora = systems.make_system("lora", ctx)
    dora = systems.make_system("dora", ctx)
    assert lora.adapter.folder.parent == harness_home / "adapters" / "tiny-qa"
    assert lora.adapter.key == systems.make_system("lora", make_ctx(tiny_task, tmp_path)).adapter.key
    assert lora.adapter.key != dora.adapter.key
    assert lora.adapter.key != systems.make_system("lora", make_ctx(tiny_task, tmp_path, seed=1)).adapter.key
    spec = load_spec(tiny_task)
    other = make_ctx(tiny_task, tmp_path, finetune=spec.finetune.model_copy(update={"r": 8}))
    assert lora.adapter.key != systems.make_system("lora", other).adapter.key
    prompt_changed = make_ctx(tiny_task, tmp_path, system_prompt="Say Yes or No.")
    assert lora.adapter.key != systems.make_system("lora", prompt_changed).adapter.key


def test_target_modules_checked_against_the_model(tiny_task, tmp_path):
    spec = load_spec(tiny_task)
    bad = make_ctx(
        tiny_task, tmp_path, finetune=spec.finetune.model_copy(update={"target_modules": ["q_proj", "c_attn"]})
    )
    with pytest.raises(HarnessError, match=r"c_attn not in the model; its linear layers are: down_proj, gate_proj"):
        systems.make_system("lora", bad).validate()
    good = make_ctx(
        tiny_task, tmp_path, finetune=spec.finetune.model_copy(update={"target_modules": ["q_proj", "v_proj"]})
    )
    systems.make_system("lora", good).validate()


def test_method_overrides(tiny_task, tmp_path):
    spec = load_spec(tiny_task)
    ft = spec.finetune.model_copy(update={"overrides": {"dora": {"learning_rate": 1e-3, "r": 2}}})
    c = make_ctx(tiny_task, tmp_path, finetune=ft)
    assert systems.make_system("dora", c).adapter.settings.learning_rate == 1e-3
    assert systems.make_system("dora", c).adapter.settings.r == 2
    assert systems.make_system("lora", c).adapter.settings.r == 4
    bad = spec.finetune.model_copy(update={"overrides": {"lora": {"r": -1}}})
    with pytest.raises(HarnessError, match="finetune.overrides.lora"):
        systems.make_system("lora", make_ctx(tiny_task, tmp_path, finetune=bad)).validate()


def test_loss_curve_merges_train_and_eval():
    history = [
        {"step": 2, "loss": 1.5},
        {"step": 2, "eval_loss": 1.4},
        {"step": 4, "loss": 1.1},
        {"train_runtime": 3.0},
        {"step": 4, "eval_loss": 1.0},
    ]
    assert loss_curve(history) == [
        {"step": 2, "train_loss": 1.5, "eval_loss": 1.4},
        {"step": 4, "train_loss": 1.1, "eval_loss": 1.0},
    ]


# ---------------------------------------------------------------- rag (no embedder needed here)


def test_rag_validate(tiny_task, tmp_path):
    spec = load_spec(tiny_task)
    # overlap < chunk_tokens is the schema's rule, checked once, when the task file is read
    with pytest.raises(ValueError, match=r"overlap \(64\) must be smaller than chunk_tokens \(64\)"):
        type(spec.rag).model_validate({**spec.rag.model_dump(), "overlap": 64})
    tmpl = make_ctx(
        tiny_task, tmp_path, rag=spec.rag.model_copy(update={"context_template": "{% for p in passages %}"})
    )
    with pytest.raises(HarnessError, match="rag.context_template"):
        systems.make_system("rag", tmpl).validate()


def _hits(texts):
    return [(Chunk(f"doc{i}", 0, t, 0, 10), 0.9 - i / 10) for i, t in enumerate(texts)]


def test_rag_passages_fit_the_prompt_budget(tiny_task, tmp_path):
    spec = load_spec(tiny_task)
    c = make_ctx(tiny_task, tmp_path, rag=spec.rag.model_copy(update={"max_prompt_tokens": 160}))
    retriever = c.retriever()
    q = c.data.test[0]
    budget = 160 - spec.evaluation.max_new_tokens
    short = "The Alpha licence permits commercial use."
    long = " ".join(["Section 3. The Bravo licence permits modification and distribution."] * 30)
    kept = retriever.fit_passages(q, _hits([short, long, short]))
    assert kept[0]["text"] == short and kept[0]["doc_id"] == "doc0"
    assert len(kept) == 2 and kept[1].get("truncated") is True and kept[1]["text"] in long
    full = c.prompts.with_passages(q, kept)
    assert len(c.tokenizer(full).input_ids) <= budget
    text = c.prompts.passages_text(q, kept)
    assert text.startswith("Passages:\n[1] The Alpha licence") and text.endswith(f"Question: {q.question}")


def test_rag_question_too_long_for_budget(tiny_task, tmp_path):
    spec = load_spec(tiny_task)
    c = make_ctx(
        tiny_task,
        tmp_path,
        rag=spec.rag.model_copy(update={"max_prompt_tokens": 65}),
        evaluation=spec.evaluation.model_copy(update={"max_new_tokens": 40}),
    )
    with pytest.raises(HarnessError, match="raise rag.max_prompt_tokens"):
        c.retriever().fit_passages(c.data.test[0], _hits(["x"]))


# ---------------------------------------------------------------- the prompt builder renders exactly as before

# The renderers as they were before PromptBuilder (prompts.user_turn/chat_prompt, RagSystem.user_text,
# fewshot.fewshot_prompt, RagSystem.fit_passages), copied here as the reference the builder must match byte for
# byte: a prompt that changes by one character changes the numbers, the evaluation cache and the adapter keys.
_OLD_ENV = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)


def _old_user_turn(question_template, q):
    text = _OLD_ENV.from_string(question_template).render(question=q.question, choices=q.choices or [])
    if q.choices and len(q.choices) > 2 and "choices" not in question_template:
        text += "\nOptions:\n" + "\n".join(f"- {c}" for c in q.choices)
    return text


def _old_chat_prompt(tokenizer, system_prompt, user):
    messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
        {"role": "user", "content": user}
    ]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    head = f"{system_prompt}\n\n" if system_prompt else ""
    return f"{head}Question: {user}\nAnswer: "


def _old_rag_user_text(spec, q, passages):
    return _OLD_ENV.from_string(spec.rag.context_template).render(
        passages=passages, question=_old_user_turn(spec.question_template, q)
    )


def _old_fewshot_prompt(tokenizer, system_prompt, examples, user):
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for question, answer in examples:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": user})
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    head = f"{system_prompt}\n\n" if system_prompt else ""
    shots = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in examples)
    return f"{head}{shots}Question: {user}\nAnswer: "


def _old_fit_passages(c, q, hits, budget):
    spec, tok = c.spec, c.tokenizer

    def used(passages):
        return len(tok(_old_chat_prompt(tok, spec.system_prompt, _old_rag_user_text(spec, q, passages))).input_ids)

    kept = []
    for chunk, score in hits:
        p = {"doc_id": chunk.doc_id, "chunk": chunk.position, "score": round(float(score), 4), "text": chunk.text}
        if used([*kept, p]) <= budget:
            kept = [*kept, p]
            continue
        ids = tok(chunk.text, add_special_tokens=False).input_ids
        room = budget - (used([*kept, p]) - len(ids))
        if room > 32:
            cut = {**p, "text": tok.decode(ids[: room - 8]), "truncated": True}
            if used([*kept, cut]) <= budget:
                kept.append(cut)
        break
    return kept


def _questions(c):
    """The tiny task's questions, plus multiple-choice ones (with and without `choices` in the template)."""
    extra = [
        Question("mc3", "Which licence is shortest?", ["Alpha"], choices=["Alpha", "Bravo", "Charlie"]),
        Question("mc2", "Alpha or Bravo?", ["Bravo"], choices=["Alpha", "Bravo"]),
    ]
    return c.data.test + c.data.train[:5] + extra


@pytest.mark.parametrize(
    "updates",
    [
        {},
        {"system_prompt": ""},
        {"question_template": "Q: {{ question }}\n{% for c in choices %}* {{ c }}\n{% endfor %}"},
    ],
)
def test_prompt_builder_renders_byte_identical_to_the_old_functions(tiny_task, tmp_path, updates):
    c = make_ctx(tiny_task, tmp_path, **updates)
    spec, tok, b = c.spec, c.tokenizer, c.prompts
    long = " ".join(["Section 3. The Bravo licence permits modification and distribution."] * 30)
    hits = _hits(["The Alpha licence permits commercial use.", long, "The Charlie licence."])
    cut = 0
    for q in _questions(c):
        user = _old_user_turn(spec.question_template, q)
        assert b.user_text(q) == user
        plain = _old_chat_prompt(tok, spec.system_prompt, user)
        assert b.plain(q) == plain == systems.make_system("prompt", c).prompts([q]).texts[0]
        for budget in (120, 2000):
            passages = _old_fit_passages(c, q, hits, budget)
            assert c.retriever().fit_passages(q, hits, budget) == passages
            cut += any(p.get("truncated") for p in passages)
            rag = _old_chat_prompt(tok, spec.system_prompt, _old_rag_user_text(spec, q, passages))
            assert b.with_passages(q, passages) == rag
        examples = c.data.train[5:8]
        shots = [(_old_user_turn(spec.question_template, e), e.answers[0]) for e in examples]
        assert b.with_examples(q, examples) == _old_fewshot_prompt(tok, spec.system_prompt, shots, user)
        assert b.with_examples(q, []) == plain
        assert b.tokens(plain) == len(tok(plain).input_ids)
    assert cut, "a passage was cut to the budget somewhere"
    # and through the thin functions the training code still calls
    q = c.data.test[0]
    assert render_chat(tok, spec.system_prompt, question_turn(spec.question_template, q)) == b.plain(q)


def test_prompt_builder_without_a_chat_template(tiny_task, tmp_path):
    class NoTemplate:
        chat_template = None

    c = make_ctx(tiny_task, tmp_path)
    b, spec = PromptBuilder(c.spec, NoTemplate()), c.spec
    for q in _questions(c):
        user = _old_user_turn(spec.question_template, q)
        assert b.plain(q) == _old_chat_prompt(NoTemplate(), spec.system_prompt, user)
        passages = [{"doc_id": "alpha", "chunk": 0, "score": 0.9, "text": "The Alpha licence."}]
        assert b.with_passages(q, passages) == _old_chat_prompt(
            NoTemplate(), spec.system_prompt, _old_rag_user_text(spec, q, passages)
        )
        shots = [(_old_user_turn(spec.question_template, e), e.answers[0]) for e in c.data.train[:2]]
        assert b.with_examples(q, c.data.train[:2]) == _old_fewshot_prompt(
            NoTemplate(), spec.system_prompt, shots, user
        )
