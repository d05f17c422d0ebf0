"""Load a task's questions and corpus, and make its train / dev / test split.

Every error names the file (and line, where there is one) and the field, so a user can fix their data.
"""
from __future__ import annotations

import csv
import hashlib
import html
import importlib.util
import json
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.spec import CorpusSource, QuestionSource, SplitSpec, TaskSpec

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

    @property
    def gold_index(self) -> int | None:
        return self.choices.index(self.answers[0]) if self.choices else None

    def to_dict(self) -> dict:
        return asdict(self)


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

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for name in ("train", "dev", "test"):
            for q in getattr(self, name):
                h.update(json.dumps([name, q.to_dict()], sort_keys=True).encode())
        for d in self.corpus:
            h.update(json.dumps(asdict(d), sort_keys=True).encode())
        return h.hexdigest()[:16]


# ---------------------------------------------------------------- locating files


def package_folder(package: str, where: str) -> Path:
    """The folder of an installed package, found without importing it (its import may be heavy)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise HarnessError(f"{where}: package '{package}' is not installed (pip install {package})")
    return Path(list(spec.submodule_search_locations)[0])


def _resolve(base: Path, path: str, package: str | None, where: str) -> Path:
    root = package_folder(package, where) if package else base
    full = (root / path).resolve()
    if not full.exists():
        raise HarnessError(f"{where}: {full} not found")
    return full


# ---------------------------------------------------------------- questions


def _read_rows(path: Path, fmt: str, where: str) -> list[tuple[int, dict]]:
    """Rows with the line (or row) number where each came from."""
    fmt = fmt if fmt != "auto" else {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}.get(path.suffix.lower(), "")
    if not fmt:
        raise HarnessError(f"{where}: cannot tell the format of {path.name}; set format: jsonl, csv or parquet")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:  # pyarrow raises several types for a bad file
            raise HarnessError(f"{path}: not a readable Parquet file ({e})") from None
        return [(i + 1, row) for i, row in enumerate(table.to_pylist())]
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise HarnessError(f"{path}: not UTF-8 (byte offset {e.start})") from None
    if fmt == "csv":
        reader = csv.DictReader(text.splitlines())
        return [(i + 2, dict(r)) for i, r in enumerate(reader)]
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise HarnessError(f"{path}:{n}: invalid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise HarnessError(f"{path}:{n}: each line must be a JSON object")
        rows.append((n, row))
    return rows


def _hub_rows(src: QuestionSource, where: str) -> list[tuple[int, dict]]:
    import os

    if os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1":
        raise HarnessError(f"{where}: data.questions.hub '{src.hub.name}' needs the dataset hub, and this run is offline "
                           "(HF_HUB_OFFLINE=1); export the data to a JSONL file and use `path:` instead")
    import datasets

    try:
        ds = datasets.load_dataset(src.hub.name, src.hub.config, split=src.hub.split)
    except Exception as e:
        raise HarnessError(f"{where}: cannot load hub dataset '{src.hub.name}' ({type(e).__name__}: {e})") from None
    return [(i + 1, dict(r)) for i, r in enumerate(ds)]


def _as_list(value) -> list:
    if isinstance(value, list):
        return value
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            parsed = json.loads(value)
            if isinstance(parsed, list):
                return parsed
        except json.JSONDecodeError:
            pass
    return [value]


def load_questions(spec: TaskSpec) -> list[Question]:
    src = spec.data.questions
    where = f"{spec.source_path or spec.name}: data.questions"
    if src.hub:
        rows, origin = _hub_rows(src, where), src.hub.name
    else:
        path = _resolve(spec.folder, src.path, src.package, where)
        rows, origin = _read_rows(path, src.format, where), str(path)
    if not rows:
        raise HarnessError(f"{origin}: no questions in the file")
    f = src.fields
    out, seen = [], {}
    for n, row in rows:
        loc = f"{origin}:{n}"

        def get(name: str | None, required: bool = False):
            if name is None:
                return None
            if name not in row or row[name] is None or row[name] == "":
                if required:
                    raise HarnessError(f"{loc}: missing field '{name}' (data.questions.fields maps it)")
                return None
            return row[name]

        qid = str(get(f.id, required=f.id is not None) if f.id else n)
        if qid in seen:
            raise HarnessError(f"{loc}: duplicate id '{qid}' (first seen at line {seen[qid]})")
        seen[qid] = n
        text = get(f.question, required=True)
        if not isinstance(text, str) or not text.strip():
            raise HarnessError(f"{loc}: field '{f.question}' must be non-empty text")
        answers = [str(a).strip() for a in _as_list(get(f.answer, required=True)) if str(a).strip()]
        if not answers:
            raise HarnessError(f"{loc}: field '{f.answer}' is empty")
        choices = None
        if spec.answer_format == "yes-no":
            choices = list(YES_NO)
            canon = {c.lower(): c for c in YES_NO}
            if answers[0].lower() not in canon:
                raise HarnessError(f"{loc}: field '{f.answer}' is {answers[0]!r}; a yes-no task needs Yes or No")
            answers = [canon[answers[0].lower()]]
        elif spec.answer_format == "multiple-choice":
            raw = get(f.choices, required=True)
            choices = [str(c).strip() for c in _as_list(raw)]
            if len(choices) < 2 or any(not c for c in choices):
                raise HarnessError(f"{loc}: field '{f.choices}' needs at least two non-empty options")
            if len(set(choices)) != len(choices):
                raise HarnessError(f"{loc}: field '{f.choices}' has duplicate options")
            if answers[0] not in choices:
                raise HarnessError(f"{loc}: gold answer {answers[0]!r} is not among the choices {choices}")
            answers = [answers[0]]
        split = get(f.split) if f.split else None
        if split is not None and str(split) not in ("train", "dev", "test"):
            raise HarnessError(f"{loc}: field '{f.split}' is {split!r}; use train, dev or test")
        doc_id, category = get(f.doc_id), get(f.category)
        out.append(Question(id=qid, question=text.strip(), answers=answers, choices=choices,
                            doc_id=None if doc_id is None else str(doc_id),
                            category=None if category is None else str(category),
                            split=None if split is None else str(split)))
    return out


# ---------------------------------------------------------------- corpus

_FRONT_MATTER = re.compile(r"\A---\s*\n.*?\n---\s*\n", re.S)
_TAGS = re.compile(r"<(script|style)\b.*?</\1>|<[^>]+>", re.S | re.I)


def _doc_text(path: Path, strip_front_matter: bool) -> str:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise HarnessError(f"{path}: not UTF-8 (byte offset {e.start})") from None
    if strip_front_matter:
        text = _FRONT_MATTER.sub("", text, count=1)
    if path.suffix.lower() in (".html", ".htm"):
        text = html.unescape(_TAGS.sub(" ", text))
    return text.strip()


def load_corpus(spec: TaskSpec) -> list[Document]:
    src: CorpusSource = spec.data.corpus
    where = f"{spec.source_path or spec.name}: data.corpus"
    path = _resolve(spec.folder, src.path, src.package, where)
    docs: list[Document] = []
    if path.is_file():
        for n, row in _read_rows(path, "auto", where):
            text = row.get(src.text_field)
            if src.id_field not in row:
                raise HarnessError(f"{path}:{n}: missing field '{src.id_field}'")
            if not isinstance(text, str) or not text.strip():
                raise HarnessError(f"{path}:{n}: document '{row[src.id_field]}' has no text (field '{src.text_field}')")
            title = str(row.get(src.title_field) or "") if src.title_field else ""
            docs.append(Document(str(row[src.id_field]), text.strip(), title))
    else:
        files = sorted(p for p in path.glob(src.glob) if p.is_file() and p.name not in src.exclude
                       and p.suffix.lower() in (".txt", ".md", ".html", ".htm", ""))
        for p in files:
            text = _doc_text(p, src.strip_front_matter)
            if not text:
                raise HarnessError(f"{p}: document has no text; remove it or add it to data.corpus.exclude")
            docs.append(Document(p.stem, text, p.stem))
    if not docs:
        raise HarnessError(f"{where}: the corpus is empty (no documents matching '{src.glob}' in {path})")
    ids = [d.doc_id for d in docs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise HarnessError(f"{where}: duplicate document id '{dup}'")
    return docs


def qa_corpus(train: list[Question]) -> list[Document]:
    """Without a corpus, RAG retrieves solved training questions (question + gold answer)."""
    return [Document(q.id, f"Question: {q.question}\nAnswer: {q.answers[0]}", q.id) for q in train]


# ---------------------------------------------------------------- splits


def split_questions(questions: list[Question], split: SplitSpec, where: str) -> tuple[list, list, list]:
    if split.by == "given":
        parts = {"train": [], "dev": [], "test": []}
        for q in questions:
            if q.split is None:
                raise HarnessError(f"{where}: data.split.by is 'given' but question '{q.id}' has no split "
                                   "(map the field with data.questions.fields.split)")
            parts[q.split].append(q)
        train, dev, test = parts["train"], parts["dev"], parts["test"]
    else:
        rng = random.Random(split.seed)
        if split.by == "doc":
            missing = [q.id for q in questions if q.doc_id is None]
            if missing:
                raise HarnessError(f"{where}: data.split.by is 'doc' but question '{missing[0]}' has no doc_id; "
                                   "map fields.doc_id or use by: question")
            keys = sorted({q.doc_id for q in questions})
        else:
            keys = sorted(q.id for q in questions)
        rng.shuffle(keys)
        n_test = max(1, round(len(keys) * split.test_fraction))
        n_dev = round(len(keys) * split.dev_fraction) if split.dev_fraction else 0
        test_keys, dev_keys = set(keys[:n_test]), set(keys[n_test:n_test + n_dev])
        key = (lambda q: q.doc_id) if split.by == "doc" else (lambda q: q.id)
        test = [q for q in questions if key(q) in test_keys]
        dev = [q for q in questions if key(q) in dev_keys]
        train = [q for q in questions if key(q) not in test_keys and key(q) not in dev_keys]
    for name, part in (("train", train), ("test", test)):
        if not part:
            raise HarnessError(f"{where}: the {name} split is empty (check data.split)")
    return train, dev, test


def load_task_data(spec: TaskSpec) -> TaskData:
    questions = load_questions(spec)
    where = spec.source_path or spec.name
    train, dev, test = split_questions(questions, spec.data.split, where)
    if spec.data.corpus:
        corpus, fallback = load_corpus(spec), False
        known = {d.doc_id for d in corpus}
        unknown = sorted({q.doc_id for q in questions if q.doc_id and q.doc_id not in known})
        if unknown:
            raise HarnessError(f"{where}: questions name doc_id '{unknown[0]}' that is not in the corpus "
                               f"({len(unknown)} unknown ids)")
    else:
        corpus, fallback = qa_corpus(train), True
    return TaskData(train, dev, test, corpus, fallback)
