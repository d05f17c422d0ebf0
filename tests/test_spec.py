"""harness.spec and harness.tasks: the task schema, includes, located errors, finding task files, and the
generated reference docs/tasks.md."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import pytest
import yaml

from harness import scorers, systems, taskinfo
from harness.checks import check_names, name_problems
from harness.cli import main
from harness.errors import HarnessError
from harness.spec import SECTIONS, TaskProblems, TaskSpec, load_spec
from harness.tasks import find_task, list_task_files
from harness.yamlfile import resolve_includes

REPO = Path(__file__).resolve().parent.parent
MINIMAL = "name: t\nanswer_format: free-text\ndata:\n  questions: {path: q.jsonl}\n"


def write(folder: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return folder / next(iter(files))


# ---------------------------------------------------------------- schema and defaults


def test_minimal_task_gets_every_default(tmp_path):
    spec = load_spec(write(tmp_path, {"t.yaml": MINIMAL}))
    assert spec.name == "t" and spec.model == "default" and spec.systems == ["prompt", "lora", "rag"]
    assert spec.data.questions.fields.question == "question" and spec.data.questions.fields.id == "id"
    assert spec.data.split.by == "doc" and spec.data.corpus is None
    assert spec.finetune.r == 16 and spec.rag.k == 4 and spec.evaluation.batch_size == 1
    assert spec.source_path == str((tmp_path / "t.yaml").resolve()) and spec.folder == tmp_path.resolve()


def test_every_field_has_a_description_and_every_section_a_valid_example():
    for section, model in SECTIONS:
        assert model.__doc__ and model.example, section
        for name, field in model.model_fields.items():
            assert field.description, f"{section}.{name} has no description"
        example = yaml.safe_load(model.example)
        key = section.rsplit(".", 1)[-1].removesuffix("[]")
        body = example if not section else example[key]
        if model is TaskSpec:
            body = {k: v for k, v in body.items() if k != "include"}
        for item in body if section.endswith("[]") else [body]:  # a list section: each item is one model
            model.model_validate(item)


def test_problems_are_all_listed_and_the_message_is_one_line(tmp_path):
    path = write(tmp_path, {"t.yaml": MINIMAL + "seed: x\nrag: {k: 0, chunk_tokens: -1}\nnope: 1\n"})
    with pytest.raises(TaskProblems) as exc:
        load_spec(path)
    probs = exc.value.problems
    assert len(probs) == 4, probs
    assert any("t.yaml:5: field 'seed'" in p for p in probs)
    assert any("t.yaml:6: field 'rag.k'" in p for p in probs) and any(
        "t.yaml:6: field 'rag.chunk_tokens'" in p for p in probs
    )
    assert any("t.yaml:7: unknown field 'nope'" in p for p in probs)
    assert "\n" not in str(exc.value) and "+3 more problems" in str(exc.value)


def test_union_field_errors_are_merged_into_one(tmp_path):
    path = write(tmp_path, {"t.yaml": MINIMAL + "finetune: {target_modules: 5}\n"})
    with pytest.raises(TaskProblems) as exc:
        load_spec(path)
    assert exc.value.problems == [
        f"{path}:5: field 'finetune.target_modules': Input should be a valid list, or 'all-linear' (got 5)"
    ]


def test_override_is_validated_and_applied(tmp_path):
    spec = load_spec(write(tmp_path, {"t.yaml": MINIMAL + "finetune: {r: 8, overrides: {qlora: {r: 4}}}\n"}))
    assert spec.finetune.for_method("qlora").r == 4 and spec.finetune.for_method("lora").r == 8
    path = write(tmp_path, {"u.yaml": MINIMAL + "finetune: {overrides: {qlorra: {r: 4}}}\n"})
    spec = load_spec(path)  # a fine-tuning method is a registered name: checked by harness.checks, not the schema
    with pytest.raises(TaskProblems, match="did you mean 'qlora'"):
        check_names(spec)
    assert name_problems(spec) == [
        f"{path}:5: field 'finetune.overrides': 'qlorra' is not a fine-tuning method (methods: lora, qlora, dora); "
        "did you mean 'qlora'?"
    ]


def test_registered_names_are_checked_in_one_place_with_located_messages(tmp_path):
    path = write(
        tmp_path,
        {"t.yaml": MINIMAL + "systems: [prompt, ragg]\nmetrics: [exact_match, rouge]\n"},
    )
    spec = load_spec(path)  # the schema knows no registry: these are valid fields
    problems = name_problems(spec, ["prompt", "lorra", "prompt"])
    assert problems[0].startswith(f"{path}:5: field 'systems': unknown system 'ragg'; did you mean 'rag'? (valid ")
    assert problems[1].startswith(f"{path}:6: field 'metrics': unknown metric 'rouge'; did you mean 'rouge_l'?")
    assert problems[2].startswith("--systems: unknown system 'lorra'; did you mean 'lora'? (valid systems: ")
    assert problems[3] == "--systems lists a system twice: prompt,lorra,prompt"
    assert len(problems) == 4


def test_registered_names_in_a_shared_include_are_checked_and_located(tmp_path):
    include = write(tmp_path / "_shared", {"d.yaml": "seed: 1\nsystems: [prompt, ragg]\nmetrics: [rouge]\n"})
    assert taskinfo.problems_of(include) == [
        f"{include}:2: field 'systems': unknown system 'ragg'; did you mean 'rag'? "
        f"(valid systems: {', '.join(systems.available())})",
        f"{include}:3: field 'metrics': unknown metric 'rouge'; did you mean 'rouge_l'? "
        f"(valid metrics: {', '.join(scorers.SCORERS)})",
    ]
    task = write(tmp_path, {"t.yaml": "include: _shared/d.yaml\n" + MINIMAL})
    problems = name_problems(load_spec(task))  # the task that includes it: located in the include
    assert [p.split(": field")[0] for p in problems] == [f"{include}:2", f"{include}:3"]


def test_relative_model_folder_resolves_against_the_task_file(tmp_path, monkeypatch):
    (tmp_path / "models" / "m").mkdir(parents=True)
    path = write(tmp_path / "tasks", {"t.yaml": MINIMAL + "model: ../models/m\n"})
    monkeypatch.chdir(tmp_path / "tasks" / "..")  # a working directory where ../models/m does not exist
    assert load_spec(path).model == str((tmp_path / "models" / "m").resolve())
    assert load_spec(write(tmp_path, {"h.yaml": MINIMAL + "model: org/some-model\n"})).model == "org/some-model"


# ---------------------------------------------------------------- includes


def test_includes_merge_in_order_later_wins_and_mappings_merge(tmp_path):
    path = write(
        tmp_path,
        {
            "t.yaml": """\
            include: [_shared/a.yaml, _shared/b.yaml]
            name: t
            answer_format: free-text
            data: {questions: {path: q.jsonl}}
            finetune: {epochs: 3}
            """,
            "_shared/a.yaml": """\
            include: base.yaml
            finetune: {r: 4, alpha: 8, learning_rate: 1.0e-3}
            systems: [prompt, lora, rag]
            rag: {k: 2}
            """,
            "_shared/base.yaml": "seed: 7\nrag: {k: 9, chunk_tokens: 100}\ndescription: from base\n",
            "_shared/b.yaml": "finetune: {r: 8}\nsystems: [prompt]\n",
        },
    )
    raw = resolve_includes(path)
    assert raw["finetune"] == {"r": 8, "alpha": 8, "learning_rate": 1.0e-3, "epochs": 3}  # nested merge, b over a
    assert raw["systems"] == ["prompt"]  # lists are replaced, not concatenated
    assert raw["rag"] == {"k": 2, "chunk_tokens": 100} and raw["seed"] == 7  # include of an include
    assert "include" not in raw
    spec = load_spec(path)
    assert (spec.finetune.r, spec.finetune.alpha, spec.finetune.epochs, spec.rag.k) == (8, 8, 3, 2)
    # messages point at the file that set the field
    assert spec.where("finetune.r") == f"{tmp_path / '_shared/b.yaml'}:1: field 'finetune.r'"
    assert spec.where("finetune.epochs") == f"{path}:5: field 'finetune.epochs'"
    assert spec.where("seed") == f"{tmp_path / '_shared/base.yaml'}:1: field 'seed'"


def test_the_task_file_beats_its_includes(tmp_path):
    path = write(tmp_path, {"t.yaml": "include: d.yaml\n" + MINIMAL + "seed: 1\n", "d.yaml": "seed: 2\nmodel: x/y\n"})
    spec = load_spec(path)
    assert spec.seed == 1 and spec.model == "x/y"


def test_self_include_is_a_cycle(tmp_path):
    path = write(tmp_path, {"t.yaml": "include: t.yaml\n" + MINIMAL})
    with pytest.raises(HarnessError, match=r"t.yaml:1: field 'include': include cycle \(t.yaml -> t.yaml\)"):
        load_spec(path)


def test_shipped_task_files_stay_short_and_say_how_to_run_them():
    for f in sorted((REPO / "tasks").glob("*.yaml")):
        lines = f.read_text().splitlines()
        assert lines[0] == f"# harness run {f.stem}", f
        body = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
        assert len(body) <= 14, f"{f.name} has {len(body)} lines of settings"
        assert "include: _shared/defaults.yaml" in lines
        assert load_spec(f).name == f.stem


def test_tasks_show_prints_the_resolved_config(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["tasks", "show", "geo-qa"])
        raise SystemExit(0)
    assert exc.value.code == 0
    out = capsys.readouterr().out
    shown = yaml.safe_load(out)
    assert shown["name"] == "geo-qa" and shown["answer_format"] == "free-text"
    assert shown["finetune"]["overrides"]["qlora"]["learning_rate"] == 3.0e-4  # from _shared/defaults.yaml
    assert shown["evaluation"]["max_new_tokens"] == 16 and shown["evaluation"]["calibration_limit"] == 80  # merged
    assert "\n# headline: has_answer (set by `headline:` in the task file)\n" in out  # a comment: still YAML


# ---------------------------------------------------------------- finding tasks


def test_find_task_by_name_by_path_and_with_a_hint(tmp_path):
    assert find_task("legal-qa") == REPO / "tasks" / "legal-qa.yaml"
    path = write(tmp_path, {"mine.yaml": MINIMAL})
    assert find_task(str(path)) == path
    with pytest.raises(HarnessError, match="did you mean 'legal-qa'"):
        find_task("legal-q")
    with pytest.raises(HarnessError, match="not found"):
        find_task(str(tmp_path / "missing.yaml"))
    with pytest.raises(HarnessError, match="is a folder"):
        find_task(str(tmp_path))


def test_user_task_folders_from_env_and_flag(tmp_path, monkeypatch, capsys):
    env_dir, flag_dir = tmp_path / "env", tmp_path / "flag"
    write(env_dir, {"from-env.yaml": MINIMAL.replace("name: t", "name: from-env"), "_shared/d.yaml": "seed: 1\n"})
    write(flag_dir, {"from-flag.yaml": MINIMAL.replace("name: t", "name: from-flag")})
    monkeypatch.setenv("HARNESS_TASKS", str(env_dir))
    found = list_task_files([flag_dir])
    assert {"from-env", "from-flag", "legal-qa", "geo-qa"} <= set(found) and "d" not in found
    assert find_task("from-flag", [flag_dir]) == flag_dir / "from-flag.yaml"
    with pytest.raises(SystemExit):
        main(["tasks", "list", "--tasks-dir", str(flag_dir)])
        raise SystemExit(0)
    out = capsys.readouterr().out
    for name in ("from-env", "from-flag", "geo-qa", "legal-qa", "free-text", "yes-no"):
        assert name in out
    assert "INVALID" in out  # the two user tasks point at a q.jsonl that is not there


# ---------------------------------------------------------------- docs/tasks.md


def _generator():
    spec = importlib.util.spec_from_file_location("gen_tasks_md", REPO / "docs" / "gen_tasks_md.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_tasks_md_is_generated_from_the_models():
    expected = _generator().render()
    committed = (REPO / "docs" / "tasks.md").read_text(encoding="utf-8")
    assert committed == expected, "docs/tasks.md is stale: run `python docs/gen_tasks_md.py`"


def test_docs_list_every_field_with_type_and_default():
    text = (REPO / "docs" / "tasks.md").read_text(encoding="utf-8")
    for section, model in SECTIONS:
        for name in model.model_fields:
            if name == "source_path":
                continue
            full = f"{section}.{name}" if section else name
            assert f"`{full}`" in text, full
    assert "| `finetune.learning_rate` | float, > 0 | `0.0002` |" in text
