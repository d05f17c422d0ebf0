"""Pydantic models of a task YAML, and loading them with errors that name the file, line and field.

A task file is declarative: it names data, prompts, systems and metrics. Every field carries its help
text (as peft's dataclasses do), and every section an example; docs/tasks.md is generated from them
(`python docs/gen_tasks_md.py`), and a test keeps the two equal.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Literal

import jinja2
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from harness.constants import AnswerFormat
from harness.errors import HarnessError, did_you_mean
from harness.yamlfile import load_with_includes, locate


class TaskProblems(HarnessError):
    """Every problem found in a task file or its data, one located line each. `str()` is the first one."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        more = len(self.problems) - 1
        tail = f" (+{more} more problem{'s' * (more > 1)}; `harness tasks validate` lists them all)" if more else ""
        super().__init__(self.problems[0] + tail)


class Strict(BaseModel):
    # use_enum_values: `answer_format` is checked against AnswerFormat but kept as the plain string, so it prints,
    # dumps and hashes exactly as the file wrote it.
    model_config = ConfigDict(extra="forbid", validate_default=True, use_enum_values=True)
    example: ClassVar[str] = ""  # a YAML snippet for docs/tasks.md (validated by the docs test)


def _check_template(source: str) -> str:
    try:
        jinja2.Environment().parse(source)
    except jinja2.TemplateSyntaxError as e:
        raise ValueError(f"invalid Jinja2 template (template line {e.lineno}: {e.message})") from None
    return source


class FieldMap(Strict):
    """Which field of each row holds what. Optional fields are used when a row has them."""

    example: ClassVar[str] = """\
fields: {question: prompt, answer: gold, choices: [A, B, C, D], answer_is: letter, doc_id: source}"""

    id: str | None = Field(
        "id", description="Field holding a unique question id; rows without it are numbered by their line."
    )
    question: str = Field("question", description="Field holding the question text.")
    answer: str = Field(
        "answer", description="Field holding the gold answer: a string, or (free-text) a list of acceptable answers."
    )
    choices: str | list[str] | None = Field(
        "choices",
        description=(
            "Multiple-choice options: one field holding a list, or a list of fields (one option each, e.g. CSV "
            "columns `[A, B, C, D]`). Yes/no tasks always use Yes/No."
        ),
    )
    answer_is: Literal["text", "index", "letter"] = Field(
        "text",
        description=(
            "Multiple-choice: how the answer names the gold option: its `text`, its 0-based `index`, or its "
            "`letter` (A, B, C...)."
        ),
    )
    separator: str | None = Field(
        None,
        description=(
            "Split text cells (CSV answers or choices) on this string, e.g. `|`. A cell holding a JSON list is "
            "always read as a list."
        ),
    )
    doc_id: str | None = Field(
        "doc_id",
        description=(
            "Field holding the id of the corpus document that answers the question (for retrieval metrics and "
            "by-document splits)."
        ),
    )
    category: str | None = Field(
        "category", description="Field holding a category label (for the per-category baseline and breakdowns)."
    )
    split: str | None = Field(
        "split",
        description=(
            "Field naming each row's split (`train`, `dev`/`validation`, `test`); read only with `data.split.by: "
            "given`."
        ),
    )


class HubSource(Strict):
    """A dataset on a `datasets` hub. Offline (the default) this fails at once with a clear message."""

    example: ClassVar[str] = """\
hub: {name: org/dataset, config: default, split: train}"""

    name: str = Field(
        ...,
        description=(
            "A `datasets` hub name, e.g. `org/dataset`. Needs a hub (HF_HUB_OFFLINE=0); offline it fails with a "
            "clear error."
        ),
    )
    config: str | None = Field(None, description="The dataset configuration name.")
    split: str = Field(
        "train",
        description="Which split of the hub dataset to read (the harness makes its own train/dev/test from it).",
    )


