"""How long a run will take on this machine, before it runs: `harness run TASK --dry-run`, and the estimate a
real run prints at its start (its progress lines then show an ETA against it).

The plan (systems, stages, split sizes, tokens to train and to score) is counted from the task's own data and
prompts. Seconds come from a short probe of this machine (harness.probe, about 30 s at most): the evaluation
path (lm-eval, the task's model) timed on real prompts at two lengths, a few training steps of each adapter
method on real training rows, and the embedder on real chunks. Each stage is then its count of work times the
probed rate. Artifacts already cached (an adapter, an index) are estimated at their load time, as the run
will reuse them; stored evaluations are not predicted (a reused one makes the run faster than estimated).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

from harness import models, throughput
from harness.constants import AnswerFormat
from harness.context import clock as duration
from harness.context import stage_name
from harness.probe import Rates, train_rate_key
from harness.system_eval import accuracy_batch_size, batch_of


@dataclass
class Stage:
    name: str  # the run's stage name (harness.run.stage_name), so progress lines can show an ETA against it
    seconds: float
    peak_mb: float | None = None
    how: str = ""


@dataclass
class SystemPlan:
    """What one system will do: its stages' work, counted from the task's data and prompts."""

    name: str
    kind: str
    prompt_tokens: float  # mean tokens of the prompts it scores
    train_rows: list[int] = field(default_factory=list)  # tokens of each training row (adapter systems)
    eval_rows: list[int] = field(default_factory=list)  # validation rows scored during training
    batch_size: int = 1
    epochs: float = 0.0
    logging_steps: int = 10
    method: str | None = None
    cached: bool = False  # its adapter is in the cache already
    index: bool = False  # it needs the retrieval index
    index_cached: bool = False  # ... and the index is in the indices folder already


@dataclass
class Estimate:
    plan: list[str]
    stages: list[Stage]
    probe_s: float
    notes: list[str] = field(default_factory=list)

    @property
    def total_s(self) -> float:
        return sum(s.seconds for s in self.stages)

    def by_stage(self) -> dict[str, float]:
        return {s.name: s.seconds for s in self.stages}

    def lines(self) -> list[str]:
        out = list(self.plan)
        out.append(f"estimated time on this machine (probe took {self.probe_s:.0f} s):")
        width = max(len(s.name) for s in self.stages) if self.stages else 0
        for s in self.stages:
            mem = f"  peak ~{s.peak_mb:,.0f} MB" if s.peak_mb else ""
            out.append(f"  {s.name:<{width}}  {duration(s.seconds):>9}{mem}  {s.how}".rstrip())
        out.append(f"  {'total':<{width}}  {duration(self.total_s):>9}")
        out.extend(f"note: {n}" for n in self.notes)
        return out


def padded_tokens(lengths: list[int], batch_size: int, seed: int) -> int:
    """Tokens a pass over `lengths` in random batches of `batch_size` computes (each batch padded to its longest)."""
    order = list(lengths)
    random.Random(seed).shuffle(order)
    return sum(
        max(order[i : i + batch_size]) * len(order[i : i + batch_size]) for i in range(0, len(order), batch_size)
    )


def train_key(p: SystemPlan) -> str:
    """Where the probe stored this system's training rate (harness.probe.train_rate_key)."""
    method = p.method or "lora"
    return train_rate_key("lora" if method in ("dpo", "orpo") else method, p.kind == "rag+finetune")


def training_seconds(p: SystemPlan, r: Rates, seed: int) -> tuple[float, str]:
    """Steps x padded tokens at the probed training rate, plus validation passes and loading the weights."""
    rate = r.train_tokens_per_s.get(train_key(p)) or r.train_tokens_per_s.get("lora")
    steps = math.ceil(len(p.train_rows) / p.batch_size) * p.epochs
    tokens = padded_tokens(p.train_rows, p.batch_size, seed) * p.epochs
    seconds = tokens / rate
    evals = 0
    if p.eval_rows:
        evals = math.ceil(steps / p.logging_steps)
        # a validation pass is a forward pass only: about a third of a training step's work per token
        seconds += evals * padded_tokens(p.eval_rows, p.batch_size, seed) / (3 * rate)
    seconds += r.train_load_s
    how = f"{int(steps)} steps, {tokens:,.0f} tokens at {rate:.0f} tokens/s, {evals} validation passes"
    return seconds, how


