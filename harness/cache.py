"""Content-addressed artifact store: atomic writes, checksums and locks.

An artifact (converted model, adapter, index) is a folder under HARNESS_HOME keyed by a hash of all that
determines it. It is built in a temporary sibling folder and renamed into place, so a reader sees either
nothing or a complete artifact; a checksum manifest (`_artifact.json`) lets a later run detect corruption.
"""

from __future__ import annotations

import contextlib
import errno
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
        raise HarnessError(
            f"HARNESS_HOME {root} is not writable ({e.strerror}); set HARNESS_HOME to a writable folder"
        ) from None
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
    return {
        str(p.relative_to(folder)): file_sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


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


# Errors that mean "this place cannot take the artifact" (full disk, quota, read-only, permissions): the user
# can fix them, so they end as one clear line naming the path instead of a traceback.
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def storage_error(path: Path, e: OSError, fix: str = "") -> HarnessError:
    what = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EROFS: "the file system is read-only",
    }.get(e.errno, e.strerror or str(e))
    return HarnessError(f"cannot write {path} ({what}){'; ' + fix if fix else ''}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale(folder: Path, pattern: str, pid_of) -> list[Path]:
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


def check_free_space(folders: dict[str, Path], min_mb: float | None = None) -> None:
    """Fail at once, naming the folder, when a disk a run writes to is (nearly) full: better than losing
    the work of a run at its end. HARNESS_MIN_FREE_MB sets the floor (default 100 MB; 0 turns it off)."""
    if min_mb is None:
        try:
            min_mb = float(os.environ.get("HARNESS_MIN_FREE_MB", "100"))
        except ValueError:
            raise HarnessError(
                f"HARNESS_MIN_FREE_MB must be a number of megabytes, got '{os.environ['HARNESS_MIN_FREE_MB']}'"
            ) from None
    if min_mb <= 0:
        return
    for label, folder in folders.items():
        probe = Path(folder).absolute()
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            free_mb = shutil.disk_usage(probe).free / 2**20
        except OSError:
            continue
        if free_mb < min_mb:
            raise HarnessError(
                f"{label} {folder}: only {free_mb:.1f} MB free on its disk, and a run needs at least "
                f"{min_mb:g} MB there; free some space or choose another folder "
                "(HARNESS_MIN_FREE_MB sets this limit)"
            )


@contextlib.contextmanager
def build_atomically(final: Path, meta: dict | None = None):
    """Yield a temporary folder; on success record checksums and rename it to `final`.

    The caller holds `final`'s lock, so temporaries beside it from dead processes are leftovers of a killed
    build and are removed first. A full or read-only disk ends as a HarnessError naming `final`."""
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(final.parent, f".{final.name}.tmp-*", lambda name: int(name.rsplit(".tmp-", 1)[1].split("-")[0]))
        tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{int(time.time() * 1000)}")
        tmp.mkdir(parents=True)
    except OSError as e:
        if e.errno in _STORAGE_ERRNOS:
            raise storage_error(final, e, "free some space or set HARNESS_HOME to a writable folder") from None
        raise
    try:
        yield tmp
        manifest = {
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **(meta or {}),
            "checksums": folder_checksums(tmp),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if e.errno in _STORAGE_ERRNOS:
            raise storage_error(final, e, "free some space or set HARNESS_HOME to a writable folder") from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
