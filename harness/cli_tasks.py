"""`harness tasks list|show|validate`: the task files a user can run, and their checks."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from harness.cli_output import BAD_INPUT, console, err_console, one_line
from harness.errors import HarnessError

tasks_app = typer.Typer(no_args_is_help=True, help="List, show and validate task files.")
TasksDir = typer.Option(None, "--tasks-dir", help="Extra folder of task YAML files (also: HARNESS_TASKS).")


@tasks_app.command("list")
def tasks_list(tasks_dir: list[Path] | None = TasksDir):
    """Name, answer format, split sizes and description of every task found."""
    from harness.taskinfo import describe_all

    table = Table()
    for col in ("task", "format", "train", "dev", "test", "corpus", "description"):
        table.add_column(col)
    for row in describe_all(tasks_dir or []):
        table.add_row(*[str(row[k]) for k in ("name", "format", "train", "dev", "test", "corpus", "description")])
    console.print(table)


@tasks_app.command("show")
def tasks_show(task: str, tasks_dir: list[Path] | None = TasksDir):
    """The resolved configuration of a task, after includes and defaults."""
    import yaml

    from harness.spec import load_spec
    from harness.taskinfo import headline_note
    from harness.tasks import find_task

    spec = load_spec(find_task(task, tasks_dir or []))
    console.print(f"# {spec.source_path}", markup=False, soft_wrap=True)
    console.print(headline_note(spec), markup=False, soft_wrap=True)
    console.print(
        yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False, allow_unicode=True), markup=False, soft_wrap=True
    )


@tasks_app.command("validate")
def tasks_validate(paths: list[Path] = typer.Argument(..., help="Task YAML files (or folders of them).")):
    """Check the schema, and that the data loads and is consistent. Reports every problem, one line each."""
    from harness.taskinfo import expand_paths, validate_file

    failed = 0
    for path in expand_paths(paths):
        try:
            info = validate_file(path)
            console.print(f"ok   {one_line(path)}: {one_line(info)}", markup=False, soft_wrap=True)
        except HarnessError as e:
            failed += 1
            for problem in getattr(e, "problems", None) or [str(e)]:  # every problem, one line each
                err_console.print(f"FAIL {one_line(problem)}", markup=False, soft_wrap=True)
    if failed:
        raise typer.Exit(BAD_INPUT)
