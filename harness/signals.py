"""SIGTERM as an exception, and a second chance for one that Python dropped.

The handler raises `Terminated` where the process is, so that the clean-up of Ctrl-C runs (temporary folders
removed, no half-written run directory). But a signal that arrives while Python runs a finalizer (`__del__`,
e.g. regex's `Group.__del__`) raises inside it, and Python ignores exceptions raised there: the run went on and
exited 0. So the handler also records the signal, and `check()`, called at every stage start and progress step,
raises it again.
"""

from __future__ import annotations

import signal

received: list[int] = []


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is (see the module's docstring)."""


def on_sigterm(signum, frame) -> None:
    received.append(signum)
    raise Terminated()


def terminated() -> bool:
    return signal.SIGTERM in received


def check() -> None:
    """Raise a SIGTERM that was received but never reached the main line (dropped in a finalizer)."""
    if terminated():
        raise Terminated()
