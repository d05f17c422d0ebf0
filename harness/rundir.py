"""Writing a run directory (reports/<task>/<run-id>/) atomically: the figures, the manifest, the report.

It sits above both the manifest and the report (it renders the report), so that the report can read the
manifest's checksums without the two importing each other.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from harness import files
from harness.errors import HarnessError
from harness.manifest import RUN_CHECKSUMS
from harness.records import RunResults, Sample
from harness.report import render_report


def _stale_pid(name: str) -> int:
    return int(name.rsplit(".tmp-", 1)[1])


def write_run(task_dir: Path, results: RunResults, samples: list[Sample], manifest: dict) -> Path:
    """Write everything into a hidden folder, render the report, then rename it into place as
    task_dir/<run_id>, and point task_dir/latest at it.

    manifest.json records the sha256 of results.json and samples.jsonl (`checksums`), so a report rendered
    later can tell a damaged or edited run from a good one. Hidden folders that killed runs left are removed."""
    run_id = results.run_id
    final = task_dir / run_id
    tmp = task_dir / f".{run_id}.tmp-{os.getpid()}"
    kept = "nothing was written there; the built artifacts stay cached and the next run reuses them"
    fix = f"{kept}: free some space (or pass --reports-dir) and run again"
    try:
        task_dir.mkdir(parents=True, exist_ok=True)
        files.remove_stale(task_dir, ".*.tmp-*", _stale_pid)
        tmp.mkdir()
        files.write_json_atomic(tmp / "results.json", results.dump())
        (tmp / "samples.jsonl").write_text("".join(json.dumps(s.model_dump(mode="json")) + "\n" for s in samples))
        manifest = {**manifest, "checksums": {name: files.file_sha256(tmp / name) for name in RUN_CHECKSUMS}}
        files.write_json_atomic(tmp / "manifest.json", manifest)
        tracebacks = {n: s.traceback for n, s in results.systems.items() if s.traceback}
        if tracebacks:
            (tmp / "errors.log").write_text("\n\n".join(f"== {n}\n{t}" for n, t in tracebacks.items()))
        render_report(tmp)
        os.replace(tmp, final)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise files.storage_error(final, e, fix) from None
    except HarnessError as e:  # a file could not be written (files.write_text_atomic)
        shutil.rmtree(tmp, ignore_errors=True)
        reason = str(e).replace(str(tmp), str(final))
        if "No space left on device" in reason or "Errno 28" in reason:
            raise HarnessError(f"cannot write {final} (the disk is full: {reason}); {fix}") from None
        raise HarnessError(f"cannot write the run directory {final}: {reason}; {kept}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    link = task_dir / "latest"
    tmp_link = task_dir / f".latest-{run_id}"
    try:
        tmp_link.symlink_to(run_id)
        os.replace(tmp_link, link)
    except OSError:
        tmp_link.unlink(missing_ok=True)
    return final
