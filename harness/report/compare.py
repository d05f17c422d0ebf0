"""compare_runs: several run directories side by side, with deltas against the first run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.constants import SIGNIFICANCE_LEVEL
from harness.files import write_text_atomic

from . import fmt
from .load import ReportError, Run, load_run, model_label
from .pairing import Paired, paired_tests, same_run, test_set_banner
from .recommend import headline, latency_p50, metric
from .render import date_text, render_template, settings_items
from .summary import _md


def _label(v: Any) -> str:
    if v is None:
        return fmt.DASH
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True, default=str)
    return str(v)


def run_fields(run: Run) -> dict[str, str]:
    """The manifest/config fields worth comparing across runs, flattened to text."""
    r, m = run.results, run.manifest
    fields = {
        "task": _label(r.task),
        "model": model_label(m, r),
        "seed": _label(r.seed),
        "n_test": _label(r.n_test),
        "headline_metric": headline(r),
    }
    for key, value in settings_items(r.settings):
        fields[f"settings.{key}"] = _label(value)
    return fields


def differing_fields(runs: list[Run]) -> list[dict[str, Any]]:
    per_run = [run_fields(run) for run in runs]
    keys = list(dict.fromkeys(k for f in per_run for k in f))
    out = []
    for key in keys:
        values = [f.get(key, fmt.DASH) for f in per_run]
        if len(set(values)) > 1:
            out.append({"field": key, "values": values})
    return out


def _figures(run: Run, name: str) -> dict[str, Any]:
    entry = run.results.systems.get(name)
    if entry is None:
        return {"state": "absent", "metric": None, "latency": None, "memory": None}
    if not entry.ok:
        return {"state": "failed", "error": entry.error, "metric": None, "latency": None, "memory": None}
    m = metric(entry, headline(run.results))
    mem = entry.peak_memory_mb
    return {
        "state": "ok",
        "metric": m.value if m else None,
        "ci": m,
        "latency": latency_p50(entry),
        "memory": mem if fmt.is_number(mem) else None,
    }


def _delta(v: Any, ref: Any) -> float | None:
    return v - ref if fmt.is_number(v) and fmt.is_number(ref) else None


def comparison_table(
    runs: list[Run], paired: dict[tuple[str, int], Paired] | None = None, same_questions: bool = True
) -> list[dict[str, Any]]:
    """One row per (system, run) with the run's figures and their deltas against the first run. The headline
    delta is the whole-run one only when every run answered the same questions; `paired` adds the paired test
    on the shared questions (and is the only headline difference shown when the questions differ)."""
    names = list(dict.fromkeys(n for run in runs for n in run.results.systems))
    paired = paired or {}
    rows = []
    for name in names:
        ref = _figures(runs[0], name)
        for i, run in enumerate(runs):
            f = _figures(run, name)
            row = {"system": name, "run": run.run_id, "index": i, **f, "paired": paired.get((name, i))}
            for key in ("metric", "latency", "memory"):
                row[f"d_{key}"] = _delta(f[key], ref[key]) if i else None
            if not same_questions:
                row["d_metric"] = None
            rel = row["d_latency"] / ref["latency"] if row["d_latency"] is not None and ref["latency"] else None
            row["d_latency_pct"] = 100 * rel if rel is not None else None
            rows.append(row)
    return rows


def _md_delta(v: Any, kind: str) -> str:
    if v is None:
        return ""
    if kind == "metric":
        return fmt.signed(v)
    return fmt.dseconds(v) if kind == "latency" else fmt.dmb(v)


def paired_text(p: Paired | None) -> str:
    """ "+0.050 on 30 shared, not different (Holm p = 0.400, mcnemar-exact)" or ""."""
    if p is None:
        return ""
    return f"{fmt.signed(p.diff)} on {p.n} shared, {p.verdict} ({fmt.pholm(p.p_holm)}, {p.test})"


def markdown(
    runs: list[Run], rows: list[dict[str, Any]], diffs: list[dict[str, Any]], notes: list[str] | None = None
) -> str:
    hms = list(dict.fromkeys(headline(r.results) for r in runs))
    hm = hms[0] if len(hms) == 1 else "headline metric (" + " / ".join(hms) + ")"
    out = [
        f"Runs compared (deltas against `{_md(runs[0].run_id)}`): " + ", ".join(f"`{_md(r.run_id)}`" for r in runs),
        "",
        *[f"**Note:** {_md(n)}\n" for n in notes or []],
        f"| system | run | {_md(hm)} | Δ {_md(hm)} | paired test | latency p50 | Δ latency | peak memory | Δ memory |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["state"] != "ok":
            state = f"failed: {r.get('error') or 'no error recorded'}" if r["state"] == "failed" else "absent"
            cells = [r["system"], r["run"], state, "", "", "", "", "", ""]
        else:
            cells = [
                r["system"],
                r["run"],
                fmt.num(r["metric"]),
                _md_delta(r["d_metric"], "metric"),
                paired_text(r["paired"]),
                fmt.seconds(r["latency"]),
                _md_delta(r["d_latency"], "latency"),
                fmt.mb(r["memory"]),
                _md_delta(r["d_memory"], "memory"),
            ]
        out.append("| " + " | ".join(_md(c) for c in cells) + " |")
    out.append("")
    if diffs:
        out += ["| field | " + " | ".join(f"`{_md(r.run_id)}`" for r in runs) + " |", "|---|" + "---|" * len(runs)]
        out += ["| " + " | ".join(_md(c) for c in [d["field"], *d["values"]]) + " |" for d in diffs]
    else:
        out.append("The runs share model, seed and settings.")
    return "\n".join(out) + "\n"


def compare_runs(run_dirs: list[Path], out_dir: Path) -> Path:
    """Write out_dir/index.html and out_dir/summary.md comparing ≥ 2 runs; return index.html's path."""
    run_dirs = [Path(p) for p in run_dirs]
    if len(run_dirs) < 2:
        raise ReportError(f"compare needs at least 2 run directories, got {len(run_dirs)}")
    runs = [load_run(p) for p in run_dirs]
    banner = test_set_banner(runs)
    itself = same_run(runs)
    notes = [n for n in (itself, banner) if n]
    paired = paired_tests(runs, seed=runs[0].results.seed or 0)
    rows = comparison_table(runs, paired, same_questions=banner is None)
    diffs = differing_fields(runs)
    hms = list(dict.fromkeys(headline(r.results) for r in runs))
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create {out_dir}: {' '.join(str(exc).split())}") from None
    html = render_template(
        "compare.html",
        runs=runs,
        rows=rows,
        diffs=diffs,
        dates=[date_text(r.results.created) for r in runs],
        headline=" / ".join(hms),
        paths=[str(p) for p in run_dirs],
        fields=[run_fields(r) for r in runs],
        banner=banner,
        itself=itself,
        alpha=SIGNIFICANCE_LEVEL,
    )
    write_text_atomic(out_dir / "summary.md", markdown(runs, rows, diffs, notes))
    return write_text_atomic(out_dir / "index.html", html)
