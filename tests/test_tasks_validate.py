"""`harness tasks validate`: malformed task files and data sets are each rejected with a specific, located,
one-line error (file, line where known, field), exit code 2 and no traceback; the shipped tasks pass.

Most cases run the CLI in-process (`harness.cli.main`), which is what the installed `harness` script calls;
a few run the real script in a subprocess to prove the same from the outside.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from harness.cli import main

REPO = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------- a valid task to break, one way per case

TASK = """\
# harness run t.yaml
name: t
answer_format: free-text
data:
  questions: {path: t/questions.jsonl}
  corpus: {path: t/docs}
  split: {by: doc, test_fraction: 0.25, dev_fraction: 0}
system_prompt: Answer briefly.
"""
ROWS = [
    {"id": f"q{i}", "question": f"Question {i} about {d}?", "answer": f"answer {i}", "doc_id": d}
    for i, d in enumerate(["a", "a", "b", "b", "c", "c", "d", "d"])
]
DOCS = {
    "a.md": "# A\n\nAlpha facts.",
    "b.md": "Bravo facts.",
    "c.txt": "Charlie facts.",
    "d.html": "<html><body><p>Delta facts.</p></body></html>",
}
MC_TASK = TASK.replace("free-text", "multiple-choice")
YN_TASK = TASK.replace("free-text", "yes-no")


def jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def rows_with(i: int, **change) -> list[dict]:
    rows = [dict(r) for r in ROWS]
    rows[i].update(change)
    for k in [k for k, v in change.items() if v is ...]:
        del rows[i][k]
    return rows


def mc_rows(i: int | None = None, **change) -> str:
    rows = [dict(r, choices=[r["answer"], "other", "neither"]) for r in ROWS]
    if i is not None:
        rows[i].update(change)
    return jsonl(rows)


def write_task(folder: Path, files: dict[str, str | bytes | None]) -> Path:
    base: dict[str, str | bytes | None] = {"t.yaml": TASK, "t/questions.jsonl": jsonl(ROWS)}
    base.update({f"t/docs/{n}": t for n, t in DOCS.items()})
    base.update(files)
    for rel, content in base.items():
        if content is None:
            continue
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content, encoding="utf-8")
    return folder / "t.yaml"


def validate(capsys, *paths) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(["tasks", "validate", *map(str, paths)])
        raise SystemExit(0)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


# Each case: files to change (None removes one from the base set), the YAML line the message must point
# at (None where no line applies), and the words the one line must contain.
CASES = {
    # ---- the YAML file itself
    "invalid-yaml": ({"t.yaml": "name: t\nanswer_format: [free-text\ndata: {}\n"}, ("t.yaml", 3), ["invalid YAML"]),
    "empty-file": ({"t.yaml": ""}, ("t.yaml", None), ["the file is empty"]),
    "only-comments": ({"t.yaml": "# harness run t\n# nothing else\n"}, ("t.yaml", None), ["the file is empty"]),
    "list-not-mapping": (
        {"t.yaml": "- name: t\n- answer_format: yes-no\n"},
        ("t.yaml", 1),
        ["must be a mapping", "a list"],
    ),
    "non-utf8-yaml": ({"t.yaml": TASK.encode() + b"description: caf\xe9\n"}, ("t.yaml", 9), ["not UTF-8", "0xe9"]),
    "duplicate-key": (
        {"t.yaml": TASK + "system_prompt: again\n"},
        ("t.yaml", 9),
        ["duplicate key 'system_prompt'", "line 8"],
    ),
    # ---- the schema
    "wrong-type": (
        {"t.yaml": TASK + "finetune: {r: many}\n"},
        ("t.yaml", 9),
        ["field 'finetune.r'", "valid integer", "'many'"],
    ),
    "wrong-type-mapping": ({"t.yaml": TASK + "rag: 5\n"}, ("t.yaml", 9), ["field 'rag'", "mapping"]),
    "unknown-top-key": (
        {"t.yaml": TASK + "sytem_prompt: x\n"},
        ("t.yaml", 9),
        ["unknown field 'sytem_prompt'", "did you mean 'system_prompt'"],
    ),
    "unknown-nested-key": (
        {"t.yaml": TASK.replace("{path: t/questions.jsonl}", "{path: t/questions.jsonl, fields: {questoin: q}}")},
        ("t.yaml", 5),
        ["unknown field 'data.questions.fields.questoin'", "did you mean 'question'"],
    ),
    "missing-required": (
        {"t.yaml": TASK.replace("answer_format: free-text\n", "")},
        ("t.yaml", None),
        ["field 'answer_format' is required"],
    ),
    "bad-answer-format": (
        {"t.yaml": TASK.replace("free-text", "freetext")},
        ("t.yaml", 3),
        ["field 'answer_format'", "did you mean 'free-text'"],
    ),
    "bad-name": ({"t.yaml": TASK.replace("name: t", "name: My Task")}, ("t.yaml", 2), ["field 'name'", "pattern"]),
    "negative-learning-rate": (
        {"t.yaml": TASK + "finetune: {learning_rate: -0.001}\n"},
        ("t.yaml", 9),
        ["field 'finetune.learning_rate'", "greater than 0", "-0.001"],
    ),
    "rank-zero": (
        {"t.yaml": TASK + "finetune:\n  r: 0\n"},
        ("t.yaml", 10),
        ["field 'finetune.r'", "greater than 0", "(got 0)"],
    ),
    "unknown-override-field": (
        {"t.yaml": TASK + "finetune: {overrides: {qlora: {learnig_rate: 0.1}}}\n"},
        ("t.yaml", 9),
        ["field 'finetune.overrides'", "did you mean 'learning_rate'"],
    ),
    "unknown-override-method": (
        {"t.yaml": TASK + "finetune: {overrides: {qlorra: {r: 4}}}\n"},
        ("t.yaml", 9),
        ["field 'finetune.overrides'", "'qlorra' is not a fine-tuning method", "did you mean 'qlora'"],
    ),
    "fractions-too-big": (
        {"t.yaml": TASK.replace("dev_fraction: 0", "dev_fraction: 0.8")},
        ("t.yaml", 7),
        ["field 'data.split'", "below 1"],
    ),
    "overlap-too-big": (
        {"t.yaml": TASK + "rag: {chunk_tokens: 32, overlap: 32}\n"},
        ("t.yaml", 9),
        ["field 'rag'", "overlap (32)"],
    ),
    "unknown-metric": (
        {"t.yaml": TASK + "metrics: [exact_match, rouge]\n"},
        ("t.yaml", 9),
        ["field 'metrics'", "unknown metric 'rouge'", "rouge_l"],
    ),
    "metric-wrong-format": (
        {"t.yaml": TASK + "metrics: [accuracy]\n"},
        ("t.yaml", 9),
        ["field 'metrics'", "does not apply to answer format 'free-text'"],
    ),
    "unknown-system": (
        {"t.yaml": TASK + "systems: [prompt, ragg]\n"},
        ("t.yaml", 9),
        ["field 'systems'", "unknown system 'ragg'", "did you mean 'rag'"],
    ),
    "invalid-jinja": (
        {"t.yaml": TASK + "question_template: '{{ question }'\n"},
        ("t.yaml", 9),
        ["field 'question_template'", "invalid Jinja2 template"],
    ),
    "undefined-jinja-var": (
        {"t.yaml": TASK + "question_template: 'Q: {{ questoin }}'\n"},
        ("t.yaml", 9),
        ["field 'question_template'", "'questoin' is undefined"],
    ),
    "source-both": (
        {"t.yaml": TASK.replace("{path: t/questions.jsonl}", "{path: t/questions.jsonl, hub: {name: org/x}}")},
        ("t.yaml", 5),
        ["field 'data.questions'", "exactly one of `path` or `hub`"],
    ),
    # ---- includes
    "include-cycle": (
        {"t.yaml": "include: a.yaml\n" + TASK, "a.yaml": "include: b.yaml\n", "b.yaml": "include: a.yaml\nseed: 1\n"},
        ("b.yaml", 1),
        ["include cycle", "a.yaml -> b.yaml -> a.yaml"],
    ),
    "include-missing": (
        {"t.yaml": TASK + "include: _shared/nope.yaml\n"},
        ("t.yaml", 9),
        ["field 'include'", "nope.yaml not found"],
    ),
    "include-not-mapping": (
        {"t.yaml": "include: base.yaml\n" + TASK, "base.yaml": "- 1\n- 2\n"},
        ("base.yaml", 1),
        ["must be a mapping"],
    ),
    "include-bad-field": (
        {"t.yaml": "include: base.yaml\n" + TASK, "base.yaml": "seed: 1\nrag: {k: 0}\n"},
        ("base.yaml", 2),
        ["field 'rag.k'", "greater than 0"],
    ),
    # ---- files
    "missing-questions-file": (
        {"t.yaml": TASK.replace("t/questions.jsonl", "t/nope.jsonl")},
        ("t.yaml", 5),
        ["field 'data.questions.path'", "nope.jsonl not found"],
    ),
    "missing-corpus-folder": (
        {"t.yaml": TASK.replace("t/docs", "t/nodocs")},
        ("t.yaml", 6),
        ["field 'data.corpus.path'", "nodocs not found"],
    ),
    "unknown-extension": (
        {"t.yaml": TASK.replace("t/questions.jsonl", "t/q.txt"), "t/q.txt": "x\n"},
        ("t.yaml", 5),
        ["field 'data.questions.path'", "cannot tell the format"],
    ),
    "package-not-installed": (
        {"t.yaml": TASK.replace("{path: t/docs}", "{package: no_such_pkg_xyz, path: docs}")},
        ("t.yaml", 6),
        ["field 'data.corpus.package'", "'no_such_pkg_xyz' is not installed"],
    ),
    "hub-offline": (
        {"t.yaml": TASK.replace("{path: t/questions.jsonl}", "{hub: {name: org/some-dataset}}")},
        ("t.yaml", 5),
        ["field 'data.questions.hub'", "offline", "HF_HUB_OFFLINE"],
    ),
    "model-folder-missing": (
        {"t.yaml": TASK + "model: ./no-such-model\n"},
        ("t.yaml", 9),
        ["field 'model'", "does not exist"],
    ),
    # ---- question data
    "empty-questions-file": ({"t/questions.jsonl": ""}, ("questions.jsonl", None), ["no questions in the file"]),
    "invalid-json-line": (
        {"t/questions.jsonl": jsonl(ROWS[:2]) + '{"id": "x", "question": \n' + jsonl(ROWS[2:])},
        ("questions.jsonl", 3),
        ["invalid JSON"],
    ),
    "json-line-not-object": (
        {"t/questions.jsonl": jsonl(ROWS[:3]) + "[1, 2]\n" + jsonl(ROWS[3:])},
        ("questions.jsonl", 4),
        ["must be a JSON object", "list"],
    ),
    "non-utf8-data": (
        {"t/questions.jsonl": jsonl(ROWS[:3]).encode() + b'{"question": "caf\xff"}\n'},
        ("questions.jsonl", 4),
        ["not UTF-8", "0xff"],
    ),
    "missing-question-field": (
        {"t/questions.jsonl": jsonl(rows_with(1, question=...))},
        ("questions.jsonl", 2),
        ["field 'question'", "missing or empty"],
    ),
    "mapped-field-absent": (
        {"t.yaml": TASK.replace("{path: t/questions.jsonl}", "{path: t/questions.jsonl, fields: {answer: gold}}")},
        ("t.yaml", 5),
        ["field 'data.questions.fields.answer'", "no row", "'gold'"],
    ),
    "empty-answer": (
        {"t/questions.jsonl": jsonl(rows_with(2, answer=""))},
        ("questions.jsonl", 3),
        ["field 'answer'", "missing or empty"],
    ),
    "yes-no-answer": (
        {
            "t.yaml": YN_TASK,
            "t/questions.jsonl": jsonl(
                [dict(r, answer="Yes") for r in ROWS[:5]]
                + [dict(ROWS[5], answer="Maybe")]
                + [dict(r, answer="No") for r in ROWS[6:]]
            ),
        },
        ("questions.jsonl", 6),
        ["'Maybe'", "needs Yes or No"],
    ),
    "duplicate-ids": (
        {"t/questions.jsonl": jsonl(rows_with(5, id="q1"))},
        ("questions.jsonl", 6),
        ["duplicate id 'q1'", "questions.jsonl:2"],
    ),
    "mc-gold-not-a-choice": (
        {"t.yaml": MC_TASK, "t/questions.jsonl": mc_rows(3, answer="elsewhere")},
        ("questions.jsonl", 4),
        ["gold answer 'elsewhere'", "not one of the choices"],
    ),
    "mc-one-option": (
        {"t.yaml": MC_TASK, "t/questions.jsonl": mc_rows(0, choices=["answer 0"])},
        ("questions.jsonl", 1),
        ["field 'choices'", "at least two"],
    ),
    "mc-duplicate-options": (
        {"t.yaml": MC_TASK, "t/questions.jsonl": mc_rows(7, choices=["answer 7", "other", "other"])},
        ("questions.jsonl", 8),
        ["field 'choices'", "'other' twice"],
    ),
    "mc-letter-out-of-range": (
        {
            "t.yaml": MC_TASK.replace(
                "{path: t/questions.jsonl}", "{path: t/questions.jsonl, fields: {answer_is: letter}}"
            ),
            "t/questions.jsonl": re.sub(r'"answer": "answer \d"', '"answer": "A"', mc_rows(0, answer="Q")),
        },
        ("questions.jsonl", 1),
        ["gold answer 'Q'", "a letter from A to C"],
    ),
    "csv-extra-cells": (
        {
            "t.yaml": TASK.replace("questions.jsonl", "q.csv"),
            "t/q.csv": "id,question,answer,doc_id\n1,Q1?,a,a\n2,Q2?,b,b,EXTRA\n3,Q3?,c,c\n",
        },
        ("q.csv", 3),
        ["more cells than the header"],
    ),
    # ---- splits and corpus
    "given-split-no-test": (
        {
            "t.yaml": TASK.replace("{by: doc, test_fraction: 0.25, dev_fraction: 0}", "{by: given}"),
            "t/questions.jsonl": jsonl([dict(r, split="train") for r in ROWS]),
        },
        ("t.yaml", 7),
        ["field 'data.split.by'", "no row has split 'test'"],
    ),
    "given-split-bad-value": (
        {
            "t.yaml": TASK.replace("{by: doc, test_fraction: 0.25, dev_fraction: 0}", "{by: given}"),
            "t/questions.jsonl": jsonl(
                [dict(r, split="test" if i == 4 else "held-out" if i == 6 else "train") for i, r in enumerate(ROWS)]
            ),
        },
        ("questions.jsonl", 7),
        ["field 'split'", "'held-out'"],
    ),
    "split-by-doc-without-doc-id": (
        {
            "t.yaml": TASK.replace("  corpus: {path: t/docs}\n", ""),
            "t/questions.jsonl": jsonl(rows_with(4, doc_id=...)),
        },
        ("t.yaml", 6),
        ["field 'data.split.by'", "no doc_id", "questions.jsonl:5"],
    ),
    "one-document": (
        {
            "t.yaml": TASK.replace("  corpus: {path: t/docs}\n", ""),
            "t/questions.jsonl": jsonl([dict(r, doc_id="a") for r in ROWS]),
        },
        ("t.yaml", 6),
        ["field 'data.split.by'", "only 1 document: cannot make both"],
    ),
    "doc-id-not-in-corpus": (
        {"t/questions.jsonl": jsonl(rows_with(6, doc_id="zulu"))},
        ("questions.jsonl", 7),
        ["doc_id 'zulu' is not a document of the corpus"],
    ),
    "empty-corpus-document": ({"t/docs/b.md": "  \n\n"}, ("b.md", None), ["document has no text"]),
    "empty-corpus": (
        {"t.yaml": TASK.replace("{path: t/docs}", "{path: t/docs, glob: '*.rst'}")},
        ("t.yaml", 6),
        ["field 'data.corpus.path'", "the corpus is empty"],
    ),
    "jsonl-corpus-missing-id": (
        {
            "t.yaml": TASK.replace("{path: t/docs}", "{path: t/corpus.jsonl}"),
            "t/corpus.jsonl": jsonl([{"doc_id": d, "text": "x"} for d in "abc"] + [{"text": "no id"}]),
        },
        ("corpus.jsonl", 4),
        ["missing field 'doc_id'"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_task_is_rejected_with_one_located_line(case, tmp_path, capsys):
    files, (where_file, line), words = CASES[case]
    task = write_task(tmp_path, files)
    code, out, err = validate(capsys, task)
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    msg = lines[0]
    assert msg.startswith("FAIL "), msg
    loc = re.search(rf"(\S*{re.escape(where_file)})(?::(\d+))?", msg)
    assert loc, f"{case}: message does not name {where_file}: {msg}"
    assert Path(loc.group(1)).is_absolute() or str(tmp_path) in msg or loc.group(1).startswith(str(tmp_path)), msg
    if line is not None:
        assert loc.group(2) == str(line), f"{case}: expected {where_file}:{line} in: {msg}"
    for w in words:
        assert w in msg, f"{case}: {w!r} not in: {msg}"


def test_at_least_25_distinct_malformed_cases():
    assert len(CASES) >= 25


def test_every_problem_of_a_file_is_listed(tmp_path, capsys):
    rows = rows_with(1, question=...)
    rows[3]["answer"] = ""
    rows[6]["id"] = "q0"
    task = write_task(tmp_path, {"t/questions.jsonl": jsonl(rows), "t.yaml": TASK + "finetune: {r: -1, alpha: x}\n"})
    code, _, err = validate(capsys, task)
    assert code == 2
    assert [ln.split(": field")[0].rsplit(":", 1)[-1] for ln in err.splitlines()] == ["9", "9"]  # schema first
    task.write_text(TASK)
    code, _, err = validate(capsys, task)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 3, err
    assert [re.search(r"questions\.jsonl:(\d+)", ln).group(1) for ln in lines] == ["2", "4", "7"]


def test_valid_task_passes_and_a_folder_validates_its_files(tmp_path, capsys):
    task = write_task(tmp_path, {})
    code, out, err = validate(capsys, task)
    assert code == 0, err
    assert "ok" in out and "t (free-text)" in out and "corpus 4" in out
    code, out, err = validate(capsys, tmp_path)
    assert code == 0 and out.count("ok ") == 1, (out, err)


def test_one_bad_file_among_good_ones_fails_the_run_and_names_only_itself(tmp_path, capsys):
    good = write_task(tmp_path / "good", {})
    bad = write_task(tmp_path / "bad", {"t.yaml": TASK + "seed: one\n"})
    code, out, err = validate(capsys, good, bad)
    assert code == 2
    assert str(good) in out and str(bad) in err and str(good) not in err


def test_shipped_tasks_validate(capsys):
    files = sorted((REPO / "tasks").glob("*.yaml"))
    assert {f.stem for f in files} >= {"legal-qa", "geo-qa"}
    code, out, err = validate(capsys, *files)
    assert code == 0, err
    assert out.count("ok ") == len(files)


def test_shared_include_validates_as_an_include(capsys):
    code, out, err = validate(capsys, REPO / "tasks" / "_shared" / "defaults.yaml")
    assert code == 0, err
    assert "shared include" in out


# ---------------------------------------------------------------- the installed script, from outside


@pytest.fixture(scope="module")
def bad_tasks(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("bad")
    return [write_task(root / c, CASES[c][0]) for c in ("unknown-top-key", "invalid-json-line", "include-cycle")]


def test_script_reports_each_file_with_exit_2_and_no_traceback(harness_cmd, bad_tasks):
    r = subprocess.run(
        [*harness_cmd, "tasks", "validate", *map(str, bad_tasks)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2, r
    assert "Traceback" not in r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 3, r.stderr
    assert "did you mean 'system_prompt'" in lines[0] and "invalid JSON" in lines[1] and "include cycle" in lines[2]


def test_script_validates_the_shipped_tasks(harness_cmd):
    r = subprocess.run(
        f"{' '.join(harness_cmd)} tasks validate tasks/*.yaml",
        shell=True,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "ok   tasks/geo-qa.yaml" in r.stdout and "ok   tasks/legal-qa.yaml" in r.stdout


def test_run_with_a_bad_task_fails_in_one_line_before_any_model_loads(harness_cmd, bad_tasks, tmp_path):
    r = subprocess.run(
        [
            *harness_cmd,
            "run",
            str(bad_tasks[0]),
            "--reports-dir",
            str(tmp_path / "r"),
            "--indices-dir",
            str(tmp_path / "i"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "did you mean 'system_prompt'" in r.stderr


# ---------------------------------------------------------------- a new domain is a file, not code


TRIVIA = [
    ("What colour is the sky?", ["blue"]),
    ("What colour is grass?", ["green"]),
    ("How many legs has a spider?", ["eight", "8"]),
    ("What is frozen water?", ["ice"]),
    ("What do bees make?", ["honey"]),
    ("Which star warms the Earth?", ["the Sun", "Sun"]),
    ("What is the opposite of hot?", ["cold"]),
    ("How many days are in a week?", ["seven", "7"]),
    ("What animal barks?", ["a dog", "dog"]),
    ("What do cows drink?", ["water"]),
    ("What falls from clouds?", ["rain", "snow"]),
    ("What colour is a banana?", ["yellow"]),
    ("What is the capital of France?", ["Paris"]),
    ("Which month follows May?", ["June"]),
    ("What do you call a baby cat?", ["kitten"]),
    ("What shape has three sides?", ["triangle"]),
    ("What is two plus two?", ["four", "4"]),
    ("What gas do we breathe in?", ["oxygen"]),
    ("Which season follows winter?", ["spring"]),
    ("What do caterpillars become?", ["butterflies", "moths"]),
]


def test_a_new_task_is_a_yaml_and_a_jsonl_file_and_runs_end_to_end(
    tmp_path, tiny_model_dir, harness_cmd, capsys, monkeypatch
):
    folder = tmp_path / "my-tasks"
    (folder / "trivia").mkdir(parents=True)
    (folder / "trivia" / "questions.jsonl").write_text(
        jsonl([{"id": f"t{i}", "question": q, "answer": a} for i, (q, a) in enumerate(TRIVIA)])
    )
    task_file = folder / "trivia.yaml"
    task_file.write_text(f"""\
