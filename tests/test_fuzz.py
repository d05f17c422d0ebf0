"""Property-based fuzzing (hypothesis) of the task loader and the CLI: thousands of generated task files and
argument lists, none of which may end in a traceback.

(a) Task YAML documents: random nesting of known and unknown keys, wrong types, unicode, control characters
    and NULs, huge numbers, includes pointing anywhere (missing files, itself, folders), raw bytes that are not
    YAML or not UTF-8, YAML tags, and mutations of a valid task file. `load_spec` either returns a TaskSpec or
    raises HarnessError; `harness tasks validate` (in-process) exits 0 or 2, one line per problem.
(b) Argument lists for `harness.cli.main`: random subcommands, options and values (negative and huge numbers,
    empty strings, unicode). Every call exits with 0, 1 or 2 and prints no traceback. No call can start a run:
    the only task files that exist are broken ones, and the shipped tasks/ folder is hidden.
"""

from __future__ import annotations

import itertools
import json
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import HarnessError
from tests import reliability_counts as counts
from tests.conftest import run_cli as cli

EXAMPLES = 1000
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, database=None, derandomize=False, suppress_health_check=list(HealthCheck)
)


def _known_keys() -> list[str]:
    """Every field name of the task schema, at any depth (so generated documents hit real fields)."""
    from pydantic import BaseModel

    from harness.spec import TaskSpec

    names: set[str] = set()
    seen: set[type] = set()

    def models_in(annotation):
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield annotation
        for arg in typing.get_args(annotation):
            yield from models_in(arg)

    def walk(model):
        if model in seen:
            return
        seen.add(model)
        for name, f in model.model_fields.items():
            names.add(name)
            for sub in models_in(f.annotation):
                walk(sub)

    walk(TaskSpec)
    return sorted(names | {"include", "source_path", "overrides"})


KEYS = _known_keys()
WORDS = [
    "yes-no",
    "multiple-choice",
    "free-text",
    "default",
    "lora",
    "qlora",
    "dora",
    "rag",
    "prompt",
    "accuracy",
    "token_f1",
    "flat",
    "hnsw",
    "ivf",
    "doc",
    "given",
    "random",
    "supervised-qa",
    "corpus",
    "both",
    "auto",
    "questions.jsonl",
    "corpus",
    "*.txt",
    "q.csv",
    "../..",
    ".",
    "",
    " ",
    "\x00",
    "\t\n",
    "é",
    "法律",
    "🙂",
    "{{ question }}",
    "{{ nope }}",
    "{% for %}",
    "{{ cycler.__init__ }}",
    "1e309",
    "-0",
    "NaN",
    "~",
    "null",
]

text = st.text(max_size=30)  # any unicode but surrogates: control characters and NULs included
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.integers(min_value=-3, max_value=300),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
    st.sampled_from(WORDS),
)
keys = st.one_of(st.sampled_from(KEYS), text)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=25,
)


def safe_name(s: str) -> str:
    """Random names stay inside the fuzz folder (no absolute paths, no climbing out)."""
    return s.replace("..", "").lstrip("/~")


includes = st.one_of(
    st.sampled_from(["self", "inc.yaml", "missing.yaml", "sub", "", "data.yaml", "questions.jsonl", "bad-utf8.yaml"]),
    text.map(safe_name),
)
include_field = st.one_of(includes, st.lists(includes, max_size=3), values)

OPTIONAL_TOP_LEVEL = (
    "systems",
    "finetune",
    "rag",
    "evaluation",
    "metrics",
    "seed",
    "model",
    "system_prompt",
    "question_template",
    "description",
)

plausible = st.fixed_dictionaries(
    {
        "name": st.one_of(st.just("fuzz"), text),
        "answer_format": st.sampled_from(["yes-no", "multiple-choice", "free-text"]),
        "data": st.one_of(
            st.just({"questions": {"path": "questions.jsonl"}}),
            st.fixed_dictionaries(
                {
                    "questions": st.just({"path": "questions.jsonl"}),
                    "corpus": st.one_of(
                        st.fixed_dictionaries(
                            {"path": st.sampled_from(["corpus", "."])},
                            optional={
                                "glob": st.one_of(
                                    text, st.sampled_from(["", "/abs", "../*", "**/*", "*.txt", "\x00"])
                                ),
                                "strip_front_matter": values,
                                "exclude": values,
                            },
                        ),
                        st.dictionaries(keys, values, max_size=4),
                    ),
                },
                optional={"split": st.dictionaries(keys, values, max_size=4)},
            ),
            st.fixed_dictionaries({"questions": st.dictionaries(keys, values, max_size=3)}),
            values,
        ),
    },
    optional=dict.fromkeys(OPTIONAL_TOP_LEVEL, values)
    | {"include": include_field}
    | dict.fromkeys(("nonsense", "systems_", "Name"), values),
)
documents = st.one_of(
    plausible,
    st.dictionaries(keys, values, max_size=8),
    st.dictionaries(st.just("include"), include_field, min_size=1).flatmap(
        lambda d: st.dictionaries(keys, values, max_size=4).map(lambda e: {**e, **d})
    ),
    values,
)