class QuestionSource(Strict):
    """Where the questions and gold answers come from: one local file, a file inside a package, or a hub dataset."""

    example: ClassVar[str] = """\
questions:
  path: my-domain/questions.csv
  fields: {question: q, answer: a}"""

    path: str | None = Field(
        None, description="A JSONL, CSV or Parquet file (or a JSON array), relative to the task file's folder."
    )
    package: str | None = Field(None, description="Read `path` from inside this installed Python package instead.")
    hub: HubSource | None = Field(None, description="Read from a `datasets` hub spec instead of a file.")
    format: Literal["auto", "jsonl", "json", "csv", "parquet"] = Field(
        "auto", description="File format; `auto` goes by the extension (.jsonl, .json, .csv, .parquet)."
    )
    fields: FieldMap = Field(
        default_factory=FieldMap, description="Which field holds what (see `data.questions.fields`)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> QuestionSource:
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of `path` or `hub`")
        if self.package and not self.path:
            raise ValueError("`package` needs a `path` inside the package")
        return self


class CorpusSource(Strict):
    """Documents that RAG indexes: a folder of .txt/.md/.html files, or a JSONL file with one document a line."""

    example: ClassVar[str] = """\
corpus: {package: pychoosealicense, path: _licenses, glob: "*.txt", strip_front_matter: true}"""

    path: str = Field(
        ...,
        description=(
            "A folder of .txt/.md/.html documents, or a JSONL file with one document a line; relative to the task "
            "file, or to `package`."
        ),
    )
    package: str | None = Field(None, description="Read `path` from inside this installed Python package.")
    glob: str = Field(
        "*",
        description=(
            "Which files of the folder to read (e.g. `*.txt`, or `**/*.md` for subfolders). A document's id is its "
            "path below the folder, without the extension."
        ),
    )
    exclude: list[str] = Field(default_factory=list, description="File names to leave out (e.g. `__init__.py`).")
    strip_front_matter: bool = Field(
        False, description="Drop a leading `---` YAML front-matter block from each document (metadata, not text)."
    )
    text_field: str = Field("text", description="JSONL corpus: the field holding the document text.")
    id_field: str = Field("doc_id", description="JSONL corpus: the field holding the document id.")
    title_field: str | None = Field("title", description="JSONL corpus: the field holding the title, if any.")


class SplitSpec(Strict):
    """How train / dev / test are made. Ratio splits are seeded, so every run sees the same test questions."""

    example: ClassVar[str] = """\
split: {by: doc, test_fraction: 0.2, dev_fraction: 0.1, seed: 0}"""

    by: Literal["doc", "question", "given"] = Field(
        "doc",
        description=(
            "`doc` holds out whole documents (no test question about a document seen in training); `question` "
            "splits questions at random; `given` uses each row's split field."
        ),
    )
    test_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share of documents (or questions) held out for testing."
    )
    dev_fraction: float = Field(
        0.1, ge=0, lt=1, description="Share held out of training for validation loss and calibration."
    )
    seed: int = Field(0, description="Seed of the split.")

    @model_validator(mode="after")
    def _fractions(self) -> SplitSpec:
        if self.test_fraction + self.dev_fraction >= 1:
            raise ValueError(
                f"test_fraction + dev_fraction must be below 1 (got {self.test_fraction} + {self.dev_fraction})"
            )
        return self


class DataSpec(Strict):
    """Questions, corpus and split."""

    example: ClassVar[str] = """\
data:
  questions: {path: my-domain/questions.jsonl}
  corpus: {path: my-domain/docs, glob: "*.md"}
  split: {by: doc, test_fraction: 0.2}"""

    questions: QuestionSource = Field(..., description="Where the questions and gold answers come from.")
    corpus: CorpusSource | None = Field(
        None, description="Documents that RAG indexes. Without it, RAG indexes the training question-answer pairs."
    )
    split: SplitSpec = Field(default_factory=SplitSpec, description="How train / dev / test are made.")


class AccelerateSpec(Strict):
    """The configuration `harness run --launcher accelerate` writes for `accelerate launch`."""

    example: ClassVar[str] = """\
finetune: {accelerate: {num_processes: 8, distributed_type: FSDP}}"""

    num_processes: int = Field(1, gt=0, description="Training processes (one per GPU).")
    distributed_type: Literal["NO", "MULTI_GPU", "MULTI_CPU", "FSDP", "DEEPSPEED"] = Field(
        "NO", description="Accelerate's distribution: plain DDP (`MULTI_GPU`), FSDP or DeepSpeed."
    )
    mixed_precision: Literal["no", "bf16", "fp16"] = Field(
        "no", description="Mixed precision inside accelerate (the trainer's bf16 setting still applies)."
    )
    deepspeed_stage: int = Field(2, ge=0, le=3, description="ZeRO stage when `distributed_type` is `DEEPSPEED`.")
    num_machines: int = Field(1, gt=0, description="Machines taking part.")


