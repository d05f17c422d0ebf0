"""Counts the reliability tests add up as they pass; conftest prints them at the end of the session:

reliability: 8 interruptions survived, 4 corrupt artifacts detected, 2000 bad inputs rejected cleanly,
0 results lost or wrong

Under pytest-xdist the tests run in worker processes, so a test's counts travel on its report
(`user_properties`) and are summed where the reports arrive: the controller, or the one process without xdist.
"""

from __future__ import annotations

KINDS = (
    "interruptions survived",
    "corrupt artifacts detected",
    "bad inputs rejected cleanly",
    "results lost or wrong",
)
PROPERTY = "reliability-count"
COUNTS: dict[str, int] = dict.fromkeys(KINDS, 0)
_pending: list[tuple[str, int]] = []  # added by the running test, not yet on its report
_touched = False


def add(kind: str, n: int = 1) -> None:
    if kind not in KINDS:
        raise KeyError(f"unknown reliability count {kind!r}; one of {KINDS}")
    _pending.append((kind, n))


def take_pending() -> list[tuple[str, int]]:
    """The running test's counts, for its report (conftest's pytest_runtest_makereport)."""
    taken = list(_pending)
    _pending.clear()
    return taken


def tally(report) -> None:
    """Sum the counts a test report carries (conftest's pytest_runtest_logreport)."""
    global _touched
    for name, value in getattr(report, "user_properties", ()):
        if name == PROPERTY:
            kind, n = value
            COUNTS[kind] += n
            _touched = True


def touched() -> bool:
    return _touched


def summary_line() -> str:
    return "reliability: " + ", ".join(f"{COUNTS[k]} {k}" for k in KINDS)
