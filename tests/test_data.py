"""harness.data: every source format with a field mapping, acceptable answers, corpora, package resources,
hub specs, splits, and the no-corpus fallback."""

from __future__ import annotations

import json
import sys
import time
import types
from pathlib import Path

import pytest

from harness.data import load_corpus, load_questions, load_task_data, split_questions
from harness.dataspec import SplitSpec
from harness.errors import HarnessError
from harness.spec import TaskProblems, load_spec


def jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def task(folder: Path, body: str, files: dict[str, str | bytes] | None = None, name: str = "t.yaml"):
    for rel, content in (files or {}).items():
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(body)
    return load_spec(folder / name)


FREE = "name: t\nanswer_format: free-text\n"
ROWS = [
    {"id": f"q{i}", "question": f"Q{i}?", "answer": f"a{i}", "doc_id": f"d{i % 5}", "category": "c"} for i in range(20)
]


# ---------------------------------------------------------------- question sources and field mappings


def test_csv_with_a_field_mapping_and_choice_columns(tmp_path):
    csv_text = (
        "num,prompt,A,B,C,D,gold,source\n"
        "1,Which is red?,sky,grass,blood,snow,C,doc1\n"
        '2,"Which one, of these, is cold?",snow,fire,sun,lava,A,doc2\n'
        '3,Which is a number?,seven,blue,cat,"multi\nline",A,doc1\n'
    )
    spec = task(
        tmp_path,
        "name: t\nanswer_format: multiple-choice\ndata:\n  questions:\n    path: q.csv\n"
        "    fields: {id: num, question: prompt, answer: gold, choices: [A, B, C, D], answer_is: letter,"
        " doc_id: source}\n",
        {"q.csv": csv_text},
    )
    qs = load_questions(spec)
    assert [q.id for q in qs] == ["1", "2", "3"]
    assert qs[0].choices == ["sky", "grass", "blood", "snow"] and qs[0].answers == ["blood"] and qs[0].gold_index == 2
    assert qs[1].question == "Which one, of these, is cold?" and qs[1].answers == ["snow"] and qs[1].doc_id == "doc2"
    assert qs[2].choices[3] == "multi\nline"
    assert qs[2].origin.endswith("q.csv:5")  # a quoted cell over two lines: the row ends on line 5


def test_parquet_with_a_field_mapping_list_answers_and_index_gold(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table(
            {
                "text": ["2+2?", "Capital of France?"],
                "opts": [["3", "4", "5"], ["Paris", "Lyon"]],
                "label": [1, 0],
                "alts": [["four", "4"], ["Paris"]],
            }
        ),
        tmp_path / "mc.parquet",
    )
    spec = task(
        tmp_path,
        "name: t\nanswer_format: multiple-choice\ndata:\n  questions:\n    path: mc.parquet\n"
        "    fields: {question: text, choices: opts, answer: label, answer_is: index}\n",
    )
    qs = load_questions(spec)
    assert [(q.id, q.answers, q.choices) for q in qs] == [
        ("1", ["4"], ["3", "4", "5"]),
        ("2", ["Paris"], ["Paris", "Lyon"]),
    ]
    spec = task(
        tmp_path,
        FREE + "data:\n  questions:\n    path: mc.parquet\n    fields: {question: text, answer: alts}\n",
        name="f.yaml",
    )
    assert [q.answers for q in load_questions(spec)] == [["four", "4"], ["Paris"]]
    assert load_questions(spec)[0].origin.endswith("mc.parquet: row 1")


