"""Error analysis: where each system is right and wrong, computed from samples.jsonl and results.json.

Figures (all from the run's own samples; nothing is estimated):
  * per category and per document: each system's mean headline score (the accuracy for 0/1 metrics);
  * answer bias (choice tasks): how often each system gives each answer, against how often it is the gold one;
  * retrieval systems: the score when the gold document is among the passages in the prompt and when it is not,
    and the share of passages that are mostly boilerplate;
  * one generated paragraph that reads these figures.

Boilerplate is detected from the data, not from a list of phrases: a line of a passage is boilerplate when,
normalised (case, digits, punctuation), it occurs in passages of two or more documents (copyright lines,
disclaimers shared by licences), or when it is the first line of a document's opening chunk and a short heading
(the title). A passage is "mostly boilerplate" when such lines hold at least half of its characters.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from harness.records import RunResults, Sample

from . import fmt
from .recommend import headline

MOSTLY = 0.5  # share of a passage's characters in boilerplate lines from which it counts as boilerplate
TITLE_CHARS = 80  # a document's first line up to this length, without a final full stop, is its heading
MAX_ANSWERS = 6  # answer bias is shown for tasks with at most this many distinct gold answers
WEAK_GAP = 0.15  # a group this far below the system's overall score is named in the paragraph
MIN_GROUP = 5  # ... when it has at least this many questions (fewer is noise)

_PUNCT = re.compile(r"[^\w\s]|_")
_DIGITS = re.compile(r"\d+")


def normalise_line(line: str) -> str:
    text = _DIGITS.sub("0", _PUNCT.sub(" ", line.casefold()))
    return " ".join(text.split())


@dataclass
class Cell:
    n: int
    score: float | None  # mean headline score; None when no sample has one


@dataclass
class Breakdown:
    """One table: a row per group (category or document), a cell per system."""

    key: str  # "category" or "document"
    rows: list[tuple[str, dict[str, Cell]]] = field(default_factory=list)


@dataclass
class RetrievalSplit:
    system: str
    with_gold: Cell
    without_gold: Cell
    passages: int
    boilerplate: int  # passages that are mostly boilerplate
    boilerplate_chars: float  # share of all passage characters in boilerplate lines
    prompt_tokens: float | None
    plain_prompt_tokens: float | None  # the plain prompt system's, when it ran


@dataclass
class Bias:
    system: str
    answers: list[tuple[str, int, float]]  # answer, times given, share of answers


@dataclass
class ErrorAnalysis:
    metric: str
    systems: list[str]
    categories: Breakdown
    documents: Breakdown
    gold_mix: list[tuple[str, int, float]]  # answer, times gold, share
    bias: list[Bias]
    retrieval: list[RetrievalSplit]
    paragraph: str

    @property
    def empty(self) -> bool:
        return not self.systems


def _mean(values: list[float]) -> Cell:
    return Cell(len(values), sum(values) / len(values) if values else None)


def _scored(samples: list[Sample]) -> list[Sample]:
    return [s for s in samples if fmt.is_number(s.correct)]


def breakdown(key: str, by_system: dict[str, list[Sample]]) -> Breakdown:
    """Mean headline score per group (s.category or s.doc_id) and system; groups in first-seen order."""
    attr = "category" if key == "category" else "doc_id"
    groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for name, samples in by_system.items():
        for s in _scored(samples):
            group = getattr(s, attr)
            if group:
                groups[group][name].append(float(s.correct))
    out = Breakdown(key)
    for group, per in groups.items():
        out.rows.append((group, {name: _mean(per.get(name, [])) for name in by_system}))
    return out


def _answer_mix(values: list[str]) -> list[tuple[str, int, float]]:
    counts = Counter(" ".join(v.split()) for v in values)
    total = sum(counts.values())
    return [(a, c, c / total) for a, c in counts.most_common()] if total else []


def boilerplate_lines(samples: list[Sample]) -> set[str]:
    """Normalised lines that count as boilerplate among every passage retrieved in the run."""
    docs_of: dict[str, set[str]] = defaultdict(set)
    titles: set[str] = set()
    seen: set[tuple[str, int]] = set()
    for s in samples:
        for p in s.retrieved or []:
            if (p.doc_id, p.chunk) in seen:
                continue
            seen.add((p.doc_id, p.chunk))
            lines = [ln for ln in p.text.splitlines() if normalise_line(ln)]
            for ln in lines:
                docs_of[normalise_line(ln)].add(p.doc_id)
            if p.chunk == 0 and lines:
                first = lines[0].strip()
                if len(first) <= TITLE_CHARS and not first.endswith("."):
                    titles.add(normalise_line(first))
    return {line for line, docs in docs_of.items() if len(docs) >= 2} | titles


def boilerplate_share(text: str, lines: set[str]) -> float:
    """Share of the passage's non-blank characters that are in boilerplate lines."""
    total = hit = 0
    for ln in text.splitlines():
        norm = normalise_line(ln)
        if not norm:
            continue
        total += len(norm)
        if norm in lines:
            hit += len(norm)
    return hit / total if total else 0.0


