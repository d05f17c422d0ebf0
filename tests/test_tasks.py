"""Finding task files (tasks.py) and summarising / validating them (taskinfo.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import taskinfo, tasks
from harness.errors import HarnessError


def test_shipped_tasks_found(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    found = tasks.list_task_files()
    assert "legal-qa" in found and found["legal-qa"] == tasks.SHIPPED / "legal-qa.yaml"
    assert "defaults" not in found  # _shared/ holds includes, not tasks
    assert tasks.find_task("legal-qa") == tasks.SHIPPED / "legal-qa.yaml"


def test_a_folder_named_like_a_task_is_not_the_task(monkeypatch):
    monkeypatch.chdir(tasks.SHIPPED)  # holds the folder legal-qa/ beside legal-qa.yaml
    assert Path("legal-qa").is_dir()
    assert tasks.find_task("legal-qa").resolve() == (tasks.SHIPPED / "legal-qa.yaml").resolve()


def test_find_by_path(tiny_task):
    assert tasks.find_task(str(tiny_task)) == tiny_task


def test_find_errors(tmp_path):
    with pytest.raises(HarnessError, match="task file .*nope.yaml not found"):
        tasks.find_task(str(tmp_path / "nope.yaml"))
    with pytest.raises(HarnessError, match="is a folder"):
        tasks.find_task(str(tmp_path))
    with pytest.raises(
        HarnessError, match=r"unknown task 'legal'; did you mean 'legal-qa'\? \(known tasks: .*legal-qa"
    ):
        tasks.find_task("legal")
    with pytest.raises(HarnessError, match=r"unknown task 'zzzz' \(known tasks:") as e:
        tasks.find_task("zzzz")
    assert "did you mean" not in str(e.value)


def test_extra_folders_and_env(tiny_task, monkeypatch, tmp_path):
    folder = tiny_task.parent
    assert "tiny-qa" not in tasks.list_task_files()
    assert tasks.find_task("tiny-qa", [folder]) == tiny_task
    monkeypatch.setenv("HARNESS_TASKS", str(folder))
    assert tasks.find_task("tiny-qa") == tiny_task


def test_earlier_folder_wins(tiny_task, tmp_path):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "legal-qa.yaml").write_text(tiny_task.read_text())
    assert tasks.find_task("legal-qa", [shadow]) == shadow / "legal-qa.yaml"


def test_summarise_tiny_task(tiny_task):
    info = taskinfo.summarise(tiny_task)
    assert info["name"] == "tiny-qa" and info["format"] == "yes-no"
    assert (info["train"], info["dev"], info["test"], info["corpus"]) == (30, 10, 20, 6)


def test_validate_file_ok(tiny_task):
    line = taskinfo.validate_file(tiny_task)
    assert line.startswith("tiny-qa (yes-no): 30 train, 10 dev, 20 test")


def _variant(tiny_task, text_from: str, text_to: str):
    bad = tiny_task.with_name("variant.yaml")
    src = tiny_task.read_text()
    assert text_from in src
    bad.write_text(src.replace(text_from, text_to))
    return bad


def test_validate_catches_unknown_system(tiny_task):
    bad = _variant(tiny_task, "- rag\n", "- rga\n")
    with pytest.raises(HarnessError, match="unknown system"):
        taskinfo.validate_file(bad)


def test_validate_catches_bad_template(tiny_task):
    bad = tiny_task.with_name("variant.yaml")
    bad.write_text(tiny_task.read_text() + "question_template: '{{ question '\n")
    with pytest.raises(HarnessError, match="question_template"):
        taskinfo.validate_file(bad)


def test_validate_catches_unknown_metric(tiny_task):
    bad = tiny_task.with_name("variant.yaml")
    bad.write_text(tiny_task.read_text() + "metrics: [accuracy, no_such_metric]\n")
    with pytest.raises(HarnessError, match="metrics"):
        taskinfo.validate_file(bad)


def test_validate_catches_missing_data(tiny_task):
    (tiny_task.parent / "tiny-qa" / "questions.jsonl").unlink()
    with pytest.raises(HarnessError, match="not found"):
        taskinfo.validate_file(tiny_task)


def test_describe_all_marks_invalid_files(tiny_task):
    (tiny_task.parent / "broken.yaml").write_text("name: [unclosed\n")
    rows = {r["name"]: r for r in taskinfo.describe_all([tiny_task.parent])}
    assert rows["tiny-qa"]["test"] == 20
    assert rows["broken"]["description"].startswith("INVALID:")
    assert "legal-qa" in rows
