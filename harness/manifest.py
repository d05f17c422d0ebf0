"""The run's manifest (what produced these numbers) and writing the run directory atomically."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import psutil

from harness import cache
from harness.errors import HarnessError

PACKAGES = (
    "harness",
    "torch",
    "transformers",
    "peft",
    "trl",
    "bitsandbytes",
    "accelerate",
    "sentence-transformers",
    "faiss-cpu",
    "lm-eval",
    "datasets",
    "numpy",
    "scipy",
    "pydantic",
    "jinja2",
)


def package_versions(packages) -> dict[str, str]:
    """{package: installed version, or "missing"}: what cache keys and manifests record."""
    out = {}
    for pkg in packages:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "missing"
    return out


def versions() -> dict[str, str]:
    installed = {k: v for k, v in package_versions(PACKAGES).items() if v != "missing"}
    return {"python": platform.python_version(), **installed}


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def build_manifest(spec, ref, data, opts, run_id: str) -> dict:
    return {
        "run_id": run_id,
        "command": " ".join(opts.command or sys.argv),
        "task_file": spec.source_path,
        "config": spec.model_dump(mode="json"),
        "seed": spec.seed,
        "systems": opts.systems or spec.systems,
        "limit": opts.limit,
        "model": {"requested": ref.name, "path": ref.path, "display": ref.display, "fingerprint": ref.fingerprint},
        "data": {
            "fingerprint": data.fingerprint(),
            "train": len(data.train),
            "dev": len(data.dev),
            "test": len(data.test),
            "corpus_documents": len(data.corpus),
            "corpus_is_training_qa": data.corpus_is_fallback,
        },
        "versions": versions(),
        "machine": machine(),
        "harness_commit": _git_commit(),
        "harness_home": str(cache.home()),
    }


RUN_CHECKSUMS = ("results.json", "samples.jsonl")  # the figures; index.html etc. are re-rendered from them


def _stale_pid(name: str) -> int:
    return int(name.rsplit(".tmp-", 1)[1])


def write_run(task_dir: Path, run_id: str, results: dict, samples: list[dict], manifest: dict, reporter) -> Path:
    """Write everything into a hidden folder, render the report, then rename it into place.

    manifest.json records the sha256 of results.json and samples.jsonl (`checksums`), so a report rendered
    later can tell a damaged or edited run from a good one. Hidden folders that killed runs left are removed."""
    from harness.report import render_report

    final = task_dir / run_id
    tmp = task_dir / f".{run_id}.tmp-{os.getpid()}"
    kept = "nothing was written there; the built artifacts stay cached and the next run reuses them"
    fix = f"{kept}: free some space (or pass --reports-dir) and run again"
    try:
        task_dir.mkdir(parents=True, exist_ok=True)
        cache.remove_stale(task_dir, ".*.tmp-*", _stale_pid)
        tmp.mkdir()
        tracebacks = {n: e.pop("traceback") for n, e in results["systems"].items() if "traceback" in e}
        cache.write_json_atomic(tmp / "results.json", results)
        (tmp / "samples.jsonl").write_text("".join(json.dumps(s, default=str) + "\n" for s in samples))
        manifest = {**manifest, "checksums": {name: cache.file_sha256(tmp / name) for name in RUN_CHECKSUMS}}
        cache.write_json_atomic(tmp / "manifest.json", manifest)
        if tracebacks:
            (tmp / "errors.log").write_text("\n\n".join(f"== {n}\n{t}" for n, t in tracebacks.items()))
        render_report(tmp)
        os.replace(tmp, final)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise cache.storage_error(final, e, fix) from None
    except HarnessError as e:  # a file could not be written (report.atomic_write, cache.write_json_atomic)
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


def run_checksum_problems(run_dir: Path, manifest: dict) -> list[str]:
    """Files of a run directory that differ from the checksums its manifest recorded (empty when intact,
    or when the manifest predates checksums)."""
    expected = manifest.get("checksums") if isinstance(manifest, dict) else None
    if not isinstance(expected, dict):
        return []
    problems = []
    for name, digest in expected.items():
        path = Path(run_dir) / str(name)
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif cache.file_sha256(path) != digest:
            problems.append(f"{path} does not match the checksum in manifest.json (damaged or edited after the run)")
    return problems
