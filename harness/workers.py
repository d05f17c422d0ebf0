"""Untimed scoring on several threads at once, each with its share of torch's threads.

A 135M-parameter model's matrices are small: a second torch thread on the same forward pass gains less than a
second forward pass run beside it, one thread each (docs/performance.md, "Two scoring workers", has the figures
for both CPU kinds). Python threads, not processes: the weights stay shared, torch releases the GIL inside every
kernel, and nothing has to be loaded twice.

Only passes nobody times run this way (the accuracy pass, calibration): a question scored beside another waits
for the memory bus and caches they share, which is not the latency one user sees (harness.latency times that
alone). Each item keeps its own batch, so its answers depend only on its batch and the thread count per worker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable


def resolve(setting: int | str, threads: int, device: str = "cpu") -> int:
    """Workers for `setting` (`evaluation.workers`): `auto` is one per torch thread, at most 2 (the case that was
    measured), and 1 on a GPU, where one pass already fills the device; a number is taken as given, at most
    `threads`."""
    if device != "cpu":
        return 1
    if setting == "auto":
        return max(1, min(2, threads))
    return max(1, min(int(setting), threads))


def run_shared(items: Iterable, work: Callable, workers: int, grad: bool = False) -> None:
    """`work(item)` for every item: in order on this thread when `workers` is 1, else on `workers` threads that
    take the next item as each finishes one, every thread with `torch threads // workers` torch threads. The first
    exception of any worker stops the others (after their current item) and is raised here. The workers run in
    inference mode, or with gradients on when `grad` (training's split step, harness.parts.answer_loss)."""
    items = list(items)
    if workers <= 1 or len(items) < 2:
        for item in items:
            work(item)
        return
    import torch

    total = torch.get_num_threads()
    share = max(1, total // workers)
    lock, queue, failed = threading.Lock(), iter(items), []
    stop = threading.Event()

    def worker(done: threading.Event) -> None:
        try:
            torch.set_num_threads(share)  # an OpenMP thread count is the calling thread's own
            with torch.enable_grad() if grad else torch.inference_mode():
                while not stop.is_set():
                    with lock:
                        item = next(queue, stop)
                    if item is stop:
                        return
                    try:
                        work(item)
                    except BaseException as e:  # handed to the caller below
                        failed.append(e)
                        stop.set()
        finally:
            done.set()

    done = [threading.Event() for _ in range(workers)]
    threads = [
        threading.Thread(target=worker, args=(d,), daemon=True, name=f"harness-worker-{k}") for k, d in enumerate(done)
    ]
    torch.set_num_threads(share)  # MKL's thread count is the process's: the caller's share while they run
    try:
        for t in threads:
            t.start()
        for d in done:
            d.wait()
    finally:
        # An interrupt (Ctrl-C, SIGTERM) lands here on the caller's thread. The workers stop after their current
        # item and are waited for: a process that exits while a worker is still inside a kernel or a backward pass
        # aborts ("terminate called without an active exception") instead of exiting 130 or 143. Waited for on
        # their own events, not Thread.join: a KeyboardInterrupt inside join() can mark a running thread stopped
        # (CPython 3.11's _wait_for_tstate_lock), and nothing would wait for it then.
        stop.set()
        for t, d in zip(threads, done, strict=True):
            if t.ident is not None:  # started (a thread whose start() failed never sets its event)
                d.wait()
        torch.set_num_threads(total)
    if failed:
        raise failed[0]
