"""Sentences that qualify the summary table's figures, shown under it in the HTML report, in summary.md and
in the terminal: a limited run, what calibrated accuracy was fitted on (and where it fell below accuracy),
how much of the gold documents oracle's prompts held, and which memory the peak-memory column is."""

from __future__ import annotations

from harness.records import RunResults

from . import fmt


def limited_text(results: RunResults) -> str | None:
    lim = results.limited
    if lim is None:
        return None
    return f"limited run: {lim.n} of {lim.of} test questions ({lim.drawn}); a quick look, not the full test split."


def calibration_text(results: RunResults) -> str | None:
    c = results.calibration_set
    if c is None:
        return None
    values = [
        f"{name} {e.metrics['calibrated_accuracy'].value:.3f}"
        for name, e in results.systems.items()
        if e.ok and "calibrated_accuracy" in e.metrics and fmt.is_number(e.metrics["calibrated_accuracy"].value)
    ]
    return (
        f"calibrated_accuracy{' (' + ', '.join(values) + ')' if values else ''}: each system's Yes threshold is "
        f"fitted on {c.n} of {c.dev_size} dev questions (Yes-rate {c.yes_rate:.2f}, drawn to match the training "
        f"split's {c.train_yes_rate:.2f}), never on test questions (test Yes-rate {c.test_yes_rate:.2f})."
    )


def calibration_below_raw(results: RunResults) -> str | None:
    """Systems whose calibrated accuracy is below their accuracy, each with the likelier reason: a margin that
    separates Yes from No no better than chance (AUC interval reaching 0.5), or one spread differently on the
    dev questions than on the test questions."""
    chance, shifted = [], []
    for name, e in results.systems.items():
        cal, raw, auc = (e.metrics.get(m) for m in ("calibrated_accuracy", "accuracy", "auc"))
        known = e.ok and cal is not None and raw is not None and fmt.is_number(cal.value) and fmt.is_number(raw.value)
        if not known or cal.value >= raw.value:
            continue
        figures = f"{name} ({cal.value:.3f} < {raw.value:.3f}"
        if auc is not None and fmt.is_number(auc.value) and fmt.is_number(auc.ci_low) and auc.ci_low <= 0.5:
            chance.append(f"{figures}; AUC {auc.value:.3f} [{auc.ci_low:.3f}, {auc.ci_high:.3f}])")
        else:
            shifted.append(figures + ")")
    out = []
    if chance:
        out.append(
            f"calibrated accuracy below accuracy: {', '.join(chance)}. These systems' Yes-No margins do not separate "
            "the answers better than chance (the AUC interval reaches 0.5), so a threshold fitted on them moves "
            "answers at random; their accuracy is their answer bias, not knowledge."
        )
    if shifted:
        out.append(
            f"calibrated accuracy below accuracy: {', '.join(shifted)}. The threshold fitted on the dev questions "
            "moved these systems' answers the wrong way on test: their Yes-No margins are spread differently on "
            "the dev documents than on the test documents (a threshold fitted on few questions also varies by "
            "chance)."
        )
    return " ".join(out) or None


def gold_context_texts(results: RunResults) -> list[str]:
    out = []
    for name, e in results.systems.items():
        g = e.gold_context
        if g is None or not e.ok:
            continue
        if not g.cut:
            out.append(f"{name}: every gold document fitted the prompt budget ({g.budget_tokens} tokens) whole.")
        else:
            out.append(
                f"{name}: the prompt budget ({g.budget_tokens} tokens) cut the gold document for {g.cut} of {g.n} "
                f"questions ({g.cut_share:.0%}); the prompts held {g.kept_token_share:.0%} of their gold "
                "documents' tokens on average, so for the cut questions it is not a full ceiling."
            )
    return out


MEMORY_TEXT = (
    "serving peak memory: the process, the base model, index and embedder a system uses, and its own peak while "
    "answering one question at a time, each measured as if the system ran alone (an earlier system's leftovers are "
    "not in it; nor are the passes that score many questions at once for accuracy); training peaks are measured "
    "the same way and shown apart."
)


def memory_label(results: RunResults) -> str:
    """The memory column's name: a run written before serving peaks were measured apart says only peak memory."""
    return (
        "serving peak memory" if any(e.serving_memory is not None for e in results.systems.values()) else "peak memory"
    )


def memory_text(results: RunResults) -> str | None:
    """What the memory column is, when the run measured it this way (older runs have no serving_memory)."""
    return MEMORY_TEXT if any(e.serving_memory is not None for e in results.systems.values()) else None


def run_notes(results: RunResults) -> list[str]:
    """Every note that applies to this run, in the order they read best."""
    notes = [limited_text(results), calibration_text(results), calibration_below_raw(results)]
    return [n for n in notes if n] + gold_context_texts(results) + [n for n in [memory_text(results)] if n]
