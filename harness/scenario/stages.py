"""`harness run TASK --scenario updates`: the documents arrive in waves, and every system absorbs each one.

Stage 0 builds each system knowing wave 0 only (its documents in the index, its training questions, and its
document text where finetune.objective asks for it). Stage k refreshes each system with wave k: rag adds the
wave's chunks to the index (harness.scenario.index), fine-tunes either retrain on everything known
(`lora-retrain`) or continue the previous adapter on the wave alone (`lora-continue`, harness.scenario.adapters),
rag+lora does both refreshes, prompt does nothing. After every stage each system answers every test question
once; the answers are scored per group (the new wave, the earlier ones, the future ones) with the run's
intervals and paired tests. Artifacts are cached by their inputs as in a plain run, so an interrupted scenario
finds its earlier stages built and evaluated and resumes at the stage it was in.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from harness import baselines as model_free
from harness import models, results, stats, strata
from harness.calibration import calibration_questions
from harness.checks import window_problems
from harness.constants import AnswerFormat
from harness.context import Reporter, RunContext
from harness.data import TaskData, load_task_data
from harness.errors import HarnessError
from harness.manifest import build_manifest
from harness.records import LimitedRun, Sample, Settings
from harness.run import LIMIT_DRAW, Plan, SystemRun, holm_vs_baseline, run_results, system_result
from harness.rundir import write_run
from harness.scenario.adapters import continued
from harness.scenario.index import extend_index
from harness.scenario_records import GroupScore, Scenario, Stage, StageComparison, StageSystem, WaveRecord
from harness.spec import TaskProblems
from harness.system_eval import evaluate_or_reuse
from harness.systems import Renamed, make_system
from harness.waves import GROUPS, SCENARIOS, Wave, check_questions, group_of, make_waves

FINETUNES = ("lora", "qlora", "dora")
ALLOWED = ("prompt", "rag", *FINETUNES, *(f"rag+{m}" for m in FINETUNES))


def system_names(systems: list[str], modes: list[str]) -> list[tuple[str, str, str | None]]:
    """(name, registered system, refresh mode): a fine-tune once per mode (`lora-retrain`, `lora-continue`)."""
    out = []
    for s in systems:
        trains = s in FINETUNES or s.startswith("rag+")
        out += [(f"{s}-{m}", s, m) for m in modes] if trains else [(s, s, None)]
    return out


def stage_data(waves: list[Wave], docs: dict, tests: list, k: int, only_new: bool = False) -> TaskData:
    """What stage k knows: the documents and training/dev questions of waves 0 ... k (`only_new`: of wave k alone,
    what a `continue` refresh trains on); the test questions of every wave, which each stage answers."""
    known = waves[k : k + 1] if only_new else waves[: k + 1]
    train = [q for w in known for q in w.train]
    dev = [q for w in known for q in w.dev]
    return TaskData(train, dev, tests, [docs[i] for w in known for i in w.doc_ids])


def plan_scenario(p: Plan) -> tuple[TaskData, list[Wave]]:
    """The scenario's checks before any model loads, one line each; the data and its waves."""
    spec, opts = p.spec, p.opts
    if opts.scenario not in SCENARIOS:
        raise HarnessError(f"--scenario must be one of {', '.join(SCENARIOS)}, got '{opts.scenario}'")
    if opts.dry_run:
        raise HarnessError("--dry-run does not estimate a --scenario run; leave one of them out")
    other = [s for s in p.systems if s not in ALLOWED]
    if other:
        raise HarnessError(
            f"--scenario updates refreshes {', '.join(ALLOWED)}; not {', '.join(other)} (leave it out of --systems)"
        )
    if spec.data.corpus is None:
        raise HarnessError(f"{spec.where('data.corpus')}: --scenario updates needs a corpus of documents to add")
    # the scenario splits the questions itself (within each document): the task's split must not reject them first
    by_question = spec.data.model_copy(update={"split": spec.data.split.model_copy(update={"by": "question"})})
    try:
        data = load_task_data(spec.model_copy(update={"data": by_question}))
    except TaskProblems as e:
        raise HarnessError(e.problems[0]) from None
    s = spec.scenario
    check_questions(data.all_questions(), data.corpus, s.waves, spec.where)
    split = spec.data.split
    seed = spec.seed if s.seed is None else s.seed
    waves = make_waves(
        data.all_questions(), data.corpus, s.waves, seed, split.test_fraction, split.dev_fraction, spec.answer_format
    )
    return data, waves


