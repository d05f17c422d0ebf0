"""No part of a run sits silent: within Reporter.running(), whatever has said nothing for a while says that it is
still working, in which stage, and for how long."""

from __future__ import annotations

import re
import threading
import time

import pytest

from harness.context import HEARTBEAT_S, Reporter


def beats(r: Reporter) -> list[str]:
    return [line for line in r.lines if "still working" in line]


def test_a_silent_stage_says_it_is_still_working():
    r = Reporter(heartbeat_s=0.3)
    with r.running(), r.stage("evaluate 3 questions"):
        time.sleep(1.0)  # one long step, such as a forward pass on a very long prompt
    assert 2 <= len(beats(r)) <= 4, r.lines
    assert all(re.fullmatch(r"  evaluate 3 questions: still working \(\d+ s so far\)", b) for b in beats(r))
    assert r.lines[0] == "▸ evaluate 3 questions" and r.lines[-1].startswith("  evaluate 3 questions: done in ")


def test_silence_between_stages_is_reported_too():
    r = Reporter(heartbeat_s=0.3)
    with r.running():
        with r.stage("build"):
            pass
        time.sleep(0.8)  # scoring, outside any stage
    assert beats(r) and all(b.startswith("  run: still working") for b in beats(r)), r.lines


def test_a_run_that_reports_gets_no_heartbeat_and_none_outlives_it():
    r = Reporter(heartbeat_s=0.4)
    with r.running(), r.stage("train"):
        for i in range(6):
            time.sleep(0.15)
            r.log(f"  step {i}")
    time.sleep(0.6)  # after the run: silence is not reported
    assert not beats(r), r.lines
    assert not [t for t in threading.enumerate() if t.name == "harness-heartbeat"]


def test_a_run_that_fails_stops_its_heartbeat():
    r = Reporter(heartbeat_s=0.2)
    with pytest.raises(KeyboardInterrupt), r.running(), r.stage("build"):
        raise KeyboardInterrupt
    n = len(r.lines)
    time.sleep(0.5)
    assert len(r.lines) == n and not any("done in" in line for line in r.lines)
    assert not [t for t in threading.enumerate() if t.name == "harness-heartbeat"]


def test_the_default_is_at_most_30_seconds():
    assert Reporter().heartbeat_s == HEARTBEAT_S <= 30
