"""No stage sits silent: the Reporter says a stage is still working when it has said nothing for a while."""

from __future__ import annotations

import re
import threading
import time

import pytest

from harness.context import HEARTBEAT_S, Reporter


def test_a_silent_stage_says_it_is_still_working():
    r = Reporter(heartbeat_s=0.3)
    with r.stage("evaluate 3 questions"):
        time.sleep(1.0)  # one long step, such as a forward pass on a very long prompt
    beats = [line for line in r.lines if "still working" in line]
    assert 2 <= len(beats) <= 4, r.lines
    assert all(re.fullmatch(r"  evaluate 3 questions: still working \(\d+ s so far\)", b) for b in beats)
    assert r.lines[0] == "▸ evaluate 3 questions" and r.lines[-1].startswith("  evaluate 3 questions: done in ")


def test_a_stage_that_reports_gets_no_heartbeat_and_none_outlives_it():
    r = Reporter(heartbeat_s=0.4)
    with r.stage("train"):
        for i in range(6):
            time.sleep(0.15)
            r.log(f"  step {i}")
    time.sleep(0.6)  # after the stage: silence is not reported
    assert not [line for line in r.lines if "still working" in line], r.lines
    assert not [t for t in threading.enumerate() if t.name.startswith("heartbeat:")]


def test_a_stage_that_fails_stops_its_heartbeat():
    r = Reporter(heartbeat_s=0.2)
    with pytest.raises(KeyboardInterrupt), r.stage("build"):
        raise KeyboardInterrupt
    n = len(r.lines)
    time.sleep(0.5)
    assert len(r.lines) == n and not any("done in" in line for line in r.lines)


def test_the_default_is_at_most_30_seconds():
    assert Reporter().heartbeat_s == HEARTBEAT_S <= 30