class FinetuneSpec(Strict):
    """Adapter training settings shared by the fine-tuning systems (lora, qlora, dora)."""

    example: ClassVar[str] = """\
finetune: {r: 16, alpha: 32, epochs: 2, learning_rate: 2.0e-4, overrides: {qlora: {learning_rate: 3.0e-4}}}"""

    r: int = Field(16, gt=0, description="LoRA rank.")
    alpha: int = Field(32, gt=0, description="LoRA alpha (scale = alpha / r).")
    dropout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description=(
            "LoRA dropout. 0 by default: a dropout of 0.05 made a CPU training step ~25% slower, and a run of one "
            "or two epochs does not overfit."
        ),
    )
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Module names to adapt, or `all-linear`."
    )
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate (cosine schedule with warm-up).")
    epochs: float = Field(2.0, gt=0, description="Passes over the training split.")
    batch_size: int = Field(8, gt=0, description="Examples per optimiser step.")
    max_length: int = Field(
        512,
        gt=8,
        description="Longest training sequence in tokens; longer examples are truncated from the left of the prompt.",
    )
    packing: bool = Field(False, description="Pack several examples into one sequence.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory.")
    bf16: Literal["auto", "on", "off"] = Field(
        "auto", description="bf16 autocast: `auto` uses it where the CPU/GPU supports it."
    )
    logging_steps: int = Field(10, gt=0, description="Log training and validation loss every this many steps.")
    validation_examples: int = Field(
        40, gt=0, description="Dev examples the validation loss is computed on (at each logged step)."
    )
    objective: Literal["supervised-qa", "corpus", "both"] = Field(
        "supervised-qa",
        description=(
            "`supervised-qa` trains on the training questions (loss on the answer only); `corpus` continues "
            "pre-training on the corpus text (unsupervised knowledge injection); `both` does the corpus pass "
            "first, then the questions, on one adapter."
        ),
    )
    corpus_epochs: float = Field(
        1.0, gt=0, description="Passes over the corpus when `objective` is `corpus` or `both`."
    )
    corpus_chunk_tokens: int = Field(
        256, gt=16, description="Length in model tokens of the corpus pieces used for continued pre-training."
    )
    accelerate: AccelerateSpec = Field(
        default_factory=lambda: AccelerateSpec(),
        description="How `--launcher accelerate` runs training (processes, distribution, DeepSpeed).",
    )
    overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per-method overrides of the fields above, e.g. `{qlora: {learning_rate: 3.0e-4}}`.",
    )

    @field_validator("overrides")
    @classmethod
    def _overrides(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        # Only the fields are checked here; whether each key names a fine-tuning method is a question for the
        # systems registry, asked in harness.checks.
        known = [n for n in cls.model_fields if n != "overrides"]
        for method, extra in v.items():
            for key in extra:
                if key not in known:
                    raise ValueError(f"{method}: unknown field '{key}'{did_you_mean(key, known)}")
        return v

    def for_method(self, method: str) -> FinetuneSpec:
        extra = self.overrides.get(method, {})
        return FinetuneSpec.model_validate({**self.model_dump(exclude={"overrides"}), **extra})


class RagSpec(Strict):
    """Retrieval settings: chunking, embedder, FAISS index and the prompt that carries the passages."""

    example: ClassVar[str] = """\
rag: {chunk_tokens: 200, overlap: 32, k: 4, index: hnsw}"""

    embedder: str = Field(
        "default",
        description="Sentence-transformers model: `default` (the packaged all-MiniLM-L6-v2), a folder, or a hub id.",
    )
    chunk_tokens: int = Field(
        200, gt=0, description="Chunk length in embedder tokens (must fit the embedder's window)."
    )
    overlap: int = Field(32, ge=0, description="Tokens shared by consecutive chunks (less than chunk_tokens).")
    k: int = Field(4, gt=0, description="Passages put into the prompt.")
    index: Literal["flat", "hnsw", "ivf"] = Field("flat", description="FAISS index type.")
    nlist: int | None = Field(None, gt=0, description="IVF: number of cells (default about 4*sqrt(chunks)).")
    nprobe: int = Field(8, gt=0, description="IVF: cells searched per query.")
    hnsw_m: int = Field(32, gt=0, description="HNSW: neighbours per node.")
    max_prompt_tokens: int = Field(
        2048,
        gt=64,
        description=(
            "Most LLM tokens a RAG prompt may take; passages that do not fit are cut or dropped, never the system "
            "prompt or question."
        ),
    )
    context_template: str = Field(
        "Passages:\n{% for p in passages %}[{{ loop.index }}] {{ p.text }}\n\n{% endfor %}Question: {{ question }}",
        description=(
            "Jinja2 template of the user turn with retrieved `passages` (each has text, doc_id, score) and the "
            "`question`."
        ),
    )

    @field_validator("context_template")
    @classmethod
    def _context_template(cls, v: str) -> str:
        return _check_template(v)

    @model_validator(mode="after")
    def _overlap(self) -> RagSpec:
        if self.overlap >= self.chunk_tokens:
            raise ValueError(f"overlap ({self.overlap}) must be smaller than chunk_tokens ({self.chunk_tokens})")
        return self


class FewshotSpec(Strict):
    """Few-shot prompting: k solved training questions go into the prompt as earlier chat turns."""

    example: ClassVar[str] = """\
fewshot: {k: 4, selection: nearest}"""

    k: int = Field(
        4,
        gt=0,
        description="Solved examples per prompt, each a user turn (question) and an assistant turn (gold answer).",
    )
    selection: Literal["random", "nearest"] = Field(
        "random",
        description=(
            "`random`: k training questions drawn per question, seeded by `seed` and the question id; `nearest`: "
            "the k training questions most similar to the question (embedded with `rag.embedder`). Examples only "
            "ever come from the training split."
        ),
    )


class PreferenceFields(Strict):
    """Which field of each preference-file row holds what."""

    example: ClassVar[str] = """\
fields: {prompt: question, chosen: good, rejected: bad}"""

    prompt: str = Field(
        "prompt",
        description=(
            "Field holding the user's question (the system prompt and chat template are added, as at evaluation)."
        ),
    )
    chosen: str = Field("chosen", description="Field holding the preferred answer.")
    rejected: str = Field("rejected", description="Field holding the dispreferred answer.")


class PreferenceSpec(Strict):
    """Preference tuning (dpo, orpo): a LoRA adapter trained with trl's preference trainers. The adapter's shape
    (r, alpha, target modules, max_length) comes from `finetune`."""

    example: ClassVar[str] = """\
preference: {path: my-domain/pairs.jsonl, start_from: sft, beta: 0.1}"""

    path: str | None = Field(
        None,
        description=(
            "A JSONL (or JSON, CSV, Parquet) file of preference pairs, relative to the task file. Without it, "
            "pairs are made from the training split: chosen is the gold answer, rejected a wrong answer the base "
            "model gives (or a wrong option)."
        ),
    )
    fields: PreferenceFields = Field(
        default_factory=PreferenceFields,
        description="Which field holds the prompt, the chosen and the rejected answer (see `preference.fields`).",
    )
    start_from: Literal["sft", "base"] = Field(
        "sft",
        description=(
            "dpo: continue the supervised `lora` adapter (trained first, or reused from the cache), or start a new "
            "adapter on the base model. orpo always starts from the base model (its loss includes the supervised "
            "term)."
        ),
    )
    beta: float = Field(
        0.1,
        gt=0,
        description="DPO: how far the policy may move from the reference; ORPO: weight of the odds-ratio term.",
    )
    epochs: float = Field(1.0, gt=0, description="Passes over the preference pairs.")
    learning_rate: float = Field(5e-5, gt=0, description="Peak learning rate (cosine schedule with warm-up).")
    batch_size: int = Field(4, gt=0, description="Pairs per optimiser step.")
    max_pairs: int | None = Field(
        None, gt=0, description="Train on at most this many pairs (a seeded sample), to bound training time."
    )


class EvalSpec(Strict):
    """Evaluation and measurement settings."""

    example: ClassVar[str] = """\
evaluation: {batch_size: 1, max_new_tokens: 16, bootstrap: 2000}"""

    batch_size: int = Field(
        1, gt=0, description="Questions per forward pass. 1 measures the latency a single user sees."
    )
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="Evaluation precision: `auto` uses bf16 where supported."
    )
    warmup: int = Field(2, ge=0, description="Questions run before timing starts.")
    max_new_tokens: int = Field(32, gt=0, description="Free-text: longest generated answer.")
    calibration: Literal["dev-threshold", "contextual", "none"] = Field(
        "dev-threshold",
        description=(
            "Yes/no calibrated accuracy: `dev-threshold` fits a decision threshold on the dev split's Yes-No "
            "margin; `contextual` subtracts the margin the system gives content-free questions (`N/A`, empty, "
            '`[MASK]`), as in Zhao et al. 2021 "Calibrate Before Use"; `none` skips it.'
        ),
    )
    calibration_limit: int = Field(80, gt=0, description="Most dev questions used for calibration.")
    bootstrap: int = Field(2000, gt=0, description="Bootstrap resamples for the 95% intervals.")


