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

from pydantic import Field

from harness.profile import Profile
from harness.record_base import OMIT as _OMIT
from harness.record_base import Comparison, Record
from harness.scenario_records import Scenario

__all__ = ["Comparison", "Record"]  # defined in harness.record_base, part of this contract

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
    n: int | None = Field(default=None, description="values these figures are of (latency: the timed sample)", **_OMIT)
    p50_ci: list[float] | None = Field(default=None, description="latency: 95% bootstrap interval of p50", **_OMIT)
    p95_ci: list[float] | None = Field(default=None, description="latency: 95% bootstrap interval of p95", **_OMIT)


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
    openmp_wait: str | None = Field(
        default=None,
        description="how idle OpenMP threads waited in that run (harness.openmp): the reused latency was measured "
        "so, whatever this run's settings.openmp_wait says",
        **_OMIT,
    )


class BaselineTest(Record):
    """A system against the strongest model-free baseline, over the same questions (paired by question id)."""

    baseline: str = Field(
        description="the baseline with the highest headline metric (a tie: one that answers each question)"
    )
    metric: str = Field(description="the headline metric")
    diff: float = Field(description="system minus baseline on `metric`")
    p_value: float = Field(description="the raw p-value")
    test: str = Field(
        description="mcnemar-exact / mcnemar-chi2 (0/1 metrics) or paired-permutation against a baseline that "
        "answers; binomial-exact / poisson-binomial-exact against a guessing baseline's chances"
    )
    n: int = Field(description="questions compared")
    p_holm: float | None = Field(
        default=None,
        description="Holm-adjusted p-value over the run's tests of every system against its strongest baseline "
        "(absent from runs written before it existed, whose `significant` followed the raw p)",
    )
    significant: bool = Field(description="p_holm below harness.constants.SIGNIFICANCE_LEVEL")
    beats: bool = Field(description="significant and diff > 0")


# ---------------------------------------------------------------- per question


class Passage(Record):
    """A retrieved passage as it went into the prompt."""

    doc_id: str = Field(description="the document the chunk comes from")
    chunk: int = Field(description="position of the chunk in its document")
    score: float = Field(description="similarity to the question (oracle: 1.0, the gold document given whole)")
    text: str = Field(description="the chunk's text, as the prompt holds it")
    truncated: bool | None = Field(default=None, description="cut to fit the prompt budget", **_OMIT)


class GoldCut(Record):
    """oracle: how much of the question's gold document(s) the prompt budget held."""

    kept_tokens: int = Field(description="tokens of the gold document(s) in the prompt")
    total_tokens: int = Field(description="tokens of the whole gold document(s)")
    kept_chars: int = Field(description="characters of the gold document(s) in the prompt")
    total_chars: int = Field(description="characters of the whole gold document(s)")

    @property
    def cut(self) -> bool:
        return self.kept_tokens < self.total_tokens


class Measurement(Record):
    """What evaluating one question measured: the model's answer and what it cost. Made by harness.evaluate;
    a retrieval system's measurements get their retrieval fields from harness.system_eval.with_retrieval. Stored
    as-is in the evaluation cache."""

    id: str = Field(description="the question's id")
    prediction: str = Field(description="the chosen option, or the generated text")
    latency_s: float | None = Field(description="seconds one user waits (retrieval + model); null: not timed")
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
    gold_context: GoldCut | None = Field(
        default=None, description="oracle: how much of the gold document(s) the prompt held", **_OMIT
    )


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
    latency_s: float | None = Field(description="seconds one user waits (retrieval + model); null: not timed")
    retrieval_latency_s: float | None = Field(default=None, description="retrieval systems: embed + search")
    category: str | None = Field(default=None, description="the question's category, if the data has one")
    doc_id: str | None = Field(default=None, description="the document that answers the question, if known")
    margin: float | None = Field(default=None, description="yes-no: log P(Yes) - log P(No)")
    prompt_tokens: int = Field(description="tokens of the prompt the model saw")
    scores: dict[str, float | None] = Field(
        description="every metric's score for this question (null: not applicable)"
    )
    retrieved: list[Passage] | None = Field(default=None, description="retrieval systems: the passages in the prompt")
    gold_context: GoldCut | None = Field(
        default=None, description="oracle: how much of the gold document(s) the prompt held", **_OMIT
    )
    prompt: str | None = Field(
        default=None, description="the full text the model was given (chat template, passages, examples)"
    )
    stage: int | None = Field(default=None, description="--scenario: the stage the answer was given after", **_OMIT)
    group: str | None = Field(default=None, description="--scenario: new, earlier or future wave", **_OMIT)


