"""Per-sample metrics, kept in a small registry (in the style of the peft / lm-eval registries).

Each scorer takes one prediction and its acceptable answers and returns a float, or None
when the metric says nothing about that sample (no retrieval, no embedder, no golds).
Aggregation (means, bootstrap intervals, McNemar) lives elsewhere; this module only scores.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from harness.constants import ANSWER_FORMATS, CHOICE_FORMATS, AnswerFormat
from harness.errors import did_you_mean

Embedder = Callable[[list[str]], np.ndarray]


@dataclass
class ScoreContext:
    """What a scorer may need beyond the sample itself.

    `embed` is injected by the caller so this module never imports sentence-transformers
    (tests pass a cheap fake). Embeddings are cached per text so that `score_samples` can
    embed everything in one batch and the per-sample scorers then only look vectors up.
    """

    embed: Embedder | None = None
    # has_answer's guard: the task's acceptable answers by category (None: questions without one), as
    # normalised token tuples; see `answer_pool`.
    pool: dict[str | None, list[tuple[str, ...]]] = field(default_factory=dict)
    _cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def prefetch(self, texts: Iterable[str]) -> None:
        """Embed every not-yet-seen text in a single call."""
        if self.embed is None:
            return
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if not missing:
            return
        vectors = np.asarray(self.embed(missing), dtype=np.float64)
        for text, vector in zip(missing, vectors):
            self._cache[text] = vector

    def vectors(self, texts: list[str]) -> list[np.ndarray]:
        self.prefetch(texts)  # no-op when score_samples already batched them
        return [self._cache[t] for t in texts]


ScorerFn = Callable[[str, list[str], dict, ScoreContext], "float | None"]


@dataclass(frozen=True)
class Scorer:
    name: str
    fn: ScorerFn
    kinds: frozenset[str]  # answer formats the metric makes sense for
    binary: bool = False  # 0/1 per sample, so paired comparisons can use McNemar
    higher_is_better: bool = True
    description: str = ""


SCORERS: dict[str, Scorer] = {}


def register_scorer(
    name: str,
    kind: str | Iterable[str] = AnswerFormat.FREE_TEXT,
    higher_is_better: bool = True,
    binary: bool = False,
    description: str = "",
) -> Callable[[ScorerFn], ScorerFn]:
    """Decorator adding `fn` to SCORERS. `kind` is one format, several, or "all"."""
    # Kept as plain strings, so messages list 'free-text', not the enum member.
    kinds = frozenset(str(k) for k in (ANSWER_FORMATS if kind == "all" else [kind] if isinstance(kind, str) else kind))
    unknown = kinds - set(ANSWER_FORMATS)
    if unknown:
        raise ValueError(f"scorer {name!r}: unknown answer format(s) {sorted(unknown)}; valid: {list(ANSWER_FORMATS)}")

    def decorate(fn: ScorerFn) -> ScorerFn:
        if name in SCORERS:  # a silent overwrite would change results without anyone noticing
            raise ValueError(f"scorer {name!r} is already registered")
        SCORERS[name] = Scorer(name, fn, kinds, binary, higher_is_better, description)
        return fn

    return decorate


# ---------------------------------------------------------------- text normalisation

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)

# Small on purpose: groundedness should ignore glue words, not judge vocabulary.
_STOP_WORDS = (
    "a an the and or but if of to in on at by for with from as into about than then so is are was were be been "
    "being am do does did done has have had having it its this that these those there here i you he she we "
    "they them his her their our your my me us not no yes can could may might must shall should will would "
    "which who whom what when where why how also only just very such any all each some other more most own "
    "same"
)
STOP_WORDS = frozenset(_STOP_WORDS.split())


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, drop punctuation and articles, collapse whitespace."""
    text = text.lower().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _tokens(text: str) -> list[str]:
    return normalize_answer(text).split()


def fold_accents(text: str) -> str:
    """Drop combining marks after compatibility decomposition: "Åland" -> "Aland", "Bogotá" -> "Bogota"."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def answer_tokens(text: str) -> tuple[str, ...]:
    """has_answer's words: accents folded, then SQuAD normalisation."""
    return tuple(normalize_answer(fold_accents(text)).split())


def _spans(words: tuple[str, ...], phrase: tuple[str, ...]) -> list[tuple[int, int]]:
    """Where `phrase` occurs in `words` as whole words: (start, end) pairs."""
    n = len(phrase)
    if n == 0:
        return []
    return [(i, i + n) for i in range(len(words) - n + 1) if words[i : i + n] == phrase]


