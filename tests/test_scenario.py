"""`harness run TASK --scenario updates` on the tiny model: the waves' protocol (nothing of a wave is known before
its stage), the incremental index against a rebuilt one, `continue` starting from the previous adapter, the
results.json `scenario` key, `harness report` re-rendering it, and the plan-time errors. One scenario run, shared."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

from harness import files
from harness.data import load_task_data
from harness.errors import HarnessError
from harness.records import RunResults, Sample
from harness.retrieval import Embedder, RetrievalIndex, build_or_load
from harness.run import RunOptions, plan
from harness.scenario.index import extend_index, folder_of
from harness.scenario.stages import plan_scenario
from harness.spec import load_spec
from harness.waves import make_waves
from tests.conftest import write_tiny_task


@pytest.fixture(scope="module")
def scenario_run(tmp_path_factory, tiny_model_dir, harness_cmd):
    """One scenario run of prompt, lora (both modes) and rag over 3 waves of the six tiny documents."""
    root = tmp_path_factory.mktemp("scenario")
    task = write_tiny_task(root / "tasks", tiny_model_dir, scenario={"waves": 3})
    home = root / "home"
    env = {**os.environ, "HARNESS_HOME": str(home), "HARNESS_ESTIMATE": "off"}
    cmd = [*harness_cmd, "run", str(task), "--scenario", "updates", "--systems", "prompt,lora,rag"]
    cmd += ["--reports-dir", str(root / "reports"), "--indices-dir", str(root / "indices"), "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = [
        p
        for p in (root / "reports" / "tiny-qa").iterdir()
        if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
    ]
    results = RunResults.model_validate(json.loads((run_dir / "results.json").read_text()))
    samples = [Sample.model_validate_json(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    return {"task": task, "home": home, "root": root, "run_dir": run_dir, "results": results, "samples": samples}


def test_every_stage_scores_every_system_on_each_group(scenario_run):
    sc = scenario_run["results"].scenario
    assert sc is not None and len(sc.waves) == 3 and len(sc.stages) == 3
    names = {"prompt", "lora-retrain", "lora-continue", "rag"}
    for k, stage in enumerate(sc.stages):
        assert set(stage.systems) == names
        for s in stage.systems.values():
            assert s.groups["new"].n == sc.waves[k].n_test
            assert s.groups["earlier"].n == sum(w.n_test for w in sc.waves[:k])
            assert s.groups["future"].n == sum(w.n_test for w in sc.waves[k + 1 :])
        assert {c.group for c in stage.comparisons} == {
            g for g in ("new", "earlier", "future") if stage.systems["rag"].groups[g].n
        }
    # refresh costs add up; prompt never refreshes
    for name in names:
        costs = [st.systems[name].refresh_s for st in sc.stages]
        assert [st.systems[name].cumulative_refresh_s for st in sc.stages] == pytest.approx(np.cumsum(costs), abs=0.02)
    assert all(st.systems["prompt"].refresh_s == 0 for st in sc.stages)
    # samples carry their stage and group; each stage answered every test question once per system
    per_stage = {(s.stage, s.system) for s in scenario_run["samples"]}
    assert len(per_stage) == 3 * len(names)
    assert {s.group for s in scenario_run["samples"]} == {"new", "earlier", "future"}


def test_no_test_document_is_known_before_its_wave(scenario_run):
    """The index of stage k holds waves 0..k only, and each adapter trained on the questions of known waves."""
    sc, home = scenario_run["results"].scenario, scenario_run["home"]
    wave_of = {d: w.index for w in sc.waves for d in w.doc_ids}
    index_docs = []
    for folder in (scenario_run["root"] / "indices" / "tiny-qa").iterdir():
        if folder.is_dir():
            idx = RetrievalIndex.load(folder)
            index_docs.append({c.doc_id for c in idx.chunks})
    # one index per stage, each the union of the waves known at that stage
    expected = [{d for d, w in wave_of.items() if w <= k} for k in range(3)]
    assert sorted(index_docs, key=len) == expected
    samples = scenario_run["samples"]
    for s in samples:
        assert s.group == (
            "new" if wave_of[s.doc_id] == s.stage else "earlier" if wave_of[s.doc_id] < s.stage else "future"
        )
        for p in s.retrieved or []:
            assert wave_of[p.doc_id] <= s.stage  # rag never retrieves a document of a future wave
    adapters = [p for p in (home / "adapters" / "tiny-qa").iterdir() if p.is_dir()]
    trained = [json.loads((a / files.MANIFEST).read_text())["training"] for a in adapters]
    # retrain: stages 0, 1, 2 on the known waves' training questions; continue: stages 1 and 2 on the new wave's only
    sizes = sorted(t["examples"] for t in trained)
    spec = load_spec(scenario_run["task"])
    data, waves = _plan(scenario_run["task"], systems=["prompt", "lora", "rag"])
    n = [len(w.train) for w in waves]
    assert sizes == sorted([n[0], n[0] + n[1], n[0] + n[1] + n[2], n[1], n[2]])
    assert spec.scenario.waves == 3 and len(data.corpus) == 6


def test_continue_starts_from_the_previous_adapter(scenario_run):
    home = scenario_run["home"]
    adapters = {a.name: a for a in (home / "adapters" / "tiny-qa").iterdir() if a.is_dir()}
    continued = [a for n, a in adapters.items() if n.startswith("continue-")]
    assert len(continued) == 2
    from safetensors.torch import load_file

    for a in continued:
        training = json.loads((a / files.MANIFEST).read_text())["training"]
        parent = adapters[training["continued_from"]]
        start = load_file(str(parent / "adapter_model.safetensors"))
        end = load_file(str(a / "adapter_model.safetensors"))
        assert start.keys() == end.keys()
        # trained further: every LoRA B matrix moved from the parent's, which is not zero (a fresh adapter's is)
        moved = [k for k in start if "lora_B" in k and not np.allclose(start[k].numpy(), end[k].numpy())]
        assert moved and all(start[k].abs().sum() > 0 for k in moved)


def test_continue_recipe_loads_the_previous_weights(scenario_run, tiny_model_dir):
    """The model `continue` trains from holds exactly the previous adapter's weights before its first step."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file

    from harness.context import Reporter, RunContext
    from harness.models import resolve_model
    from harness.parts.adapter_trainer import AdapterTrainer
    from harness.parts.trainers import SupervisedRecipe
    from harness.scenario.adapters import ContinueRecipe
    from harness.systems.finetune import PlainRows

    home = scenario_run["home"]
    parent = next(a for a in (home / "adapters" / "tiny-qa").iterdir() if a.is_dir() and a.name.startswith("lora-"))
    spec = load_spec(scenario_run["task"])
    ctx = RunContext(
        spec, load_task_data(spec), resolve_model(spec.model), Reporter(), indices_dir=scenario_run["root"]
    )
    trainer = AdapterTrainer(ctx, "lora", "lora", ContinueRecipe(SupervisedRecipe(PlainRows(ctx)), parent))
    model = trainer.recipe.start_model(trainer)
    saved = load_file(str(parent / "adapter_model.safetensors"))
    state = get_peft_model_state_dict(model)
    assert saved.keys() == state.keys()
    assert all(np.array_equal(saved[k].numpy(), state[k].detach().numpy()) for k in saved)
    assert any(p.requires_grad for p in model.parameters())


