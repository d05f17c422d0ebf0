"""How torch's idle OpenMP threads wait: a brief spin on CPUs that are idle as a run starts, sleep on busy ones.

torch's CPU kernels run on an OpenMP team (libgomp, in the pip wheels). Between two parallel regions the team's
idle threads either spin or sleep. Sleeping at once (OMP_WAIT_POLICY=PASSIVE) makes each region wake its threads
through the kernel, and a batch-1 forward pass of a small model is hundreds of regions: on idle cores it is
markedly slower than with threads that spin a little first. Spinning costs as soon as anything else wants the
cores: with two processes at once, each spinning, a lone pass is slower than with sleeping threads (the figures
are in docs/performance.md, "How idle OpenMP threads wait"). So the choice is made on
what the CPUs are doing as the run starts, recorded in results.json (`settings.openmp_wait`), and inherited by
the processes the run starts. A user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins. The wait changes no
arithmetic, only the time.

libgomp reads these variables once, when torch loads it: `choose` must run before the process's first
`import torch` (harness.models.set_offline_defaults, which every command calls first).
"""

from __future__ import annotations

import os
import time

# Turns an idle thread spins before it sleeps (libgomp's own default without a policy is 300,000). The bench
# (bench/cpu_settings.py) kept this one: most of the gain alone, and less lost than longer spins with a second
# process beside it.
SPIN_COUNT = 10_000
IDLE_BELOW = 0.25  # share of all CPUs' time in use, over WINDOW_S, under which the machine counts as idle
WINDOW_S = 0.2
CHOSEN = "HARNESS_OPENMP_WAIT"  # what a run chose, for its child processes (and its results)
USER_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
AS_SET = "as set: "  # how a recorded choice that is the user's own variables begins


def cpu_times(stat: str, mine: set[int] | None) -> tuple[int, int]:
    """Total and idle time so far of the CPUs in `mine` (all where None), from /proc/stat's per-CPU lines."""
    total = idle = 0
    for line in stat.splitlines():
        name, *values = line.split() or [""]
        if not (name.startswith("cpu") and name[3:].isdigit()) or (mine and int(name[3:]) not in mine):
            continue
        fields = [int(x) for x in values]
        total += sum(fields[:8])  # user..steal; guest time is already inside user
        idle += fields[3] + fields[4]  # idle + iowait
    return total, idle


def busy_share(window_s: float = WINDOW_S) -> float | None:
    """Share of the time of the CPUs this process may run on spent busy over `window_s` (a container limited to
    some of a host's CPUs looks at those); None where /proc/stat cannot be read."""
    mine = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        with open("/proc/stat") as f:
            total0, idle0 = cpu_times(f.read(), mine)
        time.sleep(window_s)
        with open("/proc/stat") as f:
            total1, idle1 = cpu_times(f.read(), mine)
    except (OSError, ValueError, IndexError):
        return None
    total = total1 - total0
    return None if total <= 0 else round(1 - (idle1 - idle0) / total, 3)


def _own(environ) -> dict[str, str]:
    """The wait variables the user set (or a run's parent set for it)."""
    return {k: environ[k] for k in USER_VARS if environ.get(k)}


def _listed(own: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in own.items())


def _as_set(own: dict[str, str]) -> str:
    return AS_SET + _listed(own)


def decide(environ, busy, torch_loaded: bool = False) -> tuple[dict[str, str], str]:
    """The variables to set and the description to record, for this process's environment and
    the CPUs' busy share (`busy()` is called only when the choice depends on it)."""
    if torch_loaded and not environ.get(CHOSEN):
        # OpenMP has read its variables already: say what it read, and set nothing (a child process reads afresh)
        return {}, "as loaded before the run: " + (_listed(_own(environ)) or "libgomp's default")
    if int(environ.get("WORLD_SIZE") or 1) > 1:  # one process of a multi-process launch: they share the CPUs
        changes = for_processes_side_by_side(environ, "processes of a launch")
        return changes, changes[CHOSEN]
    inherited = environ.get(CHOSEN)
    if inherited:  # a run's child process keeps the run's choice
        return {}, inherited
    own = _own(environ)
    if own:
        text = _as_set(own)
        return {CHOSEN: text}, text
    share = busy()
    if share is None or share >= IDLE_BELOW:
        why = "the CPUs' use could not be read" if share is None else f"the CPUs were {share:.0%} busy as it started"
        text = f"passive: sleep at once ({why})"
        return {"OMP_WAIT_POLICY": "PASSIVE", CHOSEN: text}, text
    text = f"spin {SPIN_COUNT} times, then sleep (the CPUs were {share:.0%} busy as it started)"
    return {"GOMP_SPINCOUNT": str(SPIN_COUNT), CHOSEN: text}, text


def for_processes_side_by_side(environ, what: str) -> dict[str, str]:
    """The OpenMP variables of a process that runs beside others of its kind (Ray tasks, DDP processes): they
    sleep at once, unless the user set the wait (kept as set). GOMP_SPINCOUNT is set to 0 rather than removed:
    libgomp takes it over OMP_WAIT_POLICY, and a process may inherit the run's."""
    own = _own(environ)
    if environ.get(CHOSEN, "").startswith(AS_SET) or (own and not environ.get(CHOSEN)):
        return {**own, CHOSEN: environ.get(CHOSEN) or _as_set(own)}
    return {
        "OMP_WAIT_POLICY": "PASSIVE",
        "GOMP_SPINCOUNT": "0",
        CHOSEN: f"passive: sleep at once (one of several {what})",
    }


_TEXT: str | None = None  # this process's description, where the environment does not carry it


def choose(environ=os.environ, busy=busy_share) -> str:
    """Set this process's OpenMP wait (once: a later call keeps the first choice); the description."""
    import sys

    global _TEXT
    changes, text = decide(environ, busy, torch_loaded="torch" in sys.modules)
    environ.update(changes)
    _TEXT = text
    return text


def chosen() -> str | None:
    """What this process chose, as results.json records it (None before `choose`)."""
    return _TEXT


def mode() -> str | None:
    """The choice without why it was made (e.g. "passive: sleep at once"): what stored speed figures depend on."""
    return mode_of(_TEXT)


def mode_of(text: str | None) -> str | None:
    """`mode` of a recorded choice (results.json's settings.openmp_wait)."""
    return text.split(" (")[0] if text else None
