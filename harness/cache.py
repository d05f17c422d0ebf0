"""Content-addressed artifact store: where artifacts live, their keys, locks, and free space.

An artifact (converted model, adapter) is a folder under HARNESS_HOME keyed by a hash of all that determines
it, built with harness.files.build_atomically (a reader sees either nothing or a complete artifact, sealed by
a checksum manifest that lets a later run detect corruption) while its lock is held.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path

from filelock import FileLock

from harness.errors import HarnessError
from harness.files import write_text_atomic


def root() -> Path:
    """Where HARNESS_HOME is, without creating or checking it."""
    return Path(os.environ.get("HARNESS_HOME") or Path.home() / ".cache" / "harness")


def _probe(folder: Path) -> OSError | None:
    """None when a file can be written in `folder`, else the error writing one gave."""
    probe = folder / f".write-probe-{os.getpid()}"
    try:
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        return e
    return None


def home() -> Path:
    """HARNESS_HOME, created when missing. A home that exists but cannot be written is returned as it is: a run
    uses what it holds (see `require_writable`); one that cannot be created is an error."""
    root_ = root()
    try:
        root_.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise HarnessError(
            f"HARNESS_HOME {root_} is not writable ({e.strerror}); set HARNESS_HOME to a writable folder"
        ) from None
    if not root_.is_dir():
        raise HarnessError(f"HARNESS_HOME {root_} is not a folder; set HARNESS_HOME to a writable folder")
    return root_


def read_only() -> str | None:
    """Why HARNESS_HOME cannot be written (e.g. "Read-only file system"), or None when it can."""
    error = _probe(home())
    return None if error is None else (error.strerror or str(error))


def require_writable(missing: str) -> None:
    """Before building `missing` (an artifact the run needs and HARNESS_HOME does not hold): a read-only home
    ends the run here, in one line that says what is missing."""
    why = read_only()
    if why is not None:
        raise HarnessError(
            f"{missing} is not in HARNESS_HOME {root()}, which is read-only ({why}); run once with a writable "
            "HARNESS_HOME to build it, or set HARNESS_HOME to a writable folder"
        )


def require_creatable(folder: Path) -> None:
    """A folder that does not exist yet could be created: its nearest existing parent is writable."""
    here = Path(folder).absolute()
    while not here.exists():
        here = here.parent
    if not os.access(here, os.W_OK):
        raise HarnessError(f"{folder} is not writable")


def key_of(*parts) -> str:
    """A short stable hash of JSON-serialisable parts."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@contextlib.contextmanager
def lock(path: Path, timeout: float = 3600):
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=timeout):
        yield


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


# The layout of the keys above. 2: base models are keyed by their content (not their folder's path and file
# times) and adapters by their training data (not the test questions --limit keeps).
CACHE_FORMAT = 2
_FORMAT_FILE = "cache-format"


def note_format(log) -> None:
    """Say once, in one line, when HARNESS_HOME holds adapters or stored evaluations keyed by an earlier
    version: they are not found under the new keys and what a run needs is built again (nothing fails)."""
    marker = root() / _FORMAT_FILE
    try:
        written = int(marker.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        written = None
    if written is not None and written >= CACHE_FORMAT:
        return
    earlier = [d for d in ("adapters", "evaluations") if (root() / d).is_dir() and any((root() / d).iterdir())]
    if earlier:
        log(
            f"note: the {' and '.join(earlier)} in {root()} were cached by an earlier version of harness, whose keys "
            "depended on the model folder's path and file times and on --limit; they are not reused, and what "
            f"this run needs is built again (delete {root()}/{{adapters,evaluations}} to free the space)"
        )
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(marker, f"{CACHE_FORMAT}\n")
    except (OSError, HarnessError):  # a read-only HARNESS_HOME: the note comes again next time
        pass
