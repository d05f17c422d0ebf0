"""The throughput probe: questions per second at the best batch size, measured, not assumed.

After a system's accuracy pass, a fixed seeded sample of its own rendered test prompts is scored again at each
batch size of `BATCH_SIZES` (through the same lm-eval path as the evaluation; the answers are discarded, so
accuracy is untouched), and the batch size with the most questions per second is kept. A retrieval system's
retrieval time is added per question by the cost model (harness.cost), since it is measured already.

The result is stored beside the system's stored evaluation (harness.evalcache) and reused with it, so a warm
run does not probe again.
"""

from __future__ import annotations

import json
import random

from harness import evalcache
from harness.evaluate import run_lm_eval
from harness.measure import PeakMemory, timer
from harness.records import Throughput

BATCH_SIZES = (1, 2, 4, 8)
SAMPLE = 8  # questions per batch size: a few seconds per system on the 2-core dev machine


def sample_indices(n: int, seed: int, size: int = SAMPLE) -> list[int]:
    """The probe's questions: a fixed seeded sample of `n` (in order)."""
    return sorted(random.Random(seed).sample(range(n), min(size, n)))


def measure(model, tokenizer, questions, texts: list[str], *, spec, dtype: str, task_name: str) -> Throughput:
    """Score `texts` at each batch size (up to the sample's size); the fastest is the throughput."""
    idx = sample_indices(len(questions), spec.seed)
    qs, ps = [questions[i] for i in idx], [texts[i] for i in idx]
    tried: dict[str, tuple[float, float]] = {}
    with PeakMemory() as mem, timer() as took:
        for b in (b for b in BATCH_SIZES if b <= len(qs)):
            measured = run_lm_eval(
                model,
                tokenizer,
                qs,
                ps,
                answer_format=spec.answer_format,
                task_name=f"{task_name}_b{b}",
                batch_size=b,
                warmup=1,
                max_new_tokens=spec.evaluation.max_new_tokens,
                seed=spec.seed,
                dtype=dtype,
            )
            seconds = sum(m.latency_s or 0.0 for m in measured)
            if seconds > 0:
                tried[str(b)] = (len(qs) / seconds, sum(m.prompt_tokens for m in measured) / seconds)
    best = max(tried, key=lambda b: tried[b][0])
    return Throughput(
        batch_size=int(best),
        questions_per_s=round(tried[best][0], 3),
        tokens_per_s=round(tried[best][1], 1),
        tried={b: round(v[0], 3) for b, v in tried.items()},
        n=len(qs),
        seconds=round(took(), 2),
        peak_memory_mb=round(mem.peak_mb, 1),
    )


def load(task: str, key: str | None) -> Throughput | None:
    """The throughput stored with the evaluation `key`, if any (a damaged file is measured again)."""
    if key is None:
        return None
    path = evalcache.sidecar(task, key, "throughput")
    try:
        return Throughput.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def save(task: str, key: str | None, tp: Throughput, log) -> None:
    if key is not None:
        evalcache.save_sidecar(task, key, "throughput", tp.model_dump(mode="json"), log)


def for_system(system, ctx, evaluation, stage: str) -> Throughput | None:
    """`system`'s throughput after its accuracy pass (`evaluation`: harness.system_eval.Evaluation), or the one stored
    with a reused evaluation. None when it cannot be measured: the run goes on, and the cost model then uses
    the batch-1 latency."""
    name, rep = system.name, ctx.reporter
    stored = load(ctx.spec.name, evaluation.key) if evaluation.reused is not None else None
    if stored is not None:
        return stored
    try:
        # memory as the evaluation measures it (ctx.memory): this system's own, nothing an earlier one left
        with rep.stage(stage), ctx.memory.footprint() as own, timer() as took, system.model() as m:
            tp = measure(
                m,
                ctx.tokenizer,
                ctx.data.test,
                evaluation.prompts.texts,
                spec=ctx.spec,
                dtype=ctx.dtype,
                task_name=f"harness_{name}_throughput".replace("+", "_").replace("-", "_"),
            )
    except Exception as e:  # the accuracy figures stand without it
        rep.log(f"  {name}: throughput probe failed ({type(e).__name__}: {e}); serving cost uses batch-1 latency")
        return None
    # with loading the weights: the probe's whole cost; the peak as the serving peak is counted
    tp = tp.model_copy(update={"seconds": round(took(), 2), "peak_memory_mb": round(own.peak_mb, 1)})
    rep.log(
        f"  {name}: best batch size {tp.batch_size}: {tp.questions_per_s:.2f} questions/s "
        f"(tried {', '.join(f'{b}: {q:.2f}' for b, q in tp.tried.items())}; the probe took {tp.seconds:.1f} s)"
    )
    save(ctx.spec.name, evaluation.key, tp, rep.log)
    return tp