def question_seconds(r: Rates, tokens: float, free_text: bool, max_new_tokens: int) -> float:
    """One question at batch 1, as the timed evaluation scores it."""
    s = r.eval_a + r.eval_b * tokens
    if free_text:
        s += max_new_tokens * r.eval_a  # each generated token is one more short forward pass
    return s


def evaluate_seconds(p: SystemPlan, r: Rates, n_test: int, n_cal: int, spec) -> tuple[float, str]:
    """The accuracy pass in throughput batches, the timed latency sample (harness.latency), calibration."""
    free = spec.answer_format == AnswerFormat.FREE_TEXT
    ev = spec.evaluation
    q = question_seconds(r, p.prompt_tokens, free, ev.max_new_tokens)
    factor = r.adapter_factor if p.method is not None else 1.0
    throughput_batch = batch_of(p.prompt_tokens)
    dtype = models.eval_dtype(ev.dtype, models.device(spec.device))
    batch = accuracy_batch_size(dtype, ev.batch_size, lambda: throughput_batch)

    def batched(n: int, b: int) -> float:  # an untimed pass, on the run's scoring workers
        calls = math.ceil(n / b) * (1 + (ev.max_new_tokens if free else 0))
        work = (calls * r.eval_a + n * r.eval_b * p.prompt_tokens) * factor
        return work / r.workers_speedup + r.lm_eval_overhead_s  # 1.0 with one worker

    sample = min(ev.latency_sample, n_test)
    if sample == n_test or (batch == ev.batch_size and r.workers == 1):  # one timed pass (system_eval.evaluate_timed)
        batch = ev.batch_size
        seconds = (n_test + min(ev.warmup, n_test)) * q * factor + r.lm_eval_overhead_s
    else:
        seconds = batched(n_test, batch) + (sample + min(ev.warmup, sample)) * q * factor + r.lm_eval_overhead_s
    if n_cal:
        seconds += batched(n_cal, throughput_batch)
    if p.index:
        seconds += (n_test + n_cal) * r.query_embed_s
    on = f" on {r.workers} workers ({r.workers_speedup:.2f}x)" if r.workers > 1 and sample < n_test else ""
    how = (
        f"{n_test} questions in batches of {batch}{on}, {sample} timed x {q * factor:.2f} s at {p.prompt_tokens:.0f} "
        + ("prompt tokens" + (f", {n_cal} calibration" if n_cal else ""))
    )
    return seconds + r.merge_s * (p.method is not None), how


def throughput_seconds(p: SystemPlan, r: Rates, n_test: int) -> float:
    n = min(throughput.SAMPLE, n_test)
    seconds = 0.0
    factor = r.adapter_factor if p.method is not None else 1.0
    for b in (b for b in throughput.BATCH_SIZES if b <= n):
        seconds += (math.ceil(n / b) * r.eval_a + (n + 1) * r.eval_b * p.prompt_tokens + r.eval_a) * factor
        seconds += r.lm_eval_overhead_s
    return seconds + r.merge_s * (p.method is not None)


