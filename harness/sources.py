"""Reading rows and documents: JSONL, JSON, CSV and Parquet files, files inside installed packages, and
`datasets` hub specs. Every problem names the file and line (or row), or the task-file field that points there."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from harness.errors import HarnessError
from harness.files import package_folder
from harness.models import set_hub_defaults
from harness.spec import TaskProblems, TaskSpec

MAX_PROBLEMS = 50  # per file: enough to fix a pattern, short enough to read


class Problems(list):
    """Collects located one-line problems; raises them all at the end (or once there are too many)."""

    def add(self, msg: str) -> None:
        self.append(msg)
        if len(self) >= MAX_PROBLEMS:
            self.raise_if_any()

    def raise_if_any(self) -> None:
        if self:
            raise TaskProblems(list(self))


# ---------------------------------------------------------------- locating files


def resolve_path(spec: TaskSpec, section: str, path: str, package: str | None) -> Path:
    root = package_folder(package, spec.where(f"{section}.package")) if package else spec.folder
    if "\x00" in path:  # no file name holds one (and pathlib raises ValueError on it)
        raise HarnessError(f"{spec.where(f'{section}.path')}: {path!r} is not a file name (it holds a NUL character)")
    full = (root / path).resolve()
    if not full.exists():
        inside = f" inside package '{package}'" if package else ""
        raise HarnessError(f"{spec.where(f'{section}.path')}: {full} not found{inside}")
    return full


# ---------------------------------------------------------------- reading rows


def text_of(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise HarnessError(
            f"{path}:{line}: not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}); save the file as UTF-8"
        ) from None


def read_rows(path: Path, fmt: str, spec: TaskSpec, section: str, problems: Problems) -> list[tuple[str, dict]]:
    """(location, row) pairs; the location is `file:line` (`file: row N` for Parquet and JSON arrays)."""
    if fmt == "auto":
        fmt = {
            ".jsonl": "jsonl",
            ".ndjson": "jsonl",
            ".json": "json",
            ".csv": "csv",
            ".parquet": "parquet",
            ".pq": "parquet",
        }.get(path.suffix.lower(), "")
        if not fmt:
            raise HarnessError(
                f"{spec.where(f'{section}.path')}: cannot tell the format of {path.name} "
                "from its extension; set format: jsonl, json, csv or parquet"
            )
    if path.is_dir():
        raise HarnessError(f"{spec.where(f'{section}.path')}: {path} is a folder; questions come from one file")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:  # pyarrow raises several types for a bad file
            raise HarnessError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0]})") from None
        return [(f"{path}: row {i + 1}", row) for i, row in enumerate(table.to_pylist())]
    text = text_of(path)
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = []
        try:
            for row in reader:
                if None in row:
                    problems.add(f"{path}:{reader.line_num}: {len(row[None])} more cells than the header has columns")
                    continue
                rows.append((f"{path}:{reader.line_num}", dict(row)))
        except csv.Error as e:
            raise HarnessError(f"{path}:{reader.line_num}: invalid CSV ({e})") from None
        return rows
    if fmt == "json" or (fmt == "jsonl" and path.suffix.lower() == ".json" and text.lstrip().startswith("[")):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise HarnessError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
        if not isinstance(items, list):
            raise HarnessError(f"{path}: a JSON questions file must hold a list of objects (or use JSONL)")
        rows = []
        for i, row in enumerate(items, 1):
            if isinstance(row, dict):
                rows.append((f"{path}: item {i}", row))
            else:
                problems.add(f"{path}: item {i}: each item must be a JSON object, got {type(row).__name__}")
        return rows
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            problems.add(f"{path}:{n}: invalid JSON ({e.msg}, column {e.colno})")
            continue
        if not isinstance(row, dict):
            problems.add(f"{path}:{n}: each line must be a JSON object, got {type(row).__name__}")
            continue
        rows.append((f"{path}:{n}", row))
    return rows


def hub_rows(spec: TaskSpec) -> list[tuple[str, dict]]:
    hub = spec.data.questions.hub
    where = spec.where("data.questions.hub")
    set_hub_defaults()
    hub_off, datasets_off = os.environ["HF_HUB_OFFLINE"], os.environ["HF_DATASETS_OFFLINE"]
    if "1" in (hub_off, datasets_off):
        raise HarnessError(
            f"{where}: '{hub.name}' is on the datasets hub, and this run is offline "
            f"(HF_HUB_OFFLINE={hub_off}, HF_DATASETS_OFFLINE={datasets_off}); with a hub, set both "
            "to 0; without one, export the data to a JSONL/CSV/Parquet file and use data.questions.path"
        )
    import datasets

    try:
        ds = datasets.load_dataset(hub.name, hub.config, split=hub.split)
    except Exception as e:
        raise HarnessError(
            f"{where}: cannot load '{hub.name}' ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        ) from None
    return [(f"hub {hub.name} ({hub.split}): row {i + 1}", dict(r)) for i, r in enumerate(ds)]