VALID = """\
# harness run fuzz.yaml
name: fuzz
answer_format: yes-no
data:
  questions: {path: questions.jsonl}
  split: {by: random, test_fraction: 0.3, dev_fraction: 0.2}
systems: [prompt, lora]
finetune: {r: 4, alpha: 8}
rag: {k: 2, chunk_tokens: 64, overlap: 8}
metrics: [accuracy]
question_template: "{{ question }}"
"""
YAML_BITS = [
    "!!python/object/apply:os.system ['true']",
    "!!python/name:os.system",
    "!!binary AAAA",
    "&a [*a]",
    "*undefined",
    "? [a]\n: b",
    "---\n---\n",
    "%YAML 1.1\n---\n",
    "{",
    "]",
    "a: b: c",
    "- x",
    "\t",
    "\x00",
    "\ufeff",
    "<<: *a",
    "!custom x",
    "'unterminated",
    "key: |\n  block",
    "include: self",
    "include: [self, inc.yaml]",
    "data: {questions: {path: /dev/null}}",
    "1e999",
    "0x1F",
    "~",
]


@st.composite
def raw_texts(draw) -> bytes:
    """Text that is not a dumped mapping: random characters, YAML syntax soup, or a valid file mutated."""
    kind = draw(st.sampled_from(["random", "soup", "mutated", "bytes"]))
    if kind == "random":
        return draw(st.text(max_size=200)).encode("utf-8")
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "soup":
        return "\n".join(draw(st.lists(st.one_of(st.sampled_from(YAML_BITS), text), max_size=8))).encode("utf-8")
    lines = VALID.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "insert", "replace", "indent", "cut"]))
        if op == "delete":
            del lines[i]
        elif op == "insert":
            lines.insert(i, draw(st.one_of(st.sampled_from(YAML_BITS), text)))
        elif op == "replace":
            lines[i] = draw(text)
        elif op == "indent":
            lines[i] = " " * draw(st.integers(1, 5)) + lines[i]
        else:
            lines[i] = lines[i][: draw(st.integers(0, max(len(lines[i]) - 1, 0)))]
        if not lines:
            lines = [""]
    return "\n".join(lines).encode("utf-8")


def dump(doc, self_name: str) -> bytes:
    def fix(v):  # `include: self` points at the file itself (an include cycle)
        if v == "self":
            return self_name
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v

    if isinstance(doc, dict) and "include" in doc:
        doc = {**doc, "include": fix(doc["include"])}
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False).encode("utf-8")


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fuzz")
    qs = [{"id": f"q{i}", "question": f"Is {i} even?", "answer": "Yes" if i % 2 == 0 else "No"} for i in range(20)]
    (d / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in qs))
    (d / "inc.yaml").write_text("seed: 3\nsystems: [prompt]\n")
    (d / "data.yaml").write_text("data: {questions: {path: questions.jsonl}}\n")
    (d / "bad-utf8.yaml").write_bytes(b"name: \xff\xfe\n")
    (d / "sub").mkdir()
    (d / "corpus").mkdir()
    (d / "corpus" / "alpha.txt").write_text("---\ntitle: Alpha\n---\nThe alpha licence permits use.\n")
    (d / "corpus" / "beta.md").write_text("# Beta\n\nThe beta licence forbids use.\n")
    return d


_counter = itertools.count()


def _check_task_file(folder: Path, content) -> None:
    from harness.spec import TaskSpec, load_spec

    path = folder / f"t{next(_counter)}.yaml"
    path.write_bytes(content if isinstance(content, bytes) else dump(content, path.name))
    try:
        try:
            spec = load_spec(path)
            assert isinstance(spec, TaskSpec)
            loaded = True
        except HarnessError as e:
            assert str(e).strip(), "an empty error message"
            loaded = False
        code, out, err = cli("tasks", "validate", path)
        assert "Traceback" not in out + err, out + err
        assert code in (0, 2), (code, out, err)
        if code == 2:
            assert all(line.startswith("FAIL ") for line in err.splitlines() if line.strip()), err
        if not loaded or code:
            counts.add("bad inputs rejected cleanly")
    finally:
        path.unlink(missing_ok=True)


@FUZZ_SETTINGS
@given(doc=documents)
def test_generated_task_documents(fuzz_dir, doc):
    _check_task_file(fuzz_dir, doc)


@FUZZ_SETTINGS
@given(raw=raw_texts())
def test_generated_task_texts(fuzz_dir, raw):
    _check_task_file(fuzz_dir, raw)


