"""The pipeline: plan -> build -> evaluate -> score -> write the run directory (and its report).

Everything a user can get wrong is checked in `plan`, before any model loads. Each system is constructed once
and runs to one `SystemRun`: its results.json entry (a `SystemResult`, built in one place from its build
record, measurements and scores) and its samples.jsonl rows. The run directory is assembled in a hidden
temporary folder and renamed into place at the end (harness.rundir), so an interrupted or failed run leaves no
half-written run directory behind (built artifacts stay cached and are reused).
"""

from __future__ import annotations

import functools
import os
import secrets
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from harness import baselines as model_free
from harness import (
    cache,
    cost,
    estimate,
    latency,
    models,
    openmp,
    priorbreak,
    profile,
    results,
    scorers,
    strata,
    throughput,
)
from harness.calibration import calibration_questions, calibration_set
from harness.checks import check_machine, check_task, outside_paths, window_problems
from harness.constants import AnswerFormat
from harness.context import Reporter, RunContext, stage_name
from harness.data import load_task_data
from harness.errors import HarnessError
from harness.manifest import build_manifest
from harness.overrides import apply_overrides
from harness.parts.outputs import BuildInfo
from harness.records import (
    LimitedRun,
    Percentiles,
    Retrieval,
    RunResults,
    Sample,
    Settings,
    Sweep,
    SystemResult,
)
from harness.retrieval import retrieval_quality
from harness.rundir import write_run
from harness.serving import warm_up
from harness.spec import SEED_MAX, TaskProblems, TaskSpec, load_spec
from harness.sweep.grid import Variant, make_systems
from harness.system_eval import Evaluation, evaluate_or_reuse
from harness.systems import oracle
from harness.tasks import find_task


@dataclass
class RunOptions:
    task: str
    systems: list[str] | None = None
    model: str | None = None
    limit: int | None = None
    seed: int | None = None
    reports_dir: Path = Path("reports")
    indices_dir: Path = Path("indices")
    task_dirs: list[Path] = field(default_factory=list)
    retrain: bool = False
    reevaluate: bool = False
    launcher: str = "local"
    device: str | None = None  # --device: overrides the task's `device:`
    command: list[str] = field(default_factory=list)
    profile: str | None = None  # --profile k=v,...: over the task's `decision:` block
    estimate: bool = False  # print the time estimate (harness.estimate) before building, and an ETA against it
    dry_run: bool = False  # plan and estimate only: build nothing, write nothing to reports/
    # command-line options that override the task file: dotted field -> (option, value or None); see overrides.py
    overrides: dict[str, tuple[str, object]] = field(default_factory=dict)
    threads: int | None = None  # --threads: torch threads (else HARNESS_THREADS, OMP_NUM_THREADS, every core)
    overridden: dict[str, object] = field(default_factory=dict)  # what plan() applied, for the manifest
    scenario: str | None = None  # --scenario updates: harness.scenario.stages runs the plan


@dataclass
class Plan:
    spec: TaskSpec
    systems: list[str]
    opts: RunOptions
    # A sweep (harness.sweep): its systems with their own settings, what runs them, and the grid for results.json.
    variants: list[Variant] = field(default_factory=list)
    runner: Callable | None = None  # (systems, variants, ctx, baselines, scoring) -> {name: SystemRun}
    sweep: Sweep | None = None


