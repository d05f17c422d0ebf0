"""The pipeline: plan -> build -> evaluate -> measure -> report.

Everything a user can get wrong is checked in `plan`, before any model loads. The run directory is
assembled in a hidden temporary folder and renamed into place at the end, so an interrupted or failed
run leaves no half-written run directory behind (built artifacts stay cached and are reused).
"""

from __future__ import annotations

import os
import secrets
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from harness import cache, models, results, stats, systems
from harness.checks import check_names
from harness.context import Reporter, RunContext
from harness.data import load_task_data
from harness.errors import HarnessError
from harness.evaluate import run_lm_eval
from harness.measure import PeakMemory, timer
from harness.spec import TaskSpec, load_spec
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
    command: list[str] = field(default_factory=list)


@dataclass
class Plan:
    spec: TaskSpec
    systems: list[str]
    opts: RunOptions


def plan(opts: RunOptions) -> Plan:
    """Validate everything that needs no model: task, systems, metrics, limit, model path, output folders."""
    if opts.launcher not in ("local", "accelerate"):
        raise HarnessError(f"--launcher must be 'local' or 'accelerate', got '{opts.launcher}'")
    if opts.limit is not None and opts.limit <= 0:
        raise HarnessError(f"--limit must be a positive number of questions, got {opts.limit}")
    spec = load_spec(find_task(opts.task, opts.task_dirs))
    updates = {}
    if opts.model:
        updates["model"] = opts.model
    if opts.seed is not None:
        updates["seed"] = opts.seed
    spec = spec.model_copy(update=updates)
    names = opts.systems or spec.systems
    if not names:
        raise HarnessError("no systems to run; pass --systems, e.g. --systems prompt,lora,rag")
    check_names(spec, opts.systems)  # systems, fine-tuning methods and metrics: the check `tasks validate` makes
    if spec.model != "default":
        models.resolve_model(spec.model)  # a missing folder fails here, before any work
    for folder in (opts.reports_dir, opts.indices_dir):
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise HarnessError(f"cannot create {folder} ({e.strerror})") from None
        if not os.access(folder, os.W_OK):
            raise HarnessError(f"{folder} is not writable")
    cache.check_free_space(
        {"HARNESS_HOME": cache.home(), "--reports-dir": opts.reports_dir, "--indices-dir": opts.indices_dir}
    )  # a full disk fails now, not after training
    return Plan(spec, list(names), opts)