class TaskSpec(Strict):
    """A task file. Only `name`, `answer_format` and `data.questions` are required; `include:` pulls in shared
    settings first (a file name or a list, relative to this file; mappings merge, later files and this file win)."""

    example: ClassVar[str] = """\
# harness run my-domain
name: my-domain
include: _shared/defaults.yaml
description: Short answers about my domain.
answer_format: free-text
data:
  questions: {path: my-domain/questions.jsonl}
system_prompt: Answer with a few words only.
metrics: [exact_match, token_f1]"""

    name: str = Field(
        ..., pattern=r"^[a-z0-9][a-z0-9_.-]*$", description="Task name (lower case, digits, `-`, `_`, `.`)."
    )
    description: str = Field("", description="One line on what the task asks.")
    answer_format: AnswerFormat = Field(
        ...,
        description=(
            "`yes-no` or `multiple-choice` (choice by log-likelihood, scored by accuracy), or `free-text` "
            "(generation, scored by exact match, token F1, ROUGE-L and embedding similarity)."
        ),
    )
    data: DataSpec = Field(..., description="Questions, corpus and split.")
    system_prompt: str = Field("", description="The system turn every system gets.")
    question_template: str = Field(
        "{{ question }}", description="Jinja2 template of the user turn from a question row (`question`, `choices`)."
    )
    model: str = Field(
        "default",
        description=(
            "`default` (the embedded SmolLM2-135M-Instruct), a model folder (relative to the task file or the "
            "working directory), or a hub id."
        ),
    )
    systems: list[str] = Field(
        default_factory=lambda: ["prompt", "lora", "rag"],
        description="Systems `harness run` builds when `--systems` is not given.",
    )
    finetune: FinetuneSpec = Field(
        default_factory=FinetuneSpec, description="Adapter training settings shared by lora/qlora/dora."
    )
    rag: RagSpec = Field(default_factory=RagSpec, description="Retrieval settings.")
    fewshot: FewshotSpec = Field(default_factory=FewshotSpec, description="Few-shot prompting settings.")
    preference: PreferenceSpec = Field(
        default_factory=PreferenceSpec, description="Preference tuning settings (dpo, orpo)."
    )
    evaluation: EvalSpec = Field(default_factory=EvalSpec, description="Evaluation and measurement settings.")
    metrics: list[str] = Field(
        default_factory=list, description="Metrics to report; empty means every metric that fits the answer format."
    )
    seed: int = Field(0, description="Seed for training and sampling.")

    # Set by the loader, not by the file.
    source_path: str | None = Field(None, exclude=True, description="(set by the loader) the task file.")
    _sources: list[str] = PrivateAttr(default_factory=list)  # the task file, then its includes, by precedence

    @field_validator("question_template")
    @classmethod
    def _question_template(cls, v: str) -> str:
        return _check_template(v)

    @field_validator("systems")
    @classmethod
    def _systems(cls, v: list[str]) -> list[str]:
        # Whether each name is a registered system is checked in harness.checks; a repeat is a rule of the list.
        if len(set(v)) != len(v):
            raise ValueError(f"a system is listed twice: {', '.join(v)}")
        return v

    @property
    def folder(self) -> Path:
        return Path(self.source_path).parent if self.source_path else Path.cwd()

    def where(self, field: str) -> str:
        """`file:line: field 'a.b'`, pointing at the file (task or include) and line that set the field."""
        loc = tuple(field.split("."))
        if not self._sources:
            return f"{self.source_path or self.name}: field '{field}'"
        return f"{locate(self._sources, loc)}: field '{field}'"


