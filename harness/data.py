"""Load a task's questions and corpus, and make its train / dev / test split.

Rows come from harness.sources (JSONL, JSON, CSV, Parquet, package files, hub specs); here they become
Questions checked against the answer format, documents become the corpus (.txt/.md/.html folders or a
JSONL file), and the split is made. Every problem names the file (and line, where there is one) and the
field, and all of a file's problems are reported together (TaskProblems), so data is fixed in one pass.
"""

from __future__ import annotations

import hashlib
import html
import json
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness import strata
from harness.dataspec import CorpusSource, SplitSpec
from harness.errors import EXCERPT_CHARS, HarnessError, did_you_mean, excerpt, excerpts
from harness.sources import Problems, hub_rows, read_rows, resolve_path, text_of
from harness.spec import TaskProblems, TaskSpec

YES_NO = ["Yes", "No"]


@dataclass
class Question:
    id: str
    question: str
    answers: list[str]  # acceptable answers; for choice tasks answers[0] is the gold choice
    choices: list[str] | None = None
    doc_id: str | None = None
    category: str | None = None
    split: str | None = None
    extra: dict = field(default_factory=dict)
    origin: str | None = field(default=None, compare=False, repr=False)  # "file:line", for messages only

    @property
    def gold_index(self) -> int | None:
        return self.choices.index(self.answers[0]) if self.choices else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("origin")  # where the file lives is not part of the data
        return d


@dataclass
class Document:
    doc_id: str
    text: str
    title: str = ""


@dataclass
class TaskData:
    train: list[Question]
    dev: list[Question]
    test: list[Question]
    corpus: list[Document]
    corpus_is_fallback: bool = False  # True when RAG indexes training Q&A because the task has no corpus

    def all_questions(self) -> list[Question]:
        """Train, dev and test questions: what a task's answer shape and its pool of answers are read from."""
        return [*self.train, *self.dev, *self.test]

    def fingerprint(self, splits: tuple[str, ...] = ("train", "dev", "test")) -> str:
        """The content of `splits` and the corpus. What trains an adapter is `("train", "dev")` and the corpus:
        its key leaves the test split out, so --limit (which cuts the test split) never retrains it."""
        h = hashlib.sha256()
        for name in splits:
            for q in getattr(self, name):
                h.update(json.dumps([name, q.to_dict()], sort_keys=True).encode())
        for d in self.corpus:
            h.update(json.dumps(asdict(d), sort_keys=True).encode())
        return h.hexdigest()[:16]


# ---------------------------------------------------------------- questions


def _empty(v) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def _as_list(value, separator: str | None) -> list:
    if isinstance(value, (list, tuple)):
        return list(value)
    if hasattr(value, "tolist"):  # numpy / pyarrow arrays from Parquet
        return list(value.tolist())
    if isinstance(value, str):
        s = value.strip()
        if s.startswith("["):
            try:
                parsed = json.loads(s)
                if isinstance(parsed, list):
                    return parsed
            except json.JSONDecodeError:
                pass
        if separator:
            return s.split(separator)
    return [value]


def _scalar_text(v) -> str | None:
    if isinstance(v, bool):
        return "Yes" if v else "No"
    if isinstance(v, (str, int, float)):
        return str(v).strip()
    return None


SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "dev": "dev",
    "validation": "dev",
    "valid": "dev",
    "val": "dev",
    "test": "test",
    "testing": "test",
}


def _check_mapping(spec: TaskSpec, rows: list[tuple[str, dict]], origin: str) -> None:
    """A mapped field that no row has is a mapping mistake: say so once, not once per row."""
    f, fmt = spec.data.questions.fields, spec.answer_format
    keys: dict[str, None] = {}
    for _, row in rows:
        keys.update(dict.fromkeys(row))
    needed = [("question", f.question), ("answer", f.answer)]
    if fmt == "multiple-choice":
        if f.choices is None:
            raise HarnessError(
                f"{spec.where('data.questions.fields.choices')}: a multiple-choice task needs "
                "its choices: name the field (or the list of fields) that holds them"
            )
        needed += [("choices", c) for c in ([f.choices] if isinstance(f.choices, str) else f.choices)]
    if spec.data.split.by == "given":
        if f.split is None:
            raise HarnessError(f"{spec.where('data.split.by')}: is 'given' but data.questions.fields.split is not set")
        needed.append(("split", f.split))
    problems = []
    for role, name in needed:
        if name not in keys:
            field = "data.questions.fields." + role
            problems.append(
                f"{spec.where(field)}: no row of {origin} has a field '{name}'"
                f"{did_you_mean(name, [k for k in keys if len(str(k)) <= EXCERPT_CHARS])} "
                f"(rows have: {excerpts(keys, 12)})"
            )
    if problems:
        raise TaskProblems(problems)


