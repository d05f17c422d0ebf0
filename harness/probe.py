"""A short probe of this machine for harness.estimate: the rates each stage's work is multiplied by.

- evaluation: the run's own path (lm-eval through harness.evaluate, the task's model, its dtype and threads)
  on a few real test prompts at two lengths: seconds per question = a + b * prompt tokens, and lm-eval's own
  overhead per call;
- training: a warm-up and a timed optimiser step of each adapter method the run will train, on real training
  rows (the run's loss on the answer positions, its precision), giving padded tokens per second;
- retrieval: loading the embedder and embedding real chunks and a question.
Together about 30 s on the 2-core dev machine; nothing is written anywhere.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

from harness.evaluate import run_lm_eval
from harness.measure import PeakMemory, timer
from harness.parts import answer_loss

EVAL_QUESTIONS = 4  # per prompt length
# Rows per probe step: as many as fit this many tokens (at least one), up to finetune.batch_size: the rows of one
# training forward pass (rag+lora's micro-batch, harness.systems.rag_finetune.MICRO_BATCH_TOKENS; plain lora's
# 8 short rows). A smaller probe step ran at a lower rate per token than the trainer's steps.
TRAIN_TOKENS_PER_STEP = 1024
# Timed steps after the warm-up; the rate is the fastest one's. One timed step of 5 short rows had estimated lora's
# training 40% too slow (docs/performance.md, "The estimate's training rate").
TRAIN_TIMED_STEPS = 2
# Chunks embedded in the timed batch: the index embeds in batches of 64, and a batch of 8 ran ~40% slower per chunk
# than the index build (docs/performance.md, "The estimate's embedding rate").
EMBED_TIMED_CHUNKS = 32
# Part of every stored figure's key: bump it when what the probe measures, or the speed of what it measures,
# changes (2: the fastest of two timed steps of a trainer-sized batch, RAFT rows apart from plain ones; adapters
# scored with the standard-strides head; 3: embedding timed on a batch of EMBED_TIMED_CHUNKS; 4: the scoring
# workers' speed-up; 5: training steps on the adapter's training workers).
PROBE_VERSION = 5


@dataclass
class Rates:
    eval_a: float = 0.0  # seconds per question, fixed part
    eval_b: float = 0.0  # seconds per prompt token
    lm_eval_overhead_s: float = 0.0  # per lm-eval call
    merge_s: float = 0.0  # loading weights for an adapter system's evaluation
    adapter_factor: float = 1.0  # an adapter system's seconds per question over the base model's
    eval_peak_mb: float | None = None
    train_tokens_per_s: dict[str, float] = field(default_factory=dict)
    train_peak_mb: dict[str, float] = field(default_factory=dict)
    train_load_s: float = 0.0
    embedder_load_s: float = 0.0
    embed_chunk_s: float = 0.0
    query_embed_s: float = 0.0
    embed_peak_mb: float | None = None
    workers: int = 1  # the run's scoring workers (harness.workers)
    workers_speedup: float = 1.0  # an untimed pass on them: seconds one at a time over seconds side by side


def _filler(ctx, tokens: int) -> str:
    """Text of about `tokens` model tokens, from the task's own documents (or questions)."""
    source = " ".join(d.text for d in ctx.data.corpus[:20]) or " ".join(q.question for q in ctx.data.train)
    ids = ctx.tokenizer(source, add_special_tokens=False).input_ids
    while ids and len(ids) < tokens:
        ids = ids + ids
    return ctx.tokenizer.decode(ids[:tokens])


def _at_batch_one(ctx, model, qs, texts, name: str, warmup: int, workers: int = 1) -> tuple[list, float]:
    """(Measurements, wall seconds) of scoring `texts` at batch 1, after `warmup` untimed: one after another, or
    side by side on `workers` (harness.workers) as the run's untimed passes score them."""
    spec = ctx.spec
    start = time.perf_counter()
    measured = run_lm_eval(
        model,
        ctx.tokenizer,
        qs,
        texts,
        answer_format=spec.answer_format,
        task_name=name,
        batch_size=1,
        warmup=warmup,
        max_new_tokens=spec.evaluation.max_new_tokens,
        seed=spec.seed,
        dtype=ctx.dtype,
        workers=workers,
    )
    return measured, time.perf_counter() - start


def _timed_questions(ctx, model, qs, texts, name: str, warmup: int = 1) -> tuple[list, float]:
    """((prompt tokens, seconds) per question, lm-eval's overhead) of scoring `texts` one at a time, after
    `warmup` of them untimed (the first calls of a process pay for allocating its buffers)."""
    measured, wall = _at_batch_one(ctx, model, qs, texts, name, warmup)
    lat = [m.latency_s for m in measured]
    return [(m.prompt_tokens, m.latency_s) for m in measured], max(0.0, wall - sum(lat) - sum(lat[:warmup]))


