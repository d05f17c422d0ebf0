"""`--track mlflow`: a finished run directory logged to MLflow, one parent run for the harness run and one
nested run per system (each sweep variant is one).

Parent: the task settings as params (flattened, `finetune.r`), the report and results as artifacts.
Nested: the system and its swept settings as params; every metric with its interval (`accuracy`,
`accuracy_ci_low`, `accuracy_ci_high`), latency percentiles, peak memory, build seconds and the serving time
per 1,000 questions (latency at batch 1 x 1,000) as metrics. MLflow is an optional extra (`.[mlflow]`).

Where it goes: MLFLOW_TRACKING_URI when set, else the file store `mlruns/` in the working directory, which
MLflow 3 keeps in maintenance mode behind MLFLOW_ALLOW_FILE_STORE=true (set for this process only when the
default is used; `mlflow ui` needs the same variable to read it, see docs/sweeps.md).
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.errors import HarnessError
from harness.records import RunResults
from harness.report.load import load_run

TRACKERS = ("mlflow",)
MLFLOW_INSTALL = "pip install -e '.[mlflow]'"
PARAM_CHARS = 500  # longer settings (a system prompt, a template) are cut: a param is a label, not a store


def check(track: str | None) -> None:
    """Fail before the run when the tracker is unknown or not installed."""
    if track is None:
        return
    if track not in TRACKERS:
        raise HarnessError(f"--track must be one of {', '.join(TRACKERS)}, got '{track}'")
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise HarnessError(f"--track mlflow needs MLflow, which is not installed: {MLFLOW_INSTALL}") from None


def tracking_uri() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return (Path.cwd() / "mlruns").resolve().as_uri()


def flatten(value, prefix: str = "") -> dict[str, str]:
    """{"finetune": {"r": 4}} -> {"finetune.r": "4"}; lists and long texts as (cut) text."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    text = "" if value is None else str(value)
    return {prefix: text[:PARAM_CHARS]}


def system_metrics(entry) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, m in (entry.metrics or {}).items():
        for suffix, v in (("", m.value), ("_ci_low", m.ci_low), ("_ci_high", m.ci_high)):
            if v is not None:
                out[f"{name}{suffix}"] = float(v)
    if entry.latency_s is not None:
        out.update({f"latency_{k}_s": float(getattr(entry.latency_s, k)) for k in ("p50", "p95", "mean")})
        out["serving_s_per_1000_questions"] = float(entry.latency_s.mean) * 1000
        if entry.latency_s.n is not None:  # questions timed: the seeded latency sample (harness.latency)
            out["latency_n"] = float(entry.latency_s.n)
    for key in ("peak_memory_mb", "build_s", "build_cost_s", "artifact_mb"):
        v = getattr(entry, key, None)
        if v is not None:
            out[key] = float(v)
    return out


def log_run(run_dir: Path) -> str:
    """Log the run directory to MLflow; returns the parent run's id."""
    import mlflow

    run = load_run(run_dir, with_samples=False)
    results: RunResults = run.results
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.set_experiment(f"harness/{results.task}")
    config = run.manifest.get("config") or {}
    with mlflow.start_run(run_name=results.run_id, experiment_id=experiment.experiment_id) as parent:
        mlflow.set_tags(
            {
                "harness.task": results.task,
                "harness.model": results.model or "",
                "harness.sweep": str(bool(results.sweep)),
            }
        )
        params = flatten(config)
        params.update({"n_test": str(results.n_test), "headline_metric": results.headline_metric})
        items = sorted(params.items())
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per call
            mlflow.log_params(dict(items[i : i + 100]))
        for name in ("index.html", "results.json", "summary.md", "results.csv", "manifest.json"):
            if (Path(run_dir) / name).is_file():
                mlflow.log_artifact(str(Path(run_dir) / name))
        for name, entry in results.systems.items():
            variant = results.sweep.variants.get(name) if results.sweep else None
            with mlflow.start_run(run_name=name, experiment_id=experiment.experiment_id, nested=True):
                mlflow.set_tags({"harness.status": entry.status, "harness.error": (entry.error or "")[:PARAM_CHARS]})
                mine = {"system": name, "kind": entry.kind}
                if variant is not None:
                    mine["system"] = variant.system
                    mine.update(flatten(variant.settings))
                mlflow.log_params(mine)
                if entry.ok:
                    mlflow.log_metrics(system_metrics(entry))
        return parent.info.run_id