# harness run {task_file}
name: trivia
description: One-word answers to easy questions.
answer_format: free-text
data:
  questions: {{path: trivia/questions.jsonl}}
  split: {{by: question, test_fraction: 0.3, dev_fraction: 0.1, seed: 1}}
system_prompt: Answer in one word.
model: {tiny_model_dir}
rag: {{k: 2, chunk_tokens: 64, overlap: 8}}
evaluation: {{max_new_tokens: 4, warmup: 0, bootstrap: 100, dtype: float32}}
""")
    code, out, err = validate(capsys, task_file)
    assert code == 0, err
    assert "trivia (free-text): 12 train, 2 dev, 6 test, corpus (train Q&A)" in out
    monkeypatch.setenv("HARNESS_TASKS", str(folder))  # the folder's tasks are found by name, too
    with pytest.raises(SystemExit):
        main(["tasks", "list"])
        raise SystemExit(0)
    assert "trivia" in capsys.readouterr().out

    reports = tmp_path / "reports"
    r = subprocess.run(
        [
            *harness_cmd,
            "run",
            str(task_file),
            "--systems",
            "prompt,rag",
            "--limit",
            "5",
            "--quiet",
            "--reports-dir",
            str(reports),
            "--indices-dir",
            str(tmp_path / "indices"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = next((reports / "trivia").iterdir())
    res = json.loads((run_dir / "results.json").read_text())
    assert res["task"] == "trivia" and res["answer_format"] == "free-text" and res["n_test"] == 5
    for name in ("prompt", "rag"):
        s = res["systems"][name]
        assert s["status"] == "ok", s
        for metric in ("exact_match", "token_f1", "rouge_l", "semantic_similarity"):
            assert s["metrics"][metric]["value"] is not None, (name, metric)
    assert any("training question-answer pairs" in n for n in res["systems"]["rag"]["notes"])
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 10 and any(len(s["golds"]) == 2 for s in samples)
    assert (run_dir / "index.html").exists()
