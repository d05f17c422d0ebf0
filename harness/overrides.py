"""Command-line options that override a task file's settings (`harness run --batch-size 4 --dtype float32`).

One generic function: each option names the task field it sets by its dotted path; the value is validated by
the task schema exactly as if the task file held it, and a bad value ends in one line naming the option. The
run records what was overridden in its manifest (`overrides`), and `config` there holds the settings used.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from harness.errors import HarnessError
from harness.spec import TaskSpec


def _set(model: BaseModel, path: list[str], value: Any) -> BaseModel:
    """A copy of `model` with the field at `path` set to `value`, validated by the section that owns the field
    (the sections above it are copied, not re-read: paths resolved against the task file stay as they are)."""
    head, rest = path[0], path[1:]
    if head not in type(model).model_fields:
        raise KeyError(head)
    if rest:
        return model.model_copy(update={head: _set(getattr(model, head), rest, value)})
    return type(model).model_validate({**model.model_dump(), head: value})


def apply_overrides(spec: TaskSpec, overrides: dict[str, tuple[str, Any]]) -> tuple[TaskSpec, dict[str, Any]]:
    """`overrides`: dotted task field -> (the option that sets it, its value; None: not given). Returns the
    spec with every given value set, and {field: value} of what was overridden, for the manifest."""
    applied: dict[str, Any] = {}
    for field, (option, value) in overrides.items():
        if value is None:
            continue
        try:
            spec = _set(spec, field.split("."), value)
        except ValidationError as e:
            problem = e.errors()[0]
            raise HarnessError(f"{option} {value}: {field} {problem['msg'][:1].lower()}{problem['msg'][1:]}") from None
        except KeyError:
            raise HarnessError(f"{option}: the task schema has no field {field}") from None
        applied[field] = value
    return spec, applied
