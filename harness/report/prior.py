"""The report's reading of `prior_breaking`: does each system know more than the category's usual answer?

One sentence per system ("lora answers 69% of the questions where the category's usual answer is wrong
(n = 29), against 0% for the prior"), a warning where its answer bias explains its subset score or where it
scores below chance there (it learned the label distribution), and the rows of the section's table. The HTML
section (templates/prior.html) and summary.md show the same text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.records import Comparison, Interval, PriorBreaking, PriorBreakingSystem, RunResults

from . import fmt

# A system that gives one answer to at least this share of questions: its subset score may be that bias.
BIAS_SHARE = 0.85
# A system below chance on the subset that gives the prior's answer this often has learned the label prior.
PRIOR_AGREEMENT = 0.8


@dataclass(frozen=True)
class PriorRow:
    name: str
    metrics: dict[str, Interval]
    answer_share: str
    answer_share_subset: str
    prior_agreement: float
    sentence: str
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PriorSection:
    prior: str
    n: int
    n_test: int
    gold_share: str
    gold_share_subset: str
    rows: list[PriorRow]
    comparisons: list[Comparison]
    empty: str | None = None  # why there is nothing to show


def shares_text(shares: dict[str, float]) -> str:
    """ "Yes 91% · No 9%" """
    return " · ".join(f"{k} {v:.0%}" for k, v in shares.items()) if shares else fmt.DASH


def sentence(name: str, s: PriorBreakingSystem, pb: PriorBreaking) -> str:
    acc = s.metrics.get("accuracy")
    if acc is None or not fmt.is_number(acc.value):
        return f"{name} has no accuracy on the questions where the category's usual answer is wrong."
    return (
        f"{name} answers {acc.value:.0%} of the questions where the category's usual answer is wrong "
        f"(n = {pb.n}; {fmt.ci(acc)}), against 0% for the prior."
    )


def warnings_for(name: str, s: PriorBreakingSystem, pb: PriorBreaking) -> list[str]:
    """Where the system's figure on the subset says less than it seems: an answer bias that explains it, or a
    score below what random guessing would get (the fine-tune learned each category's usual answer)."""
    out = []
    acc = s.metrics.get("accuracy")
    for where, shares in (
        ("the prior-breaking questions", s.answer_share_subset),
        ("all test questions", s.answer_share),
    ):
        if not shares:
            continue
        top = max(shares, key=shares.get)
        if shares[top] >= BIAS_SHARE:
            always = pb.gold_share_subset.get(top, 0.0)
            score = f", against its {acc.value:.2f}" if acc is not None and fmt.is_number(acc.value) else ""
            out.append(
                f"answer bias: {name} answers {top} to {shares[top]:.0%} of {where} (gold: "
                f"{pb.gold_share.get(top, 0.0):.0%} of all, {always:.0%} of the subset); always answering {top} "
                f"would score {always:.2f} on the subset{score}."
            )
            break
    # Below chance: balanced accuracy (which an answer bias cannot lift) or the margin's AUC wholly below what a
    # random pick gets. On this subset, following the category prior is exactly what scores below chance.
    bal, auc = s.metrics.get("balanced_accuracy"), s.metrics.get("auc")
    low = [
        f"{label} {fmt.ci(m)} vs {level:.2f}"
        for label, m, level in (("balanced accuracy", bal, pb.chance), ("AUC", auc, 0.5))
        if m is not None and level is not None and fmt.is_number(m.ci_high) and m.ci_high < level
    ]
    if low:
        text = (
            f"{name} scores below chance where the category's usual answer is wrong ({'; '.join(low)} for a random "
            "pick)"
        )
        if s.prior_agreement >= PRIOR_AGREEMENT:
            text += (
                f" and gives the prior's answer on {s.prior_agreement:.0%} of all test questions: it has learned "
                "the categories' usual answers, not the questions"
            )
        out.append(text + ".")
    return out


def prior_section(results: RunResults) -> PriorSection | None:
    pb = results.prior_breaking
    if pb is None:
        return None
    rows = [
        PriorRow(
            name=name,
            metrics={k: m for k, m in s.metrics.items() if fmt.is_number(m.value)},
            answer_share=shares_text(s.answer_share),
            answer_share_subset=shares_text(s.answer_share_subset),
            prior_agreement=s.prior_agreement,
            sentence=sentence(name, s, pb),
            warnings=warnings_for(name, s, pb),
        )
        for name, s in pb.systems.items()
    ]
    empty = None
    if pb.n == 0:
        empty = f"Every test question's gold answer is its category's usual answer ({pb.prior}): no subset to score."
    return PriorSection(
        prior=pb.prior,
        n=pb.n,
        n_test=pb.n_test,
        gold_share=shares_text(pb.gold_share),
        gold_share_subset=shares_text(pb.gold_share_subset),
        rows=rows,
        comparisons=pb.comparisons,
        empty=empty,
    )


def markdown_lines(results: RunResults) -> list[str]:
    """summary.md's section: the subset, each system's sentence, answer bias and warnings."""
    sec = prior_section(results)
    if sec is None:
        return []
    lines = [
        "",
        f"**Beyond the label prior** ({sec.prior}): {sec.n} of {sec.n_test} test questions have a gold answer "
        "other than their category's usual one.",
        "",
    ]
    if sec.empty:
        return [*lines, sec.empty]
    lines.append(f"- gold answers: all test {sec.gold_share}; subset {sec.gold_share_subset}")
    for r in sec.rows:
        extra = []
        if "balanced_accuracy" in r.metrics:
            extra.append(f"balanced accuracy {fmt.ci(r.metrics['balanced_accuracy'])}")
        if "auc" in r.metrics:
            extra.append(f"AUC {fmt.ci(r.metrics['auc'])}")
        lines.append(
            f"- {r.sentence} {'; '.join(extra)}{'. ' if extra else ''}Answers: all test {r.answer_share}; "
            f"subset {r.answer_share_subset}; the prior's answer on {r.prior_agreement:.0%} of all test questions."
        )
        lines += [f"  - warning: {w}" for w in r.warnings]
    significant = [c for c in sec.comparisons if c.significant]
    for c in significant:
        lines.append(f"- on the subset, {c.a} − {c.b} = {fmt.signed(c.diff)} accuracy ({fmt.pholm(c.p_holm)})")
    if sec.comparisons and not significant:
        lines.append("- no two systems differ significantly on the subset (Holm-adjusted paired tests)")
    return lines


def terminal_lines(results: RunResults) -> list[str]:
    """What the terminal prints under the summary table: each system's sentence and warnings."""
    sec = prior_section(results)
    if sec is None:
        return []
    if sec.empty:
        return [sec.empty]
    return [line for r in sec.rows for line in (r.sentence, *(f"  warning: {w}" for w in r.warnings))]
