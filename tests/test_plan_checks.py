"""`harness run` and `harness tasks validate` make one check before anything loads (harness.checks.task_problems):
templates rendered in the sandbox, the seed and other numeric ranges, the files and folders a task names. Each
problem is one line naming the task file and line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness import checks
from harness.run import RunOptions, plan
from harness.spec import TaskProblems, load_spec
from tests.conftest import run_cli, write_tiny_task

REFUSED = "{{ passages.append(1) }}{{ question }}"  # the immutable sandbox refuses changing a list


def bad_task(tmp_path: Path, tiny_model_dir: Path, **overrides) -> Path:
    return write_tiny_task(tmp_path / "tasks", tiny_model_dir, **overrides)


def located(line: str, task: Path, field: str) -> None:
    assert re.match(rf"{re.escape(str(task.resolve()))}:\d+: field '{re.escape(field)}'", line), line


@pytest.fixture
def no_loading(monkeypatch):
    """Fail the test if the data or a model starts loading: the check must come first."""
    import harness.run as run

    def refuse(*a, **k):
        raise AssertionError("loaded before the check")

    monkeypatch.setattr(run, "load_task_data", refuse)
    monkeypatch.setattr(run.models, "load_tokenizer", refuse)
    monkeypatch.setattr(run.models, "load_model", refuse)


def plan_problems(task: Path, tmp_path: Path, **opts) -> list[str]:
    with pytest.raises(TaskProblems) as e:
        plan(RunOptions(task=str(task), reports_dir=tmp_path / "r", indices_dir=tmp_path / "i", **opts))
    return e.value.problems


def validate_lines(task: Path) -> list[str]:
    code, _, err = run_cli("tasks", "validate", task)
    assert code == 2
    return [line.removeprefix("FAIL ") for line in err.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"seed": 99999999999999999999999999}, "seed", "less than or equal to 4294967295"),
        ({"seed": -1}, "seed", "greater than or equal to 0"),
        ({"rag": {"context_template": REFUSED}}, "rag.context_template", "not allowed in a task file"),
        ({"question_template": "{{ questoin }}"}, "question_template", "'questoin' is undefined"),
        ({"question_template": "{{ question + 1 }}"}, "question_template", "cannot render (TypeError"),
        ({"question_template": "{{ range(10**9)|list }}"}, "question_template", "cannot render (OverflowError"),
        ({"evaluation": {"bootstrap": 10**9}}, "evaluation.bootstrap", "less than or equal to 100000"),
        ({"finetune": {"epochs": float("inf")}}, "finetune.epochs", "finite number"),
        ({"data": {"corpus": {"path": "no-such-folder"}}}, "data.corpus.path", "not found"),
    ],
)
def test_plan_and_validate_refuse_at_plan_time_with_file_and_line(
    tmp_path, tiny_model_dir, no_loading, overrides, field, words
):
    task = bad_task(tmp_path, tiny_model_dir, **overrides)
    problems = plan_problems(task, tmp_path, systems=["prompt"])  # rag is not even run
    assert len(problems) == 1, problems
    located(problems[0], task, field)
    assert words in problems[0], problems[0]
    assert validate_lines(task) == problems  # the same check, the same words
    code, out, err = run_cli("run", task, "--systems", "prompt", "--reports-dir", tmp_path / "r")
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and words in err, err
    assert "Traceback" not in err + out
    assert not (tmp_path / "r" / "tiny-qa").exists()


def test_seed_on_the_command_line_is_checked_too(tmp_path, tiny_model_dir, no_loading):
    task = bad_task(tmp_path, tiny_model_dir)
    for seed in ("99999999999999999999999999", "-1", "4294967296"):
        code, _, err = run_cli("run", task, "--seed", seed, "--reports-dir", tmp_path / "r")
        assert code == 2 and f"error: --seed must be from 0 to 4294967295, got {seed}" in err, err
    assert plan(RunOptions(task=str(task), seed=4294967295, reports_dir=tmp_path / "r")).spec.seed == 4294967295


def test_every_problem_is_listed_once(tmp_path, tiny_model_dir):
    task = bad_task(
        tmp_path,
        tiny_model_dir,
        question_template="{{ nope }}",
        rag={"context_template": REFUSED},
        systems=["prompt", "lorra"],
        model=str(tmp_path / "no-model"),
    )
    problems = plan_problems(task, tmp_path)
    fields = [re.search(r"field '([^']+)'", p).group(1) for p in problems]
    assert fields == ["systems", "question_template", "rag.context_template", "model"], problems
    assert validate_lines(task) == problems


def test_a_good_task_passes_and_the_sample_question_fits_every_format(tiny_task):
    spec = load_spec(tiny_task)
    assert checks.task_problems(spec) == []
    for fmt in ("yes-no", "multiple-choice", "free-text"):
        q = checks.sample_question(fmt)
        assert q.question and q.answers and (q.choices is None) == (fmt == "free-text")
        assert fmt != "multiple-choice" or len(q.choices) == 4
    spec = spec.model_copy(update={"question_template": "{{ question }} {% for c in choices %}{{ c }}{% endfor %}"})
    assert checks.template_problems(spec, checks.sample_question("multiple-choice")) == []


# ---------------------------------------------------------------- questions against the context window


def test_an_over_long_question_is_reported_with_its_id_before_any_system_builds(tmp_path, tiny_model_dir, monkeypatch):
    import json

    from harness.systems.prompt import PromptSystem

    task = bad_task(tmp_path, tiny_model_dir)
    questions = task.parent / "tiny-qa" / "questions.jsonl"
    rows = [json.loads(line) for line in questions.read_text().splitlines()]
    for row in rows:  # one category in every licence: some land in test, some in dev
        if row["id"].endswith("--liability"):
            row["question"] = "Does it allow this? " * 20_000  # 400 KB, 100,000 tokens or so
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def never(self):
        raise AssertionError("a system built before the check")

    monkeypatch.setattr(PromptSystem, "build", never)
    code, out, err = run_cli(
        "run", task, "--systems", "prompt", "--reports-dir", tmp_path / "r", "--indices-dir", tmp_path / "i"
    )
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err + out, err
    line = lines[0]
    assert "do not fit the model's context window of 512 tokens" in line, line
    assert "--limitations--liability" in line and "questions.jsonl:" in line, line
    assert "Does it allow this? " * 3 not in line  # ids and places, not the text
    assert len(line) < 1500
    assert not (tmp_path / "r" / "tiny-qa").exists()


def test_window_problems_unit(tiny_model_dir):
    from harness.data import Question
    from harness.models import load_tokenizer, resolve_model
    from harness.parts.prompt_builder import PromptBuilder

    spec = load_spec(write_tiny_task(Path(tiny_model_dir).parent / "w", tiny_model_dir))
    prompts = PromptBuilder(spec, load_tokenizer(resolve_model(str(tiny_model_dir), fingerprint=False)))
    short = Question(id="ok", question="Is it?", answers=["Yes"], choices=["Yes", "No"])
    n = prompts.tokens(prompts.plain(short)) + 1
    assert checks.window_problems(spec, prompts, {"test": [short]}, n) == []
    assert checks.window_problems(spec, prompts, {"test": [short]}, None) == []  # a config that does not say
    (problem,) = checks.window_problems(spec, prompts, {"test": [short] * 7, "dev": []}, n - 2)
    assert "7 test question(s)" in problem and "and 2 more" in problem and "'ok'" in problem


# ---------------------------------------------------------------- size limits of task files


def test_a_task_file_over_the_size_limit_is_one_line(tmp_path, tiny_model_dir, monkeypatch):
    from harness import yamlfile
    from harness.errors import HarnessError

    task = bad_task(tmp_path, tiny_model_dir)
    task.write_text(task.read_text() + "# padding\n" * (yamlfile.MAX_FILE_BYTES // 10 + 1))
    lines = validate_lines(task)
    assert lines == [f"{task}: over 2 MB; a task file may be at most 2 MB (it holds settings; questions and "
                     "documents belong in the data files it names)"]  # fmt: skip
    code, _, err = run_cli("run", task)
    assert code == 2 and err.count("\n") == 1 and "a task file may be at most 2 MB" in err
    # Refused before any YAML is parsed (what made large files slow), not by a clock that a busy machine can miss.
    monkeypatch.setattr(yamlfile, "_compose", lambda *a: pytest.fail("an over-limit file was parsed"))
    with pytest.raises(HarnessError, match="a task file may be at most 2 MB"):
        yamlfile.read_yaml(task)


def test_a_file_that_never_ends_is_read_no_further_than_the_limit():
    from harness.errors import HarnessError
    from harness.yamlfile import read_yaml

    with pytest.raises(HarnessError, match=r"^/dev/zero: over 2 MB; a task file may be at most 2 MB"):
        read_yaml(Path("/dev/zero"))  # (an include of it is refused earlier: not a regular file)


def test_a_value_over_the_size_limit_is_located(tmp_path, tiny_model_dir):
    task = bad_task(tmp_path, tiny_model_dir, system_prompt="Answer. " * 20_000)
    (line,) = validate_lines(task)
    assert re.match(rf"{re.escape(str(task))}:\d+: a value of 160,000 characters; a value in a task file may have "
                    r"at most 100,000", line), line  # fmt: skip
    # just under the limit: no size error (the tiny model's 512-token window is another matter, said once)
    just_under = bad_task(tmp_path / "ok", tiny_model_dir, system_prompt="Answer. " * 12_000)
    (line,) = validate_lines(just_under)
    located(line, just_under, "system_prompt")
    assert "alone take" in line and "more than the model's context window of 512" in line, line


# ---------------------------------------------------------------- files outside the task's folder


def test_files_outside_the_task_folder_are_said(tmp_path, tiny_model_dir):
    inside = bad_task(tmp_path / "in", tiny_model_dir)
    code, out, _ = run_cli("tasks", "validate", inside)
    assert code == 0 and "reads outside" not in out
    assert checks.outside_paths(load_spec(inside)) == []

    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "shared").mkdir(parents=True)
    (elsewhere / "shared" / "defaults.yaml").write_text("seed: 3\n")
    task = bad_task(tmp_path / "out", tiny_model_dir)
    data = task.parent / "tiny-qa" / "questions.jsonl"
    moved = elsewhere / "questions.jsonl"
    data.rename(moved)
    text = task.read_text().replace("path: tiny-qa/questions.jsonl", f"path: {moved}")
    task.write_text(text + "include: ../../elsewhere/shared/defaults.yaml\n")
    spec = load_spec(task)
    assert checks.outside_paths(spec) == [str((elsewhere / "shared" / "defaults.yaml").resolve()), str(moved)]
    code, out, err = run_cli("tasks", "validate", task)
    assert code == 0, err
    assert out.rstrip().endswith(
        f"reads outside its folder: {elsewhere.resolve() / 'shared' / 'defaults.yaml'}, {moved}"
    )


def test_validate_reports_over_long_questions_when_the_model_is_on_disk(tmp_path, tiny_model_dir):
    import json

    task = bad_task(tmp_path, tiny_model_dir)
    questions = task.parent / "tiny-qa" / "questions.jsonl"
    rows = [json.loads(line) for line in questions.read_text().splitlines()]
    for row in rows:
        if row["id"].endswith("--liability"):
            row["question"] = "Does it allow this? " * 2_000
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines = validate_lines(task)
    assert lines and all("do not fit the model's context window of 512 tokens" in line for line in lines), lines
    assert any("--limitations--liability" in line for line in lines)
    assert checks.sample_question("yes-no")  # a default model not converted yet is not converted by validate:
    spec_default = bad_task(tmp_path / "d", tiny_model_dir, model="default")
    code, _, err = run_cli("tasks", "validate", spec_default)
    assert code == 0, err
