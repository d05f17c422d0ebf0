"""Cache keys follow only what determines each artifact: --limit, a moved HARNESS_HOME and new file times leave
the adapter, the index and the stored evaluations reused; caches keyed by an earlier version are rebuilt after a
one-line note, never a crash."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from harness import cache
from tests.conftest import run_cli, write_tiny_task


def touch_everything(*folders: Path) -> int:
    later = time.time() + 7200
    n = 0
    for folder in folders:
        for p in folder.rglob("*"):
            os.utime(p, (later, later), follow_symlinks=False)
            n += 1
    return n


@pytest.fixture(scope="module")
def moved(tmp_path_factory, tiny_model_dir):
    """lora + rag + prompt run four times: --limit 4, --limit 3, then (HARNESS_HOME moved, every file of the
    cache, the indices, the task data and the model touched) --limit 3 and --limit 4 again."""
    root = tmp_path_factory.mktemp("keys")
    model = root / "model"
    shutil.copytree(tiny_model_dir, model)
    task = write_tiny_task(root / "tasks", model, evaluation={"calibration": "none"})
    home, indices, reports = root / "home", root / "indices", root / "reports"
    # what an earlier version left: an adapter and a stored evaluation under keys that are no longer made
    (home / "adapters" / "tiny-qa" / "lora-0123456789abcdef").mkdir(parents=True)
    (home / "adapters" / "tiny-qa" / "lora-0123456789abcdef" / "adapter_model.safetensors").write_bytes(b"old")
    (home / "evaluations" / "tiny-qa").mkdir(parents=True)
    (home / "evaluations" / "tiny-qa" / "0123456789abcdef.json").write_text('{"format": 1}')
    out = {}

    def run(name: str, limit: int, where: Path):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("HARNESS_HOME", str(where))
            code, _, stderr = run_cli(
                "run", task, "--systems", "prompt,lora,rag", "--limit", limit,
                "--reports-dir", reports, "--indices-dir", indices,
            )  # fmt: skip
        assert code == 0, stderr[-3000:]
        run_dir = (reports / "tiny-qa" / "latest").resolve()
        out[name] = (json.loads((run_dir / "results.json").read_text()), stderr)

    run("first", 4, home)
    run("limit", 3, home)
    new_home = root / "restored" / "elsewhere"
    new_home.parent.mkdir()
    shutil.move(home, new_home)
    out["touched"] = touch_everything(new_home, indices, task.parent, model)
    run("moved", 3, new_home)
    run("moved_first_limit", 4, new_home)
    out.update(home=new_home, task=task, reports=reports, indices=indices)
    return out


def test_a_cache_from_an_earlier_version_is_noted_once_and_rebuilt(moved):
    results, stderr = moved["first"]
    notes = [line for line in stderr.splitlines() if "earlier version of harness" in line]
    assert len(notes) == 1 and "adapters and evaluations" in notes[0] and "built again" in notes[0], notes
    assert all(s["status"] == "ok" for s in results["systems"].values())
    assert results["systems"]["lora"]["cached"] is False
    for later in ("limit", "moved", "moved_first_limit"):
        assert "earlier version of harness" not in moved[later][1], later


def test_limit_does_not_retrain_or_reindex(moved):
    systems = moved["limit"][0]["systems"]
    assert moved["limit"][0]["n_test"] == 3
    assert systems["lora"]["cached"] is True and systems["rag"]["cached"] is True
    assert "lora: reused the cached artifact" in moved["limit"][1]


def test_a_moved_and_touched_cache_is_reused_evaluations_included(moved):
    assert moved["touched"] > 20
    for run in ("moved", "moved_first_limit"):
        systems = moved[run][0]["systems"]
        assert systems["lora"]["cached"] is True and systems["rag"]["cached"] is True, run
        for name in ("prompt", "lora", "rag"):
            assert systems[name]["evaluation_reused"] is not None, (run, name)
    # the same figures as when they were measured, before the move
    for before, after in (("limit", "moved"), ("first", "moved_first_limit")):
        for name in ("prompt", "lora", "rag"):
            assert moved[after][0]["systems"][name]["metrics"] == moved[before][0]["systems"][name]["metrics"]
    adapters = [p for p in (moved["home"] / "adapters" / "tiny-qa").iterdir() if p.is_dir()]
    assert len(adapters) == 2  # the earlier version's, left alone, and the one every run used


def test_note_format_unit(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / "h"))
    logs = []
    cache.note_format(logs.append)  # an empty home: nothing to say, the layout is recorded
    assert logs == [] and (tmp_path / "h" / "cache-format").read_text().strip() == str(cache.CACHE_FORMAT)
    (tmp_path / "h" / "adapters" / "t" / "x").mkdir(parents=True)
    cache.note_format(logs.append)
    assert logs == []  # recorded as this layout already
    (tmp_path / "h" / "cache-format").write_text("1\n")
    cache.note_format(logs.append)
    assert len(logs) == 1 and "the adapters in" in logs[0]
    (tmp_path / "h" / "cache-format").write_text("garbage")
    cache.note_format(logs.append)
    assert len(logs) == 2
    cache.note_format(logs.append)
    assert len(logs) == 2
    (tmp_path / "h" / "cache-format").write_text(str(cache.CACHE_FORMAT + 1))  # a newer version's: left alone
    cache.note_format(logs.append)
    assert len(logs) == 2 and (tmp_path / "h" / "cache-format").read_text() == str(cache.CACHE_FORMAT + 1)


# ---------------------------------------------------------------- a read-only HARNESS_HOME


def _snapshot(folder: Path) -> dict:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def test_a_read_only_home_that_holds_everything_is_used_as_it_is(moved, monkeypatch):
    """Root ignores file modes, so the home is made read-only for the code (its write probe fails), and the
    test checks that nothing in it was written, created or touched."""
    home = moved["home"]
    real_probe = cache._probe
    monkeypatch.setattr(
        cache, "_probe", lambda f: OSError(30, "Read-only file system") if f == home else real_probe(f)
    )
    monkeypatch.setenv("HARNESS_HOME", str(home))
    task, reports, indices = moved["task"], moved["reports"], moved["indices"]
    before = _snapshot(home)
    common = ["--limit", 3, "--reports-dir", reports, "--indices-dir", indices]
    code, _, err = run_cli("run", task, "--systems", "prompt,lora,rag", *common)
    assert code == 0, err[-3000:]
    assert f"note: HARNESS_HOME {home} is read-only (Read-only file system)" in err
    results = json.loads(((reports / "tiny-qa" / "latest").resolve() / "results.json").read_text())
    assert all(s["evaluation_reused"] for s in results["systems"].values())
    assert results["systems"]["lora"]["cached"] is True
    # something it does not hold: named in one line, nothing written
    code, _, err = run_cli("run", task, "--systems", "dora", *common)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err[-3000:]
    assert errors[0].startswith("error: dora: the adapter dora-") and "which is read-only" in errors[0], errors[0]
    assert _snapshot(home) == before