def test_free_text_accepts_several_answers_as_a_list_a_json_cell_or_a_separator(tmp_path):
    rows = [
        {"question": "Capital of the Netherlands?", "answer": ["Amsterdam", "amsterdam ", "The Hague?"]},
        {"question": "Colour of grass?", "answer": "green"},
    ]
    spec = task(tmp_path, FREE + "data: {questions: {path: q.jsonl}}\n", {"q.jsonl": jsonl(rows)})
    qs = load_questions(spec)
    assert qs[0].answers == ["Amsterdam", "amsterdam", "The Hague?"] and qs[1].answers == ["green"]
    assert [q.id for q in qs] == ["1", "2"]  # no id field: the line number
    csv_text = 'q,a\nBig cat?,"[""lion"", ""tiger""]"\nSmall dog?,chihuahua|pug\n'
    spec = task(
        tmp_path,
        FREE + "data:\n  questions: {path: q.csv, fields: {question: q, answer: a, separator: '|'}}\n",
        {"q.csv": csv_text},
        name="c.yaml",
    )
    assert [q.answers for q in load_questions(spec)] == [["lion", "tiger"], ["chihuahua", "pug"]]


def test_yes_no_answers_are_normalised(tmp_path):
    rows = [
        {"question": "A?", "answer": "yes"},
        {"question": "B?", "answer": "NO"},
        {"question": "C?", "answer": True},
    ]
    spec = task(
        tmp_path, "name: t\nanswer_format: yes-no\ndata: {questions: {path: q.jsonl}}\n", {"q.jsonl": jsonl(rows)}
    )
    qs = load_questions(spec)
    assert [q.answers for q in qs] == [["Yes"], ["No"], ["Yes"]] and qs[0].choices == ["Yes", "No"]


def test_json_array_file(tmp_path):
    spec = task(
        tmp_path,
        FREE + "data: {questions: {path: q.json}}\n",
        {"q.json": json.dumps([{"id": "x", "question": "Q?", "answer": "A"}], indent=2)},
    )
    assert [(q.id, q.answers) for q in load_questions(spec)] == [("x", ["A"])]


def test_utf8_bom_and_blank_lines_are_fine(tmp_path):
    spec = task(
        tmp_path,
        FREE + "data: {questions: {path: q.jsonl}}\n",
        {"q.jsonl": "\ufeff" + jsonl(ROWS[:2]) + "\n   \n" + jsonl(ROWS[2:3])},
    )
    assert [q.id for q in load_questions(spec)] == ["q0", "q1", "q2"]


# ---------------------------------------------------------------- package resources and hub specs


@pytest.fixture
def data_package(tmp_path, monkeypatch) -> str:
    pkg = tmp_path / "site" / "harness_test_datapkg"
    (pkg / "data").mkdir(parents=True)
    (pkg / "docs").mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('the harness must not import data packages')\n")
    (pkg / "data" / "q.jsonl").write_text(jsonl(ROWS))
    for i in range(5):
        (pkg / "docs" / f"d{i}.txt").write_text(f"Document {i}.")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return "harness_test_datapkg"


def test_questions_and_corpus_from_an_installed_package(tmp_path, data_package):
    spec = task(
        tmp_path / "elsewhere",
        FREE + f"data:\n  questions: {{package: {data_package}, path: data/q.jsonl}}\n"
        f"  corpus: {{package: {data_package}, path: docs, exclude: [__init__.py]}}\n",
    )
    data = load_task_data(spec)
    assert len(data.train) + len(data.dev) + len(data.test) == 20 and not data.corpus_is_fallback
    assert sorted(d.doc_id for d in data.corpus) == [f"d{i}" for i in range(5)]
    assert data_package not in sys.modules  # found with find_spec, never imported


def test_shipped_package_corpus_with_front_matter_stripped():
    spec = load_spec(Path(__file__).resolve().parent.parent / "tasks" / "legal-qa.yaml")
    docs = {d.doc_id: d for d in load_corpus(spec)}
    assert len(docs) == 47 and "mit" in docs
    assert not docs["mit"].text.startswith("---") and "Permission is hereby granted" in docs["mit"].text