def test_incremental_index_equals_a_rebuilt_one(tmp_path, tiny_model_dir):
    spec = load_spec(write_tiny_task(tmp_path / "tasks", tiny_model_dir))
    data = load_task_data(spec)
    embedder = Embedder.load("default")
    first, second = data.corpus[:4], data.corpus[4:]
    grown = extend_index(first, second, embedder, spec.rag, tmp_path / "grown", log=lambda _: None)
    assert not grown["reused"]
    inc = RetrievalIndex.load(folder_of(tmp_path / "grown", spec.rag, embedder, data.corpus))
    settings = {k: getattr(spec.rag, k) for k in ("chunk_tokens", "overlap", "index", "nlist", "nprobe", "hnsw_m")}
    rebuilt, _ = build_or_load(data.corpus, embedder, settings, tmp_path / "rebuilt", log=lambda _: None)
    assert inc.chunks == rebuilt.chunks
    assert np.allclose(inc.vectors(), rebuilt.vectors(), atol=1e-6)
    queries = embedder.encode([q.question for q in data.all_questions()[:12]])
    for a, b in zip(inc.search(queries, 4), rebuilt.search(queries, 4)):
        assert [(c.doc_id, c.position) for c, _ in a] == [(c.doc_id, c.position) for c, _ in b]
    # asked again, the grown index is found in the cache with the seconds its add took
    again = extend_index(first, second, embedder, spec.rag, tmp_path / "grown", log=lambda _: None)
    assert again["reused"] and again["seconds"] == grown["seconds"]


