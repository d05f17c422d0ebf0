"""Planning a sweep and running its variants: one after another in this process (`local`, the run's own
loop, which resumes like any run: finished variants' artifacts and evaluations are cached), or each variant
as a task on a Ray cluster (`ray`: a local one started here, or `--ray-address`). Either way the variants'
results come back to this process and into one run directory."""

from __future__ import annotations

import os
from pathlib import Path

from harness import models, openmp
from harness.errors import HarnessError
from harness.records import Sweep, SweepVariant, SystemResult
from harness.run import Plan, RunOptions, SystemRun, plan, run_locally, run_system
from harness.sweep import grid

EXECUTORS = ("local", "ray")
RAY_INSTALL = "pip install -e '.[ray]'"
LOCAL_RAY_CPUS = 2  # the local cluster `--executor ray` starts: two workers, one variant each at a time
# What a Ray worker needs from this process's environment to find the same cache, code and offline settings.
WORKER_ENV = (
    "HARNESS_HOME",
    "HARNESS_THREADS",
    "PYTHONPATH",
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "RAY_USAGE_STATS_ENABLED",
)


def import_ray():
    try:
        import ray
    except ImportError:
        raise HarnessError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL}") from None
    return ray


def plan_sweep(opts: RunOptions, sets: list[str], executor: str = "local", ray_address: str | None = None) -> Plan:
    """The run's plan with the sweep's variants: every `--set` checked against the schema before anything
    loads, and the executor available."""
    if executor not in EXECUTORS:
        raise HarnessError(f"--executor must be one of {', '.join(EXECUTORS)}, got '{executor}'")
    if ray_address is not None and executor != "ray":
        raise HarnessError("--ray-address is for --executor ray; add --executor ray or drop --ray-address")
    if executor == "ray":
        import_ray()
    if opts.launcher != "local" and executor == "ray":
        raise HarnessError("--launcher accelerate cannot run inside Ray tasks; use --executor local with it")
    p = plan(opts)
    p.variants = grid.variants(p.spec, p.systems, sets)
    settings = [grid.parse_set(t, p.spec) for t in sets]
    p.sweep = Sweep(
        grid={s.path: list(s.values) for s in settings},
        executor=executor,
        variants={v.name: SweepVariant(system=v.kind, settings=v.settings) for v in p.variants},
    )
    p.runner = run_locally if executor == "local" else RayRunner(ray_address, opts)
    return p


def worker_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in WORKER_ENV if os.environ.get(k)}
    if "HARNESS_HOME" in env:
        env["HARNESS_HOME"] = str(Path(env["HARNESS_HOME"]).expanduser().resolve())
    env.update(openmp.for_processes_side_by_side(os.environ, "Ray tasks"))  # tasks share the machine's cores
    return env


def run_variant(spec, data, limit, options: dict, variant: grid.Variant, baselines, scoring) -> SystemRun:
    """One variant in a Ray worker: its own context (the run's questions, its settings), built, evaluated and
    scored exactly as `run_system` does in a local run."""
    from harness import systems as registry
    from harness.context import Reporter, RunContext

    reporter = Reporter(lambda line: print(line, flush=True))  # Ray forwards it, prefixed with the task's pid
    models.set_offline_defaults()
    models.set_threads()
    ref = models.resolve_model(spec.model, reporter.log)
    ctx = RunContext(spec, data, ref, reporter, **options)
    ctx.limit = limit
    system = registry.make_system(variant.name, ctx, kind=variant.kind)
    system.validate()
    return run_system(system, ctx, baselines, scoring)


class RayRunner:
    """Each variant as one Ray task (one CPU each). Artifacts are shared through the cache (HARNESS_HOME and the
    indices folder, which may sit on a shared filesystem) under its locks; results come back here."""

    def __init__(self, address: str | None, opts: RunOptions):
        self.address = address
        self.options = {
            "indices_dir": Path(opts.indices_dir).resolve(),
            "retrain": opts.retrain,
            "launcher": "local",
            "reevaluate": opts.reevaluate,
        }

    def _init(self, ray) -> bool:
        """Start (or join) the cluster; True when this call started it (and so shuts it down)."""
        if ray.is_initialized():
            return False
        # The harness works offline: no usage report to Ray's servers (and no cloud-metadata probes it makes
        # to fill one in). A user who wants to send it sets RAY_USAGE_STATS_ENABLED=1.
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        env = worker_env()
        # The workers run torch on the run's thread count, as the local executor does: CPU kernels reduce in
        # another order on another count, and a Ray task's default (one thread per CPU it holds) moved yes/no
        # margins enough to change a calibrated answer (docs/sweeps.md).
        env.setdefault("HARNESS_THREADS", str(models.set_threads()))
        runtime_env = {"env_vars": env}
        if self.address:
            ray.init(address=self.address, runtime_env=runtime_env, logging_level="ERROR")
        else:
            ray.init(
                num_cpus=LOCAL_RAY_CPUS,
                include_dashboard=False,
                runtime_env=runtime_env,
                logging_level="ERROR",
                _node_ip_address="127.0.0.1",  # a local cluster talks over loopback only
            )
        return True

    def __call__(self, built, variants, ctx, baselines, scoring) -> dict[str, SystemRun]:
        ray = import_ray()
        started = self._init(ray)
        try:
            where = self.address or f"a local cluster of {LOCAL_RAY_CPUS} workers"
            with ctx.reporter.stage(f"{len(variants)} systems as Ray tasks on {where}"):
                return self._run(ray, built, variants, ctx, baselines, scoring)
        finally:
            if started:
                ray.shutdown()

    def _run(self, ray, built, variants, ctx, baselines, scoring) -> dict[str, SystemRun]:
        log = ctx.reporter.log
        task = ray.remote(num_cpus=1, max_retries=0)(run_variant)
        data = ray.put(ctx.data)
        pending = {
            task.remote(s.ctx.spec, data, ctx.limit, self.options, v, baselines, scoring): (s, v)
            for s, v in zip(built, variants)
        }
        done: dict[str, SystemRun] = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            s, v = pending.pop(ready[0])
            try:
                done[v.name] = ray.get(ready[0])
            except ray.exceptions.RayError as e:  # the worker died (memory, a signal): the variant failed
                log(f"  {v.name}: FAILED in its Ray task: {type(e).__name__}")
                done[v.name] = SystemRun(SystemResult(kind=s.kind, status="failed", error=f"{type(e).__name__}: {e}"))
            else:
                log(f"  {v.name}: done ({len(done)} of {len(variants)})")
        return {v.name: done[v.name] for v in variants}