def retrieval_split(name: str, samples: list[Sample], lines: set[str], results: RunResults) -> RetrievalSplit:
    with_gold, without = [], []
    n_passages = mostly = 0
    chars = bp_chars = 0.0
    for s in samples:
        passages = s.retrieved or []
        if fmt.is_number(s.correct) and s.doc_id:
            (with_gold if any(p.doc_id == s.doc_id for p in passages) else without).append(float(s.correct))
        for p in passages:
            share = boilerplate_share(p.text, lines)
            n_passages += 1
            mostly += share >= MOSTLY
            size = len(p.text)
            chars += size
            bp_chars += share * size
    entry = results.systems.get(name)
    plain = next((e for e in results.systems.values() if e.kind == "prompt" and e.ok), None)
    return RetrievalSplit(
        system=name,
        with_gold=_mean(with_gold),
        without_gold=_mean(without),
        passages=n_passages,
        boilerplate=mostly,
        boilerplate_chars=bp_chars / chars if chars else 0.0,
        prompt_tokens=entry.prompt_tokens_mean if entry is not None else None,
        plain_prompt_tokens=plain.prompt_tokens_mean if plain is not None else None,
    )


def error_analysis(results: RunResults, samples: list[Sample]) -> ErrorAnalysis:
    metric = headline(results)
    ok = {n for n, e in results.systems.items() if e.ok}
    by_system: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        if s.system in ok:
            by_system[s.system].append(s)
    names = [n for n in results.systems if n in by_system]
    by_system = {n: by_system[n] for n in names}
    gold_mix, bias = [], []
    choice = results.answer_format in ("yes-no", "multiple-choice")
    if names and choice:
        first = by_system[names[0]]
        gold_mix = _answer_mix([s.gold for s in first])
        if len(gold_mix) <= MAX_ANSWERS:
            bias = [Bias(n, _answer_mix([s.prediction for s in by_system[n]])) for n in names]
        else:
            gold_mix = []
    retrieval_samples = [s for n in names for s in by_system[n] if s.retrieved is not None]
    lines = boilerplate_lines(retrieval_samples)
    retrieval = [
        retrieval_split(n, by_system[n], lines, results)
        for n in names
        if any(s.retrieved is not None for s in by_system[n])
    ]
    analysis = ErrorAnalysis(
        metric=metric,
        systems=names,
        categories=breakdown("category", by_system),
        documents=breakdown("document", by_system),
        gold_mix=gold_mix,
        bias=bias,
        retrieval=retrieval,
        paragraph="",
    )
    analysis.paragraph = paragraph(analysis, results, by_system)
    return analysis


# ---------------------------------------------------------------- the paragraph


def _share(x: float) -> str:
    return f"{x:.0%}"


def _score(cell: Cell) -> str:
    return fmt.num(cell.score) if cell.score is not None else fmt.DASH