def test_hub_spec_offline_fails_at_once(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # unset means offline: nothing reaches for a network
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    spec = task(tmp_path, FREE + "data:\n  questions:\n    hub: {name: org/qa, split: validation}\n")
    start = time.perf_counter()
    with pytest.raises(
        HarnessError,
        match=r"t.yaml:5: field 'data.questions.hub': 'org/qa' is on the datasets hub, "
        r"and this run is offline",
    ):
        load_questions(spec)
    assert time.perf_counter() - start < 1.0


def test_hub_spec_with_a_hub(tmp_path, monkeypatch):
    calls = []

    def load_dataset(name, config, split):
        calls.append((name, config, split))
        return [{"q": f"Q{i}?", "a": [f"A{i}", f"alt{i}"]} for i in range(3)]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    spec = task(
        tmp_path,
        FREE + "data:\n  questions:\n    hub: {name: org/qa, config: en, split: validation}\n"
        "    fields: {question: q, answer: a}\n",
    )
    qs = load_questions(spec)
    assert calls == [("org/qa", "en", "validation")]
    assert [q.answers for q in qs][2] == ["A2", "alt2"] and qs[0].origin == "hub org/qa (validation): row 1"


# ---------------------------------------------------------------- corpora


def test_text_markdown_and_html_corpus(tmp_path):
    files = {
        "q.jsonl": jsonl([dict(r, doc_id=["guide", "notes", "page", "sub/deep"][i % 4]) for i, r in enumerate(ROWS)]),
        "docs/guide.md": "---\ntitle: Guide\n---\n# Guide\n\nUse **bold** text.\n",
        "docs/notes.txt": "Plain notes.\n",
        "docs/page.html": "<html><head><style>p {color: red}</style><script>var x = 1;</script></head>"
        "<body><h1>Title</h1><p>Fish &amp; chips &lt;3</p><!-- hidden --></body></html>",
        "docs/sub/deep.md": "Deeper.",
        "docs/skip.pdf": "not a text document",
        "docs/__init__.py": "",
    }
    spec = task(
        tmp_path,
        FREE + "data:\n  questions: {path: q.jsonl}\n"
        "  corpus: {path: docs, glob: '**/*', strip_front_matter: true, exclude: [__init__.py]}\n",
        files,
    )
    docs = {d.doc_id: d for d in load_corpus(spec)}
    assert sorted(docs) == ["guide", "notes", "page", "sub/deep"]
    assert docs["guide"].text == "# Guide\n\nUse **bold** text."
    assert docs["page"].text == "Title\nFish & chips <3" or docs["page"].text == "Title Fish & chips <3"
    assert (
        "<" not in docs["page"].text.replace("<3", "")
        and "color" not in docs["page"].text
        and "var x" not in docs["page"].text
    )
    data = load_task_data(spec)
    assert not data.corpus_is_fallback and len(data.corpus) == 4


def test_jsonl_corpus_with_custom_fields(tmp_path):
    corpus = [{"key": f"d{i}", "body": f"Body {i}", "name": f"Doc {i}"} for i in range(5)]
    spec = task(
        tmp_path,
        FREE + "data:\n  questions: {path: q.jsonl}\n"
        "  corpus: {path: c.jsonl, id_field: key, text_field: body, title_field: name}\n",
        {"q.jsonl": jsonl(ROWS), "c.jsonl": jsonl(corpus)},
    )
    docs = load_corpus(spec)
    assert [(d.doc_id, d.text, d.title) for d in docs][:2] == [("d0", "Body 0", "Doc 0"), ("d1", "Body 1", "Doc 1")]


def test_without_a_corpus_rag_indexes_the_training_question_answer_pairs(tmp_path):
    spec = task(
        tmp_path,
        FREE + "data:\n  questions: {path: q.jsonl}\n  split: {by: question, test_fraction: 0.25}\n",
        {"q.jsonl": jsonl(ROWS)},
    )
    data = load_task_data(spec)
    assert data.corpus_is_fallback
    assert [d.doc_id for d in data.corpus] == [q.id for q in data.train]
    test_ids = {q.id for q in data.test}
    assert not test_ids & {d.doc_id for d in data.corpus}  # no test answer leaks into the index
    first = data.train[0]
    assert data.corpus[0].text == f"Question: {first.question}\nAnswer: {first.answers[0]}"


# ---------------------------------------------------------------- splits


def test_ratio_splits_are_seeded_and_deterministic(tmp_path):
    spec = task(
        tmp_path,
        FREE
        + "data:\n  questions: {path: q.jsonl}\n  split: {by: question, test_fraction: 0.25, dev_fraction: 0.1}\n",
        {"q.jsonl": jsonl(ROWS)},
    )
    qs = load_questions(spec)
    a = split_questions(qs, spec.data.split, spec.where)
    b = split_questions(list(reversed(qs)), spec.data.split, spec.where)
    assert [sorted(q.id for q in part) for part in a] == [sorted(q.id for q in part) for part in b]
    assert [len(p) for p in a] == [13, 2, 5]
    c = split_questions(qs, SplitSpec(by="question", test_fraction=0.25, dev_fraction=0.1, seed=1), spec.where)
    assert {q.id for q in c[2]} != {q.id for q in a[2]}
    assert load_task_data(spec).fingerprint() == load_task_data(spec).fingerprint()


def test_by_doc_split_holds_out_whole_documents(tmp_path):
    spec = task(
        tmp_path,
        FREE + "data:\n  questions: {path: q.jsonl}\n  split: {by: doc, test_fraction: 0.2, dev_fraction: 0.2}\n",
        {"q.jsonl": jsonl(ROWS)},
    )
    data = load_task_data(spec)
    docs = [{q.doc_id for q in part} for part in (data.train, data.dev, data.test)]
    assert [len(d) for d in docs] == [3, 1, 1]
    assert not (docs[0] & docs[2]) and not (docs[0] & docs[1]) and not (docs[1] & docs[2])
    assert all(sum(q.doc_id == d for q in data.test) == 4 for d in docs[2])  # every question of a held-out doc


def test_given_split(tmp_path):
    names = ["train"] * 12 + ["validation"] * 3 + ["test"] * 5
    rows = [dict(r, part=n) for r, n in zip(ROWS, names)]
    spec = task(
        tmp_path,
        FREE + "data:\n  questions: {path: q.jsonl, fields: {split: part}}\n  split: {by: given}\n",
        {"q.jsonl": jsonl(rows)},
    )
    data = load_task_data(spec)
    assert [len(data.train), len(data.dev), len(data.test)] == [12, 3, 5]
    assert [q.id for q in data.test] == [f"q{i}" for i in range(15, 20)]


def test_split_field_is_ignored_unless_the_split_is_given(tmp_path):
    rows = [dict(r, split="whatever") for r in ROWS]
    spec = task(tmp_path, FREE + "data:\n  questions: {path: q.jsonl}\n", {"q.jsonl": jsonl(rows)})
    assert len(load_task_data(spec).test) == 4  # 1 of 5 docs held out, with its 4 questions


def test_the_fingerprint_is_the_data_not_where_it_lives(tmp_path):
    body = FREE + "data:\n  questions: {path: q.jsonl}\n"
    a = load_task_data(task(tmp_path / "a", body, {"q.jsonl": jsonl(ROWS)}))
    b = load_task_data(task(tmp_path / "b", body, {"q.jsonl": jsonl(ROWS)}))
    assert a.fingerprint() == b.fingerprint()
    c = load_task_data(task(tmp_path / "c", body, {"q.jsonl": jsonl([dict(ROWS[0], answer="other"), *ROWS[1:]])}))
    assert c.fingerprint() != a.fingerprint()


def test_row_problems_are_collected_with_their_lines(tmp_path):
    rows = [dict(r) for r in ROWS]
    rows[2]["answer"], rows[5]["question"], rows[9]["id"] = "", 7, "q0"
    spec = task(tmp_path, FREE + "data: {questions: {path: q.jsonl}}\n", {"q.jsonl": jsonl(rows)})
    with pytest.raises(TaskProblems) as exc:
        load_questions(spec)
    lines = [p.split(": ", 1)[0].rsplit(":", 1)[-1] for p in exc.value.problems]
    assert lines == ["3", "6", "10"]
    assert "must be text, got int" in exc.value.problems[1] and "duplicate id 'q0'" in exc.value.problems[2]