def probe_adapter(ctx, qs, texts, method: str, plain_s: float, r: Rates) -> None:
    """An adapter system's evaluation as the run does it: a (fresh, untrained) adapter put on the shared model
    and merged, scored, unloaded, and the shared model loaded again."""
    from peft import get_peft_model

    from harness.parts.trainers import lora_config

    s = ctx.spec.finetune.for_method(method)
    with timer() as took:
        peft = get_peft_model(ctx.base_model(), lora_config(s, use_dora=method == "dora"))
        peft.eval()
        peft.merge_adapter()
    merge = took()
    try:
        points, _ = _timed_questions(ctx, peft, qs, texts, "harness_probe_adapter")
        seconds = statistics.median(t for _, t in points)
    finally:
        peft.unload()
        ctx.release_base_model()
    with timer() as took:
        ctx.base_model()
    r.merge_s = merge + took()
    r.adapter_factor = max(1.0, seconds / plain_s) if plain_s > 0 else 1.0


def probe_eval(ctx, short_tokens: float, long_tokens: float, r: Rates, adapter: str | None = None) -> None:
    """Time the evaluation path on real questions: plain prompts and the same questions padded to `long_tokens`,
    interleaved in one pass (on a shared machine, the two lengths then see the same load); with `adapter` (a
    method), the plain prompts again through a merged adapter."""
    spec = ctx.spec
    qs = ctx.data.test[:EVAL_QUESTIONS] or ctx.data.train[:EVAL_QUESTIONS]
    with PeakMemory() as mem:
        model = ctx.base_model()
        plain = [ctx.prompts.plain(q) for q in qs]
        extra = max(0, int(long_tokens - short_tokens))
        passage = {"doc_id": "probe", "chunk": 0, "score": 1.0, "text": _filler(ctx, extra)}
        if extra > 32:
            long = [ctx.prompts.with_passages(q, [passage]) for q in qs]
            questions = [q for q in qs for _ in (0, 1)]
            texts = [t for pair in zip(plain, long) for t in pair]
        else:
            questions, texts = qs, plain
        # the first short and long question run untimed first: their buffers are then allocated, as in a run
        points, r.lm_eval_overhead_s = _timed_questions(
            ctx, model, questions, texts, "harness_probe", warmup=2 if extra > 32 else 1
        )
        r.workers = ctx.scoring_workers()
        if r.workers > 1:
            r.workers_speedup = _workers_speedup(ctx, model, questions, texts, points, r)
        shorts = points[:: 2 if extra > 32 else 1]
        longs = points[1::2] if extra > 32 else []
        t1, s1 = statistics.mean(t for t, _ in shorts), statistics.median(s for _, s in shorts)
        if adapter is not None:
            probe_adapter(ctx, qs, plain, adapter, s1, r)
    r.eval_peak_mb = round(mem.peak_mb, 1)
    if spec.answer_format == "free-text":  # a generation's time is mostly its tokens: the fixed part per token
        r.eval_a, r.eval_b = s1 / (spec.evaluation.max_new_tokens + 1), 0.0
        return
    r.eval_a, r.eval_b = s1, 0.0
    if longs:
        t2, s2 = statistics.mean(t for t, _ in longs), statistics.median(s for _, s in longs)
        if t2 > t1 and s2 > s1:
            r.eval_b = (s2 - s1) / (t2 - t1)
            r.eval_a = max(0.0, s1 - r.eval_b * t1)


def _workers_speedup(ctx, model, qs, texts, points, r: Rates) -> float:
    """The timed questions (`points`: their seconds one at a time) scored again untimed on the run's workers, as
    the accuracy pass scores them: how many times faster side by side."""
    side_by_side = _at_batch_one(ctx, model, qs, texts, "harness_probe_workers", 0, r.workers)[1]
    side_by_side -= r.lm_eval_overhead_s
    return round(sum(s for _, s in points) / side_by_side, 3) if side_by_side > 0 else 1.0


