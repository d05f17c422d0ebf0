"""The `harness` command as a user meets it: bad input fails at once, on one line, and writes nothing.

Each call is a real subprocess of the console script, so what is checked is what a terminal shows.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from report_fixtures import make_results, write_run

from harness import files
from harness.cli import print_summary
from harness.report import ReportError, load_results, render_report
from harness.report.terminal import summary_text
from tests import netguard

REPO = Path(__file__).resolve().parent.parent
OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


@pytest.fixture
def cli(harness_cmd, tmp_path):
    """Run `harness ARGS` in a scratch working directory; returns the CompletedProcess."""
    work = tmp_path / "work"
    work.mkdir()

    def run(*args, env: dict | None = None, timeout: float = 120, cwd: Path | None = None):
        return subprocess.run(
            [*harness_cmd, *map(str, args)], cwd=cwd or work, capture_output=True, text=True, timeout=timeout, env=env
        )

    run.work = work
    return run


def assert_one_line_error(r, *fragments: str) -> str:
    assert r.returncode != 0, r
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{r.stderr}"
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def assert_no_run_written(work: Path) -> None:
    reports = work / "reports"
    runs = [p for p in reports.rglob("*") if p.is_dir()] if reports.exists() else []
    assert not runs, f"a run directory was created: {runs}"


# ---------------------------------------------------------------- bad input


def test_unknown_task_lists_known_tasks(cli):
    r = cli("run", "no-such-task")
    line = assert_one_line_error(r, "unknown task 'no-such-task'", "known tasks:", "legal-qa")
    assert r.returncode == 2 and line
    assert_no_run_written(cli.work)


def test_misspelt_task_suggests(cli):
    assert_one_line_error(cli("run", "legal-q"), "did you mean 'legal-qa'?")


def test_unknown_system_suggests_and_lists(cli):
    r = cli("run", "legal-qa", "--systems", "prompt,lorra")
    assert_one_line_error(
        r, "unknown system 'lorra'", "did you mean 'lora'?", "valid systems:", "prompt", "rag", "dora"
    )
    assert_no_run_written(cli.work)


def test_system_listed_twice(cli):
    assert_one_line_error(cli("run", "legal-qa", "--systems", "prompt,prompt"), "twice")


def test_model_path_missing(cli):
    r = cli("run", "legal-qa", "--model", "./no-such-model")
    assert_one_line_error(r, "no-such-model", "does not exist")
    assert_no_run_written(cli.work)


def test_model_folder_not_a_model(cli, tmp_path):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "README.md").write_text("hello")
    r = cli("run", "legal-qa", "--model", folder)
    assert_one_line_error(r, str(folder), "no config.json")
    assert_no_run_written(cli.work)


def test_model_file_not_folder(cli, tmp_path):
    f = tmp_path / "weights.safetensors"
    f.write_bytes(b"x")
    assert_one_line_error(cli("run", "legal-qa", "--model", f), "is a file, not a model folder")


@pytest.mark.parametrize("limit", ["0", "-3"])
def test_limit_not_positive(cli, limit):
    r = cli("run", "legal-qa", "--limit", limit)
    assert_one_line_error(r, "--limit must be a positive number", limit)
    assert_no_run_written(cli.work)


@pytest.mark.parametrize("value", ["", ",", " , "])
def test_empty_systems(cli, value):
    r = cli("run", "legal-qa", "--systems", value)
    assert_one_line_error(r, "--systems is empty")
    assert_no_run_written(cli.work)


def test_hub_model_offline_fails_fast(cli, _network_guard_session):
    """A user with no hub gets a clear error at once, not a minute of retries: offline is the default.

    Checked by what happens, not by a clock (issue 15: `took < 5` failed at 5.5 s on a loaded 2-core machine):
    the run never tries to reach the hub, which the tests' network guard logs (tests/netguard.py)."""
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_VARS}
    log = _network_guard_session
    before = log.stat().st_size if log.exists() else 0
    r = cli("run", "legal-qa", "--model", "HuggingFaceTB/SmolLM2-135M-Instruct", env=env, timeout=30)
    assert_one_line_error(r, "HuggingFaceTB/SmolLM2-135M-Instruct", "pass a local model folder")
    assert netguard.read_log(log, before) == "", "the run tried to reach the hub"
    assert_no_run_written(cli.work)