def estimate(spec, plans: list[SystemPlan], r: Rates, n_test: int, n_cal: int, n_chunks: int) -> list[Stage]:
    """Per-stage seconds and peak memory for `plans`, from the probed rates."""
    stages: list[Stage] = []
    index_built = False
    for p in plans:
        build, how, peak = 0.0, "nothing to build" if not (p.index or p.train_rows) else "", None
        if p.index and not index_built:
            # the embedder is loaded before the stages (the estimate itself loads it), so not in the build
            if p.index_cached:
                build, how = 0.0, "reuses the index (cached)"
            else:
                build = n_chunks * r.embed_chunk_s
                how = f"index: {n_chunks} chunks x {r.embed_chunk_s:.3f} s"
            index_built, peak = True, r.embed_peak_mb
        if p.train_rows:
            if p.cached:
                how = "; ".join(x for x in (how, "reuses the adapter (cached)") if x)
            else:
                seconds, train_how = training_seconds(p, r, spec.seed)
                build += seconds
                how = "; ".join(x for x in (how, train_how) if x)
                peak = r.train_peak_mb.get(train_key(p))
        stages.append(Stage(stage_name(p.name, "build"), build, peak, how))
        seconds, how = evaluate_seconds(p, r, n_test, n_cal, spec)
        stages.append(Stage(stage_name(p.name, "evaluate", n_test), seconds, r.eval_peak_mb, how))
        stages.append(
            Stage(
                stage_name(p.name, "throughput", n_test),
                throughput_seconds(p, r, n_test),
                None,
                "batch sizes 1/2/4/8",
            )
        )
    return stages


# ---------------------------------------------------------------- the plan, from the task's data and prompts


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def system_plans(ctx, built: list, chunk_tokens: float) -> list[SystemPlan]:
    """Each system's work: prompt length, training rows, whether its artifact is cached."""
    from harness.probe import rows_of
    from harness.systems.finetune import training_rows

    spec, prompts = ctx.spec, ctx.prompts
    sample = ctx.data.test[:20]
    plain = _mean(prompts.tokens(prompts.plain(q)) for q in sample)
    shots = ctx.data.train[: spec.fewshot.k]
    fewshot = _mean(prompts.tokens(prompts.with_examples(q, shots)) for q in sample[:5]) if shots else plain
    budget = min(spec.rag.max_prompt_tokens, ctx.model_max_length()) - spec.evaluation.max_new_tokens
    rag = min(budget, plain + spec.rag.k * chunk_tokens)
    plans = []
    for s in built:
        adapter = getattr(s, "adapter", None)
        index = s.kind in ("rag", "oracle", "rag+finetune")
        tokens = rag if index else plain
        if s.name.startswith("rag+fewshot"):
            tokens = min(budget, rag + fewshot - plain)
        elif s.name == "fewshot":
            tokens = fewshot
        p = SystemPlan(s.name, s.kind, tokens, index=index)
        if adapter is not None:
            method = adapter.method
            settings = adapter.settings
            rows = [
                len(ids)
                for ids, _ in rows_of(
                    ctx, [(r["prompt"], r["completion"]) for r in training_rows(ctx, ctx.data.train)]
                )
            ]
            dev = ctx.data.dev[: settings.validation_examples]
            eval_rows = [
                len(ids) for ids, _ in rows_of(ctx, [(r["prompt"], r["completion"]) for r in training_rows(ctx, dev)])
            ]
            if s.kind == "rag+finetune":  # RAFT rows fill the training budget with passages
                p.prompt_tokens = min(tokens, settings.max_length)
                rows = [settings.max_length] * len(rows)
                eval_rows = [settings.max_length] * len(eval_rows)
            if method in ("dpo", "orpo"):  # a chosen and a rejected answer per pair: about twice the tokens
                rows = rows + rows
            p.train_rows = [min(n, settings.max_length) for n in rows]
            p.eval_rows = [min(n, settings.max_length) for n in eval_rows]
            p.batch_size, p.logging_steps, p.method = settings.batch_size, settings.logging_steps, method
            p.epochs = spec.preference.epochs if method in ("dpo", "orpo") else settings.epochs
            p.cached = adapter.cached() is not None
        plans.append(p)
    return plans


def index_cached(ctx) -> bool:
    from harness.retrieval import _settings, index_key

    rag = ctx.spec.rag
    settings = {"chunk_tokens": rag.chunk_tokens, "overlap": rag.overlap, "index": rag.index, "nlist": rag.nlist,
                "nprobe": rag.nprobe, "hnsw_m": rag.hnsw_m}  # fmt: skip
    key = index_key(_settings(settings), ctx.embedder().fingerprint, ctx.data.corpus)
    return (ctx.indices_dir / ctx.spec.name / key).exists()