SECTIONS: list[tuple[str, type[Strict]]] = [
    ("", TaskSpec),
    ("data", DataSpec),
    ("data.questions", QuestionSource),
    ("data.questions.fields", FieldMap),
    ("data.questions.hub", HubSource),
    ("data.corpus", CorpusSource),
    ("data.split", SplitSpec),
    ("finetune", FinetuneSpec),
    ("rag", RagSpec),
    ("fewshot", FewshotSpec),
    ("preference", PreferenceSpec),
    ("preference.fields", PreferenceFields),
    ("evaluation", EvalSpec),
]


# ---------------------------------------------------------------- validation messages


def _known_fields(loc: tuple) -> list[str]:
    """The valid keys of the section where an unknown key was found."""
    current: Any = TaskSpec
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
        return [n for n in current.model_fields if n != "source_path"]
    return []


def _clean_loc(loc: tuple) -> tuple:
    # Union members appear in pydantic's loc as tags like "list[str]" or "literal['all-linear']".
    return tuple(p for p in loc if isinstance(p, int) or not re.search(r"[\[\](]", p))


def _problem(sources: list[str], loc: tuple, errs: list[dict]) -> str:
    first = errs[0]
    field = ".".join(str(p) for p in loc) or "(top level)"
    where = locate(sources, loc)
    if first["type"] == "extra_forbidden":
        known = _known_fields(loc)
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
        f" (got {got!r:.60})" if isinstance(got, (str, int, float, bool)) and first["type"] != "value_error" else ""
    )
    hint = ""
    if first["type"] in ("literal_error", "enum") and isinstance(got, str):
        hint = did_you_mean(got, re.findall(r"'([^']*)'", first.get("ctx", {}).get("expected", "")))
    return f"{where}: field '{field}': {text}{shown}{hint}"