def test_harness_report_re_renders_the_scenario(scenario_run, harness_cmd):
    run_dir = scenario_run["run_dir"]
    (run_dir / "index.html").unlink()
    env = {**os.environ, "HARNESS_HOME": str(scenario_run["home"])}
    done = subprocess.run([*harness_cmd, "report", str(run_dir)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    html = (run_dir / "index.html").read_text()
    assert 'id="scenario"' in html and "lora-continue" in html and "<svg" in html


def test_the_scenario_key_round_trips(scenario_run):
    raw = json.loads((scenario_run["run_dir"] / "results.json").read_text())
    assert RunResults.model_validate(raw).dump() == raw


def _plan(task, **opts):
    return plan_scenario(plan(RunOptions(task=str(task), scenario=opts.pop("scenario", "updates"), **opts)))


def test_plan_time_errors_name_the_field(tmp_path, tiny_model_dir):
    task = write_tiny_task(tmp_path / "tasks", tiny_model_dir, scenario={"waves": 7})
    with pytest.raises(HarnessError, match=r"tiny-qa.yaml.*scenario.waves.*7 waves but the corpus has only 6"):
        _plan(task, systems=["prompt"])
    task = write_tiny_task(tmp_path / "t2", tiny_model_dir)
    with pytest.raises(HarnessError, match=r"--scenario must be one of updates, got 'drift'"):
        _plan(task, systems=["prompt"], scenario="drift")
    with pytest.raises(HarnessError, match=r"not fewshot"):
        _plan(task, systems=["prompt", "fewshot"])
    q = tmp_path / "t2" / "tiny-qa" / "questions.jsonl"
    rows = [json.loads(line) for line in q.read_text().splitlines()]
    rows[3].pop("doc_id")
    q.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(HarnessError, match=r"doc_id.*needs the document of every question.*1 of \d+ questions"):
        _plan(task, systems=["prompt"])


def test_waves_split_documents_and_questions_within_them(tmp_path, tiny_model_dir):
    spec = load_spec(write_tiny_task(tmp_path / "tasks", tiny_model_dir))
    data = load_task_data(spec)
    qs = data.all_questions()
    waves = make_waves(qs, data.corpus, 3, 0, 0.3, 0.17, "yes-no")
    assert sorted(d for w in waves for d in w.doc_ids) == sorted(d.doc_id for d in data.corpus)
    assert sorted(q.id for w in waves for q in [*w.train, *w.dev, *w.test]) == sorted(q.id for q in qs)
    for w in waves:
        for doc in w.doc_ids:  # every document has test and training questions, in its own wave only
            assert any(q.doc_id == doc for q in w.test) and any(q.doc_id == doc for q in w.train)
        assert {q.doc_id for q in [*w.train, *w.dev, *w.test]} <= set(w.doc_ids)
    assert make_waves(qs, data.corpus, 3, 0, 0.3, 0.17, "yes-no")[1].test == waves[1].test  # seeded


def test_a_stage_knows_no_document_of_a_later_wave(tmp_path, tiny_model_dir):
    """What trains and what is indexed at stage k comes from waves 0 ... k (continue: wave k) only."""
    from harness.scenario.stages import stage_data

    task = write_tiny_task(tmp_path / "tasks", tiny_model_dir)
    data, waves = _plan(task, systems=["prompt", "lora", "rag"])
    docs = {d.doc_id: d for d in data.corpus}
    tests = [q for w in waves for q in w.test]
    wave_of = {d: w.index for w in waves for d in w.doc_ids}
    for k in range(len(waves)):
        for only_new in (False, True):
            d = stage_data(waves, docs, tests, k, only_new)
            allowed = {k} if only_new else set(range(k + 1))
            assert {wave_of[q.doc_id] for q in [*d.train, *d.dev]} == allowed
            assert {wave_of[doc.doc_id] for doc in d.corpus} == allowed
            assert not {q.id for q in tests} & {q.id for q in [*d.train, *d.dev]}  # no test question trains
            assert d.test == tests


def test_the_decision_uses_the_refresh_costs_the_scenario_measured(scenario_run):
    from harness import cost

    results = scenario_run["results"]
    sc = results.scenario
    later = sc.stages[1:]
    per_doc = sum(st.systems["rag"].refresh_s for st in later) / sum(len(sc.waves[st.stage].doc_ids) for st in later)
    assert cost.scenario_refresh(results, "rag", 2) == pytest.approx(2 * per_doc, abs=0.01)
    assert cost.scenario_refresh(results, "lora-retrain", 2) == later[-1].systems["lora-retrain"].refresh_s
    rag = results.systems["rag"].cost
    assert rag.refresh_basis == "measured" and "documents-change scenario" in rag.refresh_what
    assert results.systems["prompt"].cost.refresh_s == 0
    assert "train the adapter further" in results.systems["lora-continue"].cost.refresh_what


def test_a_second_run_reuses_every_stage(scenario_run, harness_cmd):
    """What resuming rests on: every stage's index, adapters and evaluations are found in the cache, and give the
    same figures (an interrupted scenario redoes only the stage it was in)."""
    root, task = scenario_run["root"], scenario_run["task"]
    env = {**os.environ, "HARNESS_HOME": str(scenario_run["home"]), "HARNESS_ESTIMATE": "off"}
    cmd = [*harness_cmd, "run", str(task), "--scenario", "updates", "--systems", "prompt,lora,rag", "--quiet"]
    cmd += ["--reports-dir", str(root / "again"), "--indices-dir", str(root / "indices")]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = [p for p in (root / "again" / "tiny-qa").iterdir() if p.is_dir() and not p.is_symlink()]
    again = RunResults.model_validate(json.loads((run_dir / "results.json").read_text())).scenario
    first = scenario_run["results"].scenario
    for a, b in zip(first.stages, again.stages):
        for name, s in b.systems.items():
            assert s.cached or name == "prompt"
            assert name == "prompt" or s.refresh_s > 0  # the cost recorded when it was made, not the 0 s of a reuse
            assert {g: v.value for g, v in s.groups.items()} == {g: v.value for g, v in a.systems[name].groups.items()}
