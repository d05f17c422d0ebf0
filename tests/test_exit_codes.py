"""Exit codes a script can trust, and text from files printed as written.

0: every requested system succeeded. 3: the run completed (results.json and the report written) but some
system failed. 2: bad input, nothing written. 130 / 143: SIGINT / SIGTERM, with one line saying what was kept.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from report_fixtures import make_results, write_run

from harness.cli import print_summary
from harness.errors import excerpt
from tests.conftest import run_cli, write_tiny_task
from tests.test_reliability import Proc, after_line


@pytest.fixture(scope="module")
def fast_task(tmp_path_factory, tiny_model_dir) -> Path:
    return write_tiny_task(tmp_path_factory.mktemp("exit-task"), tiny_model_dir, evaluation={"calibration": "none"})


def _run(task: Path, root: Path, *args) -> tuple[int, str, str]:
    return run_cli(
        "run", task, "--limit", 3, "--reports-dir", root / "reports", "--indices-dir", root / "indices", "-q", *args
    )


def _runs(root: Path) -> list[Path]:
    folder = root / "reports" / "tiny-qa"
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()) if folder.exists() else []


def test_every_system_succeeded_exits_0(fast_task, tmp_path):
    code, out, err = _run(fast_task, tmp_path, "--systems", "prompt")
    assert code == 0, err
    assert "error" not in err and "report:" in out


def test_a_failed_system_exits_3_and_the_report_covers_the_rest(fast_task, tmp_path, monkeypatch):
    from harness.systems.rag import RagSystem

    def broken(self):
        raise RuntimeError("the index could not be built")

    monkeypatch.setattr(RagSystem, "build", broken)
    code, out, err = _run(fast_task, tmp_path, "--systems", "prompt,rag")
    assert code == 3, err
    (run,) = _runs(tmp_path)
    results = json.loads((run / "results.json").read_text())
    assert results["systems"]["prompt"]["status"] == "ok"
    assert results["systems"]["rag"]["status"] == "failed"
    assert "RuntimeError: the index could not be built" in results["systems"]["rag"]["error"]
    assert (run / "index.html").exists() and "the index could not be built" in (run / "errors.log").read_text()
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert last.startswith("error: 1 of 2 systems failed (rag)") and "exit code 3" in last, last
    assert "Traceback" not in err + out


def test_every_system_failed_still_exits_3(fast_task, tmp_path, monkeypatch):
    from harness.systems.prompt import PromptSystem

    monkeypatch.setattr(PromptSystem, "build", lambda self: 1 / 0)
    code, _, err = _run(fast_task, tmp_path, "--systems", "prompt")
    assert code == 3 and "1 of 1 systems failed (prompt)" in err, err
    assert len(_runs(tmp_path)) == 1


def test_bad_input_exits_2_and_writes_nothing(fast_task, tmp_path):
    code, _, err = _run(fast_task, tmp_path, "--systems", "prompt,nope")
    assert code == 2 and err.startswith("error: ") and "unknown system 'nope'" in err, err
    assert _runs(tmp_path) == []


def test_run_help_documents_the_exit_codes():
    code, out, _ = run_cli("run", "--help")
    assert code == 0
    text = " ".join(out.split())
    for words in ("0 every system succeeded", "3 the run completed", "2 bad input", "130 interrupted", "143"):
        assert words in text, (words, text)


def test_readme_documents_the_exit_codes():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "Exit codes" in readme and "| 3 |" in readme and "| 143 |" in readme


@pytest.mark.parametrize(
    ("sig", "code", "first_words"),
    [(signal.SIGTERM, 143, "terminated (SIGTERM)"), (signal.SIGINT, 130, "interrupted")],
)
def test_a_signal_ends_the_run_with_its_code_and_one_line(fast_task, tmp_path, harness_cmd, sig, code, first_words):
    args = [*harness_cmd, "run", fast_task, "--systems", "prompt", "--limit", 3, "--reports-dir", tmp_path / "r"]
    p = Proc([*args, "--indices-dir", tmp_path / "i"], {"HARNESS_HOME": str(tmp_path / "home")})
    assert p.wait_until(lambda: after_line("▸ load data")(p), 240), p.stderr[-2000:]
    p.proc.send_signal(sig)
    rc = p.finish(120)
    assert rc == code, f"exit {rc}\n{p.stderr[-2000:]}"
    assert "Traceback" not in p.stderr
    last = [line for line in p.stderr.splitlines() if line.strip()][-1]
    assert last.startswith(f"{first_words}: no run directory was written"), last
    assert "built artifacts" in last and "kept" in last
    reports = tmp_path / "r" / "tiny-qa"
    assert not reports.exists() or not any(reports.iterdir())


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the ignored exception, on purpose
def test_a_sigterm_dropped_in_a_finalizer_stops_the_run_at_its_next_stage():
    """Python ignores an exception raised in `__del__`: the handler's Terminated is lost there, but the signal
    was recorded, and the next stage (or progress step, or training step) raises it again."""
    import gc

    from harness import signals
    from harness.context import Reporter

    class Finalized:
        def __del__(self):
            signals.on_sigterm(signal.SIGTERM, None)  # as if the signal landed while this ran

    signals.received.clear()
    try:
        Finalized()
        gc.collect()  # the exception raised in __del__ went nowhere
        reporter = Reporter(sink=lambda line: None)
        with pytest.raises(signals.Terminated), reporter.stage("rag: build"):
            raise AssertionError("the stage must not start")
        with pytest.raises(signals.Terminated):
            reporter.progress("rag: test", 10)()
    finally:
        signals.received.clear()


# ---------------------------------------------------------------- text from files is printed as written


def test_markup_and_emoji_codes_in_a_path_print_literally(tmp_path):
    folder = tmp_path / ":x: [bold]task[/bold]"
    code, _, err = run_cli("run", folder / "t.yaml")
    assert code == 2
    assert ":x: [bold]task[/bold]" in err and "❌" not in err, err


def test_markup_in_a_task_value_prints_literally(tmp_path, tiny_model_dir):
    task = write_tiny_task(tmp_path, tiny_model_dir, data={"questions": {"path": "[red]:x:q.jsonl"}})
    code, _, err = run_cli("tasks", "validate", task)
    assert code == 2
    assert "[red]:x:q.jsonl" in err and "❌" not in err, err


def test_markup_in_the_summary_table_prints_literally(tmp_path, capsys):
    results = make_results()
    results["model"] = "[bold]my-model[/bold] :x:"
    results["systems"]["dora"]["error"] = "ValueError: bad [red]value[/red] :x:"
    run = write_run(tmp_path / "run", results=results)
    print_summary(run)
    out = capsys.readouterr().out
    assert "model: [bold]my-model[/bold] :x:" in out
    assert "bad [red]value[/red] :x:" in out and "❌" not in out


def test_errors_quote_a_data_row_only_as_a_short_marked_excerpt(tmp_path, tiny_model_dir):
    row = "root:x:0:0:root:/root:/bin/bash" + ":secret" * 40
    task = write_tiny_task(tmp_path, tiny_model_dir, data={"questions": {"path": "passwd.csv"}})
    (task.parent / "passwd.csv").write_text(row + "\n" + "daemon:x:1:1\n")
    code, _, err = run_cli("tasks", "validate", task)
    assert code == 2
    assert row not in err and ":secret" * 10 not in err, err
    assert "'root:x:0:0:root:/root:/bin/bas…' (+" in err and "more characters)" in err, err


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("Yes", "'Yes'"),
        ("a\nb", "'a\\nb'"),
        ("x" * 61, "'" + "x" * 60 + "…' (+1 more characters)"),
        (12345, "12345"),
        (list(range(40)), str(list(range(40)))[:60] + "…"),
    ],
)
def test_excerpt(value, want):
    got = excerpt(value)
    assert got.startswith(want) and len(got) < 110, got