# ---------------------------------------------------------------- (b) the CLI

BROKEN = {
    "broken.yaml": "name: [unclosed\n",
    "empty.yaml": "",
    "list.yaml": "- a\n- b\n",
    "tagged.yaml": "name: !!python/object/apply:os.system ['true']\n",
    "schema.yaml": "name: x\nanswer_format: maybe\ndata: 3\n",
    "cycle.yaml": "include: cycle.yaml\nname: c\n",
}


@pytest.fixture(scope="module")
def cli_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fuzz-cli")
    for name, body in BROKEN.items():
        (d / name).write_text(body)
    (d / "not-a-run").mkdir()
    (d / "empty-tasks").mkdir()
    return d


@pytest.fixture(scope="module")
def cli_sandbox(cli_dir):
    """Work in cli_dir, with the shipped tasks hidden: no generated name can be a real task."""
    import harness.tasks

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cli_dir)
        mp.setattr(harness.tasks, "SHIPPED", cli_dir / "empty-tasks")
        mp.delenv("HARNESS_TASKS", raising=False)
        yield cli_dir


numbers = st.one_of(st.integers(min_value=-(10**30), max_value=10**30), st.integers(-5, 5)).map(str)
values_cli = st.one_of(
    numbers,
    text,
    st.sampled_from(
        [
            "",
            " ",
            "-",
            "--",
            "-1",
            "0",
            "1e9",
            "nan",
            "inf",
            "prompt",
            "lora,rag",
            ",",
            "prompt,prompt",
            "default",
            "local",
            "accelerate",
            "é",
            "\x00",
            "🙂",
            "--help",
        ]
    ),
)
task_args = st.one_of(
    st.sampled_from([*BROKEN, "missing.yaml", "not-a-run", ".", "no-such-task", "legal-qa", "country-capitals", ""]),
    text.map(safe_name).map(lambda s: f"no-such-{s}"),
)
path_args = st.one_of(
    st.sampled_from(["not-a-run", ".", "missing", "broken.yaml", "", "empty-tasks"]), text.map(safe_name)
)
run_options = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from(
                [
                    "--systems",
                    "-s",
                    "--model",
                    "-m",
                    "--limit",
                    "--seed",
                    "--launcher",
                    "--reports-dir",
                    "--indices-dir",
                    "--tasks-dir",
                ]
            ),
            values_cli,
        ),
        st.tuples(st.sampled_from(["--retrain", "--quiet", "-q", "--help"])),
        st.tuples(
            st.one_of(st.sampled_from(["--bogus", "-x", "--limit=", "--systems="]), text.map(lambda s: "--" + s))
        ),
    ),
    max_size=5,
).map(lambda opts: [x for o in opts for x in o])


@st.composite
def argument_lists(draw) -> list[str]:
    command = draw(
        st.sampled_from(
            [
                "run",
                "report",
                "compare",
                "tasks list",
                "tasks show",
                "tasks validate",
                "tasks",
                "",
                "random",
                "--help",
                "run --help",
                "tasks bogus",
            ]
        )
    )
    args = command.split()
    if command == "random":
        args = draw(st.lists(st.one_of(text, values_cli), max_size=5))
    elif command == "run":
        args += draw(st.lists(task_args, max_size=2)) + draw(run_options)
    elif command == "report":
        args += draw(st.lists(path_args, max_size=2))
    elif command == "compare":
        args += draw(st.lists(path_args, max_size=3))
        if draw(st.booleans()):
            args += ["--out", draw(path_args.map(lambda s: f"out-{s}"))]
    elif command in ("tasks show", "tasks validate"):
        args += draw(st.lists(task_args if command.endswith("show") else path_args, max_size=3))
    if command.startswith("tasks") and draw(st.booleans()):
        args += ["--tasks-dir", draw(st.sampled_from([".", "missing", "empty-tasks", ""]))]
    if draw(st.integers(0, 9)) == 0:  # shuffle now and then: options before subcommands, etc.
        args = draw(st.permutations(args))
    return args


@FUZZ_SETTINGS
@given(args=argument_lists())
def test_generated_command_lines(cli_sandbox, args):
    if args and args[0] == "run":
        # belt and braces: no generated call may name a task that exists (it would start a real run)
        from harness.tasks import list_task_files

        names = [a for a in args[1:] if not a.startswith("-")]
        assert not (set(names) & set(list_task_files([])))
    code, out, err = cli(*args)
    assert "Traceback" not in out + err, (args, out + err)
    assert code in (0, 1, 2), (args, code, err)
    assert "▸ load data" not in err, f"a generated call started a run: {args}"
    if code:
        lines = [line for line in err.splitlines() if line.strip()]
        assert lines or out.strip(), (args, "a failure with no message")
        counts.add("bad inputs rejected cleanly")