def plan(opts: RunOptions) -> Plan:
    """Validate everything that needs no model: task, systems, metrics, limit, model path, output folders."""
    if opts.launcher not in ("local", "accelerate"):
        raise HarnessError(f"--launcher must be 'local' or 'accelerate', got '{opts.launcher}'")
    if opts.limit is not None and opts.limit <= 0:
        raise HarnessError(f"--limit must be a positive number of questions, got {opts.limit}")
    if opts.seed is not None and not 0 <= opts.seed <= SEED_MAX:
        raise HarnessError(f"--seed must be from 0 to {SEED_MAX}, got {opts.seed}")
    spec = load_spec(find_task(opts.task, opts.task_dirs))
    updates = {}
    if opts.model:
        updates["model"] = opts.model
    if opts.seed is not None:
        updates["seed"] = opts.seed
    if opts.device is not None:
        if opts.device not in ("auto", "cpu", "cuda"):
            raise HarnessError(f"--device must be auto, cpu or cuda, got '{opts.device}'")
        updates["device"] = opts.device
    if opts.profile is not None:
        updates["decision"] = profile.parse_profile(opts.profile, spec.decision)
    spec = spec.model_copy(update=updates)
    spec, opts.overridden = apply_overrides(spec, opts.overrides)
    if opts.threads is not None:
        if opts.threads <= 0:
            raise HarnessError(f"--threads must be a positive number of threads, got {opts.threads}")
        opts.overridden["threads"] = opts.threads
    if opts.device is not None:
        opts.overridden["device"] = opts.device
    names = opts.systems or spec.systems
    if not names:
        raise HarnessError("no systems to run; pass --systems, e.g. --systems prompt,lora,rag")
    # names, templates (rendered in the sandbox), data files, model folder: the check `tasks validate` makes
    check_task(spec, opts.systems)
    check_machine(spec, list(names), "--device" if opts.device else None)
    if spec.model != "default" and not models.looks_like_path(spec.model):
        models.resolve_model(spec.model, fingerprint=False)  # a hub id while offline fails here, before any work
    for folder in (opts.reports_dir, opts.indices_dir):
        if opts.dry_run:  # a dry run creates nothing: the nearest existing folder must be writable
            cache.require_creatable(folder)
            continue
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise HarnessError(f"cannot create {folder} ({e.strerror})") from None
        if not os.access(folder, os.W_OK):
            raise HarnessError(f"{folder} is not writable")
    # A full disk fails now, not after training. A read-only HARNESS_HOME is only read (cache.require_writable).
    writable = {"--reports-dir": opts.reports_dir, "--indices-dir": opts.indices_dir}
    cache.check_free_space(writable if cache.read_only() else {"HARNESS_HOME": cache.home(), **writable})
    return Plan(spec, list(names), opts)


LIMIT_DRAW = "seeded sample, stratified by document and category"


def _percentiles(values) -> Percentiles | None:
    """Of the values measured (a model latency is None outside the timed sample), with their count n."""
    return latency.percentiles(values)


def _build_fields(info: BuildInfo) -> dict:
    """The SystemResult fields that come from the build record."""
    # What the artifact cost to build: this run's time, or (reused) the time recorded when it was built.
    cost = info.build_s if info.build_cost_s is None and not info.cached else info.build_cost_s
    return {
        "build_s": round(info.build_s, 2),
        "cached": info.cached,
        "artifact_mb": round(info.artifact_mb, 3),
        "build_cost_s": None if cost is None else round(cost, 2),
        "training": info.training,
        "index": info.index,
        "notes": info.notes,
    }


def system_result(
    kind: str, info: BuildInfo, evaluation: Evaluation, scored: results.Scored, vs_baseline, ctx: RunContext, tp=None
) -> SystemResult:
    """A system's results.json entry, from its build record, its measurements and its scores."""
    test, spec = evaluation.test, ctx.spec
    optional, notes = {}, list(info.notes)
    if spec.answer_format == AnswerFormat.FREE_TEXT:
        for key in ("first_token_s", "tokens_per_s"):
            values = [getattr(m, key) for m in test if getattr(m, key) is not None]
            if values:
                optional[key] = _percentiles(values)
        hits = [m.hit_max_new_tokens for m in test if m.hit_max_new_tokens is not None]
        if hits:
            optional["truncated_share"] = round(sum(hits) / len(hits), 4)
            notes.append(
                f"{sum(hits)} of {len(hits)} answers ({sum(hits) / len(hits):.0%}) were cut off at "
                f"evaluation.max_new_tokens ({spec.evaluation.max_new_tokens})"
            )
    if any(m.retrieval_latency_s is not None for m in test):
        golds = [q.doc_id for q in ctx.data.test] if not ctx.data.corpus_is_fallback else [None] * len(test)
        k = max(len(m.ranked_doc_ids or []) for m in test) or spec.rag.k  # oracle: its one gold document
        quality = retrieval_quality([m.ranked_doc_ids for m in test], golds, k)
        optional["retrieval"] = None if quality is None else Retrieval.model_validate(quality)
        optional["retrieval_latency_s"] = _percentiles(m.retrieval_latency_s for m in test)
        optional["model_latency_s"] = _percentiles(m.model_latency_s for m in test)
    cuts = [m.gold_context for m in test if m.gold_context is not None]
    if cuts:
        optional["gold_context"] = oracle.gold_context(cuts, evaluation.budget_tokens)
        notes.append(oracle.gold_context_note(optional["gold_context"]))
    cuda = evaluation.cuda_peak_memory_mb
    return SystemResult(
        kind=kind,
        **{**_build_fields(info), "notes": notes},
        evaluation_reused=evaluation.reused,
        peak_memory_mb=evaluation.peak_memory_mb,
        serving_memory=evaluation.serving_memory,
        training_peak_memory_mb=(info.training or {}).get("peak_memory_mb"),
        cuda_peak_memory_mb=None if cuda is None else round(cuda, 1),
        metrics=scored.metrics,
        latency_s=latency.percentiles(
            (m.latency_s for m in test), bootstrap=spec.evaluation.bootstrap, seed=spec.seed
        ),  # the timed sample's (harness.latency), with its n and intervals
        prompt_tokens_mean=round(sum(m.prompt_tokens for m in test) / len(test), 1),
        vs_best_baseline=vs_baseline,
        throughput=tp,
        batched_pass=evaluation.batched_pass,
        **optional,
    )


