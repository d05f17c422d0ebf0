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

from harness.data import Question
from harness.errors import HarnessError, did_you_mean
from harness.parts.adapter_trainer import AdapterTrainer
from harness.parts.outputs import BuildInfo, Prompts

SYSTEMS: dict[str, type[System]] = {}


def register_system(*names: str) -> Callable:
    def wrap(cls):
        for name in names:
            if name in SYSTEMS:
                raise ValueError(f"system '{name}' registered twice")
            SYSTEMS[name] = cls
        return cls

    return wrap


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


class AdapterSystem(System):
    """A system whose weights are a trained adapter: `adapter` (an AdapterTrainer, given by the subclass) builds,
    loads and identifies them. Questions are asked with plain prompts unless the subclass says otherwise."""

    adapter: AdapterTrainer

    def validate(self) -> None:
        self.adapter.validate()

    def build(self) -> BuildInfo:
        return self.adapter.build()

    def prompts(self, questions: list[Question]) -> Prompts:
        return Prompts([self.ctx.prompts.plain(q) for q in questions])

    def model(self):
        return self.adapter.model()

    def weights_identity(self) -> str:
        return self.adapter.weights_identity()


def _load_all() -> None:
    # Importing a module registers its systems; every module in this package is one way of specialising.
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def available() -> list[str]:
    _load_all()
    return sorted(SYSTEMS)


class Renamed:
    """A system under another name (a sweep variant, `lora[r=4]`): everything else is the system's own."""

    def __init__(self, system: System, name: str):
        self._system, self.name = system, name

    def __getattr__(self, attr: str):
        return getattr(self._system, attr)


def make_system(name: str, ctx, kind: str | None = None) -> System:
    """The registered system `kind` (default: `name`), reported under `name`."""
    _load_all()
    kind = kind or name
    if kind not in SYSTEMS:
        hint = did_you_mean(kind, SYSTEMS) or ";"
        raise HarnessError(f"unknown system '{kind}'{hint} valid systems: {', '.join(sorted(SYSTEMS))}")
    system = SYSTEMS[kind](kind, ctx)
    return system if name == kind else Renamed(system, name)
