"""Evaluation through lm-eval: generate a task from the TaskSpec, run it, return one Measurement per question.

Each system renders its own prompts (base prompt, retrieved passages, ...) before lm-eval sees them, so
lm-eval scores exactly the text the system would send, and its request cache can never mix prompts of
two systems. Choice tasks are scored by comparing log-likelihoods of the options; free-text tasks by
greedy generation, then our scorers.

Latency: `TimedHFLM` runs lm-eval's own batched code one question at a time and times each question,
after `warmup` untimed questions. That is the latency a single user sees.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from unittest import mock

import yaml

from harness import workers
from harness.constants import CHOICE_FORMATS, AnswerFormat
from harness.data import Question
from harness.records import Measurement


def _lm_eval_quiet() -> None:
    for name in ("lm-eval", "lm_eval", "lm_eval.evaluator", "lm_eval.models.huggingface", "lm_eval.api.task"):
        logging.getLogger(name).setLevel(logging.ERROR)


def per_question(lm, requests, run):
    """Run `lm.questions_per_batch` questions per call (1: the latency a single user sees) after `lm.warmup`
    untimed ones; each question of a call is charged the call's time divided by the questions in it. The one
    timing rule of both backends (TimedHFLM here, harness.evaluate_vllm.TimedVLLM). With `lm.workers` > 1 the
    calls run side by side (harness.workers): an untimed pass, whose seconds say nothing about latency."""
    groups: dict[int, list[int]] = defaultdict(list)
    for i, req in enumerate(requests):
        groups[req.doc_id].append(i)
    out: list = [None] * len(requests)
    order = list(groups)
    for doc_id in order[: lm.warmup]:  # untimed: first calls pay for lazy init and allocator warm-up
        run([requests[i] for i in groups[doc_id]])
    n = max(1, lm.questions_per_batch)

    def call(docs: list[int]) -> None:
        idx = [i for d in docs for i in groups[d]]
        lm._current_doc = docs[0] if len(docs) == 1 else None
        start = time.perf_counter()
        res = run([requests[i] for i in idx])
        took = time.perf_counter() - start
        for d in docs:
            lm.seconds[d] = took / len(docs)
        if lm.progress:
            lm.progress(len(docs))
        for i, r in zip(idx, res):
            out[i] = r

    workers.run_shared((order[b : b + n] for b in range(0, len(order), n)), call, getattr(lm, "workers", 1))
    return out


def make_timed_lm_class():
    from lm_eval.models.huggingface import HFLM

    class TimedHFLM(HFLM):
        """HFLM that answers one question (all its choices) at a time and records seconds per question."""

        def __init__(self, *args, warmup: int = 0, questions_per_batch: int = 1, progress=None, workers=1, **kwargs):
            self._call = threading.local()  # what one call passes between methods: its own on every worker
            self._tokenizer_lock = threading.Lock()  # a fast tokenizer's padding settings are shared state
            super().__init__(*args, **kwargs)
            self.progress = progress
            self.warmup = warmup
            self.questions_per_batch = questions_per_batch
            self.workers = workers
            self.seconds: dict[int, float] = {}
            self.new_tokens: dict[int, int] = {}
            self.first_token_s: dict[int, float] = {}
            self.hit_limit: dict[int, bool] = {}

        # this call's generations that used the whole token budget; its question; the logits positions it needs
        _limit_texts = property(lambda s: s._call.__dict__.setdefault("limit_texts", set()))
        _current_doc = property(lambda s: getattr(s._call, "doc", None), lambda s, v: setattr(s._call, "doc", v))
        _logits_keep = property(lambda s: getattr(s._call, "keep", None), lambda s, v: setattr(s._call, "keep", v))

        def tok_encode(self, *args, **kwargs):
            with self._tokenizer_lock:
                return super().tok_encode(*args, **kwargs)

        def tok_batch_encode(self, *args, **kwargs):
            with self._tokenizer_lock:
                return super().tok_batch_encode(*args, **kwargs)

        def tok_decode(self, *args, **kwargs):
            with self._tokenizer_lock:
                return super().tok_decode(*args, **kwargs)

        def _per_question(self, requests, run):
            return per_question(self, requests, run)

        def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
            # The positions whose logits this call needs, from lm-eval's own tokens: rows are right-padded to
            # the longest, so the last `keep` positions of the padded batch hold every row's continuation when
            # keep >= longest - shortest + longest continuation.
            whole = [len(ctx) + len(cont) for _, ctx, cont in requests]
            if requests and max(whole) <= self.max_length + 1:
                self._logits_keep = max(whole) - min(whole) + max(len(cont) for _, _, cont in requests)
            try:
                return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
            finally:
                self._logits_keep = None

        def _model_call(self, inps, attn_mask=None, labels=None):
            # Scoring Yes/No needs the logits of the last position only, but the model projects every position
            # through its vocabulary head and lm-eval then log-softmaxes them all (see docs/performance.md,
            # "Scoring only the last positions"). Keep the last positions only; lm-eval locates each continuation
            # from the end of the returned logits (ctx_len = inplen + logits_len - padded_len), so its slicing holds.
            keep = self._logits_keep
            if keep is None or keep >= inps.shape[1] or attn_mask is not None or self.backend != "causal":
                return super()._model_call(inps, attn_mask=attn_mask, labels=labels)
            import torch

            with (
                torch.no_grad(),
                torch.autocast(
                    device_type=self.device.type,
                    dtype=self.mixed_precision_dtype,
                    enabled=self.mixed_precision_dtype is not None,
                ),
            ):
                try:
                    return self.model(inps, logits_to_keep=keep).logits
                except TypeError:  # a model whose forward has no logits_to_keep
                    self._logits_keep = None
                    return self.model(inps).logits

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            return self._per_question(requests, lambda rs: super(TimedHFLM, self).loglikelihood(rs, disable_tqdm=True))

        def _model_generate(self, context, max_length, stop, **generation_kwargs):
            out = self._generate_timed(context, max_length, stop, **generation_kwargs)
            # A row that used the whole budget (max_length - prompt) without an end token or a stop sequence was
            # cut off by max_new_tokens. lm-eval returns its text as decoded here (no stop sequence to remove),
            # so generate_until recognises it by that text, whatever order lm-eval batched the rows in.
            budget = max_length - context.shape[1]
            ends = {t for t in (self.tokenizer.eos_token_id, self.tokenizer.pad_token_id) if t is not None}
            for row in out[:, context.shape[1] :].tolist():
                if len(row) >= budget and not ends.intersection(row):
                    text = self.tok_decode(row)
                    if not any(s and s in text for s in stop):
                        self._limit_texts.add(text)
            return out

        def _generate_timed(self, context, max_length, stop, **generation_kwargs):
            # A streamer sees the prompt first, then each new token: the second call marks the first token.
            if context.shape[0] != 1:
                return super()._model_generate(context, max_length, stop, **generation_kwargs)
            calls, start, doc = [0], time.perf_counter(), self._current_doc
            lm = self

            class FirstToken:
                def put(self, value):
                    calls[0] += 1
                    if calls[0] == 2 and doc is not None:
                        lm.first_token_s[doc] = time.perf_counter() - start

                def end(self):
                    pass

            return super()._model_generate(context, max_length, stop, streamer=FirstToken(), **generation_kwargs)

        def generate_until(self, requests, disable_tqdm: bool = False):
            def run(rs):
                self._limit_texts.clear()
                res = super(TimedHFLM, self).generate_until(rs, disable_tqdm=True)
                for r, text in zip(rs, res):
                    self.new_tokens[r.doc_id] = len(self.tok_encode(text))
                    self.hit_limit[r.doc_id] = text in self._limit_texts
                return res

            return self._per_question(requests, run)

    return TimedHFLM


def write_lm_eval_task(
    folder: Path, task_name: str, rows: list[dict], answer_format: str, stop: list[str], max_new_tokens: int
) -> None:
    """An lm-eval task YAML + JSONL pair. Paths are absolute: lm-eval resolves relative ones against the cwd."""
    data = folder / f"{task_name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {
        "task": task_name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data.resolve())}},
        "test_split": "test",
        "doc_to_text": "prompt",
    }
    if answer_format in CHOICE_FORMATS:
        # The chat prompt ends with the assistant header, so the option follows it with no delimiter.
        cfg.update(
            {
                "output_type": "multiple_choice",
                "doc_to_choice": "choices",
                "doc_to_target": "gold",
                "target_delimiter": "",
                "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
            }
        )
    else:
        cfg.update(
            {
                "output_type": "generate_until",
                "doc_to_target": "answer",
                "target_delimiter": "",
                "generation_kwargs": {"until": stop, "max_gen_toks": max_new_tokens, "do_sample": False},
                "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
            }
        )
    (folder / f"{task_name}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def run_lm_eval(
    model,
    tokenizer,
    questions: list[Question],
    prompts: list[str],
    *,
    answer_format: str,
    task_name: str,
    batch_size: int,
    warmup: int,
    max_new_tokens: int,
    seed: int,
    dtype: str = "float32",
    progress=None,
    workers: int = 1,
) -> list[Measurement]:
    """Evaluate rendered prompts with lm-eval; one Measurement per question, in input order. `workers` > 1 scores
    them side by side (harness.workers): for passes nobody times."""
    import torch

    _lm_eval_quiet()
    TimedHFLM = make_timed_lm_class()
    # lm-eval wraps each forward in its own autocast (disabled unless mixed_precision_dtype is set), so
    # bf16 must be requested here; an outer autocast would be switched off inside.
    n_choices = max((len(q.choices) for q in questions if q.choices), default=1)
    lm = TimedHFLM(
        pretrained=model,
        tokenizer=tokenizer,
        batch_size=batch_size * n_choices,
        questions_per_batch=batch_size,
        warmup=min(warmup, len(questions)),
        progress=progress,
        workers=workers,
        max_length=getattr(model.config, "max_position_embeddings", 2048),
        # autocast only where the weights are not already bf16
        mixed_precision_dtype=torch.bfloat16 if dtype == "bfloat16" and model.dtype != torch.bfloat16 else None,
        softmax_dtype=torch.float32,
    )  # bf16 log-softmax rounds margins to 0.25 steps: ties ruin AUC
    return score_with(lm, tokenizer, questions, prompts, answer_format, task_name, max_new_tokens, seed)


def score_with(lm, tokenizer, questions, prompts, answer_format, task_name, max_new_tokens, seed) -> list[Measurement]:
    """Score rendered prompts with a timed lm-eval model (either backend); one Measurement per question."""
    import torch
    from lm_eval import evaluator
    from lm_eval.tasks import TaskManager

    rows = []
    for q, p in zip(questions, prompts):
        row = {"id": q.id, "prompt": p, "answer": q.answers[0]}
        if q.choices:
            row.update({"choices": q.choices, "gold": q.gold_index})
        rows.append(row)
    stop = [t for t in {tokenizer.eos_token, "\n"} if t]
    with tempfile.TemporaryDirectory(prefix="harness-lmeval-") as tmp:
        write_lm_eval_task(Path(tmp), task_name, rows, answer_format, stop, max_new_tokens)
        # simple_evaluate also collects environment info (spawning pip and lscpu) and runs `git describe`,
        # twice per system; the run's manifest records versions and machine once, so skip both here.
        with (
            torch.inference_mode(),
            mock.patch.object(evaluator, "add_env_info", lambda *a, **k: None),
            mock.patch.object(evaluator, "get_git_commit_hash", lambda *a, **k: None, create=True),
        ):
            out = evaluator.simple_evaluate(
                model=lm,
                tasks=[task_name],
                task_manager=TaskManager(include_path=tmp, include_defaults=False),
                log_samples=True,
                bootstrap_iters=0,
                random_seed=seed,
                numpy_random_seed=seed,
                torch_random_seed=seed,
                fewshot_random_seed=seed,
                device=str(getattr(lm, "device", "cuda")),  # used only for a model given by name
                verbosity="ERROR",
            )
    if not out or task_name not in out.get("samples", {}):
        raise RuntimeError(f"lm-eval produced no samples for {task_name}")
    by_doc = {s["doc_id"]: s for s in out["samples"][task_name]}
    return [
        _measurement(q, by_doc[i], answer_format, lm, i, len(tokenizer(prompts[i]).input_ids))
        for i, q in enumerate(questions)
    ]


def _measurement(q: Question, sample: dict, answer_format: str, lm, i: int, prompt_tokens: int) -> Measurement:
    """Question `i`'s answer from lm-eval's logged sample, with what the timed model recorded for it."""
    latency = lm.seconds.get(i)
    if q.choices:
        lls = [float(r[0]) for r in sample["filtered_resps"]]
        return Measurement(
            id=q.id,
            latency_s=latency,
            prompt_tokens=prompt_tokens,
            prediction=q.choices[max(range(len(lls)), key=lls.__getitem__)],
            loglikelihoods=lls,
            margin=lls[0] - lls[1] if answer_format == AnswerFormat.YES_NO else None,  # log P(Yes) - log P(No)
        )
    new = lm.new_tokens.get(i)
    return Measurement(
        id=q.id,
        latency_s=latency,
        prompt_tokens=prompt_tokens,
        prediction=str(sample["filtered_resps"][0]).strip(),
        new_tokens=new,
        hit_max_new_tokens=lm.hit_limit.get(i),
        first_token_s=lm.first_token_s.get(i),
        tokens_per_s=new / latency if new and latency else None,
    )
