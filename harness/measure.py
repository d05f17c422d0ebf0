"""Timers and memory probes. Every system is measured the same way, by these."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import importlib
import threading
import time

import psutil


class PeakMemory:
    """Track the peak resident memory (and CUDA peak, where there is a GPU) while a block runs.

    A sampling thread reads RSS every `interval` seconds; ru_maxrss would give the whole process's
    lifetime peak, not this stage's. Inside `not_counted()` no reading counts.
    """

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.peak_mb = 0.0
        self.cuda_peak_mb: float | None = None
        self._stop = threading.Event()
        self._proc = psutil.Process()
        self._paused = 0
        self._resumed = 0  # bumped when a pause ends: a reading taken during the pause is dropped
        self._cuda_before = 0.0  # the CUDA peak before a pause (the counter is reset after it)

    def _read(self) -> None:
        resumed = self._resumed
        rss = self._proc.memory_info().rss / 2**20
        if not self._paused and resumed == self._resumed:
            self.peak_mb = max(self.peak_mb, rss)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._read()
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self.peak_mb = self._proc.memory_info().rss / 2**20
        self._cuda = _cuda_reset()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        _ACTIVE.add(self)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        _ACTIVE.discard(self)
        self._stop.set()
        self._thread.join()
        self._read()
        if self._cuda:
            import torch

            self.cuda_peak_mb = max(self._cuda_before, torch.cuda.max_memory_allocated() / 2**20)


_ACTIVE: set[PeakMemory] = set()


@contextlib.contextmanager
def not_counted():
    """A block that no running PeakMemory counts: a pass that scores many questions at once for accuracy or
    calibration (throughput batches, scoring workers side by side) is not what serving one user takes. What it
    leaves allocated is counted once it ends (the freed heap is handed back first)."""
    active = list(_ACTIVE)
    cuda = any(m._cuda for m in active)
    for m in active:
        m._read()  # what ran up to the pause counts
        if m._cuda:
            m._cuda_before = max(m._cuda_before, _cuda_peak_mb())
        m._paused += 1
    try:
        yield
    finally:
        settle()
        if cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        for m in active:
            m._resumed += 1
            m._paused -= 1


def _cuda_peak_mb() -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20


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


_LIBC = None

# What every system of a run imports: the model classes, lm-eval (serving.warm_up answers one question with it
# before any system is measured) and peft (warm_up imports it too).
COMMON_LIBRARIES = ("transformers.modeling_utils", "lm_eval.evaluator", "lm_eval.models.huggingface", "peft")


def settle() -> None:
    """Collect garbage and hand freed heap pages back to the system (glibc's malloc_trim), so that the resident
    size read next is what is alive now, not what an earlier stage freed but the allocator kept."""
    global _LIBC
    gc.collect()
    if _LIBC is None:
        name = ctypes.util.find_library("c")
        try:
            _LIBC = ctypes.CDLL(name) if name else False
        except OSError:
            _LIBC = False
    if _LIBC and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


class Footprint:
    """What one stage of one system needs in memory, whatever ran before it in the process: the process at the
    run's start, the shared things the system uses (base model, embedder, index: each as much as loading it
    added), and what the stage itself added at its peak (activations, an adapter merged in, a training model).
    Read while the stage runs, it is the footprint so far."""

    def __init__(self, ledger: MemoryLedger, mem: PeakMemory, start_mb: float, loaded_at_start: set[str]):
        self.ledger, self.mem, self.start_mb, self.loaded_at_start = ledger, mem, start_mb, loaded_at_start

    @property
    def process_mb(self) -> float:
        return self.ledger.process_mb

    @property
    def resources_mb(self) -> dict[str, float]:
        """The resources this system used that were resident when the stage began (one loaded during the stage
        is in stage_mb already)."""
        sizes = self.ledger.sizes
        return {r: sizes[r] for r in sorted(self.ledger.used & self.loaded_at_start) if r in sizes}

    @property
    def stage_mb(self) -> float:
        return round(max(0.0, self.mem.peak_mb - self.start_mb), 1)

    @property
    def peak_mb(self) -> float:
        return round(self.process_mb + sum(self.resources_mb.values()) + self.stage_mb, 1)

    @property
    def cuda_peak_mb(self) -> float | None:
        return self.mem.cuda_peak_mb


class MemoryLedger:
    """One per run (`ctx.memory`). Memory per system measured as if it ran alone: the process's resident size is
    read once at the start; each shared resource records, when it is first loaded, how much loading it added;
    `footprint()` measures a stage's own peak above what was resident when it began and adds the resources the
    current system used. Something an earlier system loaded and this one does not use is in neither part, and
    memory an earlier stage freed is handed back first (`settle`), so the order of the systems does not matter."""

    def __init__(self):
        self.freeze_libraries()  # collects, and reads the process's resident size
        self.sizes: dict[str, float] = {}
        self.loaded: set[str] = set()
        self.used: set[str] = set()

    def freeze_libraries(self) -> None:
        """Import the libraries every system loads (COMMON_LIBRARIES), collect, and move everything alive into the
        collector's permanent generation (gc.freeze). A ledger is made before any model is loaded: what is alive
        then is library state that lives as long as the process. With half a million library objects out of its
        sight, each later settle() walks only what the run made since: a full collection takes a few hundredths of
        a second instead of about half a second, and a run settles some thirty times (docs/performance.md,
        "Collections"). Libraries only some systems load (sentence-transformers, trl) stay where they were: in
        the resource or stage that imports them, so that they count only for the systems that use them."""
        for module in COMMON_LIBRARIES:
            importlib.import_module(module)
        settle()
        gc.freeze()
        self.process_mb = rss_mb()

    @contextlib.contextmanager
    def loading(self, name: str):
        """Around the first load of a shared resource: records the resident size it added."""
        settle()
        before = rss_mb()
        yield
        settle()
        self.sizes.setdefault(name, max(0.0, round(rss_mb() - before, 1)))
        self.loaded.add(name)
        self.used.add(name)

    def rebase(self) -> None:
        """The process's own part again, once the libraries every system needs are loaded and set up (after a
        warm-up): the resident size less the shared resources loaded so far."""
        settle()
        self.process_mb = round(rss_mb() - sum(self.sizes[r] for r in self.loaded if r in self.sizes), 1)

    def use(self, name: str) -> None:
        self.used.add(name)

    def unload(self, name: str) -> None:
        self.loaded.discard(name)

    def begin_system(self) -> None:
        """A new system starts: nothing is used by it yet."""
        self.used = set()

    @contextlib.contextmanager
    def footprint(self):
        """Measure a stage (building or evaluating one system); yields its Footprint."""
        settle()
        loaded, start = set(self.loaded), rss_mb()
        with PeakMemory() as mem:
            yield Footprint(self, mem, start, loaded)