def test_task_yaml_errors_name_the_file(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nanswer_format: yes-no\ndata: {questions: {path: q.jsonl}}\nsystem_promt: hi\n")
    assert_one_line_error(cli("run", bad), str(bad), "system_promt", "did you mean 'system_prompt'?")
    assert_one_line_error(cli("run", tmp_path / "missing.yaml"), "not found")


def test_report_on_a_folder_that_is_not_a_run(cli, tmp_path):
    folder = tmp_path / "not-a-run"
    folder.mkdir()
    assert_one_line_error(cli("report", folder), "not a run directory")
    assert_one_line_error(cli("report", tmp_path / "nowhere"), "not a run directory")
    assert list(folder.iterdir()) == []


def test_compare_needs_two_runs(cli, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"task": "t", "systems": {}, "baselines": {}, "comparisons": []}))
    out = tmp_path / "cmp"
    assert_one_line_error(cli("compare", run, "--out", out), "at least 2")
    assert not out.exists()


def test_usage_errors_have_no_traceback(cli):
    for args in (["run", "legal-qa", "--bogus"], ["run"], ["run", "legal-qa", "--limit", "abc"], ["nosuchcommand"]):
        r = cli(*args)
        assert r.returncode == 2, (args, r)
        assert "Traceback" not in r.stderr, r.stderr
        assert "Error" in r.stderr


def test_terminal_table_words_figures_as_the_report_does(tmp_path, capsys):
    """The table `harness run` prints and the report's summary come from the same rows: every cell of
    summary.md (figures, intervals, build and verdict wording) appears as-is in the terminal."""
    results = make_results()
    results["model"] = "tiny-llama"
    results["systems"]["rag"]["evaluation_reused"] = {"measured_at": "2026-11-25T09:00:00+00:00", "seconds": 3.0}
    run = write_run(tmp_path / "run", results=results)
    render_report(run)
    print_summary(run)  # to a pipe: 100 columns
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines() if not line.startswith("report: ")) <= 100
    out = summary_text(load_results(run), run, 160)  # a wide terminal: every summary.md cell on one line
    md = [line for line in (run / "summary.md").read_text(encoding="utf-8").splitlines() if line.startswith("| ")]
    for line in md[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0].endswith("(failed)"):
            assert "dora failed: CUDA out of memory: tried to allocate 2.00 GiB" in out
            continue
        for cell in cells:
            assert cell in out, (cell, out)
    for text in ("0.850 [0.700, 0.950]", "cached (built in 12.5 s)", "better (Holm p = 0.020)", "vs category_prior"):
        assert text in out
    assert "rag (2026-11-25T09:00:00+00:00)" in out and "model: tiny-llama" in out
    assert f"report: {run / 'index.html'}" in out


def test_a_reused_latency_says_how_idle_threads_waited_when_it_differs(tmp_path):
    """A reused evaluation keeps the latency measured then; where idle OpenMP threads waited otherwise in that run
    than in this one (harness.openmp), the terminal and the report's badge say so, and say nothing when alike."""
    results = make_results()
    results["settings"]["openmp_wait"] = "spin 10000 times, then sleep (the CPUs were 2% busy as it started)"
    results["systems"]["rag"]["evaluation_reused"] = {
        "measured_at": "2026-11-25T09:00:00+00:00",
        "seconds": 3.0,
        "openmp_wait": "passive: sleep at once",
    }
    results["systems"]["lora"]["evaluation_reused"] = {
        "measured_at": "2026-11-25T08:00:00+00:00",
        "seconds": 2.0,
        "openmp_wait": "spin 10000 times, then sleep",
    }
    run = write_run(tmp_path / "run", results=results)
    render_report(run)
    out = " ".join(summary_text(load_results(run), run, 160).split())
    assert "rag (2026-11-25T09:00:00+00:00; idle CPU threads then: passive: sleep at once)" in out
    assert "lora (2026-11-25T08:00:00+00:00)" in out  # the same wait as this run's: nothing to say
    html = (run / "index.html").read_text()
    assert "idle CPU threads then: passive: sleep at once, unlike this run" in html
    assert html.count("idle CPU threads then:") == 1


def test_terminal_table_of_a_run_that_does_not_validate(tmp_path):
    results = make_results()
    del results["systems"]["lora"]["metrics"]["auc"]["value"]
    run = write_run(tmp_path / "run", results=results)
    with pytest.raises(ReportError, match=r"results\.json: systems\.lora\.metrics\.auc\.value: Field required"):
        print_summary(run)


