"""The `harness` command. Thin: it parses, hands a validated plan to run.py, and prints.

Exit codes (documented in the README and `harness run --help`; a script or CI job can rely on them):
0 every requested system succeeded; 3 the run completed and its report was written, but some system failed;
2 bad input (every error a user can cause is a HarnessError and ends as one line on stderr, nothing written);
130 interrupted (Ctrl-C, SIGINT) and 143 terminated (SIGTERM), each with one line saying what was kept.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import typer

from harness import signals
from harness.cli_options import (
    BatchSize,
    Device,
    Dtype,
    LatencySample,
    ProfileOption,
    Threads,
    Track,
    TrainWorkers,
    Workers,
    overrides,
)
from harness.cli_output import (
    BAD_INPUT,
    INTERRUPTED,
    SYSTEMS_FAILED,
    TERMINATED,
    console,
    err_console,
    one_line,
)
from harness.cli_tasks import TasksDir, tasks_app
from harness.errors import HarnessError
from harness.records import RunResults
from harness.report import compare_runs, load_results, render_report
from harness.report.terminal import summary_text

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Prompt it, fine-tune it, or give it retrieval? Build all three on one task and compare them.",
)
app.add_typer(tasks_app, name="tasks")
# The final summary is as wide as the terminal, up to SUMMARY_MAX; written to a pipe or a log, SUMMARY_WIDTH.
SUMMARY_WIDTH, SUMMARY_MAX = 100, 160


def _version(value: bool) -> None:
    if value:
        console.print(f"harness {version()}")
        raise typer.Exit()


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    from harness import __version__

    try:
        return installed("harness")
    except PackageNotFoundError:  # run from a source tree without installing
        return __version__


@app.callback()
def _options(
    show_version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    pass


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise HarnessError("--systems is empty; e.g. --systems prompt,lora,rag")
    return names


@app.command()
def run(
    task: str = typer.Argument(..., help="Task name (see `harness tasks list`) or path to a task YAML."),
    systems: str | None = typer.Option(None, "--systems", "-s", help="Comma-separated systems, e.g. prompt,lora,rag."),
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        help="`default` (embedded, offline), a model folder, or a hub id (needs the network the first time, to "
        "download it; then it is cached).",
    ),
    limit: int | None = typer.Option(
        None,
        "--limit",
        help="Evaluate N test questions: a seeded sample spread over documents and categories, the same for every "
        "system; the results say 'limited run: N of M'.",
    ),
    seed: int | None = typer.Option(None, "--seed", help="Override the task's seed."),
    retrain: bool = typer.Option(
        False, "--retrain", help="Train adapters again even when cached (and evaluate again)."
    ),
    reevaluate: bool = typer.Option(
        False, "--reevaluate", help="Evaluate every system again, even where nothing that decides its answers changed."
    ),
    launcher: str = typer.Option(
        "local",
        "--launcher",
        help="`local` trains in this process; `accelerate` runs training through `accelerate launch` "
        "with a config the harness writes (finetune.accelerate).",
    ),
    device: str | None = Device,
    reports_dir: Path = typer.Option(Path("reports"), "--reports-dir", help="Where run directories go."),
    indices_dir: Path = typer.Option(Path("indices"), "--indices-dir", help="Where FAISS indices go."),
    tasks_dir: list[Path] | None = TasksDir,
    batch_size: int | None = BatchSize,
    latency_sample: int | None = LatencySample,
    workers: str | None = Workers,
    train_workers: str | None = TrainWorkers,
    dtype: str | None = Dtype,
    threads: int | None = Threads,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the final table."),
    profile: str | None = ProfileOption,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the plan and per-stage time and memory estimates; build and write nothing."
    ),
    scenario: str | None = typer.Option(
        None, "--scenario", help="`updates`: documents arrive in waves; refresh and evaluate after each (scenario:)."
    ),
    track: str | None = Track,
):
    """Build the systems, evaluate them on the held-out questions, and write the report.

    Exit codes: 0 every system succeeded; 3 the run completed (report written) but some system failed;
    2 bad input; 130 interrupted (Ctrl-C); 143 terminated (SIGTERM)."""
    from harness.models import set_offline_defaults

    set_offline_defaults()
    from harness.run import RunOptions, plan
    from harness.tracking import check

    check(track)
    opts = RunOptions(
        task=task,
        systems=_split(systems),
        model=model,
        limit=limit,
        seed=seed,
        reports_dir=reports_dir,
        indices_dir=indices_dir,
        task_dirs=tasks_dir or [],
        retrain=retrain,
        reevaluate=reevaluate,
        launcher=launcher,
        device=device,
        command=["harness", *sys.argv[1:]],
        profile=profile,
        # HARNESS_ESTIMATE=off skips the start-of-run estimate (and the probe a first run on a machine makes)
        estimate=os.environ.get("HARNESS_ESTIMATE", "on").lower() != "off",
        dry_run=dry_run,
        overrides=overrides(
            batch_size=batch_size,
            dtype=dtype,
            latency_sample=latency_sample,
            workers=workers,
            train_workers=train_workers,
        ),
        threads=threads,
        scenario=scenario,
    )
    p = plan(opts)
    if scenario is not None:  # its own checks (documents, waves) before any model loads
        from harness.scenario.stages import plan_scenario

        plan_scenario(p)
    _execute_and_print(p, quiet, track)


def _execute_and_print(p, quiet: bool, track: str | None) -> None:
    """Run a plan, print its table, log it to the tracker; exit code 3 when a system failed."""
    from harness.context import Reporter
    from harness.run import execute

    # soft_wrap: a progress line is never cut inside a path, whatever the terminal's (or a log file's) width
    reporter = Reporter(None if quiet else lambda line: err_console.print(line, markup=False, soft_wrap=True))
    if p.opts.dry_run:  # the plan and the per-stage estimate; nothing is built, nothing written to reports/
        from harness.estimate import estimate_run
        from harness.run import calibration_questions, prepare

        prep = prepare(p, reporter)
        est = estimate_run(prep.ctx, prep.built, len(calibration_questions(prep.ctx) or []), reporter.log)
        for line in est.lines():
            console.print(line, markup=False, soft_wrap=True)
        return
    if p.opts.scenario is not None:
        from harness.scenario.stages import execute_scenario as execute
    run_dir = execute(p, reporter)
    results = print_summary(run_dir)
    if results.sweep is not None:
        from harness.report.pareto import pareto

        front = pareto(results)
        if front is not None:
            console.print(front.sentence, markup=False, soft_wrap=True)
    if track:
        from harness.tracking import log_run, tracking_uri

        run_id = log_run(run_dir)
        console.print(f"tracked: MLflow run {run_id} at {tracking_uri()}", markup=False, soft_wrap=True)
    failed = [n for n, s in results.systems.items() if not s.ok]
    if failed:
        err_console.print(
            f"error: {len(failed)} of {len(results.systems)} systems failed ({', '.join(failed)}); the report "
            f"covers the others; tracebacks in {run_dir / 'errors.log'} (exit code {SYSTEMS_FAILED})",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(SYSTEMS_FAILED)


@app.command()
def sweep(
    task: str = typer.Argument(..., help="Task name (see `harness tasks list`) or path to a task YAML."),
    sets: list[str] | None = typer.Option(
        None, "--set", help="A setting and the values to try, e.g. finetune.r=8,16 or rag.k=1,3,5 (repeatable)."
    ),
    grid_file: Path | None = typer.Option(
        None, "--grid", help="A sweep YAML: `grid:` (section.field: [values]) and optionally `systems:`."
    ),
    systems: str | None = typer.Option(None, "--systems", "-s", help="Comma-separated systems, e.g. prompt,lora,rag."),
    executor: str = typer.Option(
        "local", "--executor", help="`local` runs variants one after another; `ray` sends each as a Ray task."
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Join this Ray cluster (default: start a local one with 2 workers)."
    ),
    model: str | None = typer.Option(None, "--model", "-m", help="`default`, a model folder, or a hub id."),
    limit: int | None = typer.Option(
        None, "--limit", help="Evaluate N test questions: a seeded sample spread over documents and categories."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Override the task's seed."),
    reevaluate: bool = typer.Option(False, "--reevaluate", help="Evaluate every variant again."),
    device: str | None = Device,
    reports_dir: Path = typer.Option(Path("reports"), "--reports-dir", help="Where run directories go."),
    indices_dir: Path = typer.Option(Path("indices"), "--indices-dir", help="Where FAISS indices go."),
    tasks_dir: list[Path] | None = TasksDir,
    batch_size: int | None = BatchSize,
    latency_sample: int | None = LatencySample,
    workers: str | None = Workers,
    train_workers: str | None = TrainWorkers,
    dtype: str | None = Dtype,
    threads: int | None = Threads,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the final table."),
    profile: str | None = ProfileOption,
    track: str | None = Track,
):
    """Run every combination of the --set values as its own system (`lora[r=8]`), in one run and one report
    with the Pareto front of the headline metric against cost. Exit codes as for `harness run`."""
    from harness.models import set_offline_defaults

    set_offline_defaults()
    from harness.run import RunOptions
    from harness.sweep.executors import plan_sweep
    from harness.sweep.grid import read_grid
    from harness.tracking import check

    check(track)
    from_file, file_systems = read_grid(grid_file) if grid_file is not None else ([], None)
    opts = RunOptions(
        task=task,
        systems=_split(systems) or file_systems,
        model=model,
        limit=limit,
        seed=seed,
        reports_dir=reports_dir,
        indices_dir=indices_dir,
        task_dirs=tasks_dir or [],
        reevaluate=reevaluate,
        device=device,
        command=["harness", *sys.argv[1:]],
        profile=profile,
        overrides=overrides(
            batch_size=batch_size,
            dtype=dtype,
            latency_sample=latency_sample,
            workers=workers,
            train_workers=train_workers,
        ),
        threads=threads,
    )
    _execute_and_print(plan_sweep(opts, [*from_file, *(sets or [])], executor, ray_address), quiet, track)


def print_summary(run_dir: Path) -> RunResults:
    """Print the run's table (fitted to the terminal's width), its failures, the recommendation and where the
    report is; returns the results it printed."""
    results = load_results(run_dir)
    width = min(console.width, SUMMARY_MAX) if console.is_terminal else SUMMARY_WIDTH
    sys.stdout.write(summary_text(results, run_dir, width))
    sys.stdout.flush()
    return results


@app.command()
def report(run_dir: Path = typer.Argument(..., help="A run directory (reports/<task>/<run-id>).")):
    """Render a run's report again from its results."""
    console.print(f"report: {render_report(run_dir)}")


