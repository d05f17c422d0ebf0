"""Pydantic models of a task YAML, and loading them with errors that name the file and field.

A task file is declarative: it names data, prompts, systems and metrics. Every field carries its help
text (as peft's dataclasses do); docs/tasks.md is generated from these descriptions.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import HarnessError

AnswerFormat = Literal["yes-no", "multiple-choice", "free-text"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class FieldMap(Strict):
    id: str | None = Field(None, description="Field holding a unique question id (made from the row number when absent).")
    question: str = Field("question", description="Field holding the question text.")
    answer: str = Field("answer", description="Field holding the gold answer: a string, or a list of acceptable answers (free-text).")
    choices: str | None = Field("choices", description="Field holding the list of options (multiple-choice). Yes/no tasks use Yes/No.")
    doc_id: str | None = Field("doc_id", description="Field holding the id of the corpus document that answers the question (for retrieval metrics and by-document splits).")
    category: str | None = Field("category", description="Field holding a category label (for the per-category baseline).")
    split: str | None = Field(None, description="Field naming the split of each row (train/dev/test), when the file carries its own split.")


class HubSource(Strict):
    name: str = Field(..., description="A `datasets` hub name, e.g. `org/dataset`. Needs a hub; offline it fails with a clear error.")
    config: str | None = Field(None, description="The dataset configuration name.")
    split: str = Field("train", description="Which split of the hub dataset to read.")


class QuestionSource(Strict):
    path: str | None = Field(None, description="A JSONL, CSV or Parquet file, relative to the task file's folder.")
    package: str | None = Field(None, description="Read `path` from inside this installed Python package instead.")
    hub: HubSource | None = Field(None, description="Read from a `datasets` hub spec instead of a file.")
    format: Literal["auto", "jsonl", "csv", "parquet"] = Field("auto", description="File format; `auto` goes by the extension.")
    fields: FieldMap = Field(default_factory=FieldMap, description="Which field holds what.")

    @model_validator(mode="after")
    def _one_source(self) -> "QuestionSource":
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of `path` or `hub`")
        if self.package and not self.path:
            raise ValueError("`package` needs a `path` inside the package")
        return self


class CorpusSource(Strict):
    path: str = Field(..., description="A folder of .txt/.md/.html documents, or a JSONL file with one document a line; relative to the task file, or to `package`.")
    package: str | None = Field(None, description="Read `path` from inside this installed Python package.")
    glob: str = Field("*", description="Which files of the folder to read (e.g. `*.txt`).")
    exclude: list[str] = Field(default_factory=list, description="File names to leave out (e.g. `__init__.py`).")
    strip_front_matter: bool = Field(False, description="Drop a leading `---` YAML front-matter block from each document (metadata, not text).")
    text_field: str = Field("text", description="JSONL corpus: the field holding the document text.")
    id_field: str = Field("doc_id", description="JSONL corpus: the field holding the document id.")
    title_field: str | None = Field("title", description="JSONL corpus: the field holding the title, if any.")


class SplitSpec(Strict):
    by: Literal["doc", "question", "given"] = Field("doc", description="`doc` holds out whole documents (no test question about a document seen in training); `question` splits questions at random; `given` uses the split field of the data.")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="Share of documents (or questions) held out for testing.")
    dev_fraction: float = Field(0.1, ge=0, lt=1, description="Share held out of training for validation loss and calibration.")
    seed: int = Field(0, description="Seed of the split. Fixed, so every run sees the same test questions.")

    @model_validator(mode="after")
    def _fractions(self) -> "SplitSpec":
        if self.test_fraction + self.dev_fraction >= 1:
            raise ValueError(f"test_fraction + dev_fraction must be below 1 (got {self.test_fraction} + {self.dev_fraction})")
        return self


class DataSpec(Strict):
    questions: QuestionSource = Field(..., description="Where the questions and gold answers come from.")
    corpus: CorpusSource | None = Field(None, description="Documents that RAG indexes. Without it, RAG indexes the training question-answer pairs.")
    split: SplitSpec = Field(default_factory=SplitSpec, description="How train / dev / test are made.")


class FinetuneSpec(Strict):
    r: int = Field(16, description="LoRA rank.")
    alpha: int = Field(32, description="LoRA alpha (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    target_modules: list[str] | Literal["all-linear"] = Field("all-linear", description="Module names to adapt, or `all-linear`.")
    learning_rate: float = Field(2e-4, description="Peak learning rate (cosine schedule with warm-up).")
    epochs: float = Field(2.0, gt=0, description="Passes over the training split.")
    batch_size: int = Field(8, gt=0, description="Examples per optimiser step.")
    max_length: int = Field(512, gt=8, description="Longest training sequence in tokens; longer examples are truncated from the left of the prompt.")
    packing: bool = Field(False, description="Pack several examples into one sequence.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory.")
    bf16: Literal["auto", "on", "off"] = Field("auto", description="bf16 autocast: `auto` uses it where the CPU/GPU supports it.")
    logging_steps: int = Field(10, gt=0, description="Log training and validation loss every this many steps.")
    overrides: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Per-method overrides, e.g. `{qlora: {learning_rate: 3e-4}}`.")

    @field_validator("r", "alpha")
    @classmethod
    def _positive(cls, v: int, info) -> int:
        if v <= 0:
            raise ValueError(f"{info.field_name} must be a positive integer, got {v}")
        return v

    @field_validator("learning_rate")
    @classmethod
    def _lr(cls, v: float) -> float:
        if not v > 0:
            raise ValueError(f"learning_rate must be positive, got {v}")
        return v

    def for_method(self, method: str) -> "FinetuneSpec":
        extra = self.overrides.get(method, {})
        return FinetuneSpec.model_validate({**self.model_dump(exclude={"overrides"}), **extra})


class RagSpec(Strict):
    embedder: str = Field("default", description="Sentence-transformers model: `default` (the packaged all-MiniLM-L6-v2), a folder, or a hub id.")
    chunk_tokens: int = Field(200, gt=0, description="Chunk length in embedder tokens (must fit the embedder's window).")
    overlap: int = Field(32, ge=0, description="Tokens shared by consecutive chunks.")
    k: int = Field(4, gt=0, description="Passages put into the prompt.")
    index: Literal["flat", "hnsw", "ivf"] = Field("flat", description="FAISS index type.")
    nlist: int | None = Field(None, gt=0, description="IVF: number of cells (default about 4*sqrt(chunks)).")
    nprobe: int = Field(8, gt=0, description="IVF: cells searched per query.")
    hnsw_m: int = Field(32, gt=0, description="HNSW: neighbours per node.")
    max_prompt_tokens: int = Field(2048, gt=64, description="Most LLM tokens a RAG prompt may take; passages that do not fit are cut or dropped, never the system prompt or question.")
    context_template: str = Field(
        "Passages:\n{% for p in passages %}[{{ loop.index }}] {{ p.text }}\n\n{% endfor %}Question: {{ question }}",
        description="Jinja2 template of the user turn with retrieved `passages` (each has text, doc_id, score) and the `question`.")


class EvalSpec(Strict):
    batch_size: int = Field(1, gt=0, description="Questions per forward pass. 1 measures the latency a single user sees.")
    dtype: Literal["auto", "float32", "bfloat16"] = Field("auto", description="Evaluation precision: `auto` uses bf16 where supported.")
    warmup: int = Field(2, ge=0, description="Questions run before timing starts.")
    max_new_tokens: int = Field(32, gt=0, description="Free-text: longest generated answer.")
    calibration: Literal["dev-threshold", "none"] = Field("dev-threshold", description="Yes/no: fit a decision threshold on the dev split's Yes-No margin, and report calibrated accuracy.")
    calibration_limit: int = Field(80, gt=0, description="Most dev questions used for calibration.")
    bootstrap: int = Field(2000, gt=0, description="Bootstrap resamples for the 95% intervals.")


class TaskSpec(Strict):
    name: str = Field(..., pattern=r"^[a-z0-9][a-z0-9_.-]*$", description="Task name (lower case, digits, `-`, `_`, `.`).")
    description: str = Field("", description="One line on what the task asks.")
    answer_format: AnswerFormat = Field(..., description="`yes-no`, `multiple-choice` (choice by log-likelihood) or `free-text` (generation).")
    data: DataSpec = Field(..., description="Questions, corpus and split.")
    system_prompt: str = Field("", description="The system turn every system gets.")
    question_template: str = Field("{{ question }}", description="Jinja2 template of the user turn from a question row (`question`, `choices`).")
    model: str = Field("default", description="`default` (the embedded SmolLM2-135M-Instruct), a model folder, or a hub id.")
    systems: list[str] = Field(default_factory=lambda: ["prompt", "lora", "rag"], description="Systems `harness run` builds when `--systems` is not given.")
    finetune: FinetuneSpec = Field(default_factory=FinetuneSpec, description="Adapter training settings shared by lora/qlora/dora.")
    rag: RagSpec = Field(default_factory=RagSpec, description="Retrieval settings.")
    evaluation: EvalSpec = Field(default_factory=EvalSpec, description="Evaluation and measurement settings.")
    metrics: list[str] = Field(default_factory=list, description="Metrics to report; empty means every metric that fits the answer format.")
    seed: int = Field(0, description="Seed for training and sampling.")

    # Set by the loader, not by the file.
    source_path: str | None = Field(None, exclude=True, description="(set by the loader) the task file.")

    @property
    def folder(self) -> Path:
        return Path(self.source_path).parent if self.source_path else Path.cwd()


# ---------------------------------------------------------------- loading


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise HarnessError(f"{path}: file not found") from None
    except OSError as e:
        raise HarnessError(f"{path}: cannot read ({e.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise HarnessError(f"{path}:{line}: not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise HarnessError(f"{path}{where}: invalid YAML ({problem})") from None
    if data is None:
        raise HarnessError(f"{path}: the file is empty")
    if not isinstance(data, dict):
        raise HarnessError(f"{path}: a task file must be a mapping of fields, got {type(data).__name__}")
    return data


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def resolve_includes(path: Path, _stack: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a task file, merging `include:` files under it (later wins), as lm-eval does."""
    path = path.resolve()
    if path in _stack:
        chain = " -> ".join(p.name for p in (*_stack, path))
        raise HarnessError(f"{_stack[-1]}: include cycle ({chain})")
    data = read_yaml(path)
    includes = data.pop("include", None)
    if includes is None:
        return data
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise HarnessError(f"{path}: field 'include' must be a file name or a list of file names")
    merged: dict[str, Any] = {}
    for inc in includes:
        inc_path = (path.parent / inc)
        if not inc_path.exists():
            raise HarnessError(f"{path}: field 'include': {inc} not found (looked at {inc_path})")
        merged = _merge(merged, resolve_includes(inc_path, (*_stack, path)))
    return _merge(merged, data)


