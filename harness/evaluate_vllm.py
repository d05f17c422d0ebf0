"""`evaluation.backend: vllm`: the same rendered prompts, scored by lm-eval's own vLLM model class.

What differs from the HF backend is only the engine. The prompts are the ones every system renders (chat
template, passages, examples) and `harness.evaluate.score_with` writes the same lm-eval task from them; the
timing is the one rule of `harness.evaluate.per_question` (after `warmup` untimed questions, one question per
call at batch size 1). Adapters are not merged: vLLM serves each one on the shared base weights through its LoRA
support (a `LoRARequest` per adapter folder, each with its own id, since vLLM caches adapters by id).

One engine per run: lm-eval's class builds a `vllm.LLM` in its constructor, so the constructor is handed the
engine already built for the same arguments (every system asks for the same ones: LoRA is always enabled, so the
base model and the adapters share it). Two engines at once would not fit one GPU.

vLLM is optional and GPU-only; harness.checks.machine_problems refuses `backend: vllm` at plan time without it.
"""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

from harness.evaluate import _lm_eval_quiet, per_question, score_with

_ENGINES: dict[str, object] = {}  # the run's engine, by its arguments
_ADAPTER_IDS: dict[str, int] = {}  # adapter folder -> the LoRA id vLLM knows it by


def engine_args(spec, model_path: str, dtype: str, max_lora_rank: int) -> dict:
    """The keyword arguments lm-eval's VLLM is built with (and, through it, `vllm.LLM`)."""
    v = spec.evaluation.vllm
    args = {
        "pretrained": model_path,
        "dtype": dtype if dtype in ("bfloat16", "float32") else "auto",
        "tensor_parallel_size": v.tensor_parallel_size,
        "data_parallel_size": v.data_parallel_size,
        "gpu_memory_utilization": v.gpu_memory_utilization,
        "seed": spec.seed,
        # lm-eval's VLLM adds special tokens unless told not to; the HF backend adds none to the rendered prompt
        # (its chat template already starts with any BOS the model wants), so neither does this one.
        "add_bos_token": False,
        "enable_lora": True,  # overrides lm-eval's `bool(lora_local_path)`: one engine for base and adapters
        "max_lora_rank": max_lora_rank,
        "max_loras": 1,
    }
    if v.max_model_len:
        args["max_model_len"] = v.max_model_len
    return args


def lora_rank_bound(spec) -> int:
    """The largest LoRA rank the run's adapters may have (the engine is built once, for all of them), rounded up
    to a rank vLLM accepts."""
    ranks = [spec.finetune.r] + [int(o["r"]) for o in spec.finetune.overrides.values() if "r" in o]
    return next(r for r in (8, 16, 32, 64, 128, 256, 512) if r >= max(ranks))


def lora_request(folder: Path | str | None):
    """vLLM's request for an adapter folder (None for the base model); one stable id per folder."""
    if folder is None:
        return None
    from vllm.lora.request import LoRARequest

    path = str(Path(folder).resolve())
    lora_id = _ADAPTER_IDS.setdefault(path, len(_ADAPTER_IDS) + 1)
    return LoRARequest(Path(path).name, lora_id, path)


def make_timed_vllm_class():
    import importlib

    # The module VLLM's constructor looks `LLM` up in (by name, not through the package's attribute)
    vllm_causallms = importlib.import_module("lm_eval.models.vllm_causallms")
    VLLM = vllm_causallms.VLLM
    real_llm = vllm_causallms.LLM

    def shared_engine(**args):
        key = json.dumps(args, sort_keys=True, default=str)
        if key not in _ENGINES:
            _ENGINES.clear()  # a run uses one engine; a different one (another run in this process) replaces it
            _ENGINES[key] = real_llm(**args)
        return _ENGINES[key]

    class TimedVLLM(VLLM):
        """lm-eval's VLLM, timed per question as TimedHFLM is, serving `adapter` through vLLM's LoRA support."""

        def __init__(self, *args, adapter=None, warmup=0, questions_per_batch=1, progress=None, **kwargs):
            with mock.patch.object(vllm_causallms, "LLM", shared_engine):
                super().__init__(*args, **kwargs)
            self.lora_request = lora_request(adapter)
            self.warmup, self.questions_per_batch, self.progress = warmup, questions_per_batch, progress
            self.seconds: dict[int, float] = {}
            self.new_tokens: dict[int, int] = {}
            self.first_token_s: dict[int, float] = {}  # vLLM's offline engine reports no first-token time
            self.hit_limit: dict[int, bool] = {}
            self._limit_texts: set[str] = set()
            self._current_doc: int | None = None

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            return per_question(self, requests, lambda rs: super(TimedVLLM, self).loglikelihood(rs, True))

        def _model_generate(self, requests, generate=False, sampling_params=None):
            outputs = super()._model_generate(requests, generate=generate, sampling_params=sampling_params)
            if generate:  # a generation vLLM stopped for length was cut off by max_new_tokens
                for out in outputs:
                    if out.outputs and out.outputs[0].finish_reason == "length":
                        self._limit_texts.add(out.outputs[0].text)
            return outputs

        def generate_until(self, requests, disable_tqdm: bool = False):
            def run(rs):
                self._limit_texts = set()
                res = super(TimedVLLM, self).generate_until(rs, disable_tqdm=True)
                for r, text in zip(rs, res):
                    self.new_tokens[r.doc_id] = len(self.tok_encode(text)) if text else 0
                    self.hit_limit[r.doc_id] = text in self._limit_texts
                return res

            return per_question(self, requests, run)

    return TimedVLLM


def vllm_for_system(system, ctx, questions, texts: list[str], **kw):
    """A system's rendered prompts scored by vLLM: the base model, or the system's adapter served on it."""
    adapter = getattr(system, "adapter", None)  # an AdapterSystem's AdapterTrainer
    ctx.release_base_model()  # vLLM takes its share of the GPU's memory when its engine starts
    folder = adapter.folder if adapter is not None else None
    return run_vllm_eval(
        ctx.spec, ctx.model_ref.path, ctx.tokenizer, questions, texts, adapter=folder, dtype=ctx.dtype, **kw
    )


def free_cuda_cache() -> None:
    """Hand back what torch's allocator caches (training, a released model) before vLLM sizes its share."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_vllm_eval(
    spec,
    model_path: str,
    tokenizer,
    questions,
    prompts: list[str],
    *,
    adapter: Path | None,
    task_name: str,
    batch_size: int,
    warmup: int,
    dtype: str,
    progress=None,
):
    """The vLLM twin of harness.evaluate.run_lm_eval: one Measurement per question, in input order."""
    _lm_eval_quiet()
    free_cuda_cache()
    n_choices = max((len(q.choices) for q in questions if q.choices), default=1)
    TimedVLLM = make_timed_vllm_class()
    lm = TimedVLLM(
        **engine_args(spec, model_path, dtype, lora_rank_bound(spec)),
        adapter=adapter,
        batch_size=batch_size * n_choices,
        max_gen_toks=spec.evaluation.max_new_tokens,
        # lm-eval starts data-parallel replicas per call: there, all questions go in one call, and each is
        # charged its share of it (docs/scale.md)
        questions_per_batch=len(questions) if spec.evaluation.vllm.data_parallel_size > 1 else batch_size,
        warmup=min(warmup, len(questions)),
        progress=progress,
    )
    return score_with(
        lm, tokenizer, questions, prompts, spec.answer_format, task_name, spec.evaluation.max_new_tokens, spec.seed
    )
