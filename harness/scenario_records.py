"""The typed figures of a `--scenario updates` run: results.json's `scenario` key (harness.records.RunResults).

harness.records imports this module, so this one builds on harness.record_base, not on harness.records; the
documents-change protocol itself is in harness.scenario, the waves in harness.waves.
"""

from __future__ import annotations

from pydantic import Field

from harness.record_base import Comparison
from harness.record_base import Record as _Record


class GroupScore(_Record):
    """A system's headline metric on one group of test questions, with its 95% percentile-bootstrap interval."""

    n: int = Field(description="test questions in the group")
    value: float | None = Field(description="the headline metric over them (null: the group is empty)")
    ci_low: float | None = Field(default=None, description="lower end of the 95% bootstrap interval")
    ci_high: float | None = Field(default=None, description="upper end of the 95% bootstrap interval")


class StageSystem(_Record):
    """One system after one stage: what absorbing the stage's wave cost, and how it answers each group."""

    refresh_s: float | None = Field(
        description="seconds this stage's refresh took (stage 0: the first build; prompt: 0; a refresh reused from "
        "the cache: the seconds recorded when it was made)"
    )
    cumulative_refresh_s: float | None = Field(description="refresh_s summed over stages 0 ... this one")
    artifact_mb: float = Field(description="size of the system's artifact after the stage (index, adapter)")
    cached: bool = Field(description="the stage's artifact was reused from the cache (a resumed scenario)")
    groups: dict[str, GroupScore] = Field(
        description="`new` (the stage's wave), `earlier` (waves before it), `future` (waves still to come)"
    )
    notes: list[str] = Field(default_factory=list, description="how the system was refreshed")


class StageComparison(Comparison):
    """A paired test of two systems on one group after one stage; Holm-adjusted over the pairs of that group."""

    metric: str = Field(description="the headline metric")
    p_holm: float = Field(description="Holm-adjusted p-value over every pair on this group")
    group: str = Field(description="new, earlier or future")


class Stage(_Record):
    """The systems after stage k, which knows waves 0 ... k."""

    stage: int = Field(description="k: the stage's wave")
    systems: dict[str, StageSystem] = Field(description="one entry per system (fine-tunes once per refresh mode)")
    comparisons: list[StageComparison] = Field(description="every pair of systems on each group")


class WaveRecord(_Record):
    """One wave of documents and the questions split within them."""

    index: int = Field(description="the wave's number (stage k adds wave k)")
    doc_ids: list[str] = Field(description="its documents")
    n_train: int = Field(description="training questions about them")
    n_dev: int = Field(description="dev questions about them")
    n_test: int = Field(description="test questions about them")


class Scenario(_Record):
    """`harness run TASK --scenario updates`: the documents arrive in waves; each system is refreshed after
    each wave and evaluated on the test questions of the new, the earlier and the future waves."""

    kind: str = Field(description="updates")
    metric: str = Field(description="the headline metric every group is scored with")
    seed: int = Field(description="seed of the wave split and of the per-document question split")
    modes: list[str] = Field(description="how fine-tunes absorbed a wave: retrain, continue")
    waves: list[WaveRecord] = Field(description="the waves, in the order they arrive")
    stages: list[Stage] = Field(description="stage 0 (wave 0 only) ... stage n-1 (every wave)")
    seconds: float = Field(description="wall time of the whole scenario")
