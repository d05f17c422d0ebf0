"""The run's manifest: what produced these numbers (command, config, versions, machine, data), and the checksums
that tell a damaged run directory from a good one. Writing the run directory is harness.rundir's."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import subprocess
import sys
from pathlib import Path

import psutil

from harness import cache, files

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


def build_manifest(spec, ref, data, opts, run_id: str, launch: dict[str, dict] | None = None) -> dict:
    """`launch`: per system trained through `accelerate launch`, the command and configuration it ran with."""
    manifest = {
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
    if launch:
        manifest["launch"] = launch
    if getattr(opts, "overridden", None):  # options that overrode the task file (`config` holds the result)
        manifest["overrides"] = dict(opts.overridden)
    return manifest


RUN_CHECKSUMS = ("results.json", "samples.jsonl")  # the figures; index.html etc. are re-rendered from them


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
        elif files.file_sha256(path) != digest:
            problems.append(f"{path} does not match the checksum in manifest.json (damaged or edited after the run)")
    return problems
