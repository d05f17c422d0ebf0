"""`--set section.field=v1,v2` options -> the variants of a sweep, each a system with its own settings.

Every value is validated against the task schema (the section's pydantic model) at plan time, so a bad
`--set` (unknown field, wrong type, empty list) fails in one line naming it, before any model loads.
A system becomes one variant per combination of the settings it reads (`lora[r=4]`, `rag+lora[r=4,k=1]`);
a system that reads none of the swept settings runs once, under its own name.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import ValidationError

from harness import systems as registry
from harness.errors import HarnessError, did_you_mean
from harness.spec import TaskSpec

# The spec sections a sweep may change, and which systems read each. A system missing from READS (a plugin)
# is taken to read all of them: every swept setting makes variants of it, which is never wrong, only slower.
SECTIONS = ("finetune", "rag", "fewshot", "preference")
_ADAPTERS = ("lora", "qlora", "dora")
READS: dict[str, tuple[str, ...]] = {
    "prompt": (),
    "fewshot": ("fewshot",),
    "rag": ("rag",),
    "oracle": ("rag",),
    "rag+fewshot": ("rag", "fewshot"),
    **dict.fromkeys(_ADAPTERS, ("finetune",)),
    **{f"rag+{m}": ("rag", "finetune") for m in _ADAPTERS},
    "dpo": ("finetune", "preference"),
    "orpo": ("finetune", "preference"),
}


@dataclass(frozen=True)
class Setting:
    """One `--set`: a field of a section and the values to try, as typed by the schema (`texts` as given)."""

    section: str
    field: str
    values: tuple
    texts: tuple[str, ...]

    @property
    def path(self) -> str:
        return f"{self.section}.{self.field}"


@dataclass(frozen=True)
class Variant:
    """A system of the sweep: its name in the report, the registered system it runs, and its settings."""

    name: str
    kind: str
    settings: dict[str, object] = field(default_factory=dict)  # "finetune.r" -> 4 (empty: the task's own)

    def spec_for(self, base: TaskSpec) -> TaskSpec:
        return apply(base, self.settings)


def _section_model(section: str):
    return TaskSpec.model_fields[section].annotation


def parse_set(text: str, spec: TaskSpec) -> Setting:
    """`finetune.r=4,16` -> Setting, each value validated by the schema. Raises HarnessError naming the problem."""
    where = f"--set {text}"
    path, eq, values_text = text.partition("=")
    path = path.strip()
    if not eq:
        raise HarnessError(f"{where}: expected section.field=value1,value2 (e.g. --set finetune.r=8,16)")
    section, dot, name = path.partition(".")
    if section not in SECTIONS:
        hint = did_you_mean(section, SECTIONS) or ";"
        raise HarnessError(f"{where}: '{section}' cannot be swept{hint} sweepable sections: {', '.join(SECTIONS)}")
    model = _section_model(section)
    fields = sorted(n for n in model.model_fields if n not in ("accelerate", "overrides", "fields"))
    if not dot or name not in fields:
        hint = did_you_mean(name, fields) or ";"
        raise HarnessError(f"{where}: unknown field '{path}'{hint} {section} fields: {', '.join(fields)}")
    texts = tuple(v.strip() for v in values_text.split(","))
    if not values_text.strip() or any(not t for t in texts):
        raise HarnessError(f"{where}: empty value in the list for '{path}'; give values like {path}=1,2")
    if len(set(texts)) != len(texts):
        raise HarnessError(f"{where}: a value is listed twice for '{path}'")
    current = getattr(spec, section).model_dump()
    values = []
    for t in texts:
        try:
            checked = model.model_validate({**current, name: t})
        except ValidationError as e:
            problem = e.errors()[0]
            raise HarnessError(f"{where}: '{path}' = '{t}': {problem['msg']}") from None
        values.append(getattr(checked, name))
    return Setting(section, name, tuple(values), texts)


def apply(spec: TaskSpec, settings: dict[str, object]) -> TaskSpec:
    """The task spec with `settings` ("section.field" -> value) in place; the task file's location is kept."""
    by_section: dict[str, dict] = {}
    for path, value in settings.items():
        section, name = path.split(".", 1)
        by_section.setdefault(section, {})[name] = value
    updates = {
        s: _section_model(s).model_validate({**getattr(spec, s).model_dump(), **fields})
        for s, fields in by_section.items()
    }
    out = spec.model_copy(update=updates)
    out._sources = list(spec._sources)
    return out


