"""Finding task files: the shipped tasks/ folder, folders named by HARNESS_TASKS or --tasks-dir, or a path."""

from __future__ import annotations

import os
from pathlib import Path

from harness.errors import HarnessError, did_you_mean

SHIPPED = Path(__file__).resolve().parent.parent / "tasks"


def task_dirs(extra: list[Path] | None = None) -> list[Path]:
    dirs = [Path(p) for p in (extra or [])]
    dirs += [Path(p) for p in os.environ.get("HARNESS_TASKS", "").split(os.pathsep) if p]
    dirs += [Path.cwd() / "tasks", SHIPPED]
    seen, out = set(), []
    for d in dirs:
        key = d.resolve()
        if key not in seen and d.is_dir():
            seen.add(key)
            out.append(d)
    return out


def list_task_files(extra: list[Path] | None = None) -> dict[str, Path]:
    """Task name (file stem) -> file; earlier folders win. Files under _shared/ are includes, not tasks."""
    found: dict[str, Path] = {}
    for d in task_dirs(extra):
        for f in sorted(d.glob("*.yaml")) + sorted(d.glob("*.yml")):
            found.setdefault(f.stem, f)
    return found


def find_task(name_or_path: str, extra: list[Path] | None = None) -> Path:
    p = Path(name_or_path)
    # A folder that happens to share a task's name (`tasks/legal-qa/` when run from tasks/) is not the task.
    if p.suffix in (".yaml", ".yml") or p.is_file():
        if not p.exists():
            raise HarnessError(f"task file {p} not found")
        if p.is_dir():
            raise HarnessError(f"{p} is a folder; pass a task YAML file or a task name")
        return p
    known = list_task_files(extra)
    if name_or_path in known:
        return known[name_or_path]
    if p.is_dir():
        raise HarnessError(f"{p} is a folder; pass a task YAML file or a task name")
    listing = ", ".join(sorted(known)) or "none found"
    raise HarnessError(f"unknown task '{name_or_path}'{did_you_mean(name_or_path, known)} (known tasks: {listing})")
