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
    """Base of every run-data model: unknown keys are kept (a newer harness may add fields an older
    report does not know), and models are filled by assignment as a run proceeds."""

    model_config = ConfigDict(extra="allow", validate_assignment=False)


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

    p50: float
    p95: float
    mean: float


class Retrieval(Record):
    """How often the gold document was among the top-k retrieved chunks' documents."""

    k: int = Field(description="passages retrieved per question")
    recall_at_k: float = Field(description="share of questions whose gold document is in the top k")
    mrr: float = Field(description="mean reciprocal rank of the first chunk of the gold document (0 when absent)")
    n: int | None = Field(default=None, description="questions with a gold document", **_OMIT)


class EvaluationReused(Record):
    """Set when nothing that decides a system's answers changed since an earlier run measured them."""

    measured_at: str = Field(description="ISO time of the run that measured the records")
    seconds: float | None = Field(default=None, description="what that evaluation took")


class BaselineTest(Record):
    """A system against the strongest model-free baseline, paired over the same questions."""

    baseline: str
    metric: str
    diff: float = Field(description="system minus baseline on `metric`")
    p_value: float
    test: str = Field(description="mcnemar (0/1 metrics) or permutation")
    n: int
    significant: bool
    beats: bool = Field(description="significant and diff > 0")


class Comparison(Record):
    """A paired test of two systems on one headline metric; Holm-adjusted over the pairs of that metric."""

    a: str
    b: str
    metric: str
    diff: float = Field(description="a minus b")
    p_value: float = Field(description="the raw paired p-value")
    test: str
    n: int
    p_holm: float = Field(description="Holm-adjusted p-value over every pair on this metric")
    significant: bool = Field(description="p_holm below harness.constants.SIGNIFICANCE_LEVEL")


# ---------------------------------------------------------------- per question


class Passage(Record):
    """A retrieved passage as it went into the prompt."""

    doc_id: str
    chunk: int = Field(description="position of the chunk in its document")
    score: float = Field(description="similarity to the question")
    text: str
    truncated: bool | None = Field(default=None, description="cut to fit the prompt budget", **_OMIT)


class Measurement(Record):
    """What evaluating one question measured: the model's answer and what it cost. Written by evaluate.py
    (plus retrieval fields from the system's prompts); stored as-is in the evaluation cache."""

    id: str
    prediction: str
    latency_s: float | None = Field(description="seconds one user waits: retrieval (if any) + model")
    prompt_tokens: int
    loglikelihoods: list[float] | None = Field(default=None, description="choice tasks: per option", **_OMIT)
    margin: float | None = Field(default=None, description="yes-no: log P(Yes) - log P(No)", **_OMIT)
    new_tokens: int | None = Field(default=None, description="free text: tokens generated", **_OMIT)
    first_token_s: float | None = Field(default=None, description="free text: seconds to the first token", **_OMIT)
    tokens_per_s: float | None = Field(default=None, description="free text: generation speed", **_OMIT)
    retrieved: list[Passage] | None = Field(default=None, description="retrieval systems: passages", **_OMIT)
    ranked_doc_ids: list[str] | None = Field(default=None, description="retrieval: top-k document ids", **_OMIT)
    retrieval_latency_s: float | None = Field(default=None, description="retrieval: embed + search", **_OMIT)
    model_latency_s: float | None = Field(default=None, description="retrieval systems: the model's part", **_OMIT)


class Sample(Record):
    """One line of samples.jsonl: a system's answer to one test question, with its scores."""

    system: str
    id: str
    question: str
    gold: str = Field(description="the first acceptable answer")
    golds: list[str] = Field(description="every acceptable answer")
    prediction: str
    correct: float | None = Field(description="the headline metric's score for this question")
    calibrated_prediction: str | None = Field(default=None, description="yes-no: the answer at the dev threshold")
    latency_s: float | None
    retrieval_latency_s: float | None = None
    category: str | None = None
    doc_id: str | None = None
    margin: float | None = None
    prompt_tokens: int
    scores: dict[str, float | None] = Field(description="every metric's score for this question")
    retrieved: list[Passage] | None = None


# ---------------------------------------------------------------- per system


class SystemResult(Record):
    """A system's entry in results.json. A failed system keeps its entry, with status 'failed' and its error."""

    kind: str = Field(description="prompt, finetune, rag, rag+finetune, oracle, ...")
    status: Literal["ok", "failed"] = "ok"
    error: str | None = Field(default=None, description="the one-line error of a failed system")
    training: dict[str, Any] | None = Field(default=None, description="fine-tuned systems: the training record")
    retrieval: Retrieval | None = None
    retrieval_latency_s: Percentiles | None = None
    evaluation_reused: EvaluationReused | None = None
    build_s: float | None = Field(default=None, description="seconds spent building in this run (0 when reused)")
    cached: bool | None = Field(default=None, description="the artifact was reused from the cache")
    artifact_mb: float | None = Field(default=None, description="adapter / index size on disk")
    build_cost_s: float | None = Field(
        default=None, description="what the artifact took to build, in this run or the one that built it"
    )
    index: dict[str, Any] | None = Field(default=None, description="retrieval systems: the index's build record")
    notes: list[str] = Field(default_factory=list, description="what the report should say about this system")
    peak_memory_mb: float | None = Field(default=None, description="peak RSS while this system was evaluated")
    cuda_peak_memory_mb: float | None = Field(default=None, **_OMIT)
    metrics: dict[str, Interval] = Field(default_factory=dict)
    latency_s: Percentiles | None = None
    prompt_tokens_mean: float | None = None
    first_token_s: Percentiles | None = Field(default=None, **_OMIT)
    tokens_per_s: Percentiles | None = Field(default=None, **_OMIT)
    model_latency_s: Percentiles | None = Field(default=None, **_OMIT)
    vs_best_baseline: BaselineTest | None = None
    traceback: str | None = Field(default=None, description="kept for errors.log, not written", exclude=True)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class BaselineResult(Record):
    """A model-free baseline: its headline metric, with interval."""

    metrics: dict[str, Interval]
    description: str


class Settings(Record):
    threads: int
    batch_size: int
    dtype: str
    warmup: int
    device: str
    calibration: str | None = None
    seconds: float | None = Field(default=None, description="wall time of build + evaluate for all systems")


class RunResults(Record):
    """results.json: the whole run's figures."""

    task: str
    run_id: str
    created: str
    answer_format: str
    headline_metric: str
    n_test: int
    seed: int
    model: str | None = None
    systems: dict[str, SystemResult]
    baselines: dict[str, BaselineResult] = Field(default_factory=dict)
    comparisons: list[Comparison] = Field(default_factory=list)
    settings: Settings | None = None

    def dump(self) -> dict[str, Any]:
        """The JSON-ready dict written as results.json."""
        return self.model_dump(mode="json")
