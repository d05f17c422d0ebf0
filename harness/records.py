"""The run's data contract: every figure a run produces is one of these typed models.

Writers fill them (evaluate -> run -> results); `results.json`, `samples.jsonl` and the evaluation cache are
their JSON dumps; the report, the terminal table and `harness compare` read them back with `model_validate`.
`docs/results-format.md` is generated from these classes (docs/gen_results_md.py), and a test keeps the two
equal, so the format is written down once.

Fields that only some systems have (generation speed for free text, retrieval figures for rag) are left out
of the JSON when empty rather than written as null, as the run directory has always done.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_OMIT = {"exclude_if": lambda v: v is None}  # a key that is absent, not null, when it does not apply


class Record(BaseModel):
    """Base of every run-data model. Each is built once, from finished parts (a measurement, its scores, a
    build record), never filled in bit by bit. Unknown keys are kept, so a report can read a run written by a
    newer harness that added fields."""

    model_config = ConfigDict(extra="allow")


# ---------------------------------------------------------------- small figures


class Interval(Record):
    """A metric with its 95% percentile-bootstrap interval."""

    value: float | None = Field(description="the metric over all test questions")
    ci_low: float | None = Field(default=None, description="lower end of the 95% bootstrap interval")
    ci_high: float | None = Field(default=None, description="upper end of the 95% bootstrap interval")
    threshold: float | None = Field(
        default=None, description="calibrated_accuracy only: the Yes-No margin above which the answer is Yes", **_OMIT
    )


class Percentiles(Record):
    """Seconds (or tokens/s) per question: median, 95th percentile and mean."""

    p50: float = Field(description="median")
    p95: float = Field(description="95th percentile (linear interpolation)")
    mean: float = Field(description="mean")


class Retrieval(Record):
    """How often the gold document was among the top-k retrieved chunks' documents."""

    k: int = Field(description="passages retrieved per question")
    recall_at_k: float = Field(description="share of questions whose gold document is in the top k")
    mrr: float = Field(description="mean reciprocal rank of the first chunk of the gold document (0 when absent)")
    n: int | None = Field(default=None, description="questions with a gold document", **_OMIT)


class EvaluationReused(Record):
    """Set when nothing that decides a system's answers changed since an earlier run measured them."""

    measured_at: str = Field(description="ISO time of the run that measured the answers")
    seconds: float | None = Field(default=None, description="what that evaluation took")


class BaselineTest(Record):
    """A system against the strongest model-free baseline, paired over the same questions."""

    baseline: str = Field(description="the baseline with the highest headline metric (one with per-question scores)")
    metric: str = Field(description="the headline metric")
    diff: float = Field(description="system minus baseline on `metric`")
    p_value: float = Field(description="the paired p-value")
    test: str = Field(description="mcnemar-exact / mcnemar-chi2 (0/1 metrics) or paired-permutation")
    n: int = Field(description="questions compared")
    significant: bool = Field(
        description="p_value below harness.constants.SIGNIFICANCE_LEVEL (a single test: no correction)"
    )
    beats: bool = Field(description="significant and diff > 0")


class Comparison(Record):
    """A paired test of two systems on one headline metric; Holm-adjusted over the pairs of that metric."""

    a: str = Field(description="a system (pairs are in name order)")
    b: str = Field(description="the other system")
    metric: str = Field(description="the headline metric, or calibrated_accuracy")
    diff: float = Field(description="a minus b")
    p_value: float = Field(description="the raw paired p-value")
    test: str = Field(description="mcnemar-exact / mcnemar-chi2 (0/1 metrics) or paired-permutation")
    n: int = Field(description="questions both systems answered")
    p_holm: float = Field(description="Holm-adjusted p-value over every pair on this metric")
    significant: bool = Field(description="p_holm below harness.constants.SIGNIFICANCE_LEVEL")


# ---------------------------------------------------------------- per question


class Passage(Record):
    """A retrieved passage as it went into the prompt."""

    doc_id: str = Field(description="the document the chunk comes from")
    chunk: int = Field(description="position of the chunk in its document")
    score: float = Field(description="similarity to the question")
    text: str = Field(description="the chunk's text, as the prompt holds it")
    truncated: bool | None = Field(default=None, description="cut to fit the prompt budget", **_OMIT)


