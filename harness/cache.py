"""Content-addressed artifact store: atomic writes, checksums and locks.

An artifact (converted model, adapter, index) is a folder under HARNESS_HOME keyed by a hash of all that
determines it. It is built in a temporary sibling folder and renamed into place, so a reader sees either
nothing or a complete artifact; a checksum manifest (`_artifact.json`) lets a later run detect corruption.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from filelock import FileLock

from harness.errors import HarnessError

MANIFEST = "_artifact.json"


def home() -> Path:
    root = Path(os.environ.get("HARNESS_HOME") or Path.home() / ".cache" / "harness")
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-probe-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise HarnessError(f"HARNESS_HOME {root} is not writable ({e.strerror}); set HARNESS_HOME to a writable folder") from None
    return root


def key_of(*parts) -> str:
    """A short stable hash of JSON-serialisable parts."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def folder_checksums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): file_sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def folder_size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 2**20


def write_json_atomic(path: Path, data) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise HarnessError(f"cannot write {path} ({e.strerror})") from None


def verify(folder: Path) -> str | None:
    """None when the artifact is complete and intact, else the reason it is not."""
    manifest = folder / MANIFEST
    if not manifest.exists():
        return "no manifest (incomplete artifact)"
    try:
        expected = json.loads(manifest.read_text())["checksums"]
    except (ValueError, KeyError):
        return "unreadable manifest"
    for name, digest in expected.items():
        p = folder / name
        if not p.exists():
            return f"{name} is missing"
        if file_sha256(p) != digest:
            return f"{name} does not match its checksum"
    return None


@contextlib.contextmanager
def lock(path: Path, timeout: float = 3600):
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=timeout):
        yield


@contextlib.contextmanager
def build_atomically(final: Path, meta: dict | None = None):
    """Yield a temporary folder; on success record checksums and rename it to `final`."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{int(time.time() * 1000)}")
    tmp.mkdir(parents=True)
    try:
        yield tmp
        manifest = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(meta or {}),
                    "checksums": folder_checksums(tmp)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