def estimate_run(
    ctx, built: list, n_cal: int, log, stored_only: bool = False, probed_apart_s: float | None = None
) -> Estimate:
    """Probe this machine (or read what an earlier probe measured) and estimate every stage of the run.
    `stored_only`: raise probe.NotStored rather than probe in this process. `probed_apart_s`: a child process
    has just probed (probe_apart) and stored the rates, in this many seconds: the estimate reports that time, and
    does not call the rates it reads back earlier ones."""
    from harness import probe

    spec, data = ctx.spec, ctx.data
    with_index = any(s.kind in ("rag", "oracle", "rag+finetune") for s in built)
    started = time.perf_counter()
    rates, n_chunks, chunk_tokens, reused = probe.measure(ctx, built, with_index, log, stored_only)
    plans = system_plans(ctx, built, chunk_tokens)
    if with_index and index_cached(ctx):
        for p in plans:
            p.index_cached = p.index
    lines = [
        f"plan: {spec.name}, model {ctx.model_ref.display}; {len(data.train)} train, {len(data.dev)} dev, "
        f"{len(data.test)} test questions, {n_cal} calibration; {len(data.corpus)} documents"
        + (f" ({n_chunks} chunks)" if with_index else ""),
    ]
    for p in plans:
        stages = ["build" if (p.train_rows or p.index) else None, "evaluate", "throughput probe"]
        train = ""
        if p.train_rows:
            rows = f"{len(p.train_rows)} rows x {p.epochs:g} epochs"
            train = f"; trains on {sum(p.train_rows) * p.epochs:,.0f} tokens ({rows})"
            train += " (cached)" if p.cached else ""
        scored = (len(data.test) + n_cal) * p.prompt_tokens
        lines.append(
            f"  {p.name} ({p.kind}): {' -> '.join(s for s in stages if s)}{train}; scores {scored:,.0f} prompt "
            f"tokens ({p.prompt_tokens:.0f} per question)"
        )
    stages = estimate(spec, plans, rates, len(data.test), n_cal, n_chunks)
    notes = [
        "stored evaluations that a run can reuse are not predicted: such a system finishes sooner",
    ]
    if reused and probed_apart_s is None:
        notes.append(f"rates measured earlier on this machine: {', '.join(reused)} (HARNESS_HOME/probe)")
    probe_s = time.perf_counter() - started if probed_apart_s is None else probed_apart_s
    return Estimate(lines, stages, probe_s, notes)


def probe_apart(probe_child) -> None:
    """Probe in a child process (`probe_child`: a picklable callable that plans the run there and calls
    estimate_run), so that nothing the probe loads or allocates stays in the run's process and inflates the
    serving memory the run measures next (harness.measure.MemoryLedger)."""
    import multiprocessing

    child = multiprocessing.get_context("spawn").Process(target=probe_child, daemon=True)
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"the probe's process exited with code {child.exitcode}")


def show_estimate(ctx, built: list, n_cal: int, reporter, probe_child=None) -> None:
    """A real run: print the estimate before building and let progress lines show an ETA against it. Rates no
    earlier probe stored are probed in a child process (`probe_child`, see probe_apart; None: here). An
    estimate that cannot be made is one line; the run goes on."""
    from harness import probe
    from harness.errors import HarnessError

    try:
        try:
            est = estimate_run(ctx, built, n_cal, reporter.log, stored_only=probe_child is not None)
        except probe.NotStored:
            started = time.perf_counter()
            with reporter.stage("probe this machine's speed (in a separate process)"):
                probe_apart(probe_child)
            probed_s = time.perf_counter() - started
            est = estimate_run(ctx, built, n_cal, reporter.log, stored_only=True, probed_apart_s=probed_s)
    except HarnessError:
        raise
    except Exception as e:
        reporter.log(f"note: no time estimate ({type(e).__name__}: {e})")
        return
    for line in est.lines():
        reporter.log(line)
    reporter.expect(est.by_stage())
