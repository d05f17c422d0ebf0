"""The one-line explanation of every term the report uses. The HTML shows them as tooltips (title attributes)
where a term appears and lists them all under "Terms"; a test checks each term the report prints has one."""

from __future__ import annotations

from harness import scorers
from harness.constants import SIGNIFICANCE_LEVEL

TERMS: dict[str, str] = {
    "accuracy": "Share of test questions answered right (the option with the higher log-likelihood, for choices).",
    "auc": "Area under the ROC curve of the Yes−No margin: the chance that a random Yes question gets a higher "
    "margin than a random No one (0.5 is chance, 1 perfect). It ignores where the Yes/No threshold sits.",
    "calibrated_accuracy": "Accuracy when Yes/No is decided by a threshold on the margin fitted on the dev split "
    "instead of at 0: what the model knows once its lean towards one answer is removed.",
    "margin": "log P(Yes) − log P(No) for the question: above 0 the model answers Yes; far from 0 it is confident.",
    "has_answer": "1 when the reply contains an acceptable answer as whole words (and is not a list of candidates).",
    "rouge_l": "Longest common subsequence overlap (F-measure) between the reply and the gold answer.",
    "token_f1": "Overlap of words between the reply and the gold answer (F1 of precision and recall).",
    "exact_match": "1 when the reply equals an acceptable answer after normalisation.",
    "semantic_similarity": "Cosine similarity of the reply's and the gold answer's sentence embeddings.",
    "interval": "95% percentile bootstrap interval: resampling the test questions 1,000 times, the middle 95% of "
    "the metric's values.",
    "mcnemar": "McNemar's test: a paired test of two 0/1 scores on the same questions, counting only the questions "
    "where exactly one of the two is right.",
    "permutation": "Paired permutation test: how often randomly swapping the two systems' per-question scores gives "
    "a difference as large as the one observed.",
    "holm": "Holm's correction: p-values adjusted for testing many pairs at once, so that the chance of any false "
    f"“better/worse” stays below {SIGNIFICANCE_LEVEL}.",
    "verdict": f"better / worse: the paired test against that baseline gives p < {SIGNIFICANCE_LEVEL} "
    "(Holm-adjusted over the systems tested against it); not different: it does not.",
    "recall_at_k": "Share of questions whose gold document is among the k retrieved passages' documents.",
    "mrr": "Mean reciprocal rank: 1 / the rank of the gold document's first passage, 0 when it is not retrieved.",
    "latency": "Seconds one user waits for one question (retrieval included), p50 the median and p95 the 95th "
    "percentile, over n test questions timed one at a time after a warm-up: a seeded sample, the same for every "
    "system (every question is scored for accuracy in batches, untimed).",
    "peak_memory": (
        "Serving peak: the resident memory the system needs to answer (process, base model, index and embedder it "
        "uses, and its own peak while answering one question at a time), as if it ran alone; training peaks are "
        "reported apart."
    ),
    "boilerplate": "Passage text found in the run's own passages to carry no licence-specific content: a document's "
    "title, or lines recurring in two or more documents (copyright lines, disclaimers).",
    "baseline": "An answer rule that uses no model: the majority answer, each category's majority answer, random.",
}


def glossary() -> dict[str, str]:
    """Every term the report explains: TERMS, then each registered metric's own description (a new scorer is
    explained by the description it registers with)."""
    out = dict(TERMS)
    for name, scorer in scorers.SCORERS.items():
        out.setdefault(name, scorer.description[:1].upper() + scorer.description[1:] + ".")
    return out
