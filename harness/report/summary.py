"""The summary table as rows, and its CSV and Markdown exports."""

from __future__ import annotations

import csv
import io
from typing import Any

from . import fmt
from .recommend import headline

METRIC_PARTS = ("value", "ci_low", "ci_high")


def _num(v: Any) -> float | None:
    return v if fmt.is_number(v) else None


def _metric(m: Any) -> dict[str, float | None] | None:
    if fmt.is_number(m):
        return {"value": m, "ci_low": None, "ci_high": None}
    if isinstance(m, dict) and fmt.is_number(m.get("value")):
        return {k: _num(m.get(k)) for k in METRIC_PARTS}
    return None


def _metrics(raw: Any) -> dict[str, dict[str, float | None]]:
    out = {}
    for name, m in (raw or {}).items() if isinstance(raw, dict) else ():
        norm = _metric(m)
        if norm is not None:
            out[str(name)] = norm
    return out


def beats_verdict(vb: Any) -> str | None:
    """ "yes" / "no" / "not significant" against the strongest baseline (claims need p < 0.05)."""
    if not isinstance(vb, dict) or not vb.get("baseline"):
        return None
    p, diff = vb.get("p_value"), vb.get("diff")
    if not fmt.significant(p):
        return "not significant"
    ahead = diff > 0 if fmt.is_number(diff) else bool(vb.get("beats"))
    return "yes" if ahead else "no"


def best_baseline_name(results: dict[str, Any]) -> str | None:
    for entry in (results.get("systems") or {}).values():
        vb = entry.get("vs_best_baseline") if isinstance(entry, dict) else None
        if isinstance(vb, dict) and vb.get("baseline"):
            return str(vb["baseline"])
    return None