def variants(spec: TaskSpec, systems: list[str], sets: list[str]) -> list[Variant]:
    """The sweep's systems: each of `systems` once per combination of the swept settings it reads."""
    settings = [parse_set(t, spec) for t in sets]
    if not settings:
        raise HarnessError("no --set given; e.g. --set finetune.r=8,16 --set rag.k=1,3")
    seen = [s.path for s in settings]
    twice = sorted({p for p in seen if seen.count(p) > 1})
    if twice:
        raise HarnessError(f"--set {twice[0]} is given twice; list every value once, e.g. {twice[0]}=1,2")
    out: list[Variant] = []
    for system in systems:
        reads = READS.get(system, SECTIONS)
        mine = [s for s in settings if s.section in reads]
        if not mine:
            out.append(Variant(system, system))
            continue
        short = _short_names(mine)
        for combo in itertools.product(*[range(len(s.values)) for s in mine]):
            picked = {s.path: s.values[i] for s, i in zip(mine, combo)}
            label = ",".join(f"{short[s.path]}={s.texts[i]}" for s, i in zip(mine, combo))
            out.append(Variant(f"{system}[{label}]", system, picked))
    unused = [s.path for s in settings if not any(s.path in v.settings for v in out)]
    if unused:
        raise HarnessError(
            f"--set {unused[0]}: none of the systems ({', '.join(systems)}) reads {unused[0].split('.')[0]} "
            "settings; add a system that does (e.g. --systems "
            f"{_reader_of(unused[0].split('.')[0])}) or drop it"
        )
    return out


def _short_names(settings: list[Setting]) -> dict[str, str]:
    """`finetune.r` -> `r` in a variant's name, unless two swept sections share the field name (`rag.k`,
    `fewshot.k`): then the full path."""
    names = [s.field for s in settings]
    return {s.path: s.field if names.count(s.field) == 1 else s.path for s in settings}


def _reader_of(section: str) -> str:
    return next(name for name, reads in READS.items() if section in reads)


def make_systems(variants: list[Variant], ctx) -> list:
    """The run's systems, each constructed once; a variant runs in a context of its own settings (one context
    per distinct combination, so `rag[k=1]` and `rag+fewshot[k=1]` share a retriever)."""
    contexts: dict[str, object] = {}
    out = []
    for v in variants:
        key = repr(sorted(v.settings.items()))
        if v.settings and key not in contexts:
            contexts[key] = ctx.for_spec(v.spec_for(ctx.spec))
        out.append(registry.make_system(v.name, contexts.get(key, ctx), kind=v.kind))
    return out


def read_grid(path: Path) -> tuple[list[str], list[str] | None]:
    """A sweep YAML -> (`--set` texts, systems or None). The file holds `grid:`, a mapping of `section.field`
    (or nested `section: {field: ...}`) to a list of values, and optionally `systems:`:

        systems: [prompt, lora, rag]
        grid:
          finetune.r: [4, 16]
          rag: {k: [1, 3]}
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise HarnessError(f"--grid {path}: cannot read it ({e.strerror})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise HarnessError(f"--grid {path}{where}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("grid"), dict):
        raise HarnessError(f"--grid {path}: expected a mapping with a 'grid:' of section.field: [values]")
    unknown = sorted(set(data) - {"grid", "systems"})
    if unknown:
        raise HarnessError(f"--grid {path}: unknown key '{unknown[0]}'; a sweep file holds grid: and systems:")
    systems = data.get("systems")
    if systems is not None and (not isinstance(systems, list) or not all(isinstance(n, str) for n in systems)):
        raise HarnessError(f"--grid {path}: 'systems' must be a list of system names, e.g. [prompt, lora, rag]")
    sets = []
    for key, values in _flat(data["grid"]).items():
        values = values if isinstance(values, list) else [values]
        if any(isinstance(v, (dict, list)) for v in values):
            raise HarnessError(f"--grid {path}: '{key}' must be a list of plain values, e.g. {key}: [1, 2]")
        texts = ["" if v is None else str(v).lower() if isinstance(v, bool) else str(v) for v in values]
        sets.append(f"{key}={','.join(texts)}")
    return sets, systems


def _flat(mapping: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in mapping.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(_flat(v, key))
        else:
            out[key] = v
    return out