def answer_pool(questions: Iterable, answers_of=lambda q: q.answers) -> dict[str | None, list[tuple[str, ...]]]:
    """Every acceptable answer of `questions`, by category, as has_answer's words (what its guard compares a
    generation against)."""
    pool: dict[str | None, set[tuple[str, ...]]] = {}
    for q in questions:
        pool.setdefault(q.category, set()).update(t for t in map(answer_tokens, answers_of(q)) if t)
    return {category: sorted(answers) for category, answers in pool.items()}


def _best_over_golds(metric: Callable[[str, str], float], prediction: str, golds: list[str]) -> float | None:
    # Any gold is an acceptable answer, so a prediction gets credit for the closest one.
    if not golds:
        return None
    return max(metric(prediction, gold) for gold in golds)


def _f_measure(overlap: int, n_pred: int, n_gold: int) -> float:
    # SQuAD convention: two empty answers agree, an empty one against a non-empty one does not.
    if n_pred == 0 or n_gold == 0:
        return float(n_pred == n_gold)
    if overlap == 0:
        return 0.0
    precision, recall = overlap / n_pred, overlap / n_gold
    return 2 * precision * recall / (precision + recall)


def _token_f1(prediction: str, gold: str) -> float:
    pred, ref = _tokens(prediction), _tokens(gold)
    overlap = sum((Counter(pred) & Counter(ref)).values())
    return _f_measure(overlap, len(pred), len(ref))


class _FoldingTokenizer:
    """rouge_score's own tokenizer (lower case, split on anything but a-z and 0-9), after folding accents: on
    its own it would drop every accented letter ("Bogotá" -> "bogot")."""

    def tokenize(self, text: str) -> list[str]:
        from rouge_score import tokenize

        return tokenize.tokenize(fold_accents(text), None)


_ROUGE = None


def _rouge_l(prediction: str, gold: str) -> float:
    global _ROUGE
    if _ROUGE is None:  # rouge_score comes with lm-eval; imported when first needed
        from rouge_score import rouge_scorer

        _ROUGE = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_FoldingTokenizer())
    return float(_ROUGE.score(gold, prediction)["rougeL"].fmeasure)


def _cosine(u: np.ndarray, v: np.ndarray) -> float:
    # Embeddings should already be unit length; dividing again costs nothing and keeps a
    # careless embedder (or an all-zero vector) from producing values outside [-1, 1].
    norm = float(np.linalg.norm(u) * np.linalg.norm(v))
    return float(np.dot(u, v) / norm) if norm > 0 else 0.0


# ---------------------------------------------------------------- registered scorers


@register_scorer(
    "accuracy",
    kind=CHOICE_FORMATS,
    binary=True,
    description="1 if the normalised prediction equals the gold choice, else 0",
)
def accuracy(prediction, golds, sample, ctx):
    if not golds:
        return None
    return float(normalize_answer(prediction) == normalize_answer(golds[0]))


@register_scorer(
    "exact_match",
    kind=AnswerFormat.FREE_TEXT,
    binary=True,
    description="1 if the normalised prediction equals any acceptable answer",
)
def exact_match(prediction, golds, sample, ctx):
    return _best_over_golds(lambda p, g: float(normalize_answer(p) == normalize_answer(g)), prediction, golds)


def _has_answer(prediction: str, golds: list[str], sample: dict, ctx: ScoreContext) -> float | None:
    words = answer_tokens(prediction)
    gold_words = {t for t in map(answer_tokens, golds) if t}
    if not gold_words:
        return None
    found = [span for g in gold_words for span in _spans(words, g)]
    if not found:
        return 0.0
    # The guard: another acceptable answer of the same kind (a same-category question's) that the generation
    # names outside every gold occurrence, and that the question itself does not mention, makes it a list of
    # candidates, not an answer ("Oslo or Bergen"). Inside a gold occurrence ("Delhi" in "New Delhi") it is part
    # of the answer; around one ("Guinea" in "Papua New Guinea") it is a different answer.
    question = answer_tokens(sample.get("question") or "")
    for other in ctx.pool.get(sample.get("category"), ()):
        if other in gold_words or _spans(question, other):
            continue
        for start, end in _spans(words, other):
            if not any(gs <= start and end <= ge for gs, ge in found):
                return 0.0
    return 1.0


@register_scorer(
    "has_answer",
    kind=AnswerFormat.FREE_TEXT,
    binary=True,
    description=(
        "1 if an acceptable answer appears in the generation as whole words (accents folded, SQuAD-normalised) "
        "and no other answer of the same kind does"
    ),
)
def has_answer(prediction, golds, sample, ctx):
    return _has_answer(prediction, golds, sample, ctx)