@dataclass(frozen=True)
class SystemRun:
    """What running one system produced: its results.json entry, its samples.jsonl rows, and (when it trained
    under `--launcher accelerate`) the launch record for the manifest."""

    result: SystemResult
    samples: list[Sample] = field(default_factory=list)
    launch: dict | None = None


def run_system(
    system, ctx: RunContext, baselines: dict[str, model_free.Baseline], scoring: results.Scoring | None = None
) -> SystemRun:
    """Build, evaluate and score one system. A system that breaks is reported as failed, never hidden.
    `scoring`: the run's (execute derives it once); by default, from the context's questions."""
    spec, rep, name = ctx.spec, ctx.reporter, system.name
    info = None
    ctx.memory.begin_system()
    try:
        with rep.stage(stage_name(name, "build")):
            info = system.build()
        if info.cached:
            rep.log(f"  {name}: reused the cached artifact")
        evaluation = evaluate_or_reuse(system, ctx)
        scoring = scoring or results.Scoring.of(spec, ctx.data.all_questions())
        embed = ctx.embedder().encode if spec.answer_format == AnswerFormat.FREE_TEXT else None
        metric = scoring.headline.metric
        scored = results.score_system(
            evaluation.test, ctx.data.test, spec, embed, evaluation.threshold, metric, scoring.pool
        )
        samples = results.samples_of(name, ctx.data.test, evaluation.test, scored, metric)
        full = dict(zip((q.id for q in ctx.data.test), evaluation.prompts.texts))  # the viewer's full prompts
        samples = [s.model_copy(update={"prompt": full.get(s.id)}) for s in samples]
        vs_baseline = model_free.vs_best_baseline(samples, baselines, metric, spec.seed)
        tp = throughput.for_system(system, ctx, evaluation, stage_name(name, "throughput", len(ctx.data.test)))
        entry = system_result(system.kind, info, evaluation, scored, vs_baseline, ctx, tp)
        return SystemRun(entry, samples, info.launch)
    except HarnessError:
        raise
    except Exception as e:
        rep.log(f"  {name}: FAILED: {type(e).__name__}: {e}")
        failed = SystemResult(
            kind=system.kind,
            status="failed",
            error=f"{type(e).__name__}: {e}",
            traceback=traceback.format_exc(),
            **(_build_fields(info) if info is not None else {}),
        )
        return SystemRun(failed, launch=info.launch if info is not None else None)


def holm_vs_baseline(runs: dict[str, SystemRun]) -> dict[str, SystemRun]:
    """The systems' tests against the strongest baseline, Holm-adjusted as one family (baselines.py)."""
    tests = model_free.holm_over_systems({n: r.result.vs_best_baseline for n, r in runs.items()})
    return {n: replace(r, result=r.result.model_copy(update={"vs_best_baseline": tests[n]})) for n, r in runs.items()}


