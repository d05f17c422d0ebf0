"""A system's answers to the test questions, with what they cost: measured now through lm-eval or vLLM, or
read back from the evaluation cache when nothing that decides them changed (harness.evalcache).

`evaluate_or_reuse` is the one entry point the pipeline (harness.run) calls per system; it renders the system's
prompts, scores the test questions (in throughput batches, then a seeded sample timed at batch 1: one user's
latency, harness.latency) and the calibration questions (batched, untimed), and measures the system's serving
memory through the run's ledger (ctx.memory).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

from harness import evalcache, latency, openmp
from harness.calibration import calibration_questions, calibration_threshold
from harness.context import RunContext, stage_name
from harness.evaluate import run_lm_eval
from harness.evaluate_vllm import vllm_for_system
from harness.measure import not_counted, timer
from harness.records import BatchedPass, EvaluationReused, GoldCut, Measurement, Passage, ServingMemory
from harness.serving import own_base_model, serving_memory


def throughput_batch(ctx: RunContext, prompts: list[str], token_budget: int = 1024, most: int = 8) -> int:
    """Questions per forward pass for a pass whose latency nobody reads (accuracy, calibration): as many as fit
    `token_budget` prompt tokens. Batching pays for short prompts only; long RAG prompts gain nothing and would
    only multiply the logits' memory (see docs/performance.md, "Calibration batches")."""
    if not prompts:
        return 1
    return batch_of(max(len(ctx.tokenizer(p).input_ids) for p in prompts), token_budget, most)


