"""Files a reader never sees half of: atomic text and JSON writes, atomic folders sealed by one artifact
manifest, checksums, and the fingerprints of a folder of weights (none depends on its path or file times).

Every built artifact (converted model, adapter, retrieval index) is a folder made by `build_atomically`: it
is filled in a temporary sibling, sealed with `_artifact.json` (what it is, plus the sha256 of every file),
and renamed into place. `verify` says whether a folder is such a complete, intact artifact.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib.util
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from harness.errors import HarnessError

MANIFEST = "_artifact.json"
# Weight files whose first and last MiB go into a folder's fingerprint (their bytes, not only their size).
_WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".onnx", ".gguf"}

# Errors that mean "this place cannot take the file" (full disk, quota, read-only, permissions): the user can
# fix them, so they end as one clear line naming the path instead of a traceback.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def storage_error(path: Path, e: OSError, fix: str = "") -> HarnessError:
    what = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EROFS: "the file system is read-only",
    }.get(e.errno, e.strerror or str(e))
    return HarnessError(f"cannot write {path} ({what}){'; ' + fix if fix else ''}")


# ---------------------------------------------------------------- locating files


def package_folder(package: str, where: str) -> Path:
    """The folder of an installed package, found without importing it (its import may be heavy). Only the
    top-level name goes to find_spec: for `a.b` it would import `a`, running code a task file chose."""
    parts = package.split(".")
    if not all(part.isidentifier() for part in parts):
        raise HarnessError(f"{where}: '{package}' is not a package name")
    try:
        spec = importlib.util.find_spec(parts[0])
    except (ImportError, ValueError):
        spec = None
    folder = (
        Path(next(iter(spec.submodule_search_locations))).joinpath(*parts[1:])
        if spec is not None and spec.submodule_search_locations
        else None
    )
    if folder is None or not folder.is_dir():
        raise HarnessError(f"{where}: package '{package}' is not installed (pip install {parts[0]})")
    return folder


# ---------------------------------------------------------------- single files


def write_text_atomic(path: Path, text: str) -> Path:
    """Write `text` to a temporary sibling, flush it to disk, then rename it over `path`: readers see the old
    file or the new, even after a crash."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise HarnessError(f"cannot write {path} ({e.strerror or e})") from None
    return path


def write_json_atomic(path: Path, data) -> None:
    # Serialised before anything touches the disk, so data that cannot be written leaves the old file alone.
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- folders


def folder_checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file below `folder` (by its path relative to it), the manifest excepted."""
    folder = Path(folder)
    return {
        p.relative_to(folder).as_posix(): file_sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def folder_size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 2**20


def folder_fingerprint(folder: Path) -> str:
    """Identifies the contents of a folder of weights without reading all of it: every file's relative name and
    size, and the first and last MiB of each weight file. Unlike a listing with times, it survives a copy."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        size = f.stat().st_size
        h.update(f"{f.relative_to(folder).as_posix()}\0{size}\n".encode())
        if f.suffix in _WEIGHT_SUFFIXES:
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 20))
                fh.seek(max(size - (1 << 20), 0))
                h.update(fh.read(1 << 20))
    return h.hexdigest()


def recorded_fingerprint(folder: Path) -> str | None:
    """The content identity of an artifact folder from the checksums its manifest recorded when it was built:
    reads one small file, and depends neither on where the folder is nor on its files' times. None when the
    folder has no readable manifest."""
    manifest = read_manifest(folder)
    if manifest is None:
        return None
    return hashlib.sha256(json.dumps(sorted(manifest["checksums"].items())).encode()).hexdigest()