def run_results(spec, headline, model: str, n_test: int, runs: dict[str, SystemRun], baselines, comparisons, **rest):
    """The run's results.json, with a fresh run id and the decision for the task's profile: what a plain run and a
    scenario (harness.scenario) write. `rest`: the RunResults fields that differ between them (settings, ...)."""
    out = RunResults(
        task=spec.name,
        run_id=time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2),
        created=datetime.now().astimezone().isoformat(timespec="seconds"),
        answer_format=spec.answer_format,
        headline_metric=headline.metric,
        headline_reason=headline.reason,
        n_test=n_test,
        seed=spec.seed,
        model=model,
        systems={n: r.result for n, r in runs.items()},
        baselines={n: b.result for n, b in baselines.items()},
        comparisons=comparisons,
        **rest,
    )
    return cost.with_decision(out, spec.decision)


def run_locally(built: list, variants: list[Variant], ctx: RunContext, baselines, scoring) -> dict[str, SystemRun]:
    """One system after another, in this process (each with its own context: a sweep variant's settings)."""
    return {s.name: run_system(s, s.ctx, baselines, scoring) for s in built}


def execute(p: Plan, reporter: Reporter) -> Path:
    """Run the plan and write its run directory; returns it. Never silent for more than 30 s (Reporter.running)."""
    with reporter.running():
        return _execute(p, reporter)


@dataclass
class Prepared:
    """What the run has before any system builds: data, scoring, the context and the constructed systems."""

    ctx: RunContext
    built: list
    scoring: results.Scoring
    threads: int
    limited: LimitedRun | None = None  # --limit: the sample the test split was cut to
    variants: list = field(default_factory=list)  # sweep.grid.Variant per system (a plain run: name = system)


def prepare(p: Plan, reporter: Reporter) -> Prepared:
    """Load the data and the model's tokenizer, check the prompts against the context window and construct and
    validate every system: what a run (and a dry run) does before anything is built."""
    spec, opts = p.spec, p.opts
    models.set_offline_defaults()
    threads = models.set_threads(opts.threads)
    why = cache.read_only()
    if why is not None:
        reporter.log(
            f"note: HARNESS_HOME {cache.root()} is read-only ({why}): this run uses what it holds and stores "
            "nothing there; anything missing is named"
        )
    else:
        cache.note_format(reporter.log)
    outside = outside_paths(spec)
    if outside:
        task_file = Path(spec.source_path or spec.name).name
        reporter.log(f"note: {task_file} reads outside its folder: {', '.join(outside)}")
    with reporter.stage("load data"):
        data = load_task_data(spec)
        # The headline and has_answer's pool of answers come from every question, before --limit cuts the test
        # split: a limited run scores each question as the full run does, and agrees with `harness tasks show`.
        scoring = results.Scoring.of(spec, data.all_questions())
        limited = None
        if opts.limit and opts.limit < len(data.test):
            # a seeded sample spread over documents and categories, the same for every system (harness.strata)
            limited = LimitedRun(n=opts.limit, of=len(data.test), drawn=LIMIT_DRAW)
            data.test = strata.limited_sample(data.test, opts.limit, spec.seed)
            reporter.log(f"  limited run: {limited.n} of {limited.of} test questions ({LIMIT_DRAW})")
        reporter.log(
            f"  {len(data.train)} train, {len(data.dev)} dev, {len(data.test)} test questions; "
            f"{len(data.corpus)} documents"
        )
    with reporter.stage("resolve model"):
        ref = models.resolve_model(spec.model, reporter.log)
    ctx = RunContext(
        spec,
        data,
        ref,
        reporter,
        indices_dir=opts.indices_dir,
        retrain=opts.retrain,
        launcher=opts.launcher,
        reevaluate=opts.reevaluate,
    )
    ctx.limit = opts.limit
    with reporter.stage("check prompts against the context window"):
        window = models.context_length(ref)
        scored = {"test": data.test}  # and the dev questions calibration scores (content-free ones are short)
        if spec.evaluation.calibration != "contextual":
            scored["dev"] = calibration_questions(ctx) or []
        problems = window_problems(spec, ctx.prompts, scored, window)
        if problems:
            raise TaskProblems(problems)
    with reporter.stage("check the systems' settings"):  # may load the base model (its layer names)
        variants = p.variants or [Variant(n, n) for n in p.systems]
        built = make_systems(variants, ctx)  # each system is constructed once per run
        for s in built:
            if s.ctx is not ctx:  # a sweep variant's own settings (rag.k, ...) must fit the window too
                problems = window_problems(s.ctx.spec, s.ctx.prompts, scored, window)
                if problems:
                    raise TaskProblems([f"{s.name}: {problem}" for problem in problems])
            s.validate()
    return Prepared(ctx, built, scoring, threads, limited, variants)


