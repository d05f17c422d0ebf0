"""`evaluation.backend: vllm` up to the CUDA call: lm-eval's own VLLM class runs against a fake `vllm` package
that records what it is asked (engine arguments, token ids, LoRA requests, sampling settings) and answers
with log-probabilities and generations the test can predict."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.metadata
import sys
import types
from dataclasses import dataclass
from typing import ClassVar

import pytest

from harness import evaluate_vllm
from harness.constants import AnswerFormat
from harness.data import Question
from harness.systems import make_system
from tests.conftest import write_tiny_task
from tests.test_finetune import make_ctx


def fake_logprob(token: int) -> float:
    return -((token % 13) + 1) / 10


@dataclass
class FakeLoRARequest:
    lora_name: str
    lora_int_id: int
    lora_path: str


class FakeSamplingParams:
    def __init__(self, **kw):
        self.__dict__.update(kw)
        self.kw = kw


class FakeLLM:
    built: ClassVar[list[dict]] = []
    calls: ClassVar[list[dict]] = []
    cut_off: ClassVar[set[int]] = set()  # requests (by order of generation) that stop for length

    def __init__(self, **args):
        FakeLLM.built.append(args)
        self.llm_engine = types.SimpleNamespace(model_config=types.SimpleNamespace(max_model_len=2048))

    def generate(self, prompts, sampling_params=None, use_tqdm=False, lora_request=None):
        out = []
        for p, sp in zip(prompts, sampling_params, strict=True):
            ids = p["prompt_token_ids"]
            FakeLLM.calls.append({"ids": ids, "params": sp.kw, "lora": lora_request})
            if sp.kw.get("prompt_logprobs"):
                out.append(types.SimpleNamespace(prompt_logprobs=[None] + [{t: fake_logprob(t)} for t in ids[1:]]))
            else:
                n = len(FakeLLM.calls)
                reason = "length" if n in FakeLLM.cut_off else "stop"
                done = types.SimpleNamespace(text=f"answer {n}", finish_reason=reason, token_ids=[1, 2])
                out.append(types.SimpleNamespace(outputs=[done], prompt_logprobs=None))
        return out


@pytest.fixture
def fake_vllm(monkeypatch):
    """A `vllm` package with the names lm-eval's vllm_causallms imports; lm-eval's module is imported fresh
    against it, and both are removed afterwards."""
    from transformers import AutoTokenizer

    def module(name, **attrs):
        m = types.ModuleType(name)
        m.__spec__ = importlib.machinery.ModuleSpec(name, None)
        m.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, m)
        return m

    module("vllm", LLM=FakeLLM, SamplingParams=FakeSamplingParams, TokensPrompt=dict)
    module("vllm.lora")
    module("vllm.lora.request", LoRARequest=FakeLoRARequest)
    module("vllm.tokenizers", get_tokenizer=lambda name, **kw: AutoTokenizer.from_pretrained(name))
    module("vllm.renderers")
    module("vllm.renderers.hf", resolve_chat_template=lambda **kw: None)
    real_version = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda d: "0.10.0" if d == "vllm" else real_version(d))
    monkeypatch.delitem(sys.modules, "lm_eval.models.vllm_causallms", raising=False)
    from lm_eval.api.registry import model_registry

    importlib.import_module("lm_eval.models")  # registers its classes (vllm as a lazy placeholder) first

    monkeypatch.setitem(model_registry._objs, "vllm", model_registry._objs.get("vllm"))  # the import registers it
    monkeypatch.setattr(evaluate_vllm, "_ENGINES", {})
    monkeypatch.setattr(evaluate_vllm, "_ADAPTER_IDS", {})
    FakeLLM.built, FakeLLM.calls, FakeLLM.cut_off = [], [], set()
    yield FakeLLM
    sys.modules.pop("lm_eval.models.vllm_causallms", None)
    if hasattr(sys.modules.get("lm_eval.models"), "vllm_causallms"):  # the package keeps its submodule too
        delattr(sys.modules["lm_eval.models"], "vllm_causallms")


def _ctx(tmp_path, tiny_model_dir, **overrides):
    evaluation = {"backend": "vllm", "warmup": 1, "vllm": {"tensor_parallel_size": 2, "gpu_memory_utilization": 0.8}}
    task = write_tiny_task(tmp_path / "t", tiny_model_dir, evaluation=evaluation, **overrides)
    return make_ctx(task, tmp_path)


def test_yes_no_requests_are_the_rendered_prompts_served_with_the_adapter_and_timed_per_question(
    tmp_path, tiny_model_dir, fake_vllm
):
    ctx = _ctx(tmp_path, tiny_model_dir)
    questions = ctx.data.test[:3]
    texts = make_system("prompt", ctx).prompts(questions).texts
    adapter = tmp_path / "adapters" / "lora-abc"
    run = lambda adapter: evaluate_vllm.run_vllm_eval(
        ctx.spec, str(tiny_model_dir), ctx.tokenizer, questions, texts, adapter=adapter,
        task_name="tiny_test", batch_size=1, warmup=1, dtype="bfloat16",
    )  # fmt: skip
    measured = run(adapter)
    # One engine, built with the task's parallel settings and LoRA enabled for every system.
    (args,) = fake_vllm.built
    assert args["model"] == str(tiny_model_dir) and args["tensor_parallel_size"] == 2
    assert args["gpu_memory_utilization"] == 0.8 and args["dtype"] == "bfloat16" and args["seed"] == ctx.spec.seed
    assert args["enable_lora"] is True and args["max_lora_rank"] == 8  # finetune.r 4, rounded up to vLLM's 8
    # The token ids sent are exactly the rendered prompt followed by each option, no BOS added.
    tok = ctx.tokenizer
    expected = {tuple(tok(p + c, add_special_tokens=False).input_ids) for p in texts for c in ("Yes", "No")}
    sent = list(fake_vllm.calls)
    assert {tuple(c["ids"]) for c in sent} == expected
    assert len(sent) == 2 * (3 + 1), "each option of each question, plus one untimed warm-up question"
    assert all(c["params"]["max_tokens"] == 1 and c["params"]["prompt_logprobs"] == 1 for c in sent)
    # The adapter is served by vLLM's LoRA support, by its folder, on every request.
    assert {(c["lora"].lora_path, c["lora"].lora_int_id) for c in sent} == {(str(adapter.resolve()), 1)}
    # Margins are the log-probabilities of the option tokens, and every question has its own latency.
    for q, p, m in zip(questions, texts, measured, strict=True):
        lls = []
        for c in ("Yes", "No"):
            whole, context = tok(p + c, add_special_tokens=False).input_ids, tok(p, add_special_tokens=False).input_ids
            lls.append(sum(fake_logprob(t) for t in whole[len(context) :]))
        assert m.id == q.id and m.margin == pytest.approx(lls[0] - lls[1])
        assert m.latency_s is not None and m.latency_s >= 0
    # The base model and a second adapter reuse the engine: no request of the base carries an adapter, and
    # the second adapter gets its own id (vLLM caches adapters by id).
    fake_vllm.calls.clear()
    run(None)
    assert all(c["lora"] is None for c in fake_vllm.calls)
    fake_vllm.calls.clear()
    run(tmp_path / "adapters" / "qlora-def")
    assert {c["lora"].lora_int_id for c in fake_vllm.calls} == {2} and len(fake_vllm.built) == 1


def test_free_text_generation_keeps_the_budget_and_marks_a_cut_off_answer(tmp_path, tiny_model_dir, fake_vllm):
    ctx = _ctx(tmp_path, tiny_model_dir)
    spec = ctx.spec.model_copy(update={"answer_format": AnswerFormat.FREE_TEXT})
    questions = [Question(id=f"q{i}", question=f"Capital of country {i}?", answers=["Oslo"]) for i in range(3)]
    texts = [ctx.prompts.plain(q) for q in questions]
    fake_vllm.cut_off = {3}  # the warm-up question is call 1; question q1 is call 3
    measured = evaluate_vllm.run_vllm_eval(
        spec, str(tiny_model_dir), ctx.tokenizer, questions, texts, adapter=None,
        task_name="tiny_test", batch_size=1, warmup=1, dtype="float32",
    )  # fmt: skip
    sent = fake_vllm.calls
    assert [tuple(c["ids"]) for c in sent[1:]] == [
        tuple(ctx.tokenizer(p, add_special_tokens=False).input_ids) for p in texts
    ]
    assert all(c["params"]["max_tokens"] == spec.evaluation.max_new_tokens for c in sent)
    assert all(c["params"]["temperature"] == 0 for c in sent), "greedy, as the HF backend"
    assert [m.prediction for m in measured] == ["answer 2", "answer 3", "answer 4"]
    assert [m.hit_max_new_tokens for m in measured] == [False, True, False]
    assert all(m.new_tokens and m.latency_s is not None for m in measured)


def test_lora_rank_bound_covers_every_method_override(tmp_path, tiny_model_dir):
    ctx = _ctx(tmp_path, tiny_model_dir, finetune={"r": 16, "overrides": {"qlora": {"r": 40}}})
    assert evaluate_vllm.lora_rank_bound(ctx.spec) == 64


def test_the_pipeline_serves_a_trained_adapter_through_vllm_and_the_base_without_one(
    tmp_path, tiny_model_dir, fake_vllm
):
    from harness.system_eval import evaluate_system

    ctx = _ctx(tmp_path, tiny_model_dir)
    questions = ctx.data.test[:2]
    lora = make_system("lora", ctx)
    lora.build()
    measured = evaluate_system(lora, ctx, questions, "tiny_test")
    assert [m.id for m in measured] == [q.id for q in questions] and all(m.margin is not None for m in measured)
    assert {c["lora"].lora_path for c in fake_vllm.calls} == {str(lora.adapter.folder.resolve())}
    fake_vllm.calls.clear()
    evaluate_system(make_system("prompt", ctx), ctx, questions, "tiny_test")
    assert fake_vllm.calls and all(c["lora"] is None for c in fake_vllm.calls)
    assert len(fake_vllm.built) == 1, "one engine for the run"
