"""Timers and memory probes. Every system is measured the same way, by these."""

from __future__ import annotations

import contextlib
import threading
import time

import psutil


class PeakMemory:
    """Track the peak resident memory (and CUDA peak, where there is a GPU) while a block runs.

    A sampling thread reads RSS every `interval` seconds; ru_maxrss would give the whole process's
    lifetime peak, not this stage's.
    """

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.peak_mb = 0.0
        self.cuda_peak_mb: float | None = None
        self._stop = threading.Event()
        self._proc = psutil.Process()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self._proc.memory_info().rss / 2**20)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self.peak_mb = self._proc.memory_info().rss / 2**20
        self._cuda = _cuda_reset()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._proc.memory_info().rss / 2**20)
        if self._cuda:
            import torch

            self.cuda_peak_mb = torch.cuda.max_memory_allocated() / 2**20


def _cuda_reset() -> bool:
    try:
        import torch
    except ImportError:
        return False
    if not torch.cuda.is_available():
        return False
    torch.cuda.reset_peak_memory_stats()
    return True


@contextlib.contextmanager
def timer():
    """`with timer() as t: ...; t()` gives the seconds the block took."""
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20