def throughput_batch(ctx: RunContext, prompts: list[str], token_budget: int = 1024, most: int = 8) -> int:
    """Questions per forward pass for a pass whose latency nobody reads (calibration): as many as fit
    `token_budget` prompt tokens. Short prompts gain 2.6x at 8 per batch on this CPU (0.21 -> 0.08 s per
    70-token prompt); 700-token RAG prompts gain nothing and would only multiply the logits' memory."""
    if not prompts:
        return 1
    longest = max(len(ctx.tokenizer(p).input_ids) for p in prompts)
    return max(1, min(most, token_budget // max(1, longest)))


def evaluate_system(system, ctx: RunContext, questions, task_name: str, *, timed: bool = True, prompts=None):
    """One record per question. `timed=False` (calibration): batched for throughput, latency not recorded.
    `prompts`: the system's rendered prompts for `questions`, when the caller has them already."""
    spec = ctx.spec
    prompts = prompts if prompts is not None else system.prompts(questions)
    batch = spec.evaluation.batch_size if timed else throughput_batch(ctx, prompts.texts)
    with system.model() as model:
        import torch

        torch.manual_seed(spec.seed)
        records = run_lm_eval(
            model,
            ctx.tokenizer,
            questions,
            prompts.texts,
            answer_format=spec.answer_format,
            task_name=task_name,
            batch_size=batch,
            warmup=spec.evaluation.warmup if timed else 0,
            max_new_tokens=spec.evaluation.max_new_tokens,
            seed=spec.seed,
            dtype=ctx.dtype,
            progress=ctx.reporter.progress(f"{system.name}: {task_name.rsplit('_', 1)[-1]}", len(questions)),
        )
    for i, r in enumerate(records):
        if prompts.retrieved is not None:
            r["retrieved"] = prompts.retrieved[i]
            r["ranked_doc_ids"] = prompts.ranked_doc_ids[i]
            r["retrieval_latency_s"] = prompts.retrieval_latency_s[i]
            r["model_latency_s"] = r["latency_s"]
            r["latency_s"] = r["latency_s"] + r["retrieval_latency_s"]
    return records


CONTENT_FREE = ("N/A", "", "[MASK]")


def calibration_questions(ctx: RunContext) -> list | None:
    """What the calibration pass scores: content-free inputs, dev questions, or nothing."""
    from harness.data import Question

    spec = ctx.spec
    if spec.answer_format != "yes-no" or spec.evaluation.calibration == "none":
        return None
    if spec.evaluation.calibration == "contextual":
        return [
            Question(id=f"content-free-{i}", question=t, answers=["Yes"], choices=["Yes", "No"])
            for i, t in enumerate(CONTENT_FREE)
        ]
    if not ctx.data.dev:
        return None
    # --limit N asks for a quick look: calibrate on at most N dev questions too.
    return ctx.data.dev[: min(spec.evaluation.calibration_limit, ctx.limit or spec.evaluation.calibration_limit)]


def calibration_threshold(ctx: RunContext, questions: list | None, records: list[dict] | None) -> float | None:
    """The Yes-No margin above which a system's calibrated answer is Yes, from its calibration records."""
    if not questions or not records:
        return None
    margins = [r["margin"] for r in records]
    if ctx.spec.evaluation.calibration == "contextual":
        return sum(margins) / len(margins)
    return stats.fit_threshold([int(q.answers[0] == "Yes") for q in questions], margins)


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _task_name(name: str, part: str) -> str:
    return f"harness_{name}_{part}".replace("+", "_").replace("-", "_")


def evaluate_or_reuse(system, ctx: RunContext, entry: dict) -> tuple[list[dict], float | None]:
    """Test records and calibration threshold: measured now, or read back when nothing that decides them
    changed since they were measured (see harness.evalcache). Fills the entry's memory figures."""
    from harness import evalcache

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
    hit = None if ctx.reevaluate else evalcache.load(ctx.spec.name, key, rep.log)
    if hit is not None:
        rep.log(
            f"  {name}: nothing that decides its answers changed: reusing its evaluation measured "
            f"{hit['measured_at']} (--reevaluate measures again)"
        )
        entry["evaluation_reused"] = {"measured_at": hit["measured_at"], "seconds": hit.get("seconds")}
        records, cal_records = hit["test"], hit["calibration"]
        entry["peak_memory_mb"], cuda_peak = hit["peak_memory_mb"], hit.get("cuda_peak_memory_mb")
    else:
        with rep.stage(f"{name}: evaluate {len(ctx.data.test)} questions"), PeakMemory() as mem, timer() as took:
            records = evaluate_system(system, ctx, ctx.data.test, _task_name(name, "test"), prompts=test_prompts)
            cal_records = (
                evaluate_system(system, ctx, cal_q, _task_name(name, "calibration"), timed=False, prompts=cal_prompts)
                if cal_q
                else None
            )
        entry["peak_memory_mb"], cuda_peak = round(mem.peak_mb, 1), mem.cuda_peak_mb
        evalcache.save(
            ctx.spec.name,
            key,
            test=records,
            calibration=cal_records,
            peak_memory_mb=entry["peak_memory_mb"],
            cuda_peak_memory_mb=cuda_peak,
            seconds=took(),
            log=rep.log,
        )
    if cuda_peak is not None:
        entry["cuda_peak_memory_mb"] = round(cuda_peak, 1)
    return records, calibration_threshold(ctx, cal_q, cal_records)


def run_system(name: str, ctx: RunContext) -> tuple[dict, list[dict]]:
    spec, rep = ctx.spec, ctx.reporter
    system = systems.make_system(name, ctx)
    entry = {
        "kind": system.kind,
        "status": "ok",
        "error": None,
        "training": None,
        "retrieval": None,
        "retrieval_latency_s": None,
        "evaluation_reused": None,
    }
    try:
        with rep.stage(f"{name}: build"):
            info = system.build()
        # What the artifact cost to build: this run's time, or (reused) the time recorded when it was built.
        cost = info.build_s if info.build_cost_s is None and not info.cached else info.build_cost_s
        entry.update(
            {
                "build_s": round(info.build_s, 2),
                "cached": info.cached,
                "artifact_mb": round(info.artifact_mb, 3),
                "build_cost_s": None if cost is None else round(cost, 2),
                "training": info.training,
                "index": info.index,
                "notes": info.notes,
            }
        )
        if info.cached:
            rep.log(f"  {name}: reused the cached artifact")
        records, threshold = evaluate_or_reuse(system, ctx, entry)
        embed = ctx.embedder().encode if spec.answer_format == "free-text" else None
        entry["metrics"] = results.score_system(records, ctx.data.test, spec, embed, threshold)
        entry["latency_s"] = stats.percentiles([r["latency_s"] for r in records])
        entry["prompt_tokens_mean"] = round(sum(r["prompt_tokens"] for r in records) / len(records), 1)
        if spec.answer_format == "free-text":
            for key in ("first_token_s", "tokens_per_s"):
                values = [r[key] for r in records if r.get(key) is not None]
                if values:
                    entry[key] = stats.percentiles(values)
        if any("retrieval_latency_s" in r for r in records):
            from harness.retrieval import retrieval_quality

            entry["retrieval_latency_s"] = stats.percentiles([r["retrieval_latency_s"] for r in records])
            entry["model_latency_s"] = stats.percentiles([r["model_latency_s"] for r in records])
            golds = [q.doc_id for q in ctx.data.test] if not ctx.data.corpus_is_fallback else [None] * len(records)
            entry["retrieval"] = retrieval_quality([r["ranked_doc_ids"] for r in records], golds, spec.rag.k)
        return entry, records
    except HarnessError:
        raise
    except Exception as e:  # a system that breaks is reported as failed, never hidden
        rep.log(f"  {name}: FAILED: {type(e).__name__}: {e}")
        entry.update({"status": "failed", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()})
        return entry, []


def _sample_rows(name: str, records: list[dict], questions, metric: str) -> list[dict]:
    by_id = {q.id: q for q in questions}
    rows = []
    for r in records:
        q = by_id[r["id"]]
        rows.append(
            {
                "system": name,
                "id": q.id,
                "question": q.question,
                "gold": q.answers[0],
                "golds": q.answers,
                "prediction": r["prediction"],
                "correct": r["scores"].get(metric),
                "calibrated_prediction": r.get("calibrated_prediction"),
                "latency_s": r["latency_s"],
                "retrieval_latency_s": r.get("retrieval_latency_s"),
                "category": q.category,
                "doc_id": q.doc_id,
                "margin": r.get("margin"),
                "prompt_tokens": r["prompt_tokens"],
                "scores": r["scores"],
                "retrieved": r.get("retrieved"),
            }
        )
    return rows


def execute(p: Plan, reporter: Reporter) -> Path:
    from harness.manifest import build_manifest, write_run

    spec, opts = p.spec, p.opts
    models.set_offline_defaults()
    threads = models.set_threads()
    with reporter.stage("load data"):
        data = load_task_data(spec)
        if opts.limit:
            data.test = data.test[: opts.limit]
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
    system_objs = [systems.make_system(n, ctx) for n in p.systems]
    for s in system_objs:
        s.validate()
    started = time.time()
    entries, samples = {}, []
    for name in p.systems:
        entry, records = run_system(name, ctx)
        entries[name] = entry
        samples.extend(_sample_rows(name, records, data.test, results.headline_metric(spec.answer_format)))
        entry["_records"] = records
    metric = results.headline_metric(spec.answer_format)
    base = results.baselines(data.train, data.test, spec.answer_format)
    base_res = results.baseline_results(base, data.test, spec.answer_format, spec.evaluation.bootstrap, spec.seed)
    ok = {n: e["_records"] for n, e in entries.items() if e["status"] == "ok"}
    headline = [metric] + (["calibrated_accuracy"] if spec.answer_format == "yes-no" else [])
    comps = results.comparisons(
        ok, [m for m in headline if all(any(m in r["scores"] for r in recs) for recs in ok.values())], spec.seed
    )
    for n, e in entries.items():
        recs = e.pop("_records")
        if e["status"] == "ok":
            e["vs_best_baseline"] = results.vs_best_baseline(recs, base_res, metric, spec.seed)
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
    out = {
        "task": spec.name,
        "run_id": run_id,
        "created": datetime.now().astimezone().isoformat(timespec="seconds"),
        "answer_format": spec.answer_format,
        "headline_metric": metric,
        "n_test": len(data.test),
        "seed": spec.seed,
        "model": ref.display,
        "systems": entries,
        "baselines": {n: {k: v for k, v in b.items() if k != "per_question"} for n, b in base_res.items()},
        "comparisons": comps,
        "settings": {
            "threads": threads,
            "batch_size": spec.evaluation.batch_size,
            "dtype": ctx.dtype,
            "warmup": spec.evaluation.warmup,
            "device": ctx.device,
            "calibration": spec.evaluation.calibration,
            "seconds": round(time.time() - started, 1),
        },
    }
    manifest = build_manifest(spec, ref, data, opts, run_id)
    launches = {k.split(":", 1)[1]: v for k, v in ctx._cache.items() if k.startswith("launch:")}
    if launches:
        manifest["launch"] = launches
    return write_run(opts.reports_dir / spec.name, run_id, out, samples, manifest, reporter)