class Measurement(Record):
    """What evaluating one question measured: the model's answer and what it cost. Made by harness.evaluate;
    a retrieval system's measurements get their retrieval fields from harness.run.with_retrieval. Stored
    as-is in the evaluation cache."""

    id: str = Field(description="the question's id")
    prediction: str = Field(description="the chosen option, or the generated text")
    latency_s: float | None = Field(description="seconds one user waits: retrieval (if any) + model")
    prompt_tokens: int = Field(description="tokens of the prompt the model saw")
    loglikelihoods: list[float] | None = Field(default=None, description="choice tasks: per option", **_OMIT)
    margin: float | None = Field(default=None, description="yes-no: log P(Yes) - log P(No)", **_OMIT)
    new_tokens: int | None = Field(default=None, description="free text: tokens generated", **_OMIT)
    hit_max_new_tokens: bool | None = Field(
        default=None, description="free text: generation stopped at evaluation.max_new_tokens (cut off)", **_OMIT
    )
    first_token_s: float | None = Field(default=None, description="free text: seconds to the first token", **_OMIT)
    tokens_per_s: float | None = Field(default=None, description="free text: generation speed", **_OMIT)
    retrieved: list[Passage] | None = Field(default=None, description="retrieval systems: passages", **_OMIT)
    ranked_doc_ids: list[str] | None = Field(default=None, description="retrieval: top-k document ids", **_OMIT)
    retrieval_latency_s: float | None = Field(default=None, description="retrieval: embed + search", **_OMIT)
    model_latency_s: float | None = Field(default=None, description="retrieval systems: the model's part", **_OMIT)


class Sample(Record):
    """One line of samples.jsonl: a system's answer to one test question, with its scores."""

    system: str = Field(description="the system's name")
    id: str = Field(description="the question's id")
    question: str = Field(description="the question's text")
    gold: str = Field(description="the first acceptable answer")
    golds: list[str] = Field(description="every acceptable answer")
    prediction: str = Field(description="the system's answer: free text with `filters:`, the extracted answer")
    generation: str | None = Field(
        default=None, description="free text with `filters:`: the raw generation the answer was extracted from"
    )
    truncated: bool | None = Field(default=None, description="free text: the generation was cut off at max_new_tokens")
    correct: float | None = Field(description="the headline metric's score for this question")
    calibrated_prediction: str | None = Field(
        default=None, description="yes-no with calibration: the answer at the calibrated threshold"
    )
    latency_s: float | None = Field(description="seconds one user waits: retrieval (if any) + model")
    retrieval_latency_s: float | None = Field(default=None, description="retrieval systems: embed + search")
    category: str | None = Field(default=None, description="the question's category, if the data has one")
    doc_id: str | None = Field(default=None, description="the document that answers the question, if known")
    margin: float | None = Field(default=None, description="yes-no: log P(Yes) - log P(No)")
    prompt_tokens: int = Field(description="tokens of the prompt the model saw")
    scores: dict[str, float | None] = Field(
        description="every metric's score for this question (null: not applicable)"
    )
    retrieved: list[Passage] | None = Field(default=None, description="retrieval systems: the passages in the prompt")


# ---------------------------------------------------------------- per system


class SystemResult(Record):
    """A system's entry in results.json. A failed system keeps its entry, with status 'failed' and its error."""

    kind: str = Field(description="prompt, finetune, rag, rag+finetune, oracle, ...")
    status: Literal["ok", "failed"] = Field(default="ok", description="ok, or failed (see error)")
    error: str | None = Field(default=None, description="the one-line error of a failed system")
    training: dict[str, Any] | None = Field(default=None, description="fine-tuned systems: the training record")
    retrieval: Retrieval | None = Field(default=None, description="retrieval systems: recall@k and MRR")
    retrieval_latency_s: Percentiles | None = Field(default=None, description="retrieval systems: embed + search")
    evaluation_reused: EvaluationReused | None = Field(
        default=None, description="set when the measurements were read back from the evaluation cache"
    )
    build_s: float | None = Field(default=None, description="seconds spent building in this run (0 when reused)")
    cached: bool | None = Field(default=None, description="the artifact was reused from the cache")
    artifact_mb: float | None = Field(default=None, description="adapter / index size on disk")
    build_cost_s: float | None = Field(
        default=None, description="what the artifact took to build, in this run or the one that built it"
    )
    index: dict[str, Any] | None = Field(default=None, description="retrieval systems: the index's build record")
    notes: list[str] = Field(default_factory=list, description="what the report should say about this system")
    peak_memory_mb: float | None = Field(default=None, description="peak RSS while this system was evaluated")
    cuda_peak_memory_mb: float | None = Field(default=None, description="peak CUDA memory, on a GPU", **_OMIT)
    metrics: dict[str, Interval] = Field(default_factory=dict, description="every metric, with its interval")
    latency_s: Percentiles | None = Field(default=None, description="seconds per question a single user waits")
    prompt_tokens_mean: float | None = Field(default=None, description="mean prompt length in tokens")
    first_token_s: Percentiles | None = Field(default=None, description="free text: time to first token", **_OMIT)
    tokens_per_s: Percentiles | None = Field(default=None, description="free text: generation speed", **_OMIT)
    truncated_share: float | None = Field(
        default=None,
        description="free text: share of generations cut off at evaluation.max_new_tokens (the report notes it)",
        **_OMIT,
    )
    model_latency_s: Percentiles | None = Field(
        default=None, description="retrieval systems: the model's part of latency_s", **_OMIT
    )
    vs_best_baseline: BaselineTest | None = Field(
        default=None, description="paired test against the strongest model-free baseline"
    )
    traceback: str | None = Field(default=None, description="kept for errors.log, not written", exclude=True)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class BaselineResult(Record):
    """A model-free baseline (majority answer, category prior, uniform random): its headline metric, with
    interval. The headline value is also written at the top level under the metric's own name."""

    accuracy: float | None = Field(default=None, description="choice tasks: the headline value", **_OMIT)
    token_f1: float | None = Field(default=None, description="free-text tasks: the headline value", **_OMIT)
    has_answer: float | None = Field(default=None, description="short free-text answers: the headline value", **_OMIT)
    metrics: dict[str, Interval] = Field(description="the headline metric with its interval")
    description: str = Field(description="what the baseline answers")