def summary_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One dict per system, then one per baseline, with every figure the summary table shows."""
    rows: list[dict[str, Any]] = []
    for name, e in (results.get("systems") or {}).items():
        lat = e.get("latency_s") or {}
        rlat = e.get("retrieval_latency_s") or {}
        vb = e.get("vs_best_baseline") if isinstance(e.get("vs_best_baseline"), dict) else None
        rows.append(
            {
                "name": str(name),
                "kind": str(e.get("kind") or ""),
                "status": str(e.get("status") or "ok"),
                "error": e.get("error"),
                "is_baseline": False,
                "description": None,
                "metrics": _metrics(e.get("metrics")),
                "latency_p50": _num(lat.get("p50")),
                "latency_p95": _num(lat.get("p95")),
                "latency_mean": _num(lat.get("mean")),
                "retrieval_latency_p50": _num(rlat.get("p50")),
                "retrieval_latency_p95": _num(rlat.get("p95")),
                "peak_memory_mb": _num(e.get("peak_memory_mb")),
                "build_s": _num(e.get("build_s")),
                "build_cost_s": _num(e.get("build_cost_s")),
                "cached": bool(e.get("cached")),
                "artifact_mb": _num(e.get("artifact_mb")),
                "evaluation_reused": (e.get("evaluation_reused") or {}).get("measured_at")
                if isinstance(e.get("evaluation_reused"), dict)
                else None,
                "vs_best_baseline": vb,
                "beats": beats_verdict(vb),
                "beats_p": _num(vb.get("p_value")) if vb else None,
            }
        )
    hm = headline(results)
    for name, b in (results.get("baselines") or {}).items():
        b = b if isinstance(b, dict) else {hm: b}
        metrics = _metrics(b.get("metrics"))
        if hm not in metrics and _metric(b.get(hm)):
            metrics[hm] = _metric(b.get(hm))
        rows.append(
            {
                "name": str(name),
                "kind": "baseline",
                "status": "ok",
                "error": None,
                "is_baseline": True,
                "description": b.get("description"),
                "metrics": metrics,
                "latency_p50": None,
                "latency_p95": None,
                "latency_mean": None,
                "retrieval_latency_p50": None,
                "retrieval_latency_p95": None,
                "peak_memory_mb": None,
                "build_s": None,
                "build_cost_s": None,
                "cached": False,
                "artifact_mb": None,
                "evaluation_reused": None,
                "vs_best_baseline": None,
                "beats": None,
                "beats_p": None,
            }
        )
    return rows


def metric_names(results: dict[str, Any], rows: list[dict[str, Any]] | None = None) -> list[str]:
    """Headline metric first, then every other metric in order of first appearance."""
    names = [headline(results)]
    for row in rows if rows is not None else summary_rows(results):
        for m in row["metrics"]:
            if m not in names:
                names.append(m)
    return names


CSV_TAIL = (
    "latency_p50",
    "latency_p95",
    "retrieval_latency_p50",
    "retrieval_latency_p95",
    "peak_memory_mb",
    "build_s",
    "build_cost_s",
    "cached",
    "artifact_mb",
    "evaluation_reused",
    "beats_best_baseline",
    "beats_p_value",
    "error",
)


def csv_text(results: dict[str, Any]) -> str:
    rows = summary_rows(results)
    metrics = metric_names(results, rows)
    header = ["name", "kind", "status"] + [f"{m}_{part}" for m in metrics for part in METRIC_PARTS]
    header += list(CSV_TAIL)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for r in rows:
        line: list[Any] = [r["name"], r["kind"], r["status"]]
        for m in metrics:
            cell = r["metrics"].get(m) or {}
            line += [_csv(cell.get(part)) for part in METRIC_PARTS]
        line += [_csv(r[k]) for k in CSV_TAIL[:7]]
        line += [
            str(r["cached"]).lower() if not r["is_baseline"] else "",
            _csv(r["artifact_mb"]),
            _csv(r["evaluation_reused"]),
            r["beats"] or "",
            _csv(r["beats_p"]),
            " ".join(str(r["error"] or "").split()),
        ]
        writer.writerow(line)
    return buf.getvalue()


def _csv(v: Any) -> str:
    return "" if v is None else repr(v) if isinstance(v, float) else str(v)


def _md(text: Any) -> str:
    return " ".join(str(text).split()).replace("\\", "\\\\").replace("|", "\\|")


def beats_text(r: dict[str, Any]) -> str:
    if r["is_baseline"]:
        return "(baseline)"
    if r["beats"] is None:
        return fmt.DASH
    return f"{r['beats']} ({fmt.pvalue(r['beats_p'])})"


def build_text(r: dict[str, Any]) -> str:
    """This run's build time; for a reused artifact, what it took when it was built (when that was recorded)."""
    if r["build_s"] is None:
        return fmt.DASH
    if not r["cached"]:
        return fmt.duration(r["build_s"])
    return "cached" + (f" (built in {fmt.duration(r['build_cost_s'])})" if r.get("build_cost_s") is not None else "")


def markdown_text(results: dict[str, Any]) -> str:
    hm = headline(results)
    rows = summary_rows(results)
    bl = best_baseline_name(results) or "best baseline"
    head = [
        "system",
        f"{hm} [95% CI]",
        "latency p50 / p95",
        "peak memory",
        "build time",
        "artifact size",
        f"beats best baseline ({bl})?",
    ]
    lines = [
        f"**{_md(results.get('task') or 'task')}** · run `{_md(results.get('run_id') or '?')}` · "
        f"n_test = {_md(results.get('n_test', '?'))}",
        "",
        "| " + " | ".join(_md(h) for h in head) + " |",
        "|" + "|".join(["---"] + ["---:"] * 5 + [":---"]) + "|",
    ]
    for r in rows:
        if r["status"] == "failed":
            cells = [f"{r['name']} (failed)", f"failed: {r['error'] or 'no error recorded'}"]
            cells += [fmt.DASH] * 5
        else:
            name = f"{r['name']} (baseline)" if r["is_baseline"] else r["name"]
            lat = (
                fmt.DASH
                if r["latency_p50"] is None
                else f"{fmt.seconds(r['latency_p50'])} / {fmt.seconds(r['latency_p95'])}"
            )
            cells = [
                name,
                fmt.ci(r["metrics"].get(hm)),
                lat,
                fmt.mb(r["peak_memory_mb"]),
                build_text(r),
                fmt.mb(r["artifact_mb"]),
                beats_text(r),
            ]
        lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"