@app.command()
def compare(
    run_dirs: list[Path] = typer.Argument(..., help="Two or more run directories."),
    out: Path = typer.Option(..., "--out", help="Folder for the comparison report."),
):
    """Compare runs (two models, or two settings) side by side, with deltas."""
    console.print(f"comparison: {compare_runs(run_dirs, out)}")


@app.command()
def memory(
    task: str = typer.Argument(..., help="Task name or path to a task YAML."),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="A model config (folder or config.json) instead of the task model's, e.g. configs/llama-3-8b.",
    ),
    system: str | None = typer.Option(None, "--system", help="qlora, lora or dora (default: the task's first)."),
    tasks_dir: list[Path] | None = TasksDir,
):
    """Expected GPU memory of one training process of the task's adapter (weights, adapter, optimizer state,
    activations), from the model's config alone: the QLoRA arithmetic of docs/scale.md."""
    from harness.memory_estimate import for_task
    from harness.models import set_offline_defaults
    from harness.spec import load_spec
    from harness.tasks import find_task

    set_offline_defaults()
    if system is not None and system not in ("qlora", "lora", "dora"):
        raise HarnessError(f"--system must be qlora, lora or dora, got '{system}'")
    spec = load_spec(find_task(task, tasks_dir or []))
    est = for_task(spec, config, system)
    s = est.shape
    console.print(
        f"{spec.name}: {est.method} on {spec.model} ({s.layers} layers, hidden {s.hidden}, vocab {s.vocab:,}), "
        f"{est.batch} sequences x {est.seq} tokens per process",
        markup=False,
        soft_wrap=True,
    )
    for line in est.lines():
        console.print(line, markup=False, soft_wrap=True)


