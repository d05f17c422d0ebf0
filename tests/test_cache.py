"""The content-addressed artifact store: atomic builds, checksums, atomic JSON, locks."""

from __future__ import annotations

import json
import threading

import pytest
from filelock import FileLock, Timeout

from harness import cache
from harness.errors import HarnessError


def _siblings(folder):
    return sorted(p.name for p in folder.parent.iterdir())


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


def test_build_atomically_success(tmp_path):
    final = tmp_path / "store" / "artifact"
    with cache.build_atomically(final, {"source": "test"}) as tmp:
        assert tmp != final and tmp.parent == final.parent
        (tmp / "weights.bin").write_bytes(b"\x00" * 100)
        (tmp / "sub").mkdir()
        (tmp / "sub" / "cfg.json").write_text("{}")
        assert not final.exists()  # a reader never sees a half-built artifact
    assert cache.verify(final) is None
    manifest = json.loads((final / cache.MANIFEST).read_text())
    assert manifest["source"] == "test"
    assert set(manifest["checksums"]) == {"weights.bin", "sub/cfg.json"}
    assert _siblings(final) == ["artifact"]  # no temporary folder left beside it
    assert cache.folder_size_mb(final) > 0


def test_build_atomically_failure_leaves_nothing(tmp_path):
    final = tmp_path / "store" / "artifact"
    with pytest.raises(RuntimeError, match="boom"), cache.build_atomically(final) as tmp:
        (tmp / "half.bin").write_bytes(b"\x01" * 10)
        raise RuntimeError("boom")
    assert not final.exists()
    assert _siblings(final) == []


def test_build_atomically_interrupt_keeps_old_artifact(tmp_path):
    final = tmp_path / "artifact"
    with cache.build_atomically(final) as tmp:
        (tmp / "v").write_text("1")
    with pytest.raises(KeyboardInterrupt), cache.build_atomically(final) as tmp:
        (tmp / "v").write_text("2")
        raise KeyboardInterrupt
    assert (final / "v").read_text() == "1" and cache.verify(final) is None
    assert _siblings(final) == ["artifact"]


def test_build_atomically_replaces(tmp_path):
    final = tmp_path / "artifact"
    for version in ("1", "2"):
        with cache.build_atomically(final) as tmp:
            (tmp / "v").write_text(version)
    assert (final / "v").read_text() == "2" and cache.verify(final) is None


def test_verify_detects_damage(tmp_path):
    final = tmp_path / "artifact"
    assert "no manifest" in cache.verify(final)
    with cache.build_atomically(final) as tmp:
        (tmp / "a.txt").write_text("hello")
        (tmp / "b.txt").write_text("world")
    assert cache.verify(final) is None
    (final / "a.txt").write_text("hellO")
    assert cache.verify(final) == "a.txt does not match its checksum"
    (final / "a.txt").write_text("hello")
    (final / "b.txt").unlink()
    assert cache.verify(final) == "b.txt is missing"
    (final / cache.MANIFEST).write_text("{not json")
    assert cache.verify(final) == "unreadable manifest"
    (final / cache.MANIFEST).unlink()
    assert "no manifest" in cache.verify(final)


def test_write_json_atomic(tmp_path):
    path = tmp_path / "out.json"
    cache.write_json_atomic(path, {"a": 1, "p": tmp_path})
    assert json.loads(path.read_text()) == {"a": 1, "p": str(tmp_path)}
    cache.write_json_atomic(path, [1, 2])
    assert json.loads(path.read_text()) == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_write_json_atomic_error_is_clear(tmp_path):
    with pytest.raises(HarnessError, match="cannot write"):
        cache.write_json_atomic(tmp_path / "missing-dir" / "out.json", {})
    assert list(tmp_path.iterdir()) == []


def test_write_json_atomic_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "out.json"
    cache.write_json_atomic(path, {"ok": True})
    with pytest.raises(TypeError):
        cache.write_json_atomic(path, {object(): 1})  # keys must be strings
    assert json.loads(path.read_text()) == {"ok": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


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
