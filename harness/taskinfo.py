"""`harness tasks list` and `harness tasks validate`: load each task and its data, and summarise."""
from __future__ import annotations

from pathlib import Path

from harness.data import load_task_data
from harness.errors import HarnessError
from harness.spec import load_spec
from harness.tasks import list_task_files


def summarise(path: Path) -> dict:
    spec = load_spec(path)
    data = load_task_data(spec)
    return {"name": spec.name, "format": spec.answer_format, "train": len(data.train), "dev": len(data.dev),
            "test": len(data.test), "corpus": len(data.corpus) if not data.corpus_is_fallback else "(train Q&A)",
            "description": spec.description, "path": str(path)}


def describe_all(extra_dirs: list[Path]) -> list[dict]:
    rows = []
    for name, path in sorted(list_task_files(extra_dirs).items()):
        try:
            rows.append(summarise(path))
        except HarnessError as e:
            rows.append({"name": name, "format": "?", "train": "", "dev": "", "test": "", "corpus": "",
                         "description": f"INVALID: {e}", "path": str(path)})
    return rows


def validate_file(path: Path) -> str:
    """Raise HarnessError with the first problem; else a one-line summary."""
    from harness import results
    from harness.prompts import template

    info = summarise(path)
    spec = load_spec(path)
    try:
        results.metric_list(spec)
    except ValueError as e:
        raise HarnessError(f"{path}: field 'metrics': {e}") from None
    template(spec.question_template, "question_template")
    template(spec.rag.context_template, "rag.context_template")
    from harness import systems

    for name in spec.systems:
        if name not in systems.available():
            systems.make_system(name, None)
    return (f"{info['name']} ({info['format']}): {info['train']} train, {info['dev']} dev, {info['test']} test, "
            f"corpus {info['corpus']}")
