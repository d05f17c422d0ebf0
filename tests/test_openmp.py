"""How idle OpenMP threads wait (harness.openmp): decided before torch loads, recorded, inherited, overridable."""

import os
import subprocess
import sys

from harness import openmp


def busy(share):
    calls = []

    def sample():
        calls.append(1)
        return share

    return sample, calls


def test_idle_cpus_spin_briefly_and_busy_ones_sleep_at_once():
    sample, _ = busy(0.05)
    changes, text = openmp.decide({}, sample)
    assert changes["GOMP_SPINCOUNT"] == str(openmp.SPIN_COUNT) and "OMP_WAIT_POLICY" not in changes
    assert text.startswith(f"spin {openmp.SPIN_COUNT} times") and "5% busy" in text
    sample, _ = busy(0.6)
    changes, text = openmp.decide({}, sample)
    assert changes["OMP_WAIT_POLICY"] == "PASSIVE" and "GOMP_SPINCOUNT" not in changes
    assert text == "passive: sleep at once (the CPUs were 60% busy as it started)"
    changes, text = openmp.decide({}, lambda: None)  # /proc/stat unreadable (not Linux): the safe choice
    assert changes["OMP_WAIT_POLICY"] == "PASSIVE" and "could not be read" in text


def test_the_users_own_variables_win_and_the_cpus_are_not_looked_at():
    sample, calls = busy(0.0)
    changes, text = openmp.decide({"OMP_WAIT_POLICY": "ACTIVE"}, sample)
    assert text == "as set: OMP_WAIT_POLICY=ACTIVE" and set(changes) == {openmp.CHOSEN}
    changes, text = openmp.decide({"GOMP_SPINCOUNT": "500"}, sample)
    assert text == "as set: GOMP_SPINCOUNT=500" and not calls


def test_a_child_keeps_the_runs_choice_but_processes_side_by_side_sleep():
    sample, calls = busy(0.9)
    run = {
        openmp.CHOSEN: "spin 10000 times, then sleep (the CPUs were 3% busy as it started)",
        "GOMP_SPINCOUNT": "10000",
    }
    assert openmp.decide(dict(run), sample) == ({}, run[openmp.CHOSEN]) and not calls  # the probe's child process
    changes, text = openmp.decide({**run, "WORLD_SIZE": "2"}, sample)  # one of 2 DDP processes
    # GOMP_SPINCOUNT is set to 0, not left: libgomp takes it over OMP_WAIT_POLICY
    assert changes["OMP_WAIT_POLICY"] == "PASSIVE" and changes["GOMP_SPINCOUNT"] == "0"
    assert text == "passive: sleep at once (one of several processes of a launch)"
    user = {"OMP_WAIT_POLICY": "ACTIVE", openmp.CHOSEN: "as set: OMP_WAIT_POLICY=ACTIVE", "WORLD_SIZE": "2"}
    assert openmp.decide(user, sample)[1] == "as set: OMP_WAIT_POLICY=ACTIVE"


def test_ray_tasks_sleep_at_once_unless_the_user_set_the_wait(monkeypatch):
    from harness.sweep.executors import worker_env

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)  # the suite's own (tests/conftest.py)
    monkeypatch.setenv("GOMP_SPINCOUNT", "10000")
    monkeypatch.setenv(openmp.CHOSEN, "spin 10000 times, then sleep (the CPUs were 3% busy as it started)")
    env = worker_env()
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env["GOMP_SPINCOUNT"] == "0"
    monkeypatch.setenv(openmp.CHOSEN, "as set: GOMP_SPINCOUNT=10000")
    env = worker_env()
    assert env["GOMP_SPINCOUNT"] == "10000" and "OMP_WAIT_POLICY" not in env


def test_only_the_cpus_the_process_may_use_are_counted():
    stat = (
        "cpu  30 0 10 60 0 0 0 0 0 0\n"  # the sum line: left out (the per-CPU lines are counted)
        "cpu0 10 0 0 90 0 0 0 0 0 0\n"
        "cpu1 20 0 10 60 10 0 0 0 0 0\n"
        "cpu7 100 0 0 0 0 0 0 0 0 0\n"
        "intr 12345 1 2\n"
    )
    assert openmp.cpu_times(stat, {0, 1}) == (200, 160)  # idle counts iowait
    assert openmp.cpu_times(stat, None) == (300, 160)


def test_the_busy_share_is_read_from_the_cpus():
    share = openmp.busy_share(0.05)
    assert share is None or 0.0 <= share <= 1.0
    if os.path.exists("/proc/stat"):
        assert share is not None


def test_a_fresh_process_sets_the_variables_before_torch_loads_and_records_them(tmp_path):
    """In a new process the choice lands in the environment libgomp reads as torch loads; once torch is loaded,
    nothing is set any more and the description says what OpenMP read."""
    code = (
        "import os, sys\n"
        "from harness import openmp\n"
        "assert 'torch' not in sys.modules\n"
        "text = openmp.choose(busy=lambda: 0.0)\n"
        "import torch\n"
        "print(text, os.environ.get('GOMP_SPINCOUNT'), openmp.choose(busy=lambda: 0.9) == text)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in (*openmp.USER_VARS, openmp.CHOSEN)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split()[-2:] == [str(openmp.SPIN_COUNT), "True"] and out.startswith("spin ")
    code = (
        "import os, torch\n"
        "from harness import openmp\n"
        "print(openmp.choose(busy=lambda: 0.0))\n"
        "print(os.environ.get(openmp.CHOSEN))\n"
    )
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["as loaded before the run: OMP_WAIT_POLICY=PASSIVE", "None"]


def test_stored_speed_figures_are_kept_apart_per_wait(monkeypatch):
    """The probe's batch-1 rates depend on the wait, so the estimate's stored figures are keyed by it."""
    from harness import probe

    monkeypatch.setattr(openmp, "_TEXT", "spin 10000 times, then sleep (the CPUs were 3% busy as it started)")
    spin = probe._machine()
    monkeypatch.setattr(openmp, "_TEXT", "spin 10000 times, then sleep (the CPUs were 9% busy as it started)")
    assert probe._machine() == spin  # why it was chosen is not part of it
    monkeypatch.setattr(openmp, "_TEXT", "passive: sleep at once (the CPUs were 60% busy as it started)")
    assert probe._machine() != spin and "passive: sleep at once" in probe._machine()
