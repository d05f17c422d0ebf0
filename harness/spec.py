"""Pydantic models of a task YAML, and loading them with errors that name the file, line and field.

A task file is declarative: it names data, prompts, systems and metrics. Every field carries its help
text (as peft's dataclasses do), and every section an example; docs/tasks.md is generated from them
(`python docs/gen_tasks_md.py`), and a test keeps the two equal. The `data:` section is in harness.dataspec.

Only fields and the rules between fields are checked here: the schema imports no registry. Whether a name a
plugin registers (a system, a fine-tuning method, a metric) exists is checked in harness.checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import jinja2
from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from harness.constants import AnswerFormat
from harness.dataspec import CorpusSource, DataSpec, FieldMap, HubSource, QuestionSource, SplitSpec, Strict
from harness.engine_spec import AccelerateSpec, VllmSpec
from harness.errors import HarnessError, did_you_mean
from harness.extract import FilterStep
from harness.profile import Profile
from harness.waves import ScenarioSpec
from harness.yamlfile import load_with_includes, validation_problems, where

SEED_MAX = 2**32 - 1  # numpy's seeds are 32-bit: a larger one fails only when training starts


class TaskProblems(HarnessError):
    """Every problem found in a task file or its data, one located line each. `str()` is the first one."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        more = len(self.problems) - 1
        tail = f" (+{more} more problem{'s' * (more > 1)}; `harness tasks validate` lists them all)" if more else ""
        super().__init__(self.problems[0] + tail)


def _check_template(source: str) -> str:
    try:
        jinja2.Environment().parse(source)
    except jinja2.TemplateSyntaxError as e:
        raise ValueError(f"invalid Jinja2 template (template line {e.lineno}: {e.message})") from None
    return source


