"""What every stage of a run shares: the spec, the data, one tokenizer, one base model, one embedder,
and one place to report progress. Heavy things load lazily and once."""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from pathlib import Path

from harness import models, signals, throughput, workers
from harness.data import TaskData
from harness.errors import HarnessError
from harness.measure import MemoryLedger
from harness.parts.example_selector import ExampleSelector
from harness.parts.prompt_builder import PromptBuilder
from harness.parts.retriever import Retriever
from harness.retrieval import Embedder

HEARTBEAT_S = 30.0  # a run that has said nothing for this long says that it is still working, and where


def stage_name(system: str, part: str, n_test: int = 0) -> str:
    """The name a system's stage is reported under (progress lines, and the estimate's ETA against them)."""
    if part == "build":
        return f"{system}: build"
    if part == "evaluate":
        return f"{system}: evaluate {n_test} questions"
    n = min(throughput.SAMPLE, n_test)
    sizes = [b for b in throughput.BATCH_SIZES if b <= n]
    return f"{system}: throughput probe ({len(sizes)} batch sizes, {n} questions each)"


def clock(seconds: float | None) -> str:
    """Seconds as a progress line shows them: `45 s`, `3 min 05 s`, `1 h 02 min`."""
    if seconds is None:
        return "unknown"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


class Reporter:
    """Stages report progress through here and never print, so a run works in a terminal, a test or a notebook.
    Within `running()` (a whole run), nothing stays silent for more than `heartbeat_s`: one long step (a forward
    pass on a long prompt, loading big weights, scoring) still shows that the run is alive, in which stage, and
    for how long."""

    def __init__(self, sink=None, heartbeat_s: float = HEARTBEAT_S):
        self.sink = sink or (lambda line: None)
        self.lines: list[str] = []
        self.heartbeat_s = heartbeat_s
        self._last = time.monotonic()
        self._lock = threading.Lock()
        self._stages: list[tuple[str, float]] = []  # the stages open now (name, start), innermost last
        self.expected: dict[str, float] = {}  # stage name -> estimated seconds (harness.estimate)
        self._done: set[str] = set()

    def expect(self, estimates: dict[str, float]) -> None:
        """Estimated seconds per stage: stage lines then say how long each should take and how much of the run
        is left, and progress lines show an ETA."""
        self.expected = dict(estimates)

    def left_s(self, current: str | None = None, elapsed: float = 0.0) -> float | None:
        """Estimated seconds left in the run: the stages not yet done, the current one less what it has run."""
        if not self.expected:
            return None
        left = sum(s for n, s in self.expected.items() if n not in self._done and n != current)
        if current in self.expected:
            left += max(0.0, self.expected[current] - elapsed)
        return left

    def log(self, message: str) -> None:
        with self._lock:
            self._last = time.monotonic()
            self.lines.append(message)
            self.sink(message)

    @contextlib.contextmanager
    def stage(self, name: str):
        signals.check()  # a SIGTERM dropped in a finalizer stops the run here (harness.signals)
        start = time.perf_counter()
        expected = self.expected.get(name)
        if expected is not None:
            self.log(f"▸ {name} (estimate {clock(expected)}; run ETA {clock(self.left_s(name))})")
        else:
            self.log(f"▸ {name}")
        self._stages.append((name, start))
        try:
            yield
        finally:
            self._stages.remove((name, start))
            self._done.add(name)
        took = time.perf_counter() - start
        against = f" (estimated {clock(expected)})" if expected is not None else ""
        self.log(f"  {name}: done in {took:.1f} s{against}")

    @contextlib.contextmanager
    def running(self):
        """A heartbeat for the block: a line whenever nothing was said for `heartbeat_s`."""
        stop = threading.Event()
        began = time.perf_counter()

        def heartbeat() -> None:
            while not stop.wait(min(1.0, self.heartbeat_s / 4)):
                if time.monotonic() - self._last >= self.heartbeat_s and not stop.is_set():
                    stages = list(self._stages)
                    name, start = stages[-1] if stages else ("run", began)
                    took = time.perf_counter() - start
                    self.log(f"  {name}: still working ({took:.0f} s so far{self._eta(name, took)})")

        beat = threading.Thread(target=heartbeat, name="harness-heartbeat", daemon=True)
        beat.start()
        try:
            yield
        finally:
            stop.set()
            beat.join()

    def _eta(self, stage: str, elapsed: float) -> str:
        """`; estimated 2 min 10 s, run ETA 5 min` for a stage the estimate covers, else ``."""
        stages = [n for n, _ in self._stages]
        outer = next((n for n in reversed(stages) if n in self.expected), None)
        if outer is None:
            return ""
        start = next(s for n, s in self._stages if n == outer)
        took = time.perf_counter() - start
        return f"; estimated {clock(self.expected[outer])}, run ETA {clock(self.left_s(outer, took))}"

    def progress(self, name: str, total: int):
        """A callable advancing a counter; logs at most ~10 times so output stays short."""
        state = {"n": 0, "start": time.perf_counter(), "next": 0.1}
        lock = threading.Lock()  # scoring workers (harness.workers) advance it from their own threads

        def advance(step: int = 1) -> None:
            signals.check()
            with lock:
                _advance(step)

        def _advance(step: int) -> None:
            state["n"] += step
            frac = state["n"] / max(total, 1)
            if frac >= state["next"] or state["n"] == total:
                state["next"] = frac + 0.1
                took = time.perf_counter() - state["start"]
                eta = f", ETA {clock(took / state['n'] * (total - state['n']))}" if state["n"] < total else ""
                self.log(f"  {name}: {state['n']}/{total} ({took:.0f} s{eta})")

        return advance


