"""Names every layer shares: the answer formats, and the level at which a difference is called significant.

Defined once here (the lowest layer, importing nothing of harness) so that the schema, the scorers, the
statistics and the report cannot drift apart.
"""

from __future__ import annotations

from enum import StrEnum


class AnswerFormat(StrEnum):
    """How a task's questions are answered; a `str`, so `spec.answer_format == "yes-no"` holds."""

    YES_NO = "yes-no"
    MULTIPLE_CHOICE = "multiple-choice"
    FREE_TEXT = "free-text"


ANSWER_FORMATS: tuple[str, ...] = tuple(f.value for f in AnswerFormat)
# Formats scored by comparing the log-likelihoods of fixed options (lm-eval's multiple_choice).
CHOICE_FORMATS: tuple[str, ...] = (AnswerFormat.YES_NO.value, AnswerFormat.MULTIPLE_CHOICE.value)

# A difference is called significant when its Holm-adjusted paired p-value is below this level; the report
# and the recommendation use the same rule.
SIGNIFICANCE_LEVEL = 0.05