# ---------------------------------------------------------------- what a system costs (harness.cost)


class Throughput(Record):
    """Questions per second at the best batch size, measured after the accuracy pass on a fixed seeded sample
    of the system's own test prompts, scored at each batch size tried (the answers are not used)."""

    batch_size: int = Field(description="the batch size with the highest questions per second")
    questions_per_s: float = Field(description="questions per second at that batch size (model only)")
    tokens_per_s: float = Field(description="prompt tokens per second at that batch size")
    tried: dict[str, float] = Field(description="questions per second at each batch size tried")
    n: int = Field(description="questions in the probe's sample")
    seconds: float = Field(description="what the probe took, loading the weights included (its cost to the run)")
    peak_memory_mb: float | None = Field(
        default=None,
        description="peak during the probe, counted as the serving peak is (process, resources, the probe's own)",
    )


class BatchedPass(Record):
    """The accuracy pass (every test question, untimed; latency is timed on a seeded sample, harness.latency): its
    throughput, beside the probe's (Throughput), which the cost model reads."""

    batch_size: int = Field(description="questions per forward pass (harness.system_eval.throughput_batch)")
    workers: int = Field(1, description="threads scoring side by side (harness.workers); 1: one after another")
    n: int = Field(description="questions scored")
    seconds: float = Field(description="wall time of the pass, its first (warm-up) call included")
    questions_per_s: float = Field(description="questions per second over the pass")
    tokens_per_s: float = Field(description="prompt tokens per second over the pass")


class SystemCost(Record):
    """A system's cost in machine-seconds, from its measured figures; monthly figures use the run's profile."""

    build_s: float | None = Field(description="one-time build: training and/or indexing, machine-seconds")
    s_per_1k_batch1: float | None = Field(description="seconds to answer 1,000 questions one at a time")
    s_per_1k_best: float | None = Field(
        description="seconds per 1,000 questions at the best measured batch size (retrieval added per question), "
        "or at batch 1 where the accuracy pass measured that faster"
    )
    best_batch_size: int | None = Field(description="the batch size s_per_1k_best was measured at")
    refresh_s: float = Field(description="seconds to refresh after one document update (0: nothing to refresh)")
    refresh_what: str = Field(description="what a refresh does: nothing, re-index, retrain, or both")
    refresh_basis: Literal["measured", "estimated", "none"] = Field(
        description="measured: from this artifact's recorded index-build or training time; estimated: from the "
        "build time; none: nothing to refresh"
    )
    peak_memory_mb: float | None = Field(description="the larger of the evaluation's and the probe's serving peak")
    machine_s_per_month: float | None = Field(
        description="serving (at the best batch) plus refreshes per month, at the profile"
    )
    usd_per_month: float | None = Field(default=None, description="machine_s_per_month at usd_per_hour", **_OMIT)
    p95_latency_s: float | None = Field(default=None, description="batch-1 latency p95 the latency limit is held to")


class BreakEven(Record):
    """Where the recommendation flips along one axis of the profile, the other axis fixed."""

    axis: Literal["queries_per_day", "updates_per_month"] = Field(description="the profile key varied")
    at: float = Field(description="the value at which the cheapest eligible system changes")
    to: str = Field(description="the system chosen past that value")
    direction: Literal["above", "below"] = Field(description="the flip is above or below the profile's value")