class RunContext:
    """One run's shared state. The parts systems are composed from are built here, once, and handed to every
    system that asks: `prompts` (the PromptBuilder), `retriever()` and `example_selector()`."""

    def __init__(
        self,
        spec,
        data: TaskData,
        model_ref: models.ModelRef,
        reporter: Reporter,
        *,
        indices_dir: Path,
        retrain: bool = False,
        launcher: str = "local",
        reevaluate: bool = False,
    ):
        self.spec, self.data, self.model_ref, self.reporter = spec, data, model_ref, reporter
        self.indices_dir = Path(indices_dir)
        self.retrain = retrain
        self.reevaluate = reevaluate or retrain  # --retrain measures everything again too
        self.limit: int | None = None  # --limit: test questions (and at most as many calibration questions)
        # "local" trains in this process; "accelerate" via `accelerate launch`, whose processes run with
        # "accelerate-process" (harness.train_worker)
        self.launcher = launcher
        self.device = models.device(spec.device)  # the task's `device:`, or `--device`
        self.dtype = models.eval_dtype(spec.evaluation.dtype, self.device)
        # What adapters are trained on (train, dev, corpus): their key; the test split (cut by --limit) is not in it.
        self.training_data_fingerprint = data.fingerprint(("train", "dev"))
        self.tokenizer = models.load_tokenizer(model_ref)
        # Memory per system as if it ran alone (serving and training peaks): see harness.measure.MemoryLedger.
        # Made before any model loads (validate may load the base model), so it freezes only library state: every
        # context a run, a sweep worker, a scenario stage or a training job builds collects quickly from here on.
        self.memory = MemoryLedger()
        self._base = None
        self._embedder = None
        self.prompts = PromptBuilder(spec, self.tokenizer)
        self._retriever: Retriever | None = None
        self._example_selector: ExampleSelector | None = None

    def log(self, message: str) -> None:
        self.reporter.log(message)

    def scoring_workers(self) -> int:
        """Threads scoring this run's untimed passes side by side (harness.workers), from `evaluation.workers`;
        1 with the vllm backend, which batches on its own."""
        import torch

        ev = self.spec.evaluation
        return workers.resolve(ev.workers, torch.get_num_threads(), self.device) if ev.backend == "hf" else 1

    def for_spec(self, spec) -> RunContext:
        """A context for a sweep variant whose settings are `spec`: this run's data, tokenizer, base model and
        reporter, and its own parts (prompts, retriever, example selector) built from `spec`."""
        return VariantContext(self, spec)

    def base_model(self):
        """The shared model systems evaluate with, in the evaluation precision. bf16 weights rather than
        fp32 weights under bf16 autocast: the matmuls are the same, but autocast re-casts every weight on
        every forward, and the copy in memory is half the size (see docs/performance.md, "bf16 weights
        against autocast"). Log-softmax stays in fp32 (see harness.evaluate)."""
        if self._base is None:
            with self.memory.loading("base model"):
                self._base = models.load_model(self.model_ref, self.dtype, self.device)
        self.memory.use("base model")
        return self._base

    def release_base_model(self) -> None:
        """Drop the shared model (it reloads from disk in a fraction of a second) so that training does not
        hold two copies of the weights at once."""
        self._base = None
        self.memory.unload("base model")
        gc.collect()

    def embedder(self):
        if self._embedder is None:
            try:
                with self.memory.loading("embedder"):
                    self._embedder = Embedder.load(self.spec.rag.embedder)
            except (ValueError, OSError) as e:
                raise HarnessError(f"rag.embedder '{self.spec.rag.embedder}': {e}") from None
        self.memory.use("embedder")
        return self._embedder

    def linear_layer_names(self) -> list[str]:
        return models.linear_layer_names(self.base_model())

    def model_max_length(self) -> int:
        cfg = self.base_model().config
        return int(getattr(cfg, "max_position_embeddings", 2048))

    def use_bf16(self, setting: str) -> bool:
        return setting == "on" or (setting == "auto" and models.bf16_supported(self.device))

    def retriever(self) -> Retriever:
        """The run's retriever: its index is built or loaded once, whichever systems retrieve."""
        if self._retriever is None:
            self._retriever = Retriever(self)
        return self._retriever

    def example_selector(self) -> ExampleSelector:
        """The run's few-shot example selector: the training questions are embedded at most once."""
        if self._example_selector is None:
            # The embedder is looked up at each call, not now: loading it is only needed for `nearest`.
            embed = lambda texts: self.embedder().encode(texts)
            self._example_selector = ExampleSelector(self.data.train, self.spec.fewshot, self.spec.seed, embed)
        return self._example_selector

    def training_callback(self, name: str):
        from transformers import TrainerCallback

        reporter = self.reporter
        began = {}

        def eta(state) -> str:
            start = began.setdefault("t", time.perf_counter())
            took, step = time.perf_counter() - start, max(state.global_step, 1)
            left = took / step * max(0, state.max_steps - state.global_step)
            return f" ({clock(took)}, ETA {clock(left)})"

        class Progress(TrainerCallback):
            def on_train_begin(self, args, state, control, **kw):
                began["t"] = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                signals.check()

            def on_log(self, args, state, control, logs=None, **kw):
                if logs and "loss" in logs:
                    reporter.log(
                        f"  {name}: step {state.global_step}/{state.max_steps} loss {logs['loss']:.4f}{eta(state)}"
                    )
                elif logs and "eval_loss" in logs:
                    reporter.log(
                        f"  {name}: step {state.global_step}/{state.max_steps} validation loss {logs['eval_loss']:.4f}"
                    )

        return Progress()


class VariantContext(RunContext):
    """A sweep variant's context: the parts follow the variant's settings, while the heavy shared state (base
    model, embedder when the variant keeps the run's) stays the run's, loaded once and released for all."""

    def __init__(self, parent: RunContext, spec):
        self.__dict__.update(parent.__dict__)
        self.parent, self.spec = parent, spec
        self.prompts = PromptBuilder(spec, parent.tokenizer)
        self._retriever = None
        self._example_selector = None
        self._embedder = None

    def base_model(self):
        return self.parent.base_model()

    def release_base_model(self) -> None:
        self.parent.release_base_model()

    def embedder(self):
        if self.spec.rag.embedder == self.parent.spec.rag.embedder:
            return self.parent.embedder()
        return super().embedder()