def _bias_sentence(b: Bias, gold: dict[str, tuple[int, float]], n: int) -> str | None:
    """ "rag answers Yes on 155 of 170 questions (91%); Yes is the gold answer on 48%." when the system's most
    common answer is given far more often than it is gold."""
    if not b.answers:
        return None
    answer, count, share = b.answers[0]
    gold_share = gold.get(answer, (0, 0.0))[1]
    if share - gold_share < WEAK_GAP:
        return None
    return (
        f"{b.system} answers {answer} on {count} of {n} questions ({_share(share)}), where {answer} is the gold "
        f"answer on {_share(gold_share)}."
    )


def _weakest(analysis: ErrorAnalysis, name: str, overall: float | None) -> str | None:
    """The group where `name` scores furthest below its overall score, if the gap is large and the group is not
    tiny."""
    if overall is None:
        return None
    worst: tuple[float, str, Cell] | None = None
    for table in (analysis.categories, analysis.documents):
        for group, cells in table.rows:
            cell = cells.get(name)
            if cell is None or cell.score is None or cell.n < MIN_GROUP:
                continue
            gap = overall - cell.score
            if gap >= WEAK_GAP and (worst is None or gap > worst[0]):
                worst = (gap, f"{'category' if table.key == 'category' else 'document'} {group}", cell)
    if worst is None:
        return None
    _, where, cell = worst
    return (
        f"{name}'s weakest group is {where}: {_score(cell)} on {cell.n} questions, against {fmt.num(overall)} overall."
    )


def _retrieval_sentences(r: RetrievalSplit, metric: str, results: RunResults) -> list[str]:
    out = []
    wg, wo = r.with_gold, r.without_gold
    total = wg.n + wo.n
    if total:
        text = f"{r.system} has the gold document among its passages for {wg.n} of {total} questions" + (
            f" and is right on {_share(wg.score)} of those" if wg.score is not None else ""
        )
        if wo.n and wo.score is not None:
            text += f" (on {_share(wo.score)} of the {wo.n} without it)"
        if metric not in ("accuracy",):
            text += f" ({metric})"
        out.append(text + ".")
    if r.passages:
        out.append(
            f"{r.boilerplate} of its {r.passages} passages ({_share(r.boilerplate / r.passages)}) are mostly "
            "boilerplate: a document's title or lines that recur across documents (copyright lines, disclaimers)."
        )
    if fmt.is_number(r.prompt_tokens) and fmt.is_number(r.plain_prompt_tokens) and r.plain_prompt_tokens:
        plain = next(n for n, e in results.systems.items() if e.kind == "prompt" and e.ok)
        text = f"Its prompts average {r.prompt_tokens:.0f} tokens against {r.plain_prompt_tokens:.0f} for {plain}"
        a, b = results.systems[r.system].latency_s, results.systems[plain].latency_s
        if a is not None and b is not None and fmt.is_number(a.p50) and fmt.is_number(b.p50) and b.p50 > 0:
            text += f", and its median latency is {fmt.ratio(a.p50 / b.p50)} {plain}'s"
        out.append(text + ".")
    return out


def paragraph(analysis: ErrorAnalysis, results: RunResults, by_system: dict[str, list[Sample]]) -> str:
    if analysis.empty:
        return "No samples of a system that ran: there are no errors to analyse."
    sentences: list[str] = []
    gold = {a: (c, s) for a, c, s in analysis.gold_mix}
    for b in analysis.bias:
        text = _bias_sentence(b, gold, sum(c for _, c, _ in b.answers))
        if text:
            sentences.append(text)
    for name in analysis.systems:
        scored = _scored(by_system[name])
        overall = sum(float(s.correct) for s in scored) / len(scored) if scored else None
        text = _weakest(analysis, name, overall)
        if text:
            sentences.append(text)
    for r in analysis.retrieval:
        sentences += _retrieval_sentences(r, analysis.metric, results)
    if not sentences:
        return (
            f"No system leans to one answer, and no category or document is {WEAK_GAP:.2f} or more below a "
            f"system's overall {analysis.metric}."
        )
    return " ".join(sentences)