def probe_train(
    ctx, method: str, rows: list[tuple[list[int], int]], r: Rates, key: str | None = None, workers: int = 1
) -> None:
    """One warm-up and TRAIN_TIMED_STEPS timed optimiser steps of `method` (an adapter's `settings_of`: lora for
    dpo and orpo) on `rows` ((token ids, answer length) each), their rows split over `workers` threads as the
    trainer splits them; the rate is the fastest timed step's, stored under `key` (default: the method)."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from harness.parts.trainers import lora_config

    s = ctx.spec.finetune.for_method(method)
    longest = max(len(ids) for ids, _ in rows)
    take = max(1, min(s.batch_size, TRAIN_TOKENS_PER_STEP // max(1, longest)))
    rows = rows[:take]
    width = max(len(ids) for ids, _ in rows)
    pad = ctx.tokenizer.pad_token_id or 0
    input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in rows])
    attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows])
    labels = torch.full_like(input_ids, -100)
    for i, (ids, answer) in enumerate(rows):
        labels[i, len(ids) - answer : len(ids)] = input_ids[i, len(ids) - answer : len(ids)]
    with PeakMemory() as mem:
        with timer() as took:
            base = AutoModelForCausalLM.from_pretrained(ctx.model_ref.path, dtype=torch.float32)
        r.train_load_s = max(r.train_load_s, took())
        model = get_peft_model(base, lora_config(s, use_dora=method == "dora"))
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=s.learning_rate)
        bf16 = ctx.use_bf16(s.bf16)
        backbone = getattr(model.get_base_model(), model.get_base_model().base_model_prefix)
        head = model.get_base_model().get_output_embeddings()
        times = []
        for _ in range(1 + TRAIN_TIMED_STEPS):
            start = time.perf_counter()
            answer_loss.step(backbone, head, opt, input_ids, attention, labels, bf16, workers)
            times.append(time.perf_counter() - start)
    key = key or method
    r.train_tokens_per_s[key] = input_ids.numel() / min(times[1:])
    r.train_peak_mb[key] = round(mem.peak_mb, 1)
    del model, base, opt


def probe_embed(ctx, r: Rates) -> tuple[int, list[str]]:
    """Load the embedder and embed a few real chunks; returns the number of chunks the index will hold and the
    first chunks' texts."""
    from harness.chunking import chunk_documents
    from harness.retrieval import max_content_tokens

    rag = ctx.spec.rag
    with PeakMemory() as mem:
        with timer() as took:
            embedder = ctx.embedder()
        r.embedder_load_s = took()
        chunks = chunk_documents(
            ctx.data.corpus, embedder.tokenizer, rag.chunk_tokens, rag.overlap, max_content_tokens(embedder)
        )
        sample = [c.text for c in chunks[: 2 + EMBED_TIMED_CHUNKS]]
        embedder.encode(sample[:2])  # warm-up
        with timer() as took:
            embedder.encode(sample[2:])
        r.embed_chunk_s = took() / max(1, len(sample[2:]))
        queries = [ctx.prompts.user_text(q) for q in ctx.data.test[:3]]
        with timer() as took:
            for q in queries:
                embedder.encode([q])
        r.query_embed_s = took() / max(1, len(queries))
    r.embed_peak_mb = round(mem.peak_mb, 1)
    return len(chunks), sample


def rows_of(ctx, texts: list[tuple[str, str]]) -> list[tuple[list[int], int]]:
    """(token ids, answer tokens) of (prompt, completion) rows, as training tokenises them."""
    out = []
    for prompt, completion in texts:
        p = ctx.tokenizer(prompt).input_ids
        a = [*ctx.tokenizer(completion, add_special_tokens=False).input_ids, ctx.tokenizer.eos_token_id or 0]
        out.append((p + a, len(a)))
    return out


# ---------------------------------------------------------------- measured once per machine and setting


EVAL_FIELDS = (
    "eval_a",
    "eval_b",
    "lm_eval_overhead_s",
    "merge_s",
    "eval_peak_mb",
    "adapter_factor",
    "workers",
    "workers_speedup",
)
EMBED_FIELDS = ("embedder_load_s", "embed_chunk_s", "query_embed_s", "embed_peak_mb")


def train_rate_key(method: str, raft: bool) -> str:
    """The key of a training rate in Rates: the method, or rag+method for RAFT rows (prompts with passages)."""
    return f"rag+{method}" if raft else method


def _machine() -> list:
    import os
    import platform

    import torch

    from harness import openmp

    # how idle OpenMP threads wait changes the batch-1 rates the estimate uses (harness.openmp)
    cpu = [platform.machine(), platform.processor(), os.cpu_count(), torch.get_num_threads(), openmp.mode()]
    return [*cpu, torch.__version__]