def _known_fields(model: type[BaseModel], loc: tuple) -> list[str]:
    """Walk the schema along `loc` to list the valid keys where an unknown key was found."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return []
        ann = field.annotation
        for cand in getattr(ann, "__args__", (ann,)):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                current = cand
                break
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [n for n in current.model_fields if n != "source_path"]
    return []


def format_validation_error(path: Path | str, err: ValidationError) -> str:
    first = err.errors()[0]
    loc = tuple(first["loc"])
    field = ".".join(str(p) for p in loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        known = _known_fields(TaskSpec, loc)
        guess = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"; did you mean '{guess[0]}'?" if guess else (f"; valid fields: {', '.join(known)}" if known else "")
        msg = f"{path}: unknown field '{field}'{hint}"
    elif first["type"] == "missing":
        msg = f"{path}: field '{field}' is required"
    else:
        text = first["msg"].removeprefix("Value error, ")
        msg = f"{path}: field '{field}': {text} (got {first.get('input')!r:.60})"
    more = len(err.errors()) - 1
    return msg + (f" (+{more} more problem{'s' * (more > 1)})" if more else "")


def load_spec(path: Path) -> TaskSpec:
    data = resolve_includes(path)
    data.pop("source_path", None)
    try:
        spec = TaskSpec.model_validate(data)
    except ValidationError as e:
        raise HarnessError(format_validation_error(path, e)) from None
    spec.source_path = str(Path(path).resolve())
    return spec
