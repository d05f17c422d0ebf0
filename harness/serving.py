"""Memory per system as if it ran alone, in a run that builds and evaluates several systems in one process.

The run's harness.measure.MemoryLedger gives each system's serving peak (and its training peak) from parts:
the process, the shared resources it uses and its own peak while answering one question at a time (passes that
score many at once for accuracy or calibration run under measure.not_counted). Two things keep the parts free of
the order the systems run in: a warm-up answers one question first, so lm-eval's one-time imports and set-up
belong to the process rather than to whichever system is evaluated first; and the shared base model is loaded
before a system's evaluation is measured, so that a reload after an adapter system dropped it counts once, as a
resource.
"""

from __future__ import annotations

from harness.evaluate import run_lm_eval
from harness.measure import Footprint
from harness.records import ServingMemory


def serving_memory(fp: Footprint) -> ServingMemory:
    """The parts of a serving peak, for results.json."""
    return ServingMemory(process_mb=round(fp.process_mb, 1), resources_mb=fp.resources_mb, answering_mb=fp.stage_mb)


def warm_up(ctx) -> None:
    """Answer one test question with the base model, untimed and unrecorded, and import the adapter library:
    what the first evaluation would otherwise load and set up once (lm-eval and its imports) is then part of
    the process, not of whichever system happens to run first; the memory ledger is re-read after it."""
    q = ctx.data.test[0]
    run_lm_eval(
        ctx.base_model(),
        ctx.tokenizer,
        [q],
        [ctx.prompts.plain(q)],
        answer_format=ctx.spec.answer_format,
        task_name=f"harness_{ctx.spec.name}_warmup".replace("+", "_").replace("-", "_"),
        batch_size=1,
        warmup=0,
        max_new_tokens=ctx.spec.evaluation.max_new_tokens,
        seed=ctx.spec.seed,
        dtype=ctx.dtype,
    )
    import peft  # noqa: F401  (adapter systems load it to evaluate; trained ones had it already)

    ctx.memory.rebase()


def own_base_model(system) -> bool:
    """Whether a system evaluates on a base model of its own (qlora's 4-bit one) rather than the shared one."""
    adapter = getattr(system, "adapter", None)
    return adapter is not None and adapter.method == "qlora"
