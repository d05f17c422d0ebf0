"""Reading task YAML files: UTF-8 and YAML errors with their line, duplicate keys, `include:` files merged
in order (later wins, mappings merge), finding the file and line that set a field, and turning a schema's
validation errors into messages that name them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from harness.errors import HarnessError, did_you_mean, excerpt


def _decode(path: Path | str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise HarnessError(
            f"{path}:{line}: not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}); save the file as UTF-8"
        ) from None


def _compose(path: Path, text: str):
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        context = getattr(e, "context", None)
        raise HarnessError(f"{path}{where}: invalid YAML ({problem}{f', {context}' if context else ''})") from None


def _duplicate_keys(path: Path, node) -> None:
    """PyYAML keeps the last of two equal keys silently; in a task file that is always a mistake."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    raise HarnessError(
                        f"{path}:{key.start_mark.line + 1}: duplicate key '{key.value}' "
                        f"(first at line {seen[key.value]})"
                    )
                seen[key.value] = key.start_mark.line + 1
            _duplicate_keys(path, value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _duplicate_keys(path, item)


MAX_VALUES = 100_000  # values a task file may expand to once its aliases are resolved
MAX_FILE_BYTES = 2 * 2**20  # a task file (and each include): settings, not data; docs/tasks.md says so
MAX_VALUE_CHARS = 100_000  # one value (a system prompt, a template): a long prompt fits with room to spare


def _long_values(path: Path, node) -> None:
    """A single value larger than MAX_VALUE_CHARS: refused at its line, before anything reads it further."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, yaml.ScalarNode):
            if len(n.value) > MAX_VALUE_CHARS:
                raise HarnessError(
                    f"{path}:{n.start_mark.line + 1}: a value of {len(n.value):,} characters; a value in a task "
                    f"file may have at most {MAX_VALUE_CHARS:,} (questions and documents belong in data files)"
                )
        elif isinstance(n, yaml.MappingNode):
            stack.extend(x for pair in n.value for x in pair)
        elif isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)


def _expanded_size(path: Path, node) -> None:
    """A few lines of anchors and aliases can stand for billions of values (the "billion laughs" document);
    validating or printing them would never end. Count what the aliases expand to, and refuse a bomb."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(n) -> int:
        if id(n) in open_nodes:  # `&a [*a]`: a value that contains itself never ends
            raise HarnessError(
                f"{path}:{n.start_mark.line + 1}: a YAML alias refers to the value that contains "
                "it (a recursive value); a task file cannot hold one"
            )
        if id(n) in sizes:
            return sizes[id(n)]
        open_nodes.add(id(n))
        if isinstance(n, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in n.value)
        elif isinstance(n, yaml.SequenceNode):
            total = 1 + sum(size(v) for v in n.value)
        else:
            total = 1
        open_nodes.discard(id(n))
        sizes[id(n)] = total
        return total

    if size(node) > MAX_VALUES:
        raise HarnessError(
            f"{path}: its YAML aliases (*name) expand to more than {MAX_VALUES:,} values; "
            "a task file this large is refused (write the values out, or shorten it)"
        )


def read_yaml(path: Path) -> dict[str, Any]:
    """One YAML mapping, or a HarnessError naming the file and line."""
    try:
        with open(path, "rb") as fh:  # read at most one byte past the limit: a device or a pipe never ends
            raw = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise HarnessError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise HarnessError(f"{path}: is a folder, not a task file") from None
    except OSError as e:
        raise HarnessError(f"{path}: cannot read ({e.strerror})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise HarnessError(
            f"{path}: over {MAX_FILE_BYTES // 2**20} MB; a task file may be at most {MAX_FILE_BYTES // 2**20} MB "
            "(it holds settings; questions and documents belong in the data files it names)"
        )
    text = _decode(path, raw)
    try:
        return _read_text(path, text)
    except RecursionError:  # PyYAML composes and constructs recursively
        raise HarnessError(
            f"{path}: lists or mappings nested too deeply to read; a task file needs a few levels at most"
        ) from None


def _read_text(path: Path, text: str) -> dict[str, Any]:
    node = _compose(path, text)
    if node is None:
        raise HarnessError(f"{path}: the file is empty (a task file needs at least name, answer_format and data)")
    if not isinstance(node, yaml.MappingNode):
        kind = {yaml.SequenceNode: "a list", yaml.ScalarNode: "a single value"}.get(type(node), "not a mapping")
        raise HarnessError(
            f"{path}:{node.start_mark.line + 1}: a task file must be a mapping of fields "
            f"(name: ..., answer_format: ...), got {kind}"
        )
    _expanded_size(path, node)
    _long_values(path, node)
    _duplicate_keys(path, node)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:  # a construction error (e.g. an unknown tag) after composing succeeded
        raise HarnessError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise HarnessError(f"{path}: field names must be text, got {bad[0]!r}")
    return data


_NODES: dict[tuple[str, int], Any] = {}


def _node_of(path: str):
    p = Path(path)
    try:
        key = (str(p), p.stat().st_mtime_ns)
    except OSError:
        return None
    if key not in _NODES:
        try:
            _NODES[key] = yaml.compose(p.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            _NODES[key] = None
    return _NODES[key]


def _depth_line(path: str, loc: tuple) -> tuple[int, int | None]:
    node, depth, line = _node_of(path), 0, None
    for part in loc:
        nxt = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    nxt, line = value, key.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            nxt = node.value[part]
            line = nxt.start_mark.line + 1
        if nxt is None:
            break
        node, depth = nxt, depth + 1
    return depth, line


def locate(sources: list[str], loc: tuple) -> str:
    """`file:line` of the deepest part of `loc` found, searching the task file and then its includes."""
    best = (0, sources[0], None)
    for src in sources:
        depth, line = _depth_line(src, loc)
        if depth == len(loc) and loc:
            return f"{src}:{line}"
        if depth > best[0]:
            best = (depth, src, line)
    return f"{best[1]}:{best[2]}" if best[2] else str(best[1])


def where(sources: list[str], field: str) -> str:
    """`file:line: field 'a.b'`, pointing at the file (task or include) and line that set the field."""
    return f"{locate(sources, tuple(field.split('.')))}: field '{field}'"


# ---------------------------------------------------------------- includes


def load_with_includes(path: Path, stack: tuple[Path, ...], sources: list[str]) -> dict[str, Any]:
    key = path.resolve()
    data = read_yaml(path)
    includes = data.pop("include", None)
    here = f"{path}:{_depth_line(str(path), ('include',))[1] or 1}"
    if includes is not None:
        if isinstance(includes, str):
            includes = [includes]
        if not isinstance(includes, list) or not includes or not all(isinstance(i, str) for i in includes):
            raise HarnessError(f"{here}: field 'include' must be a file name or a list of file names")
        merged: dict[str, Any] = {}
        for inc in includes:
            if "\x00" in inc:  # no file name holds one (and pathlib raises ValueError on it)
                raise HarnessError(f"{here}: field 'include': {inc!r} is not a file name (it holds a NUL character)")
            inc_path = path.parent / inc
            if inc_path.resolve() in (*stack, key):
                chain = " -> ".join(p.name for p in (*stack, key, inc_path.resolve()))
                raise HarnessError(f"{here}: field 'include': include cycle ({chain})")
            if not inc_path.is_file():
                raise HarnessError(f"{here}: field 'include': {inc} not found (looked at {inc_path})")
            merged = _merge(merged, load_with_includes(inc_path, (*stack, key), sources))
        data = _merge(merged, data)
    sources.insert(0, str(path))  # this file outranks everything it includes
    return data


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def resolve_includes(path: Path) -> dict[str, Any]:
    """A task file's fields with its `include:` files merged under it (mappings merge; later files win)."""
    return load_with_includes(Path(path), (), [])


# ---------------------------------------------------------------- validation messages, located


def _known_fields(root: type[BaseModel], loc: tuple) -> list[str]:
    """The valid keys of the section where an unknown key was found."""
    current: Any = root
    for part in loc[:-1]:
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or isinstance(part, int):
            return []
        field = current.model_fields.get(part)
        if field is None:
            return []
        ann = field.annotation
        current = next(
            (c for c in getattr(ann, "__args__", (ann,)) if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [n for n, f in current.model_fields.items() if not f.exclude]  # not those the loader sets
    return []


def _clean_loc(loc: tuple) -> tuple:
    # Union members appear in pydantic's loc as tags like "list[str]" or "literal['all-linear']".
    return tuple(p for p in loc if isinstance(p, int) or not re.search(r"[\[\](]", p))


def _problem(root: type[BaseModel], sources: list[str], loc: tuple, errs: list[dict]) -> str:
    first = errs[0]
    field = ".".join(str(p) for p in loc) or "(top level)"
    where = locate(sources, loc)
    if first["type"] == "extra_forbidden":
        known = _known_fields(root, loc)
        hint = did_you_mean(loc[-1], known) or (f"; valid fields here: {', '.join(known)}" if known else "")
        return f"{where}: unknown field '{field}'{hint}"
    if first["type"] == "missing":
        return f"{where}: field '{field}' is required"
    msgs = []
    for e in errs:
        m = e["msg"].removeprefix("Value error, ")
        m = re.sub(r"valid dictionary or instance of \w+", "mapping (key: value lines)", m)
        msgs.append(m if not msgs else m.removeprefix("Input should be "))
    text = ", or ".join(dict.fromkeys(msgs))
    got = first.get("input")
    shown = (
        f" (got {excerpt(got)})" if isinstance(got, (str, int, float, bool)) and first["type"] != "value_error" else ""
    )
    hint = ""
    if first["type"] in ("literal_error", "enum") and isinstance(got, str):
        hint = did_you_mean(got, re.findall(r"'([^']*)'", first.get("ctx", {}).get("expected", "")))
    return f"{where}: field '{field}': {text}{shown}{hint}"


def validation_problems(
    root: type[BaseModel], sources: list[str], err: ValidationError, skip_missing: bool = False
) -> list[str]:
    """One line per problem pydantic found validating `root` from the YAML `sources` (the file, then its
    includes): the file and line that set the field, the field, what is wrong, and a did-you-mean."""
    grouped: dict[tuple, list[dict]] = {}
    for e in err.errors():
        if skip_missing and e["type"] == "missing":
            continue
        loc = tuple(e["loc"])
        # the last part of an unknown field's loc is the user's key, even when it looks like a union tag ("a[")
        loc = _clean_loc(loc[:-1]) + loc[-1:] if e["type"] == "extra_forbidden" and loc else _clean_loc(loc)
        grouped.setdefault(loc, []).append(e)
    return [_problem(root, sources, loc, errs) for loc, errs in grouped.items()]
