"""The one check of a task that needs no model and no data rows, made by `harness run` (run.plan, before
anything loads) and `harness tasks validate` (harness.taskinfo) alike, so the two can never disagree.

harness.spec checks fields, their ranges and the rules between fields; it knows no registry, so it imports
nothing that imports it back. `task_problems` adds what needs more than the schema: names that plugins
register (systems, fine-tuning methods, metrics), both templates rendered in the sandbox on a sample
question, the model folder and the data files. Each problem is one line naming the file, line and field.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jinja2
from jinja2.sandbox import SecurityError

from harness import scorers, systems
from harness.constants import AnswerFormat
from harness.data import Question
from harness.errors import HarnessError, did_you_mean, excerpt
from harness.models import cuda_devices, looks_like_path, resolve_model
from harness.parts.prompt_builder import question_turn, template
from harness.sources import resolve_path
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


def sample_question(answer_format: str) -> Question:
    """A question of the task's answer format with every field a template can use, to render the templates on
    before any data is read (`tasks validate` renders them on the first test question as well)."""
    choices = {
        AnswerFormat.YES_NO: ["Yes", "No"],
        AnswerFormat.MULTIPLE_CHOICE: ["first option", "second option", "third option", "fourth option"],
    }.get(answer_format)
    return Question(
        id="sample",
        question="Is this a sample question?",
        answers=[choices[0] if choices else "a sample answer"],
        choices=choices,
        doc_id="sample-document",
        category="sample",
    )


def template_problems(spec: TaskSpec, sample: Question) -> list[str]:
    """Render both templates once on `sample` in the sandbox, so a misspelt variable, or anything the sandbox
    refuses, is found now and not mid-run. (Their syntax is a field rule, checked by the schema.)"""
    problems = []
    try:
        user = question_turn(spec.question_template, sample)
    except HarnessError as e:
        problems.append(f"{spec.where('question_template')}: {str(e).split(': ', 1)[-1]}")
        user = sample.question
    except Exception as e:  # a template that raises at render time (`{{ question + 1 }}`, a range too big, ...)
        problems.append(f"{spec.where('question_template')}: cannot render ({type(e).__name__}: {e})")
        user = sample.question
    try:
        template(spec.rag.context_template, "rag.context_template").render(
            passages=[{"text": "passage", "doc_id": "doc", "score": 1.0, "title": "title"}], question=user
        )
    except jinja2.UndefinedError as e:
        problems.append(f"{spec.where('rag.context_template')}: {e.message} (available: passages, question)")
    except SecurityError as e:
        problems.append(f"{spec.where('rag.context_template')}: not allowed in a task file: {e}")
    except Exception as e:  # a template that raises at render time (bad filter use, ...)
        problems.append(f"{spec.where('rag.context_template')}: cannot render ({type(e).__name__}: {e})")
    return problems


def path_problems(spec: TaskSpec) -> list[str]:
    """The files and folders the task names: data files, corpus, preference pairs, and a model folder."""
    problems = []
    data = spec.data
    named = [("data.questions", data.questions.path, data.questions.package)] if not data.questions.hub else []
    if data.corpus is not None:
        named.append(("data.corpus", data.corpus.path, data.corpus.package))
    if spec.preference.path:
        named.append(("preference", spec.preference.path, None))
    for section, path, package in named:
        try:
            resolve_path(spec, section, path, package)
        except HarnessError as e:
            problems.append(str(e))
    if spec.model != "default" and looks_like_path(spec.model):  # `default` is converted by a run; a hub id
        try:  # needs the hub
            resolve_model(spec.model, fingerprint=False)
        except HarnessError as e:
            problems.append(f"{spec.where('model')}: {e}")
    return problems


def outside_paths(spec: TaskSpec) -> list[str]:
    """Files and folders the task reads from outside its own folder (includes, data, corpus, preference pairs;
    a package's files excepted): allowed, and said, so that nobody runs a task file that reads /etc unawares."""
    folder = spec.folder.resolve()
    named = [Path(s) for s in spec._sources[1:]]  # the includes (the task file itself comes first)
    data = spec.data
    if data.questions.path and not data.questions.package and not data.questions.hub:
        named.append(spec.folder / data.questions.path)
    if data.corpus is not None and not data.corpus.package:
        named.append(spec.folder / data.corpus.path)
    if spec.preference.path:
        named.append(spec.folder / spec.preference.path)
    out = []
    for p in named:
        try:
            resolved = p.resolve()
        except (OSError, ValueError):
            continue
        if not resolved.is_relative_to(folder) and str(resolved) not in out:
            out.append(str(resolved))
    return out


def task_problems(spec: TaskSpec, requested: list[str] | None = None) -> list[str]:
    """Every problem of `spec` that needs no model and no data rows, one located line each (see the module
    docstring). `requested`: the systems given on the command line (`--systems`), checked as well."""
    names = name_problems(spec, requested)
    return names + template_problems(spec, sample_question(spec.answer_format)) + path_problems(spec)


def check_task(spec: TaskSpec, requested: list[str] | None = None) -> None:
    """Raise TaskProblems listing every problem `task_problems` finds."""
    problems = task_problems(spec, requested)
    if problems:
        raise TaskProblems(problems)


def machine_problems(spec: TaskSpec, names: list[str], device_flag: str | None = None) -> list[str]:
    """What this machine lacks for the task's `device:` and `evaluation.backend` (a task file is valid anywhere;
    whether this machine can run it is a question for `harness run`'s plan, before anything loads)."""
    from importlib.util import find_spec

    vllm = spec.evaluation.backend == "vllm"
    if spec.device == "auto" and not vllm:
        return []
    gpus = cuda_devices()
    device_at = f"--device {spec.device}" if device_flag else spec.where("device")
    backend_at = spec.where("evaluation.backend")
    problems = []
    if spec.device == "cuda" and not gpus:
        problems.append(f"{device_at}: torch sees no CUDA GPU on this machine; use device auto or cpu")
    if vllm:
        if find_spec("vllm") is None:
            problems.append(f"{backend_at}: backend 'vllm' needs the vllm package (pip install vllm); or use hf")
        elif spec.device == "cpu":
            problems.append(f"{backend_at}: backend 'vllm' runs on CUDA GPUs, not on the cpu ({device_at}); use hf")
        elif not gpus:
            problems.append(f"{backend_at}: backend 'vllm' needs a CUDA GPU and torch sees none; use backend hf")
        else:
            v = spec.evaluation.vllm
            wanted = v.tensor_parallel_size * v.data_parallel_size
            if wanted > gpus:
                problems.append(
                    f"{spec.where('evaluation.vllm')}: tensor_parallel_size x data_parallel_size is {wanted} "
                    f"GPUs, but this machine has {gpus}"
                )
            if v.data_parallel_size > 1 and find_spec("ray") is None:
                problems.append(f"{spec.where('evaluation.vllm')}: data_parallel_size > 1 needs ray (pip install ray)")
        dora = [n for n in names if n.endswith("dora")]
        if dora:
            problems.append(
                f"{backend_at}: vLLM cannot serve DoRA adapters ({', '.join(dora)}); use backend hf for them"
            )
    return problems


def check_machine(spec: TaskSpec, names: list[str], device_flag: str | None = None) -> None:
    problems = machine_problems(spec, names, device_flag)
    if problems:
        raise TaskProblems(problems)


def window_problems(spec: TaskSpec, prompts, questions: dict[str, list[Question]], window: int | None) -> list[str]:
    """Questions whose plain prompt (system prompt, question turn, chat template) and longest answer do not fit
    the model's context window, reported with their ids. Made once the tokenizer is loaded and before any system
    builds: such a question would make evaluation sit for minutes on one forward pass, then fail. (Passages,
    documents and examples are fitted to a budget by the parts that add them; a question is never cut.)"""
    if window is None:
        return []
    room = spec.evaluation.max_new_tokens if spec.answer_format == AnswerFormat.FREE_TEXT else 0
    empty = sample_question(spec.answer_format)
    empty.question = ""
    base = prompts.tokens(prompts.plain(empty)) + room
    if base > window:  # no question can fit: say what is too long, once
        return [
            f"{spec.where('system_prompt')}: the system prompt and question template alone take {base:,} tokens, "
            f"more than the model's context window of {window:,}"
        ]
    problems = []
    for split, qs in questions.items():
        over = []
        for q in qs:
            n = prompts.tokens(prompts.plain(q)) + room
            n += max((prompts.tokens(c) for c in q.choices or []), default=0)
            if n > window:
                over.append((q, n))
        if over:
            shown = ", ".join(f"{excerpt(q.id, 40)} ({n:,} tokens, {q.origin or 'no location'})" for q, n in over[:5])
            more = f" and {len(over) - 5} more" if len(over) > 5 else ""
            problems.append(
                f"{spec.where('data.questions.path')}: {len(over)} {split} question(s) do not fit the model's "
                f"context window of {window:,} tokens with the system prompt and answer: {shown}{more}; "
                "shorten or remove them"
            )
    return problems