def _row_question(spec: TaskSpec, loc: str, row: dict, n: int, problems: Problems) -> Question | None:
    """One row as a Question, or None after adding each of its problems."""
    f, fmt = spec.data.questions.fields, spec.answer_format
    before = len(problems)
    qid = row.get(f.id) if f.id else None
    qid = str(n) if _empty(qid) else str(qid).strip()
    text = row.get(f.question)
    if _empty(text):
        problems.add(f"{loc}: field '{f.question}' (the question) is missing or empty")
    elif not isinstance(text, str):
        problems.add(f"{loc}: field '{f.question}' must be text, got {type(text).__name__}")
    raw = row.get(f.answer)
    answers = []
    for a in [] if raw is None else _as_list(raw, f.separator):
        t = _scalar_text(a)
        if t is None:
            problems.add(f"{loc}: field '{f.answer}' must be text or a list of texts, got {type(a).__name__}")
            break
        if t and t not in answers:
            answers.append(t)
    if not answers and len(problems) == before:
        problems.add(f"{loc}: field '{f.answer}' (the gold answer) is missing or empty")
    choices = None
    if answers and fmt == "yes-no":
        canon = {c.lower(): c for c in YES_NO}
        if answers[0].lower() not in canon:
            problems.add(f"{loc}: field '{f.answer}' is {excerpt(answers[0])}; a yes-no task needs Yes or No")
        else:
            answers, choices = [canon[answers[0].lower()]], list(YES_NO)
    elif fmt == "multiple-choice":
        raw_choices = (
            [row.get(c) for c in f.choices]
            if isinstance(f.choices, list)
            else _as_list(row.get(f.choices), f.separator)
        )
        choices = [_scalar_text(c) or "" for c in raw_choices if c is not None]
        name = f.choices if isinstance(f.choices, str) else "/".join(f.choices)
        if len(choices) < 2 or any(not c for c in choices):
            problems.add(f"{loc}: field '{name}' needs at least two non-empty options, got [{excerpts(choices)}]")
        elif len(set(choices)) != len(choices):
            dup = next(c for c in choices if choices.count(c) > 1)
            problems.add(f"{loc}: field '{name}' has the option {excerpt(dup)} twice")
        elif answers:
            gold = answers[0]
            if f.answer_is == "index":
                ok = gold.lstrip("-").isdigit() and 0 <= int(gold) < len(choices)
                gold = choices[int(gold)] if ok else None
                expect = f"an index from 0 to {len(choices) - 1}"
            elif f.answer_is == "letter":
                letters = [chr(ord("A") + i) for i in range(len(choices))]
                gold = choices[letters.index(gold.upper())] if gold.upper() in letters else None
                expect = f"a letter from A to {letters[-1]}"
            else:
                expect = f"one of the choices [{excerpts(choices)}]"
            if gold is None or gold not in choices:
                problems.add(f"{loc}: gold answer {excerpt(answers[0])} (field '{f.answer}') is not {expect}")
            else:
                answers = [gold]
    split = None
    if spec.data.split.by == "given":
        value = row.get(f.split)
        split = SPLIT_NAMES.get(str(value).strip().lower()) if not _empty(value) else None
        if split is None:
            problems.add(
                f"{loc}: field '{f.split}' is {excerpt(value)}; data.split.by is 'given', so use train, dev or test"
            )
    if len(problems) > before:
        return None
    doc_id, category = row.get(f.doc_id) if f.doc_id else None, row.get(f.category) if f.category else None
    return Question(
        id=qid,
        question=text.strip(),
        answers=answers,
        choices=choices,
        doc_id=None if _empty(doc_id) else str(doc_id).strip(),
        category=None if _empty(category) else str(category).strip(),
        split=split,
        origin=loc,
    )


