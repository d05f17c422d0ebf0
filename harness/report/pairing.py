"""What `harness compare` may claim about two runs: which questions they share, the paired test of each system
on those questions (the run's own tests, harness.results.compare: McNemar for 0/1 metrics, a paired permutation
test otherwise, Holm-adjusted over the systems compared between the two runs), and whether a run is compared
with itself.

A difference of whole-run figures is only meaningful when both runs answered the same questions; when they did
not, the comparison shows the difference on the questions they share, paired, and says so in a banner.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.constants import SIGNIFICANCE_LEVEL
from harness.results import compare, per_question
from harness.stats import holm

from .load import Run
from .recommend import headline


@dataclass(frozen=True)
class Paired:
    """A system in run i against the same system in the first run, on the questions both answered."""

    diff: float  # run i minus the first run, mean over the shared questions
    p_value: float
    p_holm: float
    test: str
    n: int

    @property
    def significant(self) -> bool:
        return self.p_holm < SIGNIFICANCE_LEVEL

    @property
    def verdict(self) -> str:
        if not self.significant:
            return "not different"
        return "better" if self.diff > 0 else "worse"


def question_ids(run: Run) -> set[str] | None:
    """The ids of the questions the run evaluated, from samples.jsonl (None without samples)."""
    return {s.id for s in run.samples} or None


def same_run(runs: list[Run]) -> str | None:
    """A note when a run appears twice (the same folder, or the same run id): every delta is 0 by construction."""
    seen: dict[str, int] = {}
    for i, run in enumerate(runs):
        for key in (str(run.path.resolve()), f"id:{run.run_id}"):
            if key in seen:
                j = seen[key]
                how = "the same folder" if not key.startswith("id:") else "the same run id"
                return (
                    f"Run {i + 1} ({run.run_id}) is run {j + 1} compared with itself ({how}): its figures are "
                    "the same measurements, so every difference between them is zero by construction."
                )
            seen[key] = i
    return None


def test_set_banner(runs: list[Run]) -> str | None:
    """None when every run answered the same questions; otherwise what differs and what is shown instead."""
    ids = [question_ids(r) for r in runs]
    if any(i is None for i in ids):
        missing = ", ".join(r.run_id for r, i in zip(runs, ids) if i is None)
        return (
            f"No samples.jsonl in {missing}: which questions the runs share is unknown, so no difference is tested "
            "and whole-run differences may compare different test sets."
        )
    if all(i == ids[0] for i in ids[1:]):
        return None
    shared = set.intersection(*ids)
    sizes = ", ".join(f"{r.run_id}: {len(i)}" for r, i in zip(runs, ids))
    return (
        f"The runs were tested on different questions ({sizes}; {len(shared)} shared by all). Whole-run "
        "differences would compare different test sets, so the headline difference shown is the paired one, on "
        "the questions both runs answered."
    )


def paired_tests(runs: list[Run], seed: int = 0) -> dict[tuple[str, int], Paired]:
    """(system, run index) -> that system in run i against the same system in the first run, on the
    questions both answered; Holm-adjusted over the systems compared between the two runs. Runs whose headline
    metric differs from the first run's are not tested (their scores measure different things)."""
    out: dict[tuple[str, int], Paired] = {}
    metric = headline(runs[0].results)
    ref = runs[0]
    for i, run in enumerate(runs[1:], 1):
        if headline(run.results) != metric:
            continue
        rows = []
        for name, entry in run.results.systems.items():
            first = ref.results.systems.get(name)
            if first is None or not first.ok or not entry.ok:
                continue
            a = per_question([s for s in run.samples if s.system == name], metric)
            b = per_question([s for s in ref.samples if s.system == name], metric)
            res = compare(a, b, metric, seed)
            if res is not None:
                rows.append((name, res))
        for (name, res), p_holm in zip(rows, holm([r["p_value"] for _, r in rows])):
            out[(name, i)] = Paired(res["diff"], res["p_value"], p_holm, res["test"], res["n"])
    return out
