"""What parts and systems hand back to the run: the prompts a system sends (with what it looked up on the
way) and the record of what building it did. The run turns these into typed results (harness.records)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Prompts:
    """What a system sends for each question, plus what it looked up on the way."""

    texts: list[str]
    retrieved: list[list[dict]] | None = None  # per question: doc_id, chunk, score, text
    retrieval_latency_s: list[float] | None = None
    ranked_doc_ids: list[list[str]] | None = None  # top-k document ids before the prompt budget, for recall@k
    gold_cuts: list[dict] | None = None  # oracle, per question: kept/total tokens and characters of the gold text
    budget_tokens: int | None = None  # oracle: the prompt budget the gold documents were fitted into


@dataclass
class BuildInfo:
    build_s: float = 0.0  # seconds spent building in this run (0 when the artifact was reused)
    cached: bool = False
    artifact_mb: float = 0.0
    peak_memory_mb: float | None = None
    training: dict | None = None
    index: dict | None = None
    notes: list[str] = field(default_factory=list)
    # Seconds the artifact took when it was built, in this run or the one that built the cached copy: what the
    # system cost to build, which a warm run's 0 s would hide. None when that earlier run did not record it.
    build_cost_s: float | None = None
    # Under `--launcher accelerate`: the command and configuration training ran with, for the run's manifest.
    launch: dict | None = None