class Settings(Record):
    """How the run measured: what latency and memory figures depend on."""

    threads: int = Field(description="torch threads")
    batch_size: int = Field(description="questions per forward pass in the timed evaluation")
    dtype: str = Field(description="evaluation precision")
    warmup: int = Field(description="untimed questions before timing starts")
    device: str = Field(description="cpu or cuda")
    calibration: str | None = Field(default=None, description="yes-no calibration: dev, contextual or none")
    seconds: float | None = Field(default=None, description="wall time of build + evaluate for all systems")


class SweepVariant(Record):
    """A system of a sweep: the registered system it runs and the settings it runs with."""

    system: str = Field(description="the registered system the variant runs (lora, rag, ...)")
    settings: dict[str, Any] = Field(
        default_factory=dict, description="the swept settings it runs with ('finetune.r' -> 4); empty: the task's own"
    )


class Sweep(Record):
    """What a `harness sweep` varied: the grid, the executor, and each system's settings."""

    grid: dict[str, list[Any]] = Field(description="each swept field ('finetune.r') and the values tried")
    executor: str = Field(description="local (one variant after another in the run's process) or ray")
    variants: dict[str, SweepVariant] = Field(description="one entry per system of the run, by its name")


class RunResults(Record):
    """The whole run's figures: every system, the model-free baselines and the paired comparisons."""

    task: str = Field(description="the task's name")
    run_id: str = Field(description="the run directory's name: time and a random suffix")
    created: str = Field(description="ISO time the run finished")
    answer_format: str = Field(description="yes-no, multiple-choice or free-text")
    headline_metric: str = Field(
        description="the metric systems are ranked and tested on: the task's `headline:`, or the default for its "
        "answer shape (accuracy for choice tasks; has_answer for short free-text answers, rouge_l for long ones)"
    )
    headline_reason: str | None = Field(default=None, description="why that metric is the headline")
    n_test: int = Field(description="test questions evaluated (after --limit)")
    seed: int = Field(description="the seed every stage used")
    model: str | None = Field(default=None, description="the base model, as displayed")
    systems: dict[str, SystemResult] = Field(description="one entry per system, in the order they ran")
    baselines: dict[str, BaselineResult] = Field(default_factory=dict, description="model-free baselines")
    comparisons: list[Comparison] = Field(
        default_factory=list, description="every pair of systems that ran, on each headline metric"
    )
    settings: Settings | None = Field(default=None, description="how the run measured")
    sweep: Sweep | None = Field(default=None, description="set by `harness sweep`: the grid of settings", **_OMIT)

    def dump(self) -> dict[str, Any]:
        """The JSON-ready dict written as results.json."""
        return self.model_dump(mode="json")


# ---------------------------------------------------------------- the format, as readers and the docs see it


def always_written(model: type[Record]) -> list[str]:
    """The keys every JSON dump of `model` has (null or empty where they do not apply)."""
    return [n for n, f in model.model_fields.items() if not f.exclude and f.exclude_if is None]


def written_when_set(model: type[Record]) -> list[str]:
    """The keys left out of `model`'s JSON where they do not apply (a free-text figure, a GPU's memory)."""
    return [n for n, f in model.model_fields.items() if not f.exclude and f.exclude_if is not None]
