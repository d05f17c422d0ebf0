"""Counts the reliability tests add up as they pass; conftest prints them at the end of the session:

reliability: 8 interruptions survived, 4 corrupt artifacts detected, 2000 bad inputs rejected cleanly,
0 results lost or wrong
"""

from __future__ import annotations

KINDS = (
    "interruptions survived",
    "corrupt artifacts detected",
    "bad inputs rejected cleanly",
    "results lost or wrong",
)
COUNTS: dict[str, int] = dict.fromkeys(KINDS, 0)
_touched = False


def add(kind: str, n: int = 1) -> None:
    global _touched
    if kind not in COUNTS:
        raise KeyError(f"unknown reliability count {kind!r}; one of {KINDS}")
    COUNTS[kind] += n
    _touched = True


def touched() -> bool:
    return _touched


def summary_line() -> str:
    return "reliability: " + ", ".join(f"{COUNTS[k]} {k}" for k in KINDS)