def batch_of(longest_tokens: float, token_budget: int = 1024, most: int = 8) -> int:
    """The throughput batch for prompts of up to `longest_tokens` (throughput_batch; the estimate's too)."""
    return max(1, min(most, token_budget // max(1, int(longest_tokens))))


def accuracy_batch(ctx: RunContext, prompts: list[str]) -> int:
    """Questions per forward pass of the accuracy pass. Throughput batches only in fp32, where a batched
    question's log-likelihoods agree with scoring it alone to ~3e-5 (0 of 60 legal-qa answers moved); in bf16,
    batches of 8 moved 7 of 60 answers (the kernels' rounding depends on the batch's shape), so the pass runs at
    `evaluation.batch_size`, the same answers as before (docs/performance.md, "Throughput-batch scoring")."""
    return accuracy_batch_size(ctx.dtype, ctx.spec.evaluation.batch_size, lambda: throughput_batch(ctx, prompts))


def accuracy_batch_size(dtype: str, batch_size: int, throughput) -> int:
    """accuracy_batch's rule (the estimate's too): `throughput()` in fp32, else `evaluation.batch_size`."""
    return throughput() if dtype == "float32" else batch_size


def with_retrieval(m: Measurement, passages: list[dict], ranked_doc_ids: list[str], seconds: float) -> Measurement:
    """A retrieval system's measurement: what it retrieved, and the latency a user sees (retrieval + model)."""
    return m.model_copy(
        update={
            "retrieved": [Passage.model_validate(p) for p in passages],
            "ranked_doc_ids": ranked_doc_ids,
            "retrieval_latency_s": seconds,
            "model_latency_s": m.latency_s,
            "latency_s": None if m.latency_s is None else m.latency_s + seconds,  # None: outside the latency sample
        }
    )


def _score(
    system, ctx: RunContext, questions, texts: list[str], task_name: str, batch: int, warmup: int, progress, workers=1
):
    """One pass of lm-eval, or vLLM, over `questions` at `batch` questions per call, after `warmup` untimed ones;
    `workers` > 1: side by side, untimed (harness.workers; lm-eval's transformers model only)."""
    spec = ctx.spec
    if spec.evaluation.backend == "vllm":  # vLLM loads the weights itself and serves an adapter unmerged
        kw = {"task_name": task_name, "batch_size": batch, "warmup": warmup, "progress": progress}
        return vllm_for_system(system, ctx, questions, texts, **kw)
    with system.model() as model:
        import torch

        torch.manual_seed(spec.seed)
        return run_lm_eval(
            model,
            ctx.tokenizer,
            questions,
            texts,
            answer_format=spec.answer_format,
            task_name=task_name,
            batch_size=batch,
            warmup=warmup,
            max_new_tokens=spec.evaluation.max_new_tokens,
            seed=spec.seed,
            dtype=ctx.dtype,
            progress=progress,
            workers=workers,
        )


TIMING = ("latency_s", "first_token_s", "tokens_per_s")  # what only the timed latency sample measures


def evaluate_timed(
    system, ctx: RunContext, questions, task_name: str, prompts
) -> tuple[list[Measurement], BatchedPass]:
    """Every question scored for accuracy, untimed, in throughput batches (`accuracy_batch`: in fp32) on the run's
    scoring workers (harness.workers); then the seeded latency sample (harness.latency) timed alone at
    `evaluation.batch_size` after `evaluation.warmup` untimed questions. The accuracy pass's answers are the ones
    scored, so every answer comes from one pass. With one worker and the accuracy batch being that batch size
    (bf16; long RAG prompts), or when the sample is every question (a --limit run of at most `latency_sample`),
    a single timed pass scores everything instead: scoring twice would gain nothing. Measurements outside the
    sample have no latency (None)."""
    ev, texts = ctx.spec.evaluation, prompts.texts
    batch = accuracy_batch(ctx, texts)
    sample = latency.sample_indices(len(questions), ctx.spec.seed, ev.latency_sample)
    workers = ctx.scoring_workers()
    label = f"{system.name}: {task_name.rsplit('_', 1)[-1]}"
    one_pass = len(sample) == len(questions) or (batch == ev.batch_size and workers == 1)
    batch, workers = (ev.batch_size, 1) if one_pass else (batch, workers)
    progress = ctx.reporter.progress(label, len(questions))
    # serving memory is what answering one question at a time takes: a pass of batches or workers is not counted
    with contextlib.nullcontext() if one_pass else not_counted(), timer() as took:
        measured = _score(
            system, ctx, questions, texts, task_name, batch, ev.warmup if one_pass else 0, progress, workers
        )
    batched = _batched(measured, batch, workers, took())
    timed = {i: measured[i] for i in sample}
    if not one_pass and sample:
        qs, ts = [questions[i] for i in sample], [texts[i] for i in sample]
        warm = min(ev.warmup, len(qs))
        progress = ctx.reporter.progress(f"{label} latency sample", len(qs))
        timed = dict(zip(sample, _score(system, ctx, qs, ts, f"{task_name}_latency", ev.batch_size, warm, progress)))
        differ = sum(timed[i].prediction != measured[i].prediction for i in sample)
        if differ:  # the kernels round by the batch's shape and a worker's thread count (docs/performance.md)
            ctx.reporter.log(
                f"  {system.name}: {differ} of {len(sample)} timed answers (batch {ev.batch_size}, alone) differ "
                f"from the accuracy pass's (batch {batch}, {workers} worker(s)); the accuracy pass's are scored"
            )
    untimed = dict.fromkeys(TIMING)
    measured = [
        m.model_copy(update={k: getattr(timed[i], k) for k in TIMING} if i in timed else untimed)
        for i, m in enumerate(measured)
    ]
    return _with_prompts(measured, prompts), batched


def _batched(measured: list[Measurement], batch: int, workers: int, seconds: float) -> BatchedPass:
    """The accuracy pass's throughput: `measured` scored at `batch` on `workers` in `seconds` of wall time."""
    tokens = sum(m.prompt_tokens for m in measured)
    return BatchedPass(
        batch_size=batch,
        workers=workers,
        n=len(measured),
        seconds=round(seconds, 2),
        questions_per_s=round(len(measured) / seconds, 3) if seconds > 0 else 0.0,
        tokens_per_s=round(tokens / seconds, 1) if seconds > 0 else 0.0,
    )


def _with_prompts(measured: list[Measurement], prompts) -> list[Measurement]:
    """A retrieval system's measurements with what it retrieved; the oracle's with its gold-document cuts."""
    if prompts.retrieved is None:
        return measured
    measured = [
        with_retrieval(m, prompts.retrieved[i], prompts.ranked_doc_ids[i], prompts.retrieval_latency_s[i])
        for i, m in enumerate(measured)
    ]
    if prompts.gold_cuts is not None:
        measured = [m.model_copy(update={"gold_context": GoldCut(**c)}) for m, c in zip(measured, prompts.gold_cuts)]
    return measured


def evaluate_system(
    system, ctx: RunContext, questions, task_name: str, *, timed: bool = True, prompts=None
) -> list[Measurement]:
    """One Measurement per question. `timed=False` (calibration): batched for throughput, latency not
    recorded. `prompts`: the system's rendered prompts for `questions`, when the caller has them already."""
    prompts = prompts if prompts is not None else system.prompts(questions)
    if timed:
        return evaluate_timed(system, ctx, questions, task_name, prompts)[0]
    progress = ctx.reporter.progress(f"{system.name}: {task_name.rsplit('_', 1)[-1]}", len(questions))
    batch = throughput_batch(ctx, prompts.texts)
    with not_counted():  # not serving: calibration fits a threshold (the serving peak is one question at a time)
        measured = _score(system, ctx, questions, prompts.texts, task_name, batch, 0, progress, ctx.scoring_workers())
    return _with_prompts([m.model_copy(update=dict.fromkeys(TIMING)) for m in measured], prompts)


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _wait_then(wait: str | None) -> str:
    """Where the stored latency was measured with idle threads waiting otherwise than in this run (harness.openmp)."""
    return f" (idle CPU threads then: {wait}; now: {openmp.mode()})" if wait and wait != openmp.mode() else ""


def _task_name(name: str, part: str) -> str:
    return re.sub(r"\W", "_", f"harness_{name}_{part}")  # lm-eval task names: `lora[r=4]` -> harness_lora_r_4_


@dataclass(frozen=True)
class Evaluation:
    """A system's test measurements and calibration threshold, the memory evaluating them took, and, when they
    were read back from the evaluation cache, when they were measured."""

    test: list[Measurement]
    threshold: float | None
    peak_memory_mb: float
    cuda_peak_memory_mb: float | None
    reused: EvaluationReused | None = None
    serving_memory: ServingMemory | None = None
    budget_tokens: int | None = None  # oracle: the prompt budget its gold documents were fitted into
    key: str | None = None  # the evaluation cache's key (what the throughput probe is stored beside)
    batched_pass: BatchedPass | None = None  # the accuracy pass's throughput
    prompts: object = None  # the system's rendered test prompts (parts.outputs.Prompts)


def evaluate_or_reuse(system, ctx: RunContext) -> Evaluation:
    """Test measurements and calibration threshold: measured now, or read back when nothing that decides them
    changed since they were measured (see harness.evalcache)."""
    name, rep = system.name, ctx.reporter
    test_prompts = system.prompts(ctx.data.test)
    cal_q = calibration_questions(ctx)
    cal_prompts = system.prompts(cal_q) if cal_q else None
    key = evalcache.key(
        system,
        ctx,
        (ctx.data.test, test_prompts.texts),
        (cal_q, cal_prompts.texts) if cal_q else None,
        _torch_threads(),
        ctx.scoring_workers(),
    )
    stored = None if ctx.reevaluate else evalcache.load(ctx.spec.name, key, rep.log)
    if stored is not None:
        rep.log(
            f"  {name}: nothing that decides its answers changed: reusing its evaluation measured "
            f"{stored.measured_at}{_wait_then(stored.openmp_wait)} (--reevaluate measures again)"
        )
        return Evaluation(
            stored.test,
            calibration_threshold(ctx, cal_q, stored.calibration),
            stored.peak_memory_mb,
            stored.cuda_peak_memory_mb,
            EvaluationReused(measured_at=stored.measured_at, seconds=stored.seconds, openmp_wait=stored.openmp_wait),
            serving_memory=stored.serving_memory,
            budget_tokens=test_prompts.budget_tokens,
            key=key,
            prompts=test_prompts,
            batched_pass=stored.batched_pass,
        )
    if not own_base_model(system):
        ctx.base_model()  # loaded before the footprint starts, so that it counts once, as a resource
    stage = rep.stage(stage_name(name, "evaluate", len(ctx.data.test)))
    with stage, ctx.memory.footprint() as mem, timer() as took:
        test, batched = evaluate_timed(system, ctx, ctx.data.test, _task_name(name, "test"), test_prompts)
        calibration = (
            evaluate_system(system, ctx, cal_q, _task_name(name, "calibration"), timed=False, prompts=cal_prompts)
            if cal_q
            else None
        )
    peak = mem.peak_mb
    serving = serving_memory(mem)
    evalcache.save(
        ctx.spec.name,
        key,
        test=test,
        calibration=calibration,
        peak_memory_mb=peak,
        cuda_peak_memory_mb=mem.cuda_peak_mb,
        seconds=took(),
        log=rep.log,
        serving_memory=serving,
        batched_pass=batched,
    )
    threshold = calibration_threshold(ctx, cal_q, calibration)
    return Evaluation(
        test,
        threshold,
        peak,
        mem.cuda_peak_mb,
        None,
        serving_memory=serving,
        budget_tokens=test_prompts.budget_tokens,
        key=key,
        prompts=test_prompts,
        batched_pass=batched,
    )
