"""The yes/no calibration set and threshold: which questions a system's Yes-No margin threshold is fitted on
(content-free inputs, or a draw from the dev split with the training split's answer mix), and the threshold.

legal-qa's first by-document dev split held five permissive licences (Yes-rate 0.39 against 0.56 on test), and
a threshold fitted there put rag's calibrated accuracy below its raw accuracy: the dev split is now chosen to
match training's (category, answer) mix (harness.strata.choose_dev_keys) and the calibration questions are drawn
from it with the training split's Yes-rate (harness.strata.calibration_sample). Never from train or test.
"""

from __future__ import annotations

from harness import stats, strata
from harness.constants import AnswerFormat
from harness.data import Question
from harness.records import CalibrationSet, Measurement

CONTENT_FREE = ("N/A", "", "[MASK]")


def calibration_questions(ctx) -> list[Question] | None:
    """What the calibration pass scores: content-free inputs, dev questions, or nothing."""
    spec = ctx.spec
    if spec.answer_format != AnswerFormat.YES_NO or spec.evaluation.calibration == "none":
        return None
    if spec.evaluation.calibration == "contextual":
        return [
            Question(id=f"content-free-{i}", question=t, answers=["Yes"], choices=["Yes", "No"])
            for i, t in enumerate(CONTENT_FREE)
        ]
    if not ctx.data.dev:
        return None
    # Drawn from dev with the training split's answer mix (a dev split of other documents can lean to one
    # answer, which would shift the threshold); --limit N asks for a quick look: at most N dev questions too.
    n = min(spec.evaluation.calibration_limit, ctx.limit or spec.evaluation.calibration_limit)
    return strata.calibration_sample(ctx.data.dev, ctx.data.train, n, spec.seed, spec.answer_format)


def calibration_set(ctx) -> CalibrationSet | None:
    """What the dev-threshold calibration is fitted on, for results.json and the report."""
    questions = calibration_questions(ctx)
    if not questions or ctx.spec.evaluation.calibration != "dev-threshold":
        return None
    return CalibrationSet(
        n=len(questions),
        yes_rate=strata.yes_rate(questions),
        dev_size=len(ctx.data.dev),
        train_yes_rate=strata.yes_rate(ctx.data.train) or 0.0,
        test_yes_rate=strata.yes_rate(ctx.data.test) or 0.0,
    )


def calibration_threshold(
    ctx, questions: list[Question] | None, measurements: list[Measurement] | None
) -> float | None:
    """The Yes-No margin above which a system's calibrated answer is Yes, from its calibration measurements."""
    if not questions or not measurements:
        return None
    margins = [m.margin for m in measurements]
    if ctx.spec.evaluation.calibration == "contextual":
        return sum(margins) / len(margins)
    return stats.fit_threshold([int(q.answers[0] == "Yes") for q in questions], margins)