def _probe_in_child(opts: RunOptions) -> None:
    """Run in a spawned process (harness.estimate.probe_apart): plan and prepare the run as the parent did,
    probe what is missing and store it under HARNESS_HOME/probe/, where the parent reads it back."""
    prep = prepare(plan(opts), Reporter(None))
    estimate.estimate_run(prep.ctx, prep.built, len(calibration_questions(prep.ctx) or []), lambda *_: None)


def _execute(p: Plan, reporter: Reporter) -> Path:
    spec, opts = p.spec, p.opts
    prep = prepare(p, reporter)
    ctx, built, scoring, threads, limited = prep.ctx, prep.built, prep.scoring, prep.threads, prep.limited
    data, ref, variants = ctx.data, ctx.model_ref, prep.variants
    if opts.estimate:
        # A plain run probes in a child process, which stores the rates in HARNESS_HOME for this one to read, so
        # the serving peaks measure nothing the probe left. A sweep's variants cannot be re-planned from its
        # options, and a read-only home cannot pass the rates back: those probe here.
        apart = None if p.variants or cache.read_only() else functools.partial(_probe_in_child, opts)
        estimate.show_estimate(ctx, built, len(calibration_questions(ctx) or []), reporter, apart)
    with reporter.stage("warm up the evaluation"):
        warm_up(ctx)
    headline = scoring.headline
    reporter.log(f"  headline metric: {headline.metric} ({headline.reason})")
    base = model_free.baselines(data.train, data.test, spec.answer_format)
    score_ctx = scorers.ScoreContext(
        embed=ctx.embedder().encode if spec.answer_format == AnswerFormat.FREE_TEXT else None,
        pool=scoring.pool,
    )
    baselines = model_free.baseline_results(
        base, data.test, spec.answer_format, spec.evaluation.bootstrap, spec.seed, headline.metric, score_ctx
    )
    started = time.time()
    runs = (p.runner or run_locally)(built, variants, ctx, baselines, scoring)
    runs = holm_vs_baseline(runs)
    ok = {n: r.samples for n, r in runs.items() if r.result.ok}
    compared = [
        m
        for m in headline.compared
        if all(any(s.scores.get(m) is not None for s in samples) for samples in ok.values())
    ]
    out = run_results(
        spec,
        headline,
        ref.display,
        len(data.test),
        runs,
        baselines,
        results.comparisons(ok, compared, spec.seed),
        prior_breaking=priorbreak.of_run(
            base, data.test, ok, spec.answer_format, spec.evaluation.bootstrap, spec.seed
        ),
        settings=Settings(
            threads=threads,
            batch_size=spec.evaluation.batch_size,
            dtype=ctx.dtype,
            warmup=spec.evaluation.warmup,
            latency_sample=[
                data.test[i].id
                for i in latency.sample_indices(len(data.test), spec.seed, spec.evaluation.latency_sample)
            ],
            device=ctx.device,
            openmp_wait=openmp.chosen(),
            backend=spec.evaluation.backend,
            calibration=spec.evaluation.calibration,
            seconds=round(time.time() - started, 1),
        ),
        calibration_set=calibration_set(ctx),
        limited=limited,
        sweep=p.sweep,
    )
    launch = {n: r.launch for n, r in runs.items() if r.launch}
    manifest = build_manifest(spec, ref, data, opts, out.run_id, launch)
    with reporter.stage("write the run directory and report"):
        return write_run(opts.reports_dir / spec.name, out, [s for r in runs.values() for s in r.samples], manifest)