def validation_problems(sources: list[str], err: ValidationError, skip_missing: bool = False) -> list[str]:
    grouped: dict[tuple, list[dict]] = {}
    for e in err.errors():
        if skip_missing and e["type"] == "missing":
            continue
        loc = tuple(e["loc"])
        # the last part of an unknown field's loc is the user's key, even when it looks like a union tag ("a[")
        loc = _clean_loc(loc[:-1]) + loc[-1:] if e["type"] == "extra_forbidden" and loc else _clean_loc(loc)
        grouped.setdefault(loc, []).append(e)
    return [_problem(sources, loc, errs) for loc, errs in grouped.items()]


# ---------------------------------------------------------------- loading


def load_spec(path: Path) -> TaskSpec:
    """Read, merge includes, validate. Raises TaskProblems listing every schema problem, each located."""
    path = Path(path)
    sources: list[str] = []
    data = load_with_includes(path, (), sources)
    data.pop("source_path", None)
    try:
        spec = TaskSpec.model_validate(data)
    except ValidationError as e:
        raise TaskProblems(validation_problems(sources, e)) from None
    spec.source_path = str(path.resolve())
    spec._sources = sources
    model = Path(spec.model).expanduser()
    if spec.model != "default" and not model.is_absolute() and (spec.folder / model).is_dir():
        spec.model = str((spec.folder / model).resolve())  # relative to the task file, like its data
    return spec


def check_include(path: Path) -> str:
    """Check a shared include file (e.g. tasks/_shared/defaults.yaml): known fields and right types, no
    required ones. Returns a one-line summary or raises TaskProblems."""
    path = Path(path)
    sources: list[str] = []
    data = load_with_includes(path, (), sources)
    try:
        TaskSpec.model_validate(data)
    except ValidationError as e:
        problems = validation_problems(sources, e, skip_missing=True)
        if problems:
            raise TaskProblems(problems) from None
    return f"shared include with {len(data)} field{'s' * (len(data) != 1)} ({', '.join(data)})"