class Decision(Record):
    """The recommendation for the run's deployment profile (harness.cost.decide)."""

    profile: Profile = Field(description="the deployment profile used")
    defaults: list[str] = Field(description="profile keys left at their default")
    recommended: str | None = Field(description="the system to choose (null: none qualifies)")
    most_accurate: str | None = Field(description="the system with the highest headline metric")
    eligible: list[str] = Field(
        description="systems not significantly below the most accurate (Holm) that meet the latency limit"
    )
    break_even: list[BreakEven] = Field(default_factory=list, description="where the choice flips")
    text: str = Field(description="the recommendation paragraph, as the report and terminal show it")


# ---------------------------------------------------------------- per system


class GoldContext(Record):
    """oracle: over the test questions, how much of the gold document(s) the prompt budget held."""

    n: int = Field(description="questions")
    cut: int = Field(description="questions whose gold document(s) did not fit whole and were cut")
    cut_share: float = Field(description="cut / n")
    kept_token_share: float = Field(description="mean over questions of kept / total tokens of the gold document(s)")
    kept_char_share: float = Field(description="mean over questions of kept / total characters")
    total_tokens_mean: float = Field(description="mean tokens of a question's whole gold document(s)")
    budget_tokens: int = Field(description="the prompt budget the documents were fitted into")


class ServingMemory(Record):
    """The parts of a system's serving peak (harness.measure.MemoryLedger): each measured as the resident size
    it added, so that no system carries what an earlier one in the same run left loaded."""

    process_mb: float = Field(description="the process at the run's start: interpreter, libraries, tokenizer")
    resources_mb: dict[str, float] = Field(
        description="shared things this system uses (base model, embedder, index), as much as loading each added"
    )
    answering_mb: float = Field(description="the peak while answering above what was resident when it began")


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
    peak_memory_mb: float | None = Field(
        default=None,
        description="serving peak (MB resident): the process at the run's start, the base model, index and embedder "
        "this system uses, and its own peak while answering one question at a time (the timed questions; passes "
        "that score many at once for accuracy or calibration are not in it), as if it ran alone (serving_memory "
        "has the parts; training is not in it: training_peak_memory_mb)",
    )
    serving_memory: ServingMemory | None = Field(default=None, description="the parts peak_memory_mb adds up", **_OMIT)
    training_peak_memory_mb: float | None = Field(
        default=None,
        description="trained systems: the training peak, measured the same way (also in training)",
        **_OMIT,
    )
    cuda_peak_memory_mb: float | None = Field(default=None, description="peak CUDA memory, on a GPU", **_OMIT)
    metrics: dict[str, Interval] = Field(default_factory=dict, description="every metric, with its interval")
    latency_s: Percentiles | None = Field(
        default=None, description="seconds a single user waits, over the timed sample"
    )
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
    gold_context: GoldContext | None = Field(
        default=None, description="oracle: how much of the gold document(s) its prompts held", **_OMIT
    )
    throughput: Throughput | None = Field(default=None, description="measured at the best batch size", **_OMIT)
    batched_pass: BatchedPass | None = Field(default=None, description="the accuracy pass's throughput", **_OMIT)
    cost: SystemCost | None = Field(default=None, description="what the system costs (harness.cost)", **_OMIT)
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


class PriorBreakingSystem(Record):
    """A system on the prior-breaking subset, and how often it gives each answer."""

    metrics: dict[str, Interval] = Field(
        description="on the subset: accuracy, balanced_accuracy (mean over gold answers of the share right) and, "
        "yes-no, auc of the Yes-No margin; each with its 95% bootstrap interval"
    )
    answer_share: dict[str, float] = Field(description="share of each answer over all test questions")
    answer_share_subset: dict[str, float] = Field(description="share of each answer on the subset")
    prior_agreement: float = Field(description="share of all test questions answered as the category prior does")


