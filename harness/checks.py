"""The one place a task's registered names are checked against the registries that define them.

harness.spec checks fields and the rules between fields only; it knows no registry, so it imports nothing
that imports it back. Names that plugins register (systems, fine-tuning methods, metrics) are checked here,
by `name_problems`, which both `harness run` (run.plan) and `harness tasks validate` (harness.taskinfo) call,
so the two can never disagree. Each problem is one line naming the file, line and field it came from.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jinja2

from harness import scorers, systems
from harness.data import Question
from harness.errors import HarnessError, did_you_mean
from harness.parts.prompt_builder import question_turn, template
from harness.spec import TaskProblems, TaskSpec
from harness.systems.finetune import METHODS as FINETUNE_METHODS
from harness.yamlfile import load_with_includes, where


def unknown_system(name: str, valid: list[str]) -> str:
    return f"unknown system '{name}'{did_you_mean(name, valid)} (valid systems: {', '.join(valid)})"


def name_problems(spec: TaskSpec, requested: list[str] | None = None) -> list[str]:
    """Every registered name in `spec` that its registry does not know, one located line each.
    `requested`: the systems given on the command line (`--systems`), checked as well."""
    problems = _name_problems(
        spec.where, spec.systems, spec.finetune.overrides, spec.metrics, spec.answer_format, spec.headline
    )
    if requested is not None:
        valid = systems.available()
        problems += [f"--systems: {unknown_system(n, valid)}" for n in requested if n not in valid]
        if len(set(requested)) != len(requested):
            problems.append(f"--systems lists a system twice: {','.join(requested)}")
    return problems


def include_name_problems(path: Path) -> list[str]:
    """The same check for a shared include file (which may leave out `answer_format`: then metric names are
    checked against the registry only). Its fields must have passed spec.check_include first."""
    sources: list[str] = []
    data = load_with_includes(Path(path), (), sources)
    return _name_problems(
        lambda field: where(sources, field),
        data.get("systems") or [],
        (data.get("finetune") or {}).get("overrides") or {},
        data.get("metrics") or [],
        data.get("answer_format"),
        data.get("headline"),
    )


def _name_problems(
    where_is: Callable[[str], str],
    names: list[str],
    overrides: dict,
    metrics: list[str],
    answer_format: str | None,
    headline: str | None = None,
) -> list[str]:
    valid = systems.available()
    problems = [f"{where_is('systems')}: {unknown_system(n, valid)}" for n in names if n not in valid]
    for method in overrides:
        if method not in FINETUNE_METHODS:
            problems.append(
                f"{where_is('finetune.overrides')}: '{method}' is not a fine-tuning method "
                f"(methods: {', '.join(FINETUNE_METHODS)}){did_you_mean(method, FINETUNE_METHODS)}"
            )
    try:
        scorers.validate_metric_names(metrics, answer_format)
    except ValueError as e:
        problems.append(f"{where_is('metrics')}: {e}")
    if headline is not None:
        try:
            scorers.validate_metric_names([headline], answer_format)
        except ValueError as e:
            problems.append(f"{where_is('headline')}: {e}")
    return problems


def check_names(spec: TaskSpec, requested: list[str] | None = None) -> None:
    """Raise TaskProblems listing every problem `name_problems` finds."""
    problems = name_problems(spec, requested)
    if problems:
        raise TaskProblems(problems)


def template_problems(spec: TaskSpec, sample: Question) -> list[str]:
    """Render both templates once on `sample`, so a misspelt variable is found now and not mid-run. (Their
    syntax is a field rule, checked by the schema.)"""
    problems = []
    try:
        user = question_turn(spec.question_template, sample)
    except HarnessError as e:
        problems.append(f"{spec.where('question_template')}: {str(e).split(': ', 1)[-1]}")
        user = sample.question
    try:
        template(spec.rag.context_template, "rag.context_template").render(
            passages=[{"text": "passage", "doc_id": "doc", "score": 1.0, "title": "title"}], question=user
        )
    except jinja2.UndefinedError as e:
        problems.append(f"{spec.where('rag.context_template')}: {e.message} (available: passages, question)")
    except Exception as e:  # a template that raises at render time (bad filter use, ...)
        problems.append(f"{spec.where('rag.context_template')}: cannot render ({type(e).__name__}: {e})")
    return problems
