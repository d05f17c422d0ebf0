"""Answer extraction: the steps a task's `filters:` list applies to a free-text generation before it is scored,
in the spirit of lm-eval's `filter_list` (first line, a regex, ...).

Small models answer in sentences even when told not to ("The capital of Åland Islands is Mariehamn."). Every
metric scores the extracted answer; samples.jsonl keeps the raw generation beside it, and the report shows both.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from harness.dataspec import Strict

# Linking words a restated question puts between its own words and the answer ("... is Kabul", "... are called",
# "... capital of Afghanistan").
_LINKS = frozenset(
    "is are was were be called named known as it its they their of the a an for from in to".split()  # noqa: SIM905
)
_WORD = re.compile(r"\w+(?:['’]\w+)*")
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


class FilterStep(Strict):
    """One step of `filters:`, applied in order to each free-text generation before scoring."""

    example: ClassVar[str] = """\
filters: [{function: strip_question}, {function: first_sentence}, {function: regex, pattern: "is (.+)"}]"""

    function: Literal["first_line", "first_sentence", "regex", "strip_question"] = Field(
        ...,
        description=(
            "`first_line`: the first non-empty line. `first_sentence`: up to the first `.`, `!` or `?` followed "
            "by a space or the end (so an abbreviation such as `St.` ends it too). `regex`: the `group` of the "
            "first match of `pattern`; a generation it does not match is kept whole. `strip_question`: drops the "
            "leading words that restate the question: words that occur in the question (lower case, punctuation "
            "ignored) and linking words (is, are, was, were, be, called, named, known, as, it, its, they, their, "
            "of, the, a, an, for, from, in, to), up to and including the last linking word among them, so 'The "
            "capital of Norway is Oslo.' becomes 'Oslo.' and 'People from Costa Rica are called Costa Rican.' "
            "becomes 'Costa Rican.'. A generation whose leading words hold no linking word ('Costa Rican'), or "
            "that is made only of such words, is kept whole."
        ),
    )
    pattern: str | None = Field(None, description="`regex` only: a Python regular expression.")
    group: int = Field(
        1, ge=0, description="`regex` only: the group to keep (0: the whole match; a pattern without groups keeps 0)."
    )

    @model_validator(mode="after")
    def _pattern(self) -> FilterStep:
        if self.function != "regex":
            if self.pattern is not None:
                raise ValueError(f"'pattern' applies to the regex step only, not {self.function}")
            return self
        if not self.pattern:
            raise ValueError("a regex step needs a 'pattern'")
        try:
            groups = re.compile(self.pattern).groups
        except re.error as e:
            raise ValueError(f"invalid regular expression {self.pattern!r} ({e})") from None
        if groups and self.group > groups:
            raise ValueError(f"group {self.group} does not exist: the pattern has {groups} group(s)")
        return self


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), text.strip())


def _first_sentence(text: str) -> str:
    end = _SENTENCE_END.search(text)
    return text[: end.end()].strip() if end else text.strip()


def _regex(text: str, step: FilterStep) -> str:
    assert step.pattern is not None  # the model's validator
    match = re.search(step.pattern, text)
    if match is None:
        return text
    group = step.group if match.re.groups else 0
    return (match.group(group) or "").strip()


def _strip_question(text: str, question: str) -> str:
    asked = {w.lower() for w in _WORD.findall(question)}
    run: list[re.Match] = []  # the leading words that restate the question
    for word in _WORD.finditer(text):
        if word.group().lower() not in asked and word.group().lower() not in _LINKS:
            break
        run.append(word)
    else:
        return text  # nothing but the question's words: keep it whole rather than score an empty answer
    links = [i for i, w in enumerate(run) if w.group().lower() in _LINKS]
    if not links:
        return text  # no linking word, no restatement: "Costa Rican" answers "What are people from Costa Rica called?"
    # The restatement ends at the run's last linking word: a word of the question after it may begin the answer
    # ("People from Costa Rica are called Costa Rican").
    return text[run[links[-1]].end() :].strip(" \t\n,:;-")


def extract_answer(text: str, steps: list[FilterStep], question: str = "") -> str:
    """The answer `steps` extract from a generation (the generation itself when there are none)."""
    for step in steps:
        if step.function == "first_line":
            text = _first_line(text)
        elif step.function == "first_sentence":
            text = _first_sentence(text)
        elif step.function == "regex":
            text = _regex(text, step)
        else:
            text = _strip_question(text, question)
    return text