class PriorBreaking(Record):
    """Choice tasks with categories: the test questions whose gold answer differs from the category prior's
    prediction (the training split's most common answer, or gold position, of the question's category). The
    prior scores 0 on them by construction, so a score here is what a system knows beyond the label prior.
    Answers are Yes / No, or for multiple choice the position ("option 1" is the first option)."""

    prior: str = Field(
        description="the baseline that defines the subset: category_prior or category_majority_position"
    )
    n: int = Field(description="questions in the subset")
    n_test: int = Field(description="test questions")
    ids: list[str] = Field(description="the subset's question ids")
    gold_share: dict[str, float] = Field(description="share of each gold answer over all test questions")
    gold_share_subset: dict[str, float] = Field(description="share of each gold answer on the subset")
    chance: float | None = Field(description="expected subset accuracy of picking an option at random (null: n = 0)")
    systems: dict[str, PriorBreakingSystem] = Field(description="each system that ran, on the subset")
    comparisons: list[Comparison] = Field(
        default_factory=list, description="every pair of systems on subset accuracy, Holm-adjusted over the pairs"
    )


class Settings(Record):
    """How the run measured: what latency and memory figures depend on."""

    threads: int = Field(description="torch threads")
    batch_size: int = Field(description="questions per forward pass in the timed latency sample")
    dtype: str = Field(description="evaluation precision")
    warmup: int = Field(description="untimed questions before timing starts")
    latency_sample: list[str] | None = Field(default=None, description="ids of the questions timed", **_OMIT)
    device: str = Field(description="cpu or cuda")
    openmp_wait: str | None = Field(
        default=None,
        description="how torch's idle CPU threads waited (harness.openmp): a brief spin when the CPUs were idle "
        "as the run started, else sleep at once; latency depends on it, answers do not",
        **_OMIT,
    )
    backend: str | None = Field(default=None, description="what scored the prompts: hf (transformers) or vllm")
    calibration: str | None = Field(default=None, description="yes-no calibration: dev, contextual or none")
    seconds: float | None = Field(default=None, description="wall time of build + evaluate for all systems")


class CalibrationSet(Record):
    """The dev questions a yes/no system's calibration threshold is fitted on (calibration: dev-threshold). They
    are drawn from the dev split only (never train or test), seeded, with the training split's Yes-rate and
    spread over the categories as training is (harness.strata.calibration_sample)."""

    n: int = Field(description="questions the threshold is fitted on")
    yes_rate: float = Field(description="share of them whose answer is Yes")
    dev_size: int = Field(description="dev questions they were drawn from")
    train_yes_rate: float = Field(description="share of Yes in the training split: the mix the draw matches")
    test_yes_rate: float = Field(description="share of Yes in the test questions evaluated (shown, never fitted on)")


class LimitedRun(Record):
    """Set when `--limit N` evaluated a sample of the test split rather than all of it."""

    n: int = Field(description="test questions evaluated")
    of: int = Field(description="test questions in the split")
    drawn: str = Field(description="how the sample was drawn (seeded, stratified by document and category)")


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
    prior_breaking: PriorBreaking | None = Field(
        default=None,
        description="choice tasks with categories: the systems on the questions the category prior gets wrong",
        **_OMIT,
    )
    calibration_set: CalibrationSet | None = Field(
        default=None, description="yes-no with calibration: the dev questions thresholds are fitted on", **_OMIT
    )
    limited: LimitedRun | None = Field(
        default=None, description="--limit: the run evaluated a sample of the test split", **_OMIT
    )
    decision: Decision | None = Field(
        default=None, description="the recommendation for the deployment profile", **_OMIT
    )
    sweep: Sweep | None = Field(default=None, description="set by `harness sweep`: the grid of settings", **_OMIT)
    scenario: Scenario | None = Field(default=None, description="--scenario updates: waves, stages, groups", **_OMIT)

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
