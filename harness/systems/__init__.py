"""Ways of specialising a model, behind one registry (as peft registers its tuners).

A new way is one module that defines a `System` subclass and registers it with `@register_system(name)`;
the pipeline, statistics and report need no change. A system is a composition of the run's parts
(harness.parts: `ctx.prompts`, `ctx.retriever()`, `ctx.example_selector()`), never a subclass of another
system or a reader of another system's state.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.data import Question
from harness.errors import HarnessError, did_you_mean

SYSTEMS: dict[str, type[System]] = {}


def register_system(*names: str) -> Callable:
    def wrap(cls):
        for name in names:
            if name in SYSTEMS:
                raise ValueError(f"system '{name}' registered twice")
            SYSTEMS[name] = cls
        return cls

    return wrap


@dataclass
class Prompts:
    """What a system sends for each question, plus what it looked up on the way."""

    texts: list[str]
    retrieved: list[list[dict]] | None = None  # per question: doc_id, chunk, score, text
    retrieval_latency_s: list[float] | None = None
    ranked_doc_ids: list[list[str]] | None = None  # top-k document ids before the prompt budget, for recall@k


@dataclass
class BuildInfo:
    build_s: float = 0.0  # seconds spent building in this run (0 when the artifact was reused)
    cached: bool = False
    artifact_mb: float = 0.0
    peak_memory_mb: float | None = None
    training: dict | None = None
    index: dict | None = None
    notes: list[str] = field(default_factory=list)
    # Seconds the artifact took when it was built, in this run or the one that built the cached copy: what the
    # system cost to build, which a warm run's 0 s would hide. None when that earlier run did not record it.
    build_cost_s: float | None = None
    # Under `--launcher accelerate`: the command and configuration training ran with, for the run's manifest.
    launch: dict | None = None


class System:
    kind = "base"

    def __init__(self, name: str, ctx):
        self.name, self.ctx = name, ctx

    def validate(self) -> None:
        """Check settings before any heavy work starts (raise HarnessError)."""

    def build(self) -> BuildInfo:
        return BuildInfo()

    def prompts(self, questions: list[Question]) -> Prompts:
        raise NotImplementedError

    @contextlib.contextmanager
    def model(self):
        """The model to evaluate with, for the duration of the block."""
        yield self.ctx.base_model()

    def weights_identity(self) -> str:
        """Identifies the weights `model()` evaluates with (for reusing evaluations); call after build()."""
        return self.ctx.model_ref.fingerprint


def _load_all() -> None:
    # Importing a module registers its systems; every module in this package is one way of specialising.
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def available() -> list[str]:
    _load_all()
    return sorted(SYSTEMS)


def make_system(name: str, ctx) -> System:
    _load_all()
    if name not in SYSTEMS:
        hint = did_you_mean(name, SYSTEMS) or ";"
        raise HarnessError(f"unknown system '{name}'{hint} valid systems: {', '.join(sorted(SYSTEMS))}")
    return SYSTEMS[name](name, ctx)