# ---------------------------------------------------------------- tasks


def test_tasks_list_shows_legal_qa(cli):
    r = cli("tasks", "list")
    assert r.returncode == 0, r.stderr
    assert "legal-qa" in r.stdout and "yes-no" in r.stdout
    assert "_shared" not in r.stdout and "defaults" not in r.stdout


def test_tasks_list_with_extra_folder(cli, tiny_task):
    r = cli("tasks", "list", "--tasks-dir", tiny_task.parent)
    assert r.returncode == 0, r.stderr
    assert "tiny-qa" in r.stdout and "legal-qa" in r.stdout


def test_tasks_validate_shipped(cli):
    r = cli("tasks", "validate", "tasks/legal-qa.yaml", cwd=REPO)  # reads only; writes nothing in the repo
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok   tasks/legal-qa.yaml: legal-qa (yes-no)")
    assert "Traceback" not in r.stderr


def test_tasks_validate_reports_every_bad_file(cli, tmp_path, tiny_task):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Bad Name\n")
    r = cli("tasks", "validate", tiny_task, bad)
    assert r.returncode != 0
    assert f"ok   {tiny_task}" in r.stdout
    assert "FAIL" in r.stderr and str(bad) in r.stderr and "Traceback" not in r.stderr


def test_tasks_show_prints_resolved_config(cli):
    import yaml

    r = cli("tasks", "show", "legal-qa")
    assert r.returncode == 0, r.stderr
    first, _, body = r.stdout.partition("\n")
    assert first.startswith("# ") and first.endswith("legal-qa.yaml")
    cfg = yaml.safe_load(body)
    assert cfg["name"] == "legal-qa" and cfg["answer_format"] == "yes-no"
    # values from the include are resolved in
    assert cfg["finetune"]["r"] == 16 and cfg["rag"]["k"] == 3 and cfg["model"] == "default"
    assert cfg["evaluation"]["bootstrap"] > 0  # defaults filled in


def test_tasks_show_unknown(cli):
    assert_one_line_error(cli("tasks", "show", "nope"), "unknown task 'nope'")


# ---------------------------------------------------------------- the real default model, end to end


@pytest.mark.slow
def test_real_default_end_to_end(cli, harness_home, tmp_path):
    """`harness run legal-qa --systems prompt,rag --limit 8` on the embedded SmolLM2 with a fresh
    HARNESS_HOME: converts the packaged GGUF once, builds the index, evaluates, reports. About a minute (see
    docs/performance.md, "The CLI's end-to-end test"); `-m "not slow"` skips it.

    Dev calibration would add 80 questions per system (minutes on 2 cores), so an override file found
    through --tasks-dir caps it; everything else is the shipped legal-qa task.
    """
    override = tmp_path / "override"
    override.mkdir()
    shipped = REPO / "tasks" / "legal-qa.yaml"
    (override / "legal-qa.yaml").write_text(
        f"include: {shipped}\n"
        f"data: {{questions: {{path: {REPO / 'tasks' / 'legal-qa' / 'questions.jsonl'}}}}}\n"
        "evaluation: {calibration_limit: 6, warmup: 1, bootstrap: 200}\n"
    )
    assert not list(harness_home.iterdir())
    r = cli("run", "legal-qa", "--systems", "prompt,rag", "--limit", "8", "--tasks-dir", override, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    run_dir = (cli.work / "reports" / "legal-qa" / "latest").resolve()
    assert (run_dir / "index.html").stat().st_size > 1000
    res = json.loads((run_dir / "results.json").read_text())
    assert res["n_test"] == 8 and res["task"] == "legal-qa"
    assert "SmolLM2-135M-Instruct" in res["model"]
    for name in ("prompt", "rag"):
        assert res["systems"][name]["status"] == "ok", res["systems"][name].get("error")
        assert 0 <= res["systems"][name]["metrics"]["accuracy"]["value"] <= 1
    assert res["systems"]["rag"]["retrieval"]["k"] == 3
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["model"]["requested"] == "default"
    converted = Path(manifest["model"]["path"])
    assert converted.parent == harness_home / "models" and files.verify(converted) is None
    lines = (run_dir / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 16