def content_fingerprint(folder: Path, memo_dir: Path | None = None, log: Callable[[str], object] = print) -> str:
    """sha256 over every file's relative name and sha256: the folder's content, wherever it lies and whatever its
    files' times. Reading every byte is paid once per copy: the result is recorded in `memo_dir` under the
    folder's path, names, sizes and mtimes, so a later run only stats the files (a moved or touched folder is
    read once more; the fingerprint it gets is the same)."""
    folder = Path(folder)
    found = sorted(p for p in folder.rglob("*") if p.is_file())
    stats = [(p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in found]
    memo = None
    if memo_dir is not None:
        key = hashlib.sha256(json.dumps([str(folder.resolve()), stats]).encode()).hexdigest()[:24]
        memo = Path(memo_dir) / f"{key}.json"
        try:
            recorded = json.loads(memo.read_text(encoding="utf-8"))["fingerprint"]
            if isinstance(recorded, str) and len(recorded) == 64:
                return recorded
        except (OSError, ValueError, KeyError, TypeError):
            pass
    total_mb = sum(size for _, size, _ in stats) / 2**20
    log(f"fingerprinting the weights in {folder} by content ({total_mb:.0f} MB, once per copy of the folder)")
    h = hashlib.sha256()
    for p, (name, _, _) in zip(found, stats):
        h.update(f"{name}\0{file_sha256(p)}\n".encode())
    fingerprint = h.hexdigest()
    if memo is not None:
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(memo, {"folder": str(folder.resolve()), "fingerprint": fingerprint})
        except (OSError, HarnessError):  # a read-only cache: the next run hashes again, nothing else changes
            pass
    return fingerprint


# ---------------------------------------------------------------- artifacts


def read_manifest(folder: Path) -> dict | None:
    """The artifact manifest of `folder` (what it is, and the checksums of its files), None when unreadable."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("checksums"), dict) else None


def verify(folder: Path) -> str | None:
    """None when the artifact is complete and intact, else the reason it is not."""
    folder = Path(folder)
    if not (folder / MANIFEST).exists():
        return "no manifest (incomplete artifact)"
    manifest = read_manifest(folder)
    if manifest is None:
        return "unreadable manifest"
    for name, digest in manifest["checksums"].items():
        p = folder / name
        if not p.exists():
            return f"{name} is missing"
        if file_sha256(p) != digest:
            return f"{name} does not match its checksum"
    return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale(folder: Path, pattern: str, pid_of: Callable[[str], int]) -> list[Path]:
    """Remove the temporary files/folders matching `pattern` in `folder` whose writer (pid_of(name)) is dead:
    what a killed process (SIGKILL, power loss) left behind. Live writers' temporaries are never touched."""
    removed = []
    for p in Path(folder).glob(pattern):
        try:
            pid = pid_of(p.name)
        except (ValueError, IndexError):
            continue
        if pid == os.getpid() or pid_alive(pid):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def _temp_pid(name: str) -> int:
    """The writer's pid in a temporary's name: `.final.tmp-<pid>-<ms>` or `.final.old-<pid>-<ms>`."""
    return int(name.rsplit("-", 2)[-2])


_FULL_DISK_FIX = "free some space or set HARNESS_HOME to a writable folder"


@contextlib.contextmanager
def build_atomically(final: Path, meta: dict | None = None) -> Iterator[Path]:
    """Yield a temporary folder; on success seal it with the artifact manifest (`meta` plus the checksum of
    every file) and rename it to `final`, replacing any earlier artifact there.

    The caller holds `final`'s lock, so temporaries beside it from dead processes are leftovers of a killed
    build and are removed first. A full or read-only disk ends as a HarnessError naming `final`."""
    final = Path(final)
    stamp = f"{os.getpid()}-{int(time.time() * 1000)}"
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        for kind in ("tmp", "old"):
            remove_stale(final.parent, f".{final.name}.{kind}-*", _temp_pid)
        tmp = final.with_name(f".{final.name}.tmp-{stamp}")
        tmp.mkdir(parents=True)
    except OSError as e:
        if e.errno in STORAGE_ERRNOS:
            raise storage_error(final, e, _FULL_DISK_FIX) from None
        raise
    try:
        yield tmp
        manifest = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(meta or {})}
        manifest["checksums"] = folder_checksums(tmp)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
        # The earlier artifact is renamed aside rather than deleted first, so `final` is missing only for the
        # instant between two renames.
        old = final.with_name(f".{final.name}.old-{stamp}")
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if e.errno in STORAGE_ERRNOS:
            raise storage_error(final, e, _FULL_DISK_FIX) from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
