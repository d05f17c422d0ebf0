"""`harness tasks list` and `harness tasks validate`: load each task and its data, check, and summarise."""

from __future__ import annotations

from pathlib import Path

from harness import models
from harness.checks import check_task, include_name_problems, outside_paths, template_problems, window_problems
from harness.data import load_task_data
from harness.errors import HarnessError
from harness.parts.prompt_builder import PromptBuilder
from harness.results import headline_of
from harness.spec import TaskProblems, check_include, load_spec
from harness.tasks import list_task_files


def is_include(path: Path) -> bool:
    """Files under a `_shared/` folder are pieces that task files include, not tasks."""
    return "_shared" in Path(path).parts[:-1]


def summarise(path: Path) -> dict:
    spec = load_spec(path)
    check_task(spec)  # the same check `harness run` makes, before the data is read
    data = load_task_data(spec)
    return {
        "name": spec.name,
        "format": spec.answer_format,
        "train": len(data.train),
        "dev": len(data.dev),
        "test": len(data.test),
        "corpus": len(data.corpus) if not data.corpus_is_fallback else "(train Q&A)",
        "description": spec.description,
        "path": str(path),
        "spec": spec,
        "data": data,
    }


def headline_note(spec) -> str:
    """`# headline: METRIC (why)`, the line `harness tasks show` prints; the default depends on the data."""
    try:
        data = load_task_data(spec)
    except HarnessError as e:
        return f"# headline: {spec.headline or 'decided by the data, which did not load'} ({e})"
    h = headline_of(spec, data.all_questions())
    also = f"; compared on {', '.join(h.compared[1:])} too" if len(h.compared) > 1 else ""
    return f"# headline: {h.metric} ({h.reason}{also})"


def describe_all(extra_dirs: list[Path]) -> list[dict]:
    rows = []
    for name, path in sorted(list_task_files(extra_dirs).items()):
        try:
            rows.append(summarise(path))
        except HarnessError as e:
            rows.append(
                {
                    "name": name,
                    "format": "?",
                    "train": "",
                    "dev": "",
                    "test": "",
                    "corpus": "",
                    "description": f"INVALID: {e}",
                    "path": str(path),
                }
            )
    return rows


def _local_model(spec):
    """The task's model when it is on disk already (a folder, or the default once converted), else None: a
    validation converts nothing and fetches nothing."""
    if spec.model == "default":
        folder = models.converted_default()
        return None if folder is None else models.ModelRef("default", str(folder), "default", "")
    if not models.looks_like_path(spec.model):
        return None
    try:
        return models.resolve_model(spec.model, fingerprint=False)
    except HarnessError:
        return None  # reported by the check every task gets (checks.path_problems)


def _window_problems(spec, data) -> list[str]:
    """Test and dev questions against the model's context window, when the model is on disk (as a run does
    once the tokenizer is loaded)."""
    ref = _local_model(spec)
    if ref is None:
        return []
    prompts = PromptBuilder(spec, models.load_tokenizer(ref))
    return window_problems(spec, prompts, {"test": data.test, "dev": data.dev}, models.context_length(ref))


def validate_file(path: Path) -> str:
    """A one-line summary of a valid task (or shared include) file; else TaskProblems listing every problem."""
    path = Path(path)
    if is_include(path):
        summary = check_include(path)
        problems = include_name_problems(path)
        if problems:
            raise TaskProblems(problems)
        return summary
    info = summarise(path)
    spec, data = info["spec"], info["data"]
    problems = template_problems(spec, data.test[0])  # the templates once more, on a real question
    problems += _window_problems(spec, data)
    if problems:
        raise TaskProblems(problems)
    outside = outside_paths(spec)
    return (
        f"{info['name']} ({info['format']}): {info['train']} train, {info['dev']} dev, {info['test']} test, "
        f"corpus {info['corpus']}" + (f"; reads outside its folder: {', '.join(outside)}" if outside else "")
    )


def problems_of(path: Path) -> list[str]:
    """Every problem found in a task file and its data (empty when it is valid)."""
    try:
        validate_file(path)
    except TaskProblems as e:
        return e.problems
    except HarnessError as e:
        return [str(e)]
    return []


def expand_paths(paths: list[Path]) -> list[Path]:
    """Task files as given; a folder stands for the task files directly in it."""
    out: list[Path] = []
    for p in map(Path, paths):
        out += sorted([*p.glob("*.yaml"), *p.glob("*.yml")]) if p.is_dir() else [p]
    return out
