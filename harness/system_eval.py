"""A system's answers to the test questions, with what they cost: measured now through lm-eval or vLLM, or
read back from the evaluation cache when nothing that decides them changed (harness.evalcache).

`evaluate_or_reuse` is the one entry point the pipeline (harness.run) calls per system; it renders the system's
prompts, scores the test questions (timed, one user's latency) and the calibration questions (batched, untimed),
and measures the system's serving memory through the run's ledger (ctx.memory).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness import evalcache
from harness.calibration import calibration_questions, calibration_threshold
from harness.context import RunContext, stage_name
from harness.evaluate import run_lm_eval
from harness.evaluate_vllm import vllm_for_system
from harness.measure import timer
from harness.records import EvaluationReused, GoldCut, Measurement, Passage, ServingMemory
from harness.serving import own_base_model, serving_memory


def throughput_batch(ctx: RunContext, prompts: list[str], token_budget: int = 1024, most: int = 8) -> int:
    """Questions per forward pass for a pass whose latency nobody reads (calibration): as many as fit
    `token_budget` prompt tokens. Batching pays for short prompts only; long RAG prompts gain nothing and would
    only multiply the logits' memory (see docs/performance.md, "Calibration batches")."""
    if not prompts:
        return 1
    longest = max(len(ctx.tokenizer(p).input_ids) for p in prompts)
    return max(1, min(most, token_budget // max(1, longest)))


def with_retrieval(m: Measurement, passages: list[dict], ranked_doc_ids: list[str], seconds: float) -> Measurement:
    """A retrieval system's measurement: what it retrieved, and the latency a user sees (retrieval + model)."""
    return m.model_copy(
        update={
            "retrieved": [Passage.model_validate(p) for p in passages],
            "ranked_doc_ids": ranked_doc_ids,
            "retrieval_latency_s": seconds,
            "model_latency_s": m.latency_s,
            "latency_s": m.latency_s + seconds,
        }
    )


def evaluate_system(
    system, ctx: RunContext, questions, task_name: str, *, timed: bool = True, prompts=None
) -> list[Measurement]:
    """One Measurement per question. `timed=False` (calibration): batched for throughput, latency not
    recorded. `prompts`: the system's rendered prompts for `questions`, when the caller has them already."""
    spec = ctx.spec
    prompts = prompts if prompts is not None else system.prompts(questions)
    batch = spec.evaluation.batch_size if timed else throughput_batch(ctx, prompts.texts)
    progress = ctx.reporter.progress(f"{system.name}: {task_name.rsplit('_', 1)[-1]}", len(questions))
    warmup = spec.evaluation.warmup if timed else 0
    if spec.evaluation.backend == "vllm":  # vLLM loads the weights itself and serves an adapter unmerged
        kw = {"task_name": task_name, "batch_size": batch, "warmup": warmup, "progress": progress}
        measured = vllm_for_system(system, ctx, questions, prompts.texts, **kw)
    else:
        with system.model() as model:
            import torch

            torch.manual_seed(spec.seed)
            measured = run_lm_eval(
                model,
                ctx.tokenizer,
                questions,
                prompts.texts,
                answer_format=spec.answer_format,
                task_name=task_name,
                batch_size=batch,
                warmup=warmup,
                max_new_tokens=spec.evaluation.max_new_tokens,
                seed=spec.seed,
                dtype=ctx.dtype,
                progress=progress,
            )
    if prompts.retrieved is None:
        return measured
    measured = [
        with_retrieval(m, prompts.retrieved[i], prompts.ranked_doc_ids[i], prompts.retrieval_latency_s[i])
        for i, m in enumerate(measured)
    ]
    if prompts.gold_cuts is not None:
        measured = [m.model_copy(update={"gold_context": GoldCut(**c)}) for m, c in zip(measured, prompts.gold_cuts)]
    return measured


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


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
    )
    stored = None if ctx.reevaluate else evalcache.load(ctx.spec.name, key, rep.log)
    if stored is not None:
        rep.log(
            f"  {name}: nothing that decides its answers changed: reusing its evaluation measured "
            f"{stored.measured_at} (--reevaluate measures again)"
        )
        return Evaluation(
            stored.test,
            calibration_threshold(ctx, cal_q, stored.calibration),
            stored.peak_memory_mb,
            stored.cuda_peak_memory_mb,
            EvaluationReused(measured_at=stored.measured_at, seconds=stored.seconds),
            serving_memory=stored.serving_memory,
            budget_tokens=test_prompts.budget_tokens,
            key=key,
            prompts=test_prompts,
        )
    if not own_base_model(system):
        ctx.base_model()  # loaded before the footprint starts, so that it counts once, as a resource
    stage = rep.stage(stage_name(name, "evaluate", len(ctx.data.test)))
    with stage, ctx.memory.footprint() as mem, timer() as took:
        test = evaluate_system(system, ctx, ctx.data.test, _task_name(name, "test"), prompts=test_prompts)
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
    )
