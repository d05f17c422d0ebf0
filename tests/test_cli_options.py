"""CLI conventions: --version, help without type labels, and --batch-size / --dtype / --threads overriding the
task file and recorded in the manifest."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from conftest import run_cli

import harness
from harness.cli_options import overrides
from harness.manifest import build_manifest
from harness.run import RunOptions, plan

TYPE_LABEL = re.compile(r"<(bool|str|int|float|path|list\[[^\]]*\])>", re.I)


def test_version():
    code, out, err = run_cli("--version")
    assert code == 0 and out.strip() == f"harness {harness.__version__}", (out, err)


@pytest.mark.parametrize(
    "args",
    [[], ["run"], ["report"], ["compare"], ["tasks"], ["tasks", "list"], ["tasks", "show"], ["tasks", "validate"]],
)
def test_help_has_no_type_labels(args):
    code, out, _ = run_cli(*args, "--help")
    assert code == 0 and "Usage" in out
    assert not TYPE_LABEL.search(out), TYPE_LABEL.search(out).group(0)


def test_help_says_a_hub_id_needs_the_network():
    out = " ".join(run_cli("run", "--help")[1].replace("│", " ").split())
    assert "hub id (needs the network" in out
    for option in ("--batch-size", "--dtype", "--threads", "--version"):
        assert option in out + run_cli("--help")[1]


def test_options_override_the_task_file_and_are_recorded(tiny_task, tmp_path):
    opts = RunOptions(
        task=str(tiny_task),
        reports_dir=tmp_path / "reports",
        indices_dir=tmp_path / "indices",
        overrides={"evaluation.batch_size": ("--batch-size", 3), "evaluation.dtype": ("--dtype", "float32")},
        threads=1,
    )
    p = plan(opts)
    assert p.spec.evaluation.batch_size == 3 and p.spec.evaluation.dtype == "float32"
    assert opts.overridden == {"evaluation.batch_size": 3, "evaluation.dtype": "float32", "threads": 1}
    ref = SimpleNamespace(name="m", path="/m", display="m", fingerprint="f")
    data = SimpleNamespace(fingerprint=lambda: "d", train=[], dev=[], test=[], corpus=[], corpus_is_fallback=False)
    manifest = build_manifest(p.spec, ref, data, opts, "run-id")
    assert manifest["overrides"] == opts.overridden
    assert (
        manifest["config"]["evaluation"]["batch_size"] == 3 and manifest["config"]["evaluation"]["dtype"] == "float32"
    )
    # not given: the task file's values, and nothing recorded as overridden
    # --workers reaches the schema as a number, as a task file writes it, or as `auto`
    assert overrides(workers="2") == {"evaluation.workers": ("--workers", 2)}
    assert overrides(workers="auto") == {"evaluation.workers": ("--workers", "auto")}
    assert overrides(train_workers="1") == {"finetune.workers": ("--train-workers", 1)}
    plain = RunOptions(task=str(tiny_task), reports_dir=tmp_path / "reports", indices_dir=tmp_path / "indices")
    p = plan(plain)
    assert p.spec.evaluation.batch_size == 1 and "overrides" not in build_manifest(p.spec, ref, data, plain, "r")


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--batch-size", "0", "--batch-size 0: evaluation.batch_size input should be greater than 0"),
        ("--dtype", "fp8", "--dtype fp8: evaluation.dtype input should be 'auto', 'float32' or 'bfloat16'"),
        ("--threads", "0", "--threads must be a positive number of threads, got 0"),
        (
            "--workers",
            "0",
            "--workers 0: evaluation.workers value error, 0: give a number of workers (1 or more) or `auto`",
        ),
        (
            "--train-workers",
            "0",
            "--train-workers 0: finetune.workers value error, 0: give a number of workers (1 or more) or `auto`",
        ),
        (
            "--workers",
            "two",
            "--workers two: evaluation.workers value error, 'two': give a number of workers (1 or more) or `auto`",
        ),
    ],
)
def test_bad_override_is_one_line(tiny_task, tmp_path, option, value, message):
    code, _, err = run_cli(
        "run", tiny_task, option, value, "--reports-dir", tmp_path / "r", "--indices-dir", tmp_path / "i"
    )
    assert code == 2 and err.strip() == f"error: {message}", err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())