def load_questions(spec: TaskSpec) -> list[Question]:
    src = spec.data.questions
    problems = Problems()
    if src.hub:
        rows, origin = hub_rows(spec), f"hub dataset '{src.hub.name}'"
    else:
        path = resolve_path(spec, "data.questions", src.path, src.package)
        rows, origin = read_rows(path, src.format, spec, "data.questions", problems), str(path)
        if not rows and not problems:
            raise HarnessError(f"{path}: no questions in the file ({spec.where('data.questions.path')})")
    if rows:
        _check_mapping(spec, rows, origin)
    out, seen = [], {}
    for n, (loc, row) in enumerate(rows, 1):
        line = loc.rsplit(":", 1)[-1]
        q = _row_question(spec, loc, row, int(line) if line.isdigit() else n, problems)  # ids default to the line
        if q is None:
            continue
        if q.id in seen:
            problems.add(f"{loc}: duplicate id {excerpt(q.id)} (field '{src.fields.id}'; first at {seen[q.id]})")
            continue
        seen[q.id] = loc
        out.append(q)
    problems.raise_if_any()
    return out


# ---------------------------------------------------------------- corpus

_FRONT_MATTER = re.compile(r"\A---\s*\n.*?\n---\s*\n", re.S)
_TAGS = re.compile(r"<(script|style)\b.*?</\1>|<!--.*?-->|<[^>]+>", re.S | re.I)
DOC_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", "")


def html_to_text(text: str) -> str:
    text = html.unescape(_TAGS.sub(" ", text))
    return "\n".join(" ".join(line.split()) for line in text.splitlines() if line.strip())


def _doc_text(path: Path, strip_front_matter: bool) -> str:
    text = text_of(path)
    if strip_front_matter:
        text = _FRONT_MATTER.sub("", text, count=1)
    if path.suffix.lower() in (".html", ".htm"):
        text = html_to_text(text)
    return text.strip()


def load_corpus(spec: TaskSpec) -> list[Document]:
    src: CorpusSource = spec.data.corpus
    path = resolve_path(spec, "data.corpus", src.path, src.package)
    problems = Problems()
    docs: list[Document] = []
    if path.is_file():
        for loc, row in read_rows(path, "auto", spec, "data.corpus", problems):
            doc_id, text = row.get(src.id_field), row.get(src.text_field)
            if _empty(doc_id):
                problems.add(f"{loc}: missing field '{src.id_field}' (the document id; data.corpus.id_field)")
            elif not isinstance(text, str) or not text.strip():
                problems.add(
                    f"{loc}: document {excerpt(doc_id)} has no text (field '{src.text_field}'; data.corpus.text_field)"
                )
            else:
                title = str(row.get(src.title_field) or "") if src.title_field else ""
                docs.append(Document(str(doc_id).strip(), text.strip(), title))
    else:
        try:  # pathlib refuses some patterns: '' (ValueError), '/abs' (NotImplementedError)
            matched = list(path.glob(src.glob))
        except (ValueError, NotImplementedError) as e:
            raise HarnessError(
                f"{spec.where('data.corpus.glob')}: '{src.glob}' is not a pattern pathlib can use "
                f"({e}); e.g. '*.txt', or '**/*.md' for subfolders"
            ) from None
        files = sorted(
            p for p in matched if p.is_file() and p.name not in src.exclude and p.suffix.lower() in DOC_SUFFIXES
        )
        for p in files:
            try:
                text = _doc_text(p, src.strip_front_matter)
            except HarnessError as e:
                problems.add(str(e))
                continue
            if not text:
                problems.add(f"{p}: document has no text; remove it or add it to data.corpus.exclude")
                continue
            doc_id = p.relative_to(path).with_suffix("").as_posix()
            docs.append(Document(doc_id, text, p.stem))
    problems.raise_if_any()
    if not docs:
        raise HarnessError(
            f"{spec.where('data.corpus.path')}: the corpus is empty (no .txt/.md/.html documents "
            f"matching '{src.glob}' in {path})"
        )
    seen: dict[str, int] = {}
    for d in docs:
        seen[d.doc_id] = seen.get(d.doc_id, 0) + 1
    dups = [i for i, c in seen.items() if c > 1]
    if dups:
        raise HarnessError(
            f"{spec.where('data.corpus.path')}: duplicate document id {excerpt(dups[0])} in {path} "
            f"({len(dups)} duplicated ids)"
        )
    return docs


def qa_corpus(train: list[Question]) -> list[Document]:
    """Without a corpus, RAG retrieves solved training questions (question + gold answer)."""
    return [Document(q.id, f"Question: {q.question}\nAnswer: {q.answers[0]}", q.id) for q in train]


