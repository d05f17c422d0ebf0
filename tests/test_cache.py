"""The content-addressed artifact store: its home, keys and locks (atomic files: tests/test_files.py)."""

from __future__ import annotations

import threading

import pytest
from filelock import FileLock, Timeout

from harness import cache
from harness.errors import HarnessError


def test_home_is_harness_home(harness_home):
    assert cache.home() == harness_home
    assert not list(harness_home.glob(".write-probe-*"))


def test_home_not_writable(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("HARNESS_HOME", str(blocker / "home"))
    with pytest.raises(HarnessError, match="HARNESS_HOME .* is not writable"):
        cache.home()


def test_key_of_is_stable_and_sensitive():
    assert cache.key_of("a", {"x": 1, "y": 2}) == cache.key_of("a", {"y": 2, "x": 1})
    assert cache.key_of("a", 1) != cache.key_of("a", 2)
    assert len(cache.key_of("a")) == 16


def test_lock_excludes_a_second_holder(tmp_path):
    target = tmp_path / "deep" / "artifact"
    result = {}

    def other():
        try:
            with FileLock(str(target) + ".lock", timeout=0.2):
                result["got"] = True
        except Timeout:
            result["got"] = False

    with cache.lock(target):
        assert (tmp_path / "deep" / "artifact.lock").exists()
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert result["got"] is False
    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert result["got"] is True  # released on exit


def test_lock_times_out(tmp_path):
    target = tmp_path / "artifact"
    with cache.lock(target):
        errors = []

        def other():
            try:
                with cache.lock(target, timeout=0.1):
                    pass
            except Timeout as e:
                errors.append(e)

        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert len(errors) == 1