def workers_setting(v):
    """`auto` or a whole number of 1 or more (`evaluation.workers`, `finetune.workers`)."""
    if v != "auto" and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
        raise ValueError(f"{v!r}: give a number of workers (1 or more) or `auto`")
    return v


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
            "LoRA dropout. 0 by default: dropout makes a CPU training step slower (docs/performance.md, "
            "'LoRA dropout'), and a run of one or two epochs does not overfit."
        ),
    )
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Module names to adapt, or `all-linear`."
    )
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate (cosine schedule with warm-up).")
    epochs: float = Field(2.0, gt=0, description="Passes over the training split.")
    batch_size: int = Field(
        8, gt=0, description="Examples per optimiser step (split over the processes of `--launcher accelerate`)."
    )
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
    workers: int | Literal["auto"] = Field(
        "auto",
        description="Threads that share each training step's rows on a CPU, each with its share of torch's threads "
        "and its part's gradients, added in a fixed order: on a small model two half-batches side by side finish "
        "sooner than the whole batch on two threads. `auto`: 2 where torch has 2 threads or more, else 1. Always 1 "
        "on a GPU, under `--launcher accelerate`, for qlora, with `dropout` above 0 (two threads would draw the "
        "dropout masks in no fixed order) or `gradient_checkpointing`. The kernels round by shape and thread count, "
        "so the adapter differs from one trained with `1` by rounding; the resolved count is in its cache key.",
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

    _workers = field_validator("workers", mode="before")(classmethod(lambda cls, v: workers_setting(v)))

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
evaluation: {batch_size: 1, max_new_tokens: 16, bootstrap: 2000, backend: hf}"""

    batch_size: int = Field(
        1,
        gt=0,
        description="Questions per forward pass when timing the latency sample. 1 measures the latency a single "
        "user sees. (Every test question is scored for accuracy in throughput batches, untimed.)",
    )
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="Evaluation precision: `auto` uses bf16 where supported."
    )
    warmup: int = Field(2, ge=0, description="Questions run before timing starts.")
    latency_sample: int = Field(
        40,
        gt=0,
        description="Test questions timed for latency (p50/p95 with an interval): a seeded sample, the same for "
        "every system of a run, at most the number of test questions.",
    )
    workers: int | Literal["auto"] = Field(
        "auto",
        description="Threads that score the untimed passes (accuracy, calibration) side by side on a CPU, each "
        "with its share of torch's threads: a small model's forward pass gains less from a second thread than "
        "from a second pass beside it. `auto`: 2 where torch has 2 threads or more, else 1; always 1 on a GPU or "
        "with the vllm backend. A number is taken as given, up to torch's threads. The timed latency sample always "
        "runs alone. The kernels round by thread count as by batch shape, so an answer near a tie can differ from "
        "`1` (one after another).",
    )
    max_new_tokens: int = Field(32, gt=0, description="Free-text: longest generated answer.")
    calibration: Literal["dev-threshold", "contextual", "none"] = Field(
        "dev-threshold",
        description=(
            "Yes/no calibrated accuracy: `dev-threshold` fits a decision threshold on the dev split's Yes-No "
            "margin; `contextual` subtracts the margin the system gives content-free questions (`N/A`, empty, "
            '`[MASK]`), as in Zhao et al. 2021 "Calibrate Before Use"; `none` skips it.'
        ),
    )
    calibration_limit: int = Field(
        80,
        gt=0,
        description="Most dev questions used for calibration: a seeded draw with the training split's answer mix, "
        "spread over its categories.",
    )
    bootstrap: int = Field(
        2000, gt=0, le=100_000, description="Bootstrap resamples for the 95% intervals (at most 100,000)."
    )
    backend: Literal["hf", "vllm"] = Field(
        "hf",
        description=(
            "What scores the prompts: `hf` (lm-eval's transformers model, CPU or GPU) or `vllm` (lm-eval's vLLM "
            "model: batched GPU inference, adapters served through vLLM's LoRA support; needs a CUDA GPU and "
            "`pip install vllm`). Both score the same rendered prompts and time each question the same way."
        ),
    )
    vllm: VllmSpec = Field(default_factory=VllmSpec, description="vLLM settings, used when `backend` is `vllm`.")

    _workers = field_validator("workers", mode="before")(classmethod(lambda cls, v: workers_setting(v)))


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
            "(generation, scored by has_answer, exact match, token F1, ROUGE-L and embedding similarity)."
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
    scenario: ScenarioSpec = Field(default_factory=ScenarioSpec, description="`--scenario updates` settings.")
    decision: Profile = Field(
        default_factory=Profile,
        description="Deployment profile the report's recommendation and costs are for (`--profile` overrides it).",
    )
    metrics: list[str] = Field(
        default_factory=list, description="Metrics to report; empty means every metric that fits the answer format."
    )
    filters: list[FilterStep] = Field(
        default_factory=list,
        description=(
            "Free text: steps that extract the answer from each generation before every metric scores it, in "
            "order (see `filters[]`); empty scores the generation as it is. samples.jsonl and the report keep "
            "the raw generation beside the extracted answer."
        ),
    )
    headline: str | None = Field(
        None,
        description=(
            "The metric systems are ranked, compared and tested against the baselines on. Unset: `accuracy` for "
            "choice tasks; for free text, `has_answer` when the gold answers are short (a median of at most 5 "
            "words) and `rouge_l`, compared on `semantic_similarity` too, when they are sentences. A `metrics:` "
            "list without that metric makes its first metric the headline. `harness tasks show` prints the "
            "choice and why."
        ),
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description=(
            "Where models train and run: `auto` (a CUDA GPU when torch sees one, else the CPU), `cpu` or `cuda` "
            "(fails before any work when torch sees no GPU). `harness run --device` overrides it."
        ),
    )
    seed: int = Field(
        0,
        ge=0,
        le=SEED_MAX,
        description="Seed for training and sampling (0 to 4294967295: numpy, which training seeds, takes no more).",
    )

    # Set by the loader, not by the file.
    source_path: str | None = Field(None, exclude=True, description="(set by the loader) the task file.")
    _sources: list[str] = PrivateAttr(default_factory=list)  # the task file, then its includes, by precedence

    @field_validator("question_template")
    @classmethod
    def _question_template(cls, v: str) -> str:
        return _check_template(v)

    @model_validator(mode="after")
    def _filters(self) -> TaskSpec:
        if self.filters and self.answer_format != AnswerFormat.FREE_TEXT:
            raise ValueError(f"'filters' apply to free-text answers only, not to {self.answer_format} tasks")
        return self

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
        if not self._sources:
            return f"{self.source_path or self.name}: field '{field}'"
        return where(self._sources, field)


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
    ("evaluation.vllm", VllmSpec),
    ("decision", Profile),
    ("scenario", ScenarioSpec),
    ("filters[]", FilterStep),
]


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
        raise TaskProblems(validation_problems(TaskSpec, sources, e)) from None
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
        problems = validation_problems(TaskSpec, sources, e, skip_missing=True)
        if problems:
            raise TaskProblems(problems) from None
    return f"shared include with {len(data)} field{'s' * (len(data) != 1)} ({', '.join(data)})"