def _stored(key: str) -> dict | None:
    import json

    from harness import cache

    try:
        return json.loads((cache.home() / "probe" / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None


def _store(key: str, data: dict, log) -> None:
    from harness import cache, files
    from harness.errors import HarnessError

    if cache.read_only():
        return
    path = cache.home() / "probe" / f"{key}.json"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        files.write_json_atomic(path, data)
    except (OSError, HarnessError) as e:
        log(f"  could not store the probe's figures ({e}); the next estimate will probe again")


class NotStored(Exception):
    """`measure(..., stored_only=True)` found a rate no earlier probe stored."""


def measure(ctx, built: list, with_index: bool, log, stored_only: bool = False) -> tuple[Rates, int, float, list[str]]:
    """The rates for `built` on this machine: read back where an earlier probe with the same model, settings
    and machine stored them (HARNESS_HOME/probe/), else probed now (`stored_only`: raise NotStored instead).
    Returns (rates, chunks in the index, model tokens per chunk, what was read back)."""
    from harness import __version__, cache
    from harness.systems.finetune import training_rows

    spec, r, reused = ctx.spec, Rates(), []
    machine = [__version__, PROBE_VERSION, ctx.model_ref.fingerprint, ctx.dtype, ctx.device, *_machine()]
    sample = ctx.data.test[:20]
    short = sum(ctx.prompts.tokens(ctx.prompts.plain(q)) for q in sample) / max(1, len(sample))
    n_chunks, chunk_tokens = 0, 0.0
    if with_index:
        key = cache.key_of("embed", machine, spec.rag.embedder, spec.rag.chunk_tokens, spec.rag.overlap)
        stored = _stored(key)
        if stored is not None:
            for f in EMBED_FIELDS:
                setattr(r, f, stored[f])
            reused.append("embedding")
            n_chunks, texts = _chunks(ctx)
        else:
            if stored_only:
                raise NotStored("embedding")
            n_chunks, texts = probe_embed(ctx, r)
            _store(key, {f: getattr(r, f) for f in EMBED_FIELDS}, log)
        chunk_tokens = sum(ctx.prompts.tokens(t) for t in texts) / max(1, len(texts))
    budget = min(spec.rag.max_prompt_tokens, ctx.model_max_length()) - spec.evaluation.max_new_tokens
    long = min(budget, max(2 * short, short + spec.rag.k * chunk_tokens))
    adapters = [s.adapter.method for s in built if getattr(s, "adapter", None) is not None]
    adapter = next((m for m in adapters if m != "qlora"), None)
    workers = ctx.scoring_workers()
    key = cache.key_of("eval", machine, spec.answer_format, spec.evaluation.max_new_tokens, adapter, workers)
    stored = _stored(key)
    if stored is not None and stored.get("long", 0) >= long and all(f in stored for f in EVAL_FIELDS):
        for f in EVAL_FIELDS:
            setattr(r, f, stored[f])
        reused.append("evaluation")
    else:
        if stored_only:
            raise NotStored("evaluation")
        probe_eval(ctx, short, long, r, adapter)
        _store(key, {**{f: getattr(r, f) for f in EVAL_FIELDS}, "long": long}, log)
    methods = {}  # rate key -> (method, RAFT rows): rag+lora's long rows train at their own rate, apart from lora's
    for s in built:
        adapter = getattr(s, "adapter", None)
        if adapter is not None and adapter.cached() is None:
            method = adapter.settings_of  # dpo and orpo train an adapter of lora's shape, at lora's rate
            raft = s.kind == "rag+finetune"
            if not (train_rate_key(method, raft) in methods and adapter.method in ("dpo", "orpo")):
                methods[train_rate_key(method, raft)] = (method, raft, adapter.workers)  # lora's own workers
    for rate_key, (method, raft, train_workers) in methods.items():
        settings = spec.finetune.for_method(method)
        dump = settings.model_dump(mode="json", exclude={"workers"})
        key = cache.key_of("train", machine, method, dump, raft, train_workers)
        stored = _stored(key)
        if stored is not None:
            r.train_tokens_per_s[rate_key], r.train_peak_mb[rate_key] = stored["tokens_per_s"], stored["peak_mb"]
            r.train_load_s = max(r.train_load_s, stored["load_s"])
            reused.append(f"{rate_key} training")
            continue
        if stored_only:
            raise NotStored(f"{rate_key} training")
        rows = rows_of(ctx, [(x["prompt"], x["completion"]) for x in training_rows(ctx, ctx.data.train[:16])])
        if raft:  # RAFT rows: the prompt filled with passages to the training length
            filler = _filler(ctx, settings.max_length)
            ids = ctx.tokenizer(filler, add_special_tokens=False).input_ids[: settings.max_length - 4]
            rows = [(ids + row[-answer:], answer) for row, answer in rows]
        probe_train(ctx, method, rows, r, rate_key, train_workers)
        _store(
            key,
            {
                "tokens_per_s": r.train_tokens_per_s[rate_key],
                "peak_mb": r.train_peak_mb[rate_key],
                "load_s": r.train_load_s,
            },
            log,
        )
    return r, n_chunks, chunk_tokens, reused


def _chunks(ctx) -> tuple[int, list[str]]:
    from harness.chunking import chunk_documents
    from harness.retrieval import max_content_tokens

    rag, embedder = ctx.spec.rag, ctx.embedder()
    chunks = chunk_documents(
        ctx.data.corpus, embedder.tokenizer, rag.chunk_tokens, rag.overlap, max_content_tokens(embedder)
    )
    return len(chunks), [c.text for c in chunks[: 2 + EMBED_TIMED_CHUNKS]]