@register_scorer("token_f1", kind=AnswerFormat.FREE_TEXT, description="SQuAD token F1, best over acceptable answers")
def token_f1(prediction, golds, sample, ctx):
    return _best_over_golds(_token_f1, prediction, golds)


@register_scorer(
    "rouge_l",
    kind=AnswerFormat.FREE_TEXT,
    description="ROUGE-L F-measure (rouge-score, accents folded), best over acceptable answers",
)
def rouge_l(prediction, golds, sample, ctx):
    return _best_over_golds(_rouge_l, prediction, golds)


@register_scorer(
    "semantic_similarity",
    kind=AnswerFormat.FREE_TEXT,
    description="cosine similarity of sentence embeddings, best over acceptable answers",
)
def semantic_similarity(prediction, golds, sample, ctx):
    if ctx.embed is None or not golds:
        return None
    pred_vec, *gold_vecs = ctx.vectors([prediction, *golds])
    return max(_cosine(pred_vec, g) for g in gold_vecs)


@register_scorer(
    "answer_length",
    kind="all",
    higher_is_better=False,
    description="number of whitespace-separated tokens in the prediction",
)
def answer_length(prediction, golds, sample, ctx):
    return float(len(prediction.split()))


@register_scorer(
    "groundedness",
    kind=AnswerFormat.FREE_TEXT,
    description="share of the prediction's content words found in the retrieved passages",
)
def groundedness(prediction, golds, sample, ctx):
    retrieved = sample.get("retrieved")
    if not retrieved:
        return None  # systems without retrieval have nothing to be grounded in
    content = [t for t in _tokens(prediction) if t not in STOP_WORDS]
    if not content:
        return None
    passage_vocab = set(_tokens(" ".join(r.get("text") or "" for r in retrieved)))
    return sum(t in passage_vocab for t in content) / len(content)


# ---------------------------------------------------------------- lookup and validation


def _check_format(answer_format: str) -> None:
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"unknown answer format {answer_format!r}; valid: {list(ANSWER_FORMATS)}")


def metric_names_for(answer_format: str) -> list[str]:
    """Registered metrics that apply to `answer_format`, in registration order."""
    _check_format(answer_format)
    return [name for name, s in SCORERS.items() if answer_format in s.kinds]


def _unknown_metric_error(name: str) -> ValueError:
    return ValueError(f"unknown metric {name!r}{did_you_mean(name, SCORERS)} (valid metrics: {', '.join(SCORERS)})")


def validate_metric_names(names: Iterable[str], answer_format: str | None) -> list[str]:
    """Check names early (before any model runs) and return them de-duplicated, order kept. With
    `answer_format` None (a shared include that does not set one) only whether each name exists is checked."""
    if answer_format is not None:
        _check_format(answer_format)
    names = list(dict.fromkeys(names))
    for name in names:
        if name not in SCORERS:
            raise _unknown_metric_error(name)
        if answer_format is not None and answer_format not in SCORERS[name].kinds:
            raise ValueError(
                f"metric {name!r} does not apply to answer format {answer_format!r} "
                f"(it applies to {sorted(SCORERS[name].kinds)}); "
                f"metrics for {answer_format!r}: {', '.join(metric_names_for(answer_format))}"
            )
    return names


def score_samples(samples: list[dict], metric_names: list[str], answer_format: str, ctx: ScoreContext) -> None:
    """Fill `sample["scores"][name]` for each named metric that applies to `answer_format`.

    Unknown names raise; names that exist but do not fit the format are skipped, so one
    metric list can be shared across tasks. A value of None means "not applicable here".
    """
    _check_format(answer_format)
    for name in metric_names:
        if name not in SCORERS:
            raise _unknown_metric_error(name)
    scorers = [SCORERS[n] for n in dict.fromkeys(metric_names) if answer_format in SCORERS[n].kinds]

    # One embedding batch for the whole split instead of one model call per sample.
    if ctx.embed is not None and any(s.name == "semantic_similarity" for s in scorers):
        ctx.prefetch(t for s in samples for t in [s.get("prediction") or "", *(s.get("golds") or [])])

    for sample in samples:
        prediction, golds = sample.get("prediction") or "", list(sample.get("golds") or [])
        scores = sample.setdefault("scores", {})
        for scorer in scorers:
            value = scorer.fn(prediction, golds, sample, ctx)
            scores[scorer.name] = None if value is None else float(value)