def execute_scenario(p: Plan, reporter: Reporter) -> Path:
    with reporter.running():
        return Scenarios(p, reporter).run()


@dataclass
class Done:
    """One system after one stage: its stage record, its run (results.json entry, samples) and the system."""

    record: StageSystem | None
    run: SystemRun
    system: object = None


class Scenarios:
    def __init__(self, p: Plan, reporter: Reporter):
        self.p, self.spec, self.opts, self.rep = p, p.spec, p.opts, reporter
        self.embedder = None
        self.index_grown = False  # this stage added its wave to the index (not found in the cache)

    def context(self, data: TaskData) -> RunContext:
        o = self.opts
        ctx = RunContext(
            self.spec,
            data,
            self.ref,
            self.rep,
            indices_dir=o.indices_dir,
            retrain=o.retrain,
            launcher=o.launcher,
            reevaluate=o.reevaluate,
        )
        ctx.limit = o.limit
        ctx._embedder = self.embedder  # loaded once for the whole scenario
        return ctx

    def run(self) -> Path:
        spec, opts, rep = self.spec, self.opts, self.rep
        started = time.time()
        models.set_offline_defaults()
        threads = models.set_threads(opts.threads)
        with rep.stage("load data and split it into waves"):
            data, waves = plan_scenario(self.p)
            self.scoring = results.Scoring.of(spec, data.all_questions())
            tests = [q for w in waves for q in w.test]
            limited = None
            if opts.limit and opts.limit < len(tests):
                limited = LimitedRun(n=opts.limit, of=len(tests), drawn=LIMIT_DRAW)
                tests = strata.limited_sample(tests, opts.limit, spec.seed)
            self.tests, self.wave_of = tests, {q.id: w.index for w in waves for q in w.test}
            for w in waves:
                n_test = sum(self.wave_of[q.id] == w.index for q in tests)
                rep.log(
                    f"  wave {w.index}: {len(w.doc_ids)} documents; {len(w.train)} train, {len(w.dev)} dev, "
                    f"{n_test} test questions"
                )
        with rep.stage("resolve model"):
            self.ref = models.resolve_model(spec.model, rep.log)
        docs = {d.doc_id: d for d in data.corpus}
        names = system_names(self.p.systems, spec.scenario.modes)
        stages, samples, previous, last = [], [], {}, {}
        totals: dict[str, float | None] = {}
        prompt_evaluation = None
        for k, wave in enumerate(waves):
            ctx = self.context(stage_data(waves, docs, tests, k))
            if k == 0:
                self.check_window(ctx)
            if k > 0 and any("rag" in base for _, base, _ in names):
                with rep.stage(f"stage {k}: add wave {k}'s documents to the index"):
                    self.embedder = ctx.embedder()
                    before = [docs[i] for w in waves[:k] for i in w.doc_ids]
                    grown = extend_index(
                        before,
                        [docs[i] for i in wave.doc_ids],
                        self.embedder,
                        spec.rag,
                        ctx.indices_dir / spec.name,
                        rep.log,
                    )
                    rep.log(
                        f"  index grown by wave {k} in {grown['seconds']} s{' (cached)' if grown['reused'] else ''}"
                    )
                    self.index_grown = not grown["reused"]
            done: dict[str, Done] = {}
            self.index_grown = self.index_grown and k > 0
            for name, base, mode in names:
                if name in last and last[name].record is None:
                    done[name] = last[name]  # failed at an earlier stage: reported as failed, not built again
                    continue
                if mode == "continue" and k == 0:
                    twin = done.get(f"{base}-retrain")
                    if twin is not None:  # stage 0: one adapter for both modes
                        done[name] = self.twin(name, twin)
                        previous[name] = twin.system.adapter if twin.system is not None else None
                        continue
                sctx, system = ctx, make_system(base, ctx)
                if mode == "continue" and k > 0:
                    sctx = self.context(stage_data(waves, docs, tests, k, only_new=True))
                    sctx._retriever = ctx.retriever() if base.startswith("rag") else None
                    system = make_system(base, sctx)
                    system.adapter = continued(system, previous[name])
                if k == 0:
                    system.validate()
                system = Renamed(system, name) if name != base else system
                reuse = prompt_evaluation if base == "prompt" else None
                done[name] = self.stage_system(system, sctx, k, reuse)
                if base == "prompt" and done[name].record is not None:
                    prompt_evaluation = done[name].run
                if mode is not None and done[name].system is not None:
                    previous[name] = done[name].system.adapter
            for name, d in done.items():
                if d.record is not None:
                    before = totals.get(name, 0.0)
                    add = d.record.refresh_s
                    totals[name] = None if before is None or add is None else round(before + add, 2)
                    done[name] = Done(
                        d.record.model_copy(update={"cumulative_refresh_s": totals[name]}), d.run, d.system
                    )
                samples += d.run.samples  # a failed system has none
            self.embedder = ctx._embedder or self.embedder
            stages.append(
                Stage(
                    stage=k, systems={n: d.record for n, d in done.items() if d.record}, comparisons=self.compare(done)
                )
            )
            last = done
        return self.write(data, waves, stages, samples, last, started, threads, limited)

    # ------------------------------------------------------------ one system, one stage

    def stage_system(self, system, ctx: RunContext, k: int, reuse) -> Done:
        spec, rep, name = self.spec, self.rep, system.name
        metric = self.scoring.headline.metric
        info = None
        ctx.memory.begin_system()
        try:
            with rep.stage(f"stage {k}: {name} build"):
                info = system.build()
            refresh = 0.0 if system.kind == "prompt" else info.build_cost_s if info.cached else info.build_s
            if reuse is not None:  # prompt: nothing changes from stage to stage; its answers are stage 0's
                evaluation, scored = reuse.evaluation, reuse.scored
            else:
                evaluation = evaluate_or_reuse(system, ctx)
                embed = ctx.embedder().encode if spec.answer_format == AnswerFormat.FREE_TEXT else None
                scored = results.score_system(
                    evaluation.test, self.tests, spec, embed, evaluation.threshold, metric, self.scoring.pool
                )
            rows = results.samples_of(name, self.tests, evaluation.test, scored, metric)
            rows = [s.model_copy(update={"stage": k, "group": group_of(self.wave_of[s.id], k)}) for s in rows]
            entry = system_result(system.kind, info, evaluation, scored, None, ctx, None)
            record = StageSystem(
                refresh_s=None if refresh is None else round(refresh, 2),
                cumulative_refresh_s=None,
                artifact_mb=round(info.artifact_mb, 3),
                cached=info.cached and not (self.index_grown and "rag" in system.kind),
                groups={g: self.group_score([s for s in rows if s.group == g]) for g in GROUPS},
                notes=list(info.notes),
            )
            run = _Run(entry, rows, evaluation, scored, info)
            return Done(record, run, system)
        except HarnessError:
            raise
        except Exception as e:
            rep.log(f"  {name}: FAILED at stage {k}: {type(e).__name__}: {e}")
            failed = results_failed(system.kind, e)
            return Done(None, _Run(failed, [], None, None, info), None)

    def twin(self, name: str, of: Done) -> Done:
        """Stage 0 of `continue`: the retrain adapter (both modes start from the same adapter)."""
        if of.record is None:
            return of
        rows = [s.model_copy(update={"system": name}) for s in of.run.samples]
        note = "stage 0: the same adapter as the retrain mode (both modes start from it)"
        record = of.record.model_copy(update={"notes": [*of.record.notes, note]})
        return Done(record, _Run(of.run.result, rows, of.run.evaluation, of.run.scored, of.run.info), of.system)

    def group_score(self, rows: list[Sample]) -> GroupScore:
        metric = self.scoring.headline.metric
        values = [s.scores.get(metric) for s in rows]
        values = [v for v in values if v is not None]
        if not values:
            return GroupScore(n=len(rows), value=None)
        ci = stats.bootstrap_ci(values, n_boot=self.spec.evaluation.bootstrap, seed=self.spec.seed)
        return GroupScore(n=len(rows), value=ci["value"], ci_low=ci["ci_low"], ci_high=ci["ci_high"])

    def compare(self, done: dict[str, Done]) -> list[StageComparison]:
        metric, out = self.scoring.headline.metric, []
        ok = {n: d.run.samples for n, d in done.items() if d.record is not None}
        for g in GROUPS:
            by_group = {n: [s for s in rows if s.group == g] for n, rows in ok.items()}
            if len(by_group) < 2 or not any(by_group.values()):
                continue
            for c in results.comparisons(by_group, [metric], self.spec.seed):
                out.append(StageComparison(group=g, **c.model_dump()))
        return out

    def check_window(self, ctx: RunContext) -> None:
        window = models.context_length(self.ref)
        scored = {"test": self.tests}
        if self.spec.evaluation.calibration != "contextual":
            scored["dev"] = calibration_questions(ctx) or []
        problems = window_problems(self.spec, ctx.prompts, scored, window)
        if problems:
            raise TaskProblems(problems)

    # ------------------------------------------------------------ the run directory

    def write(self, data, waves, stages, samples, last, started, threads, limited) -> Path:
        spec, opts = self.spec, self.opts
        headline, tests = self.scoring.headline, self.tests
        known = waves
        train = [q for w in known for q in w.train]
        base = model_free.baselines(train, tests, spec.answer_format)
        embed = None
        if spec.answer_format == AnswerFormat.FREE_TEXT:
            embed = self.embedder_for_scoring()
        from harness import scorers

        score_ctx = scorers.ScoreContext(embed=embed, pool=self.scoring.pool)
        baselines = model_free.baseline_results(
            base, tests, spec.answer_format, spec.evaluation.bootstrap, spec.seed, headline.metric, score_ctx
        )
        runs = {}
        for name, d in last.items():
            result = d.run.result
            if d.record is not None:
                vs = model_free.vs_best_baseline(d.run.samples, baselines, headline.metric, spec.seed)
                result = result.model_copy(update={"vs_best_baseline": vs})
            runs[name] = SystemRun(result, d.run.samples)
        runs = holm_vs_baseline(runs)
        ok = {n: r.samples for n, r in runs.items() if r.result.ok}
        scenario = Scenario(
            kind="updates",
            metric=headline.metric,
            seed=spec.seed if spec.scenario.seed is None else spec.scenario.seed,
            modes=list(spec.scenario.modes),
            waves=[
                WaveRecord(
                    index=w.index,
                    doc_ids=w.doc_ids,
                    n_train=len(w.train),
                    n_dev=len(w.dev),
                    n_test=sum(self.wave_of[q.id] == w.index for q in tests),
                )
                for w in waves
            ],
            stages=stages,
            seconds=round(time.time() - started, 1),
        )
        out = run_results(
            spec,
            headline,
            self.ref.display,
            len(tests),
            runs,
            baselines,
            results.comparisons(ok, [headline.metric], spec.seed),
            settings=Settings(
                threads=threads,
                batch_size=spec.evaluation.batch_size,
                dtype=models.eval_dtype(spec.evaluation.dtype, models.device(spec.device)),
                warmup=spec.evaluation.warmup,
                device=models.device(spec.device),
                backend=spec.evaluation.backend,
                calibration=spec.evaluation.calibration,
                seconds=round(time.time() - started, 1),
            ),
            limited=limited,
            scenario=scenario,
        )
        data.test = tests
        manifest = build_manifest(spec, self.ref, data, opts, out.run_id, {})
        with self.rep.stage("write the run directory and report"):
            return write_run(opts.reports_dir / spec.name, out, samples, manifest)

    def embedder_for_scoring(self):
        if self.embedder is None:
            from harness.retrieval import Embedder

            self.embedder = Embedder.load(self.spec.rag.embedder)
        return self.embedder.encode


@dataclass
class _Run:
    """A system's figures after one stage, before the stage's cumulative cost is known."""

    result: object
    samples: list
    evaluation: object
    scored: object
    info: object


def results_failed(kind: str, e: Exception):
    from harness.records import SystemResult

    return SystemResult(kind=kind, status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
