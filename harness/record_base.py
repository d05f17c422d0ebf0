"""The base of every run-data model, and the paired comparison that a run and a scenario stage both record.

Kept apart from harness.records so that harness.scenario_records (which harness.records imports for the
`scenario` key) can build on the same classes without an import circle.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

OMIT = {"exclude_if": lambda v: v is None}  # a key that is absent, not null, when it does not apply


class Record(BaseModel):
    """Base of every run-data model. Each is built once, from finished parts (a measurement, its scores, a
    build record), never filled in bit by bit. Unknown keys are kept, so a report can read a run written by a
    newer harness that added fields."""

    model_config = ConfigDict(extra="allow")


class Comparison(Record):
    """A paired test of two systems on one headline metric; Holm-adjusted over the pairs of that metric."""

    a: str = Field(description="a system (pairs are in name order)")
    b: str = Field(description="the other system")
    metric: str = Field(description="the headline metric, or calibrated_accuracy")
    diff: float = Field(description="a minus b")
    p_value: float = Field(description="the raw paired p-value")
    test: str = Field(description="mcnemar-exact / mcnemar-chi2 (0/1 metrics) or paired-permutation")
    n: int = Field(description="questions both systems answered")
    p_holm: float = Field(description="Holm-adjusted p-value over every pair on this metric")
    significant: bool = Field(description="p_holm below harness.constants.SIGNIFICANCE_LEVEL")