def _click_exceptions() -> tuple[tuple, tuple, tuple]:
    """(usage errors, exits, aborts). typer 0.29 vendors click as `typer._click` and raises its classes,
    not the `click` package's: catch both, or a mistyped option ends in a traceback."""
    import click

    usage, exits, aborts = (
        [click.ClickException],
        [click.exceptions.Exit, typer.Exit],
        [click.exceptions.Abort, typer.Abort],
    )
    try:
        from typer._click.exceptions import ClickException as VendoredClickException

        usage.append(VendoredClickException)
    except ImportError:  # an older typer that uses click itself
        pass
    return tuple(usage), tuple(exits), tuple(aborts)


def _interrupted() -> None:
    terminated = signals.terminated()
    what = "terminated (SIGTERM)" if terminated else "interrupted"
    err_console.print(
        f"{what}: no run directory was written; built artifacts (converted model, adapters, indices, stored "
        "evaluations, training checkpoints) are kept, and the next run reuses or resumes them",
        markup=False,
        soft_wrap=True,
    )
    sys.exit(TERMINATED if terminated else INTERRUPTED)


def _usage_error(e) -> None:
    """One line in click's words, e.g. `Error: No such option: --bogus (try 'harness run --help')`."""
    if type(e).__name__ == "NoArgsIsHelpError":  # `harness` alone: the help is the answer
        e.show()
        return
    ctx = getattr(e, "ctx", None)
    hint = f" (try '{ctx.command_path} --help')" if ctx is not None else ""
    message = one_line(" ".join(e.format_message().split()))
    err_console.print(f"Error: {message}{hint}", markup=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    usage_errors, exits, aborts = _click_exceptions()
    signals.received.clear()
    try:
        previous = signal.signal(signal.SIGTERM, signals.on_sigterm)
    except ValueError:  # not the main thread (an embedding program): SIGTERM keeps its own handling
        previous = None
    try:
        _main(argv, usage_errors, exits, aborts)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def plain_help(command) -> None:
    """Help without typer's type labels (`<bool>`, `<list[Path]>`, `<str>`): a flag shows none, an option or
    argument its name in capitals (`--limit LIMIT`, `TASK`), as most command-line tools write them."""
    for param in command.params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
        elif param.metavar is None:
            param.metavar = (param.name or "value").upper()
        if type(param).__name__.endswith("Argument"):
            # an argument's type column ignores its metavar: show none
            param.display_type_rich = lambda ctx: None
    help_option = command.get_help_option(command.context_class(command))
    if help_option is not None:
        help_option.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        plain_help(sub)


def command():
    """The click command of `app`, with plain help."""
    cmd = typer.main.get_command(app)
    plain_help(cmd)
    return cmd


def _main(argv, usage_errors, exits, aborts) -> None:
    try:
        code = command()(args=argv, standalone_mode=False)  # click returns an Exit's code instead of raising it
    except HarnessError as e:
        err_console.print(f"error: {one_line(e)}", markup=False, soft_wrap=True)
        sys.exit(BAD_INPUT)
    except exits as e:
        if e.exit_code == INTERRUPTED:
            _interrupted()
        sys.exit(e.exit_code)
    except usage_errors as e:
        _usage_error(e)
        sys.exit(e.exit_code)
    except (KeyboardInterrupt, *aborts):
        _interrupted()
    except OSError as e:  # the environment (a full disk, a folder that cannot be read): one line, no traceback
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        err_console.print(one_line(f"error: {where}{e.strerror or e}"), markup=False, soft_wrap=True)
        sys.exit(BAD_INPUT)
    # typer turns a KeyboardInterrupt (Ctrl-C, SIGINT) into Exit(130) and, outside standalone mode, returns
    # the code: say what happened instead of exiting silently.
    if code == INTERRUPTED:
        _interrupted()
    if signals.terminated():  # dropped in a finalizer after the last check: the run ended, but not by itself
        err_console.print("terminated (SIGTERM) as the run ended", markup=False, soft_wrap=True)
        sys.exit(TERMINATED)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