# ---------------------------------------------------------------- splits


def split_questions(
    questions: list[Question], split: SplitSpec, where, answer_format: str = "free-text"
) -> tuple[list, list, list]:
    """train, dev, test. `where(field)` names the task file and line for a message about a field. The test keys
    are the first of the seeded shuffle; the dev keys are then chosen from the rest so that dev's mix of
    (category, answer) matches training's (harness.strata.choose_dev_keys): dev fits calibration thresholds,
    which a dev split unlike training would shift."""
    if isinstance(where, str):
        prefix = where
        where = lambda f: f"{prefix}: field '{f}'"
    if split.by == "given":
        parts = {"train": [], "dev": [], "test": []}
        for q in questions:
            if q.split is None:
                raise HarnessError(
                    f"{where('data.split.by')}: is 'given' but question {excerpt(q.id)} "
                    f"({q.origin or 'no location'}) has no split"
                )
            parts[q.split].append(q)
        train, dev, test = parts["train"], parts["dev"], parts["test"]
        for name, part in (("train", train), ("test", test)):
            if not part:
                raise HarnessError(
                    f"{where('data.split.by')}: is 'given' but no row has split '{name}', so the "
                    f"{name} split is empty ({len(train)} train, {len(dev)} dev, {len(test)} test)"
                )
        return train, dev, test
    rng = random.Random(split.seed)
    if split.by == "doc":
        missing = [q for q in questions if q.doc_id is None]
        if missing:
            raise HarnessError(
                f"{where('data.split.by')}: is 'doc' but {len(missing)} question(s) have no doc_id, "
                f"e.g. {missing[0].origin or missing[0].id}; map data.questions.fields.doc_id "
                "or use by: question"
            )
        keys = sorted({q.doc_id for q in questions})
    else:
        keys = sorted({q.id for q in questions})
    what = "documents" if split.by == "doc" else "questions"
    if len(keys) < 2:
        raise HarnessError(
            f"{where('data.split.by')}: only {len(keys)} {what[:-1] if len(keys) == 1 else what}: "
            "cannot make both a train and a test split from that"
        )
    rng.shuffle(keys)
    n_test = max(1, round(len(keys) * split.test_fraction))
    n_dev = min(round(len(keys) * split.dev_fraction), len(keys) - n_test - 1)
    key = (lambda q: q.doc_id) if split.by == "doc" else (lambda q: q.id)
    test_keys = set(keys[:n_test])
    dev_keys = set(strata.choose_dev_keys(questions, key, keys[n_test:], n_dev, answer_format))
    test = [q for q in questions if key(q) in test_keys]
    dev = [q for q in questions if key(q) in dev_keys]
    train = [q for q in questions if key(q) not in test_keys and key(q) not in dev_keys]
    return train, dev, test


def load_task_data(spec: TaskSpec) -> TaskData:
    """Questions, split and corpus, checked against each other. Raises TaskProblems with every problem found."""
    problems: list[str] = []
    questions = corpus = None
    try:
        questions = load_questions(spec)
    except TaskProblems as e:
        problems += e.problems
    except HarnessError as e:
        problems.append(str(e))
    if spec.data.corpus:
        try:
            corpus = load_corpus(spec)
        except TaskProblems as e:
            problems += e.problems
        except HarnessError as e:
            problems.append(str(e))
    if questions is not None:
        try:
            train, dev, test = split_questions(questions, spec.data.split, spec.where, spec.answer_format)
        except HarnessError as e:
            problems.append(str(e))
    if questions is not None and corpus is not None:
        known = {d.doc_id for d in corpus}
        unknown = [q for q in questions if q.doc_id and q.doc_id not in known]
        if unknown:
            ids = sorted({q.doc_id for q in unknown})
            problems.append(
                f"{unknown[0].origin}: doc_id '{unknown[0].doc_id}' is not a document of the corpus "
                f"({spec.where('data.corpus.path')}); {len(unknown)} question(s) name {len(ids)} unknown "
                f"id(s): {', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}; corpus ids look like "
                f"'{next(iter(known))}'"
            )
    if problems:
        raise TaskProblems(problems)
    if corpus is None:
        corpus, fallback = qa_corpus(train), True
    else:
        fallback = False
    return TaskData(train, dev, test, corpus, fallback)
