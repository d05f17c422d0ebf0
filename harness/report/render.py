"""render_report: one run directory -> index.html, results.csv, summary.md (all written atomically)."""

from __future__ import annotations

import json
import shlex
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from harness.constants import SIGNIFICANCE_LEVEL
from harness.files import write_text_atomic
from harness.records import RunResults, Settings

from . import fmt
from .charts import loss_chart, metric_charts, retrieval_chart, tradeoff_chart
from .decision import decision_context
from .errors_analysis import error_analysis
from .load import Run, load_run, machine_line, model_label
from .pareto import markdown as pareto_markdown
from .pareto import pareto
from .prior import prior_section
from .questions import groups, question_rows, retrieval_systems
from .recommend import headline, recommendation
from .runnotes import limited_text, memory_label, run_notes
from .scenario import scenario_section
from .summary import best_baseline_name, csv_text, markdown_text, metric_names, summary_rows, truncation_text
from .svg import colors_for
from .terms import glossary

TEMPLATES = Path(__file__).parent / "templates"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # everything, whatever the template's extension
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(fmt.FILTERS)
    return env


def render_template(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)


def date_text(created: Any) -> str:
    if not created:
        return "unknown"
    try:
        dt = datetime.fromisoformat(str(created))
    except ValueError:
        return str(created)
    if dt.utcoffset() is not None and dt.utcoffset().total_seconds() == 0:
        return dt.strftime("%Y-%m-%d %H:%M UTC")
    return dt.strftime("%Y-%m-%d %H:%M %z").strip()


def settings_items(settings: Settings | None) -> list[tuple[str, Any]]:
    """The settings as results.json holds them: the keys the run wrote, in its order."""
    return list(settings.model_dump(exclude_unset=True).items()) if settings is not None else []


def settings_text(settings: Settings | None) -> str:
    items = settings_items(settings)
    return " · ".join(f"{k}={v}" for k, v in items) if items else fmt.DASH


def manifest_items(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """(key, text, block, lines) for the manifest section; nested values become indented JSON."""
    items = []
    for key, value in manifest.items():
        if key in ("command", "argv", "command_line") and isinstance(value, list):
            items.append({"key": key, "text": shlex.join(map(str, value)), "block": True})
        elif isinstance(value, (dict, list)):
            flat = json.dumps(value, sort_keys=True, default=str)
            text = flat if len(flat) <= 100 else json.dumps(value, indent=2, sort_keys=True, default=str)
            items.append({"key": key, "text": text, "block": True})
        else:
            items.append(
                {
                    "key": key,
                    "text": "null" if value is None else str(value),
                    "block": isinstance(value, str) and "\n" in value,
                }
            )
    for item in items:
        item["lines"] = item["text"].count("\n") + 1 if item["block"] else 1  # long blocks start folded
    return items


def training_rows(results: RunResults) -> list[dict[str, Any]]:
    """One row per fine-tuned system, from its training record (free-form JSON: read with .get)."""
    rows = []
    for name, e in results.systems.items():
        t = e.training
        if t is None:
            continue
        tp, total = t.get("trainable_params"), t.get("total_params")
        share = f"{100 * tp / total:.2f}%" if fmt.is_number(tp) and fmt.is_number(total) and total else ""
        rows.append(
            {
                "name": name,
                "status": e.status,
                "method": t.get("method") or "",
                "seconds": t.get("seconds"),
                "tokens_per_s": t.get("tokens_per_s"),
                "peak_memory_mb": t.get("peak_memory_mb"),
                "trainable_params": tp,
                "total_params": total,
                "share": share,
                "epochs": t.get("epochs"),
                "steps": t.get("steps"),
            }
        )
    return rows


def report_context(run: Run) -> dict[str, Any]:
    results, manifest = run.results, run.manifest
    rows = summary_rows(results)
    systems = [r.name for r in rows if not r.is_baseline]
    colors = colors_for(systems)
    viewer_systems, questions = question_rows(results, run.samples)
    return {
        "title": f"{results.task or 'run'} · {run.run_id}",
        "task": results.task or "unknown",
        "run_id": run.run_id,
        "date": date_text(results.created),
        "model": model_label(manifest, results),
        "n_test": results.n_test,
        "seed": results.seed,
        "answer_format": results.answer_format or "",
        "machine": machine_line(manifest),
        "settings": settings_text(results.settings),
        "headline": headline(results),
        "headline_reason": results.headline_reason,
        "truncation": truncation_text(results),
        "run_notes": run_notes(results),
        "limited": limited_text(results),
        "memory_label": memory_label(results),
        "recommendation": recommendation(results),
        "rows": rows,
        "metrics": metric_names(results, rows),
        "show_rlat": any(r.retrieval_latency_p50 is not None for r in rows),
        "latency_n": next((r.latency_n for r in rows if r.latency_n is not None), None),
        "baseline_name": best_baseline_name(results) or "best baseline",
        "colors": colors,
        "tradeoff": tradeoff_chart(results, colors),
        "pareto": pareto(results),
        "metric_charts": metric_charts(results, colors),
        "loss": loss_chart(results, colors),
        "training": training_rows(results),
        "retrieval": retrieval_chart(results, colors),
        "scenario": scenario_section(results, colors),
        "comparisons": results.comparisons,
        "prior": prior_section(results),
        "analysis": error_analysis(results, run.samples),
        "alpha": SIGNIFICANCE_LEVEL,
        "viewer_systems": viewer_systems,
        "retrieval_systems": retrieval_systems(run.samples),
        "questions": questions,
        "q_categories": groups(questions, "category"),
        "q_docs": groups(questions, "doc"),
        "manifest": manifest_items(manifest),
        "terms": glossary(),
        "warnings": run.warnings,
        **decision_context(results, colors),
    }


def render_report(run_dir: Path) -> Path:
    """Write index.html, results.csv and summary.md into `run_dir`; return the index.html path."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    html = render_template("report.html", **report_context(run))
    write_text_atomic(run_dir / "results.csv", csv_text(run.results))
    front = pareto(run.results)
    summary = markdown_text(run.results) + (f"\n## Pareto front\n\n{pareto_markdown(front)}" if front else "")
    write_text_atomic(run_dir / "summary.md", summary)
    return write_text_atomic(run_dir / "index.html", html)
