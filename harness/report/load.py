"""Reading a run directory (results.json, samples.jsonl, manifest.json) into the run-data models, and writing
files atomically.

results.json and every line of samples.jsonl are validated against harness.records, so the rest of the report
works on typed attributes; the manifest is free-form (what produced the numbers) and is read defensively.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.errors import HarnessError
from harness.manifest import run_checksum_problems
from harness.records import RunResults, Sample


class ReportError(HarnessError):
    """A run directory that cannot be reported on; the message is one line and names the path."""


@dataclass
class Run:
    path: Path
    results: RunResults
    samples: list[Sample] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.results.run_id or self.path.name


def _oneline(text: str) -> str:
    return " ".join(str(text).split())


def first_problem(error: ValidationError) -> str:
    """The first invalid field of a validation error on one line, e.g. "systems.dora.kind: Field required"."""
    problems = error.errors()
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"]) or "top level"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return _oneline(f"{where}: {first['msg']}{more}")


def load_results(run_dir: Path) -> RunResults:
    run_dir = Path(run_dir)
    path = run_dir / "results.json"
    if not run_dir.is_dir():
        raise ReportError(f"not a run directory: {run_dir} does not exist or is not a folder")
    if not path.is_file():
        raise ReportError(f"not a run directory: {path} is missing")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ReportError(f"invalid {path}: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"cannot read {path}: {_oneline(exc)}") from None
    if not isinstance(raw, dict):
        raise ReportError(f"invalid {path}: expected a JSON object, got {type(raw).__name__}")
    try:
        return RunResults.model_validate(raw)
    except ValidationError as exc:
        raise ReportError(f"invalid {path}: {first_problem(exc)}") from None


def load_samples(path: Path, warnings: list[str]) -> list[Sample]:
    """Every valid line of samples.jsonl; malformed lines are skipped and counted in `warnings`."""
    if not path.is_file():
        warnings.append(f"{path.name} is missing: the per-question viewer is empty")
        return []
    samples: list[Sample] = []
    bad: list[int] = []
    why = ""  # what was wrong with the first skipped line
    with path.open(encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                samples.append(Sample.model_validate(json.loads(line)))
            except json.JSONDecodeError as exc:
                bad.append(lineno)
                why = why or f"line {lineno}: {exc.msg}"
            except ValidationError as exc:
                bad.append(lineno)
                why = why or f"line {lineno}: {first_problem(exc)}"
    if bad:
        shown = ", ".join(map(str, bad[:5])) + (" ..." if len(bad) > 5 else "")
        warnings.append(f"{path.name}: skipped {len(bad)} malformed line(s) ({shown}); first: {why}")
    return samples


def load_manifest(path: Path, warnings: list[str]) -> dict[str, Any]:
    if not path.is_file():
        warnings.append(f"{path.name} is missing")
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, OSError, UnicodeDecodeError) as exc:
        warnings.append(f"{path.name} could not be read: {_oneline(exc)}")
        return {}
    if not isinstance(manifest, dict):
        warnings.append(f"{path.name} is not a JSON object")
        return {}
    return manifest


def load_run(run_dir: Path, with_samples: bool = True) -> Run:
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    warnings: list[str] = []
    samples = load_samples(run_dir / "samples.jsonl", warnings) if with_samples else []
    if results.scenario is not None and results.scenario.stages:  # a scenario holds every stage's answers:
        last = results.scenario.stages[-1].stage  # the per-question views show the last stage's, as results do
        samples = [s for s in samples if s.stage in (None, last)]
    manifest = load_manifest(run_dir / "manifest.json", warnings)
    damaged = run_checksum_problems(run_dir, manifest)
    bad_results = [p for p in damaged if p.startswith(str(run_dir / "results.json"))]
    if bad_results:
        raise ReportError(f"{bad_results[0]}; its figures cannot be trusted: run `harness run` again to rebuild them")
    warnings.extend(damaged)
    return Run(path=run_dir, results=results, samples=samples, manifest=manifest, warnings=warnings)


# ---- manifest helpers: the manifest layout is free-form, so read it defensively ----


def model_label(manifest: dict[str, Any], results: RunResults | None = None) -> str:
    candidates = [manifest.get("model"), results.model if results else None]
    task = manifest.get("task")
    if isinstance(task, dict):
        candidates.append(task.get("model"))
    config = manifest.get("config")
    if isinstance(config, dict):
        candidates.append(config.get("model"))
    for model in candidates:
        if isinstance(model, str) and model:
            return model
        if isinstance(model, dict):
            name = next((model[k] for k in ("display", "name", "id", "repo", "path") if model.get(k)), None)
            if name:
                rev = model.get("revision") or model.get("version")
                return f"{name}@{rev}" if rev else str(name)
    return "unknown"


def machine_line(manifest: dict[str, Any]) -> str:
    machine = manifest.get("machine")
    if isinstance(machine, str):
        return machine
    if isinstance(machine, dict):
        parts = []
        for key, value in machine.items():
            if value in (None, "", [], {}):
                continue
            if isinstance(value, (dict, list)):
                value = json.dumps(value, sort_keys=True)
            parts.append(f"{key}: {value}")
        return " · ".join(parts) or "unknown"
    return "unknown"
