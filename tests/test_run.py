"""The pipeline end to end on the tiny model, through the CLI entry point (in-process, so the heavy imports
are paid once): prompt + lora + rag, then a cached re-run, a --retrain run and a --limit run.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import files, strata
from harness.cli import main
from harness.records import RunResults, Sample, SystemResult, always_written, written_when_set

SYSTEMS = ["prompt", "lora", "rag"]
FILES = ("results.json", "samples.jsonl", "manifest.json", "index.html", "results.csv", "summary.md")


def harness(*args: str) -> int:
    """`harness ARGS` in this process; returns the exit code."""
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def load(run_dir: Path) -> tuple[dict, list[dict], dict]:
    res = json.loads((run_dir / "results.json").read_text())
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return res, samples, manifest


@pytest.fixture(scope="module")
def runs(tiny_task_session, tmp_path_factory):
    """Four runs sharing one HARNESS_HOME, reports and indices folder."""
    root = tmp_path_factory.mktemp("pipeline")
    home, reports, indices = root / "home", root / "reports", root / "indices"
    common = ["--reports-dir", reports, "--indices-dir", indices, "--quiet"]
    out = {"home": home, "reports": reports, "indices": indices, "task": tiny_task_session}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_HOME", str(home))
        latest = reports / "tiny-qa" / "latest"
        for name, extra in (
            ("first", []),
            ("again", []),
            ("reevaluate", ["--reevaluate"]),
            ("retrain", ["--retrain"]),
        ):
            assert harness("run", tiny_task_session, "--systems", ",".join(SYSTEMS), *common, *extra) == 0
            out[name] = latest.resolve()
            if name == "first":  # what the cache holds after the first run, to check the second reuses it
                out["adapters"] = {p: p.stat().st_mtime_ns for p in (home / "adapters").rglob("*") if p.is_file()}
                out["index_files"] = {p: p.stat().st_mtime_ns for p in indices.rglob("*") if p.is_file()}
            if name == "again":
                out["adapters_after_again"] = {
                    p: p.stat().st_mtime_ns for p in (home / "adapters").rglob("*") if p.is_file()
                }
                out["index_files_after_again"] = {p: p.stat().st_mtime_ns for p in indices.rglob("*") if p.is_file()}
        assert harness("run", tiny_task_session, "--systems", "prompt", "--limit", "5", *common) == 0
        out["limited"] = latest.resolve()
    return out


def metric_values(res: dict) -> dict:
    return {name: {m: v["value"] for m, v in s["metrics"].items()} for name, s in res["systems"].items()}


def test_run_directory_files(runs):
    run_dir = runs["first"]
    assert run_dir.parent == runs["reports"] / "tiny-qa"
    for f in FILES:
        assert (run_dir / f).is_file() and (run_dir / f).stat().st_size > 0, f
    # the run was assembled in a hidden folder and renamed: nothing half-written is left beside it
    assert not [p for p in run_dir.parent.iterdir() if p.name.startswith(".")]
    assert len({runs[k] for k in ("first", "again", "retrain", "limited")}) == 4


def test_latest_points_at_the_newest_run(runs):
    link = runs["reports"] / "tiny-qa" / "latest"
    assert link.is_symlink()
    assert os.readlink(link) == runs["limited"].name  # relative, so the reports folder can move
    assert link.resolve() == runs["limited"]


def _check_ci(m: dict, where: str) -> None:
    assert set(m) >= {"value", "ci_low", "ci_high"}, where
    assert m["ci_low"] <= m["value"] <= m["ci_high"], where
    assert m["ci_low"] >= 0 and m["ci_high"] <= 1, where


def _check_percentiles(p: dict, where: str) -> None:
    assert set(p) >= {"p50", "p95", "mean"}, where
    assert 0 < p["p50"] <= p["p95"], where


def test_results_json_follows_the_format(runs):
    res, _, _ = load(runs["first"])
    assert res["task"] == "tiny-qa" and res["run_id"] == runs["first"].name
    assert res["answer_format"] == "yes-no" and res["headline_metric"] == "accuracy"
    assert res["n_test"] == 20 and res["seed"] == 0 and res["created"]
    assert list(res["systems"]) == SYSTEMS
    for name, s in res["systems"].items():
        assert s["status"] == "ok", (name, s.get("error"))
        assert s["error"] is None and s["kind"] == {"prompt": "prompt", "lora": "finetune", "rag": "rag"}[name]
        for metric in ("accuracy", "auc", "calibrated_accuracy"):
            _check_ci(s["metrics"][metric], f"{name}.{metric}")
        _check_percentiles(s["latency_s"], f"{name}.latency_s")
        assert s["peak_memory_mb"] > 0 and s["build_s"] >= 0 and s["artifact_mb"] >= 0
        assert isinstance(s["cached"], bool)
        vs = s["vs_best_baseline"]
        assert vs["baseline"] in res["baselines"] and vs["metric"] == "accuracy"
        assert 0 <= vs["p_value"] <= vs["p_holm"] <= 1 and vs["significant"] == (vs["p_holm"] < 0.05)
        assert vs["beats"] == (vs["significant"] and vs["diff"] > 0)
    assert res["systems"]["prompt"]["training"] is None and res["systems"]["prompt"].get("retrieval") is None
    assert res["systems"]["prompt"]["build_s"] == 0 and res["systems"]["prompt"]["artifact_mb"] == 0

    settings = res["settings"]
    assert settings["threads"] >= 1 and settings["batch_size"] == 1 and settings["dtype"] == "float32"
    assert settings["warmup"] == 1 and settings["device"] == "cpu"


def test_every_file_is_a_dump_of_the_run_data_models(runs):
    """The format is harness.records: each successful entry has every always-written key of SystemResult and
    only keys the model knows, and results.json / samples.jsonl load and dump back unchanged."""
    res, samples, _ = load(runs["first"])
    always, optional = set(always_written(SystemResult)), set(written_when_set(SystemResult))
    for name, s in res["systems"].items():
        assert always <= set(s), (name, sorted(always - set(s)))
        assert set(s) - always <= optional, (name, sorted(set(s) - always - optional))
    assert RunResults.model_validate(res).dump() == res
    assert all(Sample.model_validate(s).model_dump(mode="json") == s for s in samples)


def test_lora_training_record(runs):
    lora = load(runs["first"])[0]["systems"]["lora"]
    assert lora["cached"] is False and lora["build_s"] > 0 and lora["artifact_mb"] > 0
    t = lora["training"]
    assert t["method"] == "lora" and t["epochs"] == 1
    assert 0 < t["trainable_params"] < t["total_params"]
    assert t["tokens_per_s"] > 0 and t["seconds"] > 0 and t["peak_memory_mb"] > 0
    assert t["steps"] == math.ceil(30 / 8)  # 30 training questions, batch 8, one epoch
    curve = t["loss_curve"]
    assert curve and [p["step"] for p in curve] == sorted(p["step"] for p in curve)
    assert any(p["train_loss"] is not None for p in curve)
    assert any(p["eval_loss"] is not None for p in curve)  # the dev split gives validation loss
    for p in curve:
        assert all(v is None or math.isfinite(v) for v in (p["train_loss"], p["eval_loss"]))


def test_rag_retrieval_record(runs):
    rag = load(runs["first"])[0]["systems"]["rag"]
    assert rag["cached"] is False and rag["artifact_mb"] > 0
    r = rag["retrieval"]
    assert r["k"] == 2 and 0 <= r["recall_at_k"] <= 1 and 0 <= r["mrr"] <= r["recall_at_k"]
    _check_percentiles(rag["retrieval_latency_s"], "rag.retrieval_latency_s")
    # the end-to-end latency includes retrieval
    assert rag["latency_s"]["mean"] >= rag["retrieval_latency_s"]["mean"]


def test_baselines_and_comparisons(runs):
    res = load(runs["first"])[0]
    for name in ("majority", "category_prior"):
        b = res["baselines"][name]
        _check_ci(b["metrics"]["accuracy"], name)
        assert b["accuracy"] == b["metrics"]["accuracy"]["value"] and b["description"]
    pairs = {(c["a"], c["b"], c["metric"]) for c in res["comparisons"]}
    for a, b in (("prompt", "lora"), ("prompt", "rag"), ("lora", "rag")):
        assert (a, b, "accuracy") in pairs or (b, a, "accuracy") in pairs
    for c in res["comparisons"]:
        assert 0 <= c["p_value"] <= 1 and c["test"] and isinstance(c["significant"], bool)
    # the questions the category prior gets wrong, and every system on them
    pb, samples = res["prior_breaking"], load(runs["first"])[1]
    tested = {s["id"] for s in samples if s["system"] == "prompt"}
    assert pb["prior"] == "category_prior" and pb["n"] == len(pb["ids"]) and set(pb["ids"]) <= tested
    assert set(pb["systems"]) == set(SYSTEMS) and pb["n_test"] == res["n_test"]


def test_samples_one_row_per_system_and_question(runs):
    res, samples, _ = load(runs["first"])
    assert len(samples) == len(SYSTEMS) * res["n_test"]
    keys = [(s["system"], s["id"]) for s in samples]
    assert len(set(keys)) == len(keys)
    ids = {s["id"] for s in samples}
    assert len(ids) == res["n_test"]
    for s in samples:
        assert s["prediction"] in ("Yes", "No") and s["gold"] in ("Yes", "No")
        assert s["correct"] == float(s["prediction"] == s["gold"])
        assert math.isfinite(s["margin"]) and (s["prediction"] == "Yes") == (s["margin"] > 0)
        assert s["latency_s"] > 0 and s["doc_id"] and s["category"]
        assert s["scores"]["accuracy"] == s["correct"]
        assert s["question"] in s["prompt"]  # the full prompt the model saw, for the report's viewer
        if s["system"] == "rag":
            assert s["retrieved"] and all({"doc_id", "score", "text"} <= set(p) for p in s["retrieved"])
            assert all(p["text"] in s["prompt"] for p in s["retrieved"])
            assert len(s["retrieved"]) <= 2
        else:
            assert s["retrieved"] is None
    # accuracy in results.json is the mean of the per-question scores
    for name, entry in res["systems"].items():
        rows = [s for s in samples if s["system"] == name]
        assert entry["metrics"]["accuracy"]["value"] == pytest.approx(sum(r["correct"] for r in rows) / len(rows))
    # test questions come from held-out documents only (split by doc)
    man = load(runs["first"])[2]
    assert man["data"]["train"] == 30 and man["data"]["test"] == 20


def test_manifest(runs):
    _, _, man = load(runs["first"])
    assert man["run_id"] == runs["first"].name and man["seed"] == 0
    assert man["task_file"] == str(runs["task"].resolve())
    assert man["config"]["name"] == "tiny-qa" and man["config"]["rag"]["k"] == 2
    assert man["model"]["path"] == man["config"]["model"] and man["model"]["fingerprint"]
    assert man["versions"]["torch"] and man["versions"]["transformers"] and man["versions"]["lm-eval"]
    assert man["harness_home"] == str(runs["home"])
    assert man["data"]["fingerprint"]


def test_report_html_is_self_contained(runs):
    html = (runs["first"] / "index.html").read_text()
    for name in SYSTEMS:
        assert name in html
    assert "<script src" not in html and "https://" not in html.replace("https://www.w3.org", "")


def test_second_run_reuses_adapter_and_index(runs):
    res = load(runs["again"])[0]
    lora, rag = res["systems"]["lora"], res["systems"]["rag"]
    assert lora["status"] == "ok" and lora["cached"] is True and lora["build_s"] == 0
    assert lora["training"]["loss_curve"]  # the training record travels with the cached adapter
    assert lora["training"]["peak_memory_mb"] > 0  # what training took, though it did not run this time
    assert rag["cached"] is True and rag["build_s"] == 0
    # what each reused artifact cost is the time the first run spent building it, not this run's 0 s
    first = load(runs["first"])[0]["systems"]
    assert lora["build_cost_s"] == lora["training"]["seconds"] > 0
    assert (
        first["lora"]["build_cost_s"] == first["lora"]["build_s"]
        and first["rag"]["build_cost_s"] == first["rag"]["build_s"]
    )
    assert (
        0 < rag["build_cost_s"] <= first["rag"]["build_s"] + 0.01
    )  # the index alone, from its manifest (0.01 s: rounding)
    assert res["systems"]["prompt"]["build_cost_s"] == 0
    assert runs["adapters"] and runs["adapters_after_again"] == runs["adapters"]  # not rewritten
    assert runs["index_files"] and runs["index_files_after_again"] == runs["index_files"]


def test_second_run_reuses_the_evaluations_and_says_so(runs):
    first, again = load(runs["first"]), load(runs["again"])
    for name in SYSTEMS:
        assert first[0]["systems"][name]["evaluation_reused"] is None
        reused = again[0]["systems"][name]["evaluation_reused"]
        assert reused and reused["measured_at"] and reused["seconds"] > 0, name
        # how idle threads waited when the reused latency was measured: the first run's choice (harness.openmp)
        assert reused.get("openmp_wait") == first[0]["settings"]["openmp_wait"].split(" (")[0], name
        # the figures are the ones measured then, not re-measured and not invented
        assert again[0]["systems"][name]["latency_s"] == first[0]["systems"][name]["latency_s"]
        assert again[0]["systems"][name]["peak_memory_mb"] == first[0]["systems"][name]["peak_memory_mb"]
    assert [(s["system"], s["id"], s["latency_s"], s["prompt"]) for s in again[1]] == [
        (s["system"], s["id"], s["latency_s"], s["prompt"]) for s in first[1]
    ]
    html = (runs["again"] / "index.html").read_text()
    assert html.count('data-metric="evaluation_reused"') == len(SYSTEMS)
    stored = list((runs["home"] / "evaluations" / "tiny-qa").glob("*.json"))
    assert len(stored) >= len(SYSTEMS)


def test_reevaluate_and_retrain_measure_again(runs):
    for run in ("reevaluate", "retrain"):
        res = load(runs[run])[0]
        assert all(e["evaluation_reused"] is None for e in res["systems"].values()), run
    assert load(runs["reevaluate"])[0]["systems"]["lora"]["cached"] is True  # the adapter is still reused


def test_same_seed_gives_identical_metrics(runs):
    first, again, reevaluated, retrain = (
        metric_values(load(runs[k])[0]) for k in ("first", "again", "reevaluate", "retrain")
    )
    assert again == first
    # scored again from the same artifacts: the same numbers come out
    assert reevaluated == first
    # --retrain trains the adapter again from scratch, with the same seed: the same numbers come out
    assert retrain == first
    s1, s2 = load(runs["first"])[1], load(runs["retrain"])[1]
    assert [(s["system"], s["id"], round(s["margin"], 4)) for s in s1] == [
        (s["system"], s["id"], round(s["margin"], 4)) for s in s2
    ]


def test_retrain_trains_again(runs):
    lora = load(runs["retrain"])[0]["systems"]["lora"]
    assert lora["cached"] is False and lora["build_s"] > 0
    assert lora["training"]["steps"] == load(runs["first"])[0]["systems"]["lora"]["training"]["steps"]
    adapters = [p for p in (runs["home"] / "adapters" / "tiny-qa").iterdir() if not p.name.endswith(".lock")]
    assert len(adapters) == 1 and files.verify(adapters[0]) is None
    assert not (runs["home"] / "train" / "tiny-qa" / adapters[0].name).exists()  # checkpoints cleaned up
    # RAG is not retrained: --retrain is about adapters
    assert load(runs["retrain"])[0]["systems"]["rag"]["cached"] is True


def test_limit(runs):
    res, samples, man = load(runs["limited"])
    assert res["n_test"] == 5 and list(res["systems"]) == ["prompt"]
    assert len(samples) == 5 and man["limit"] == 5
    # a seeded sample spread over the test documents and categories (harness.strata), not the first five
    full = [SimpleNamespace(**s) for s in load(runs["first"])[1] if s["system"] == "prompt"]
    expected = [q.id for q in strata.limited_sample(full, 5, res["seed"])]
    assert [s["id"] for s in samples] == expected != [q.id for q in full[:5]]
    assert len({s["doc_id"] for s in samples}) == len({q.doc_id for q in full})
    assert res["limited"] == {"n": 5, "of": len(full), "drawn": "seeded sample, stratified by document and category"}


def test_report_command_rerenders(runs, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(runs["first"], copy)
    (copy / "index.html").unlink()
    assert harness("report", copy) == 0
    assert (copy / "index.html").stat().st_size > 1000


def test_compare_command(runs, tmp_path):
    out = tmp_path / "cmp"
    assert harness("compare", runs["first"], runs["limited"], "--out", out) == 0
    assert (out / "index.html").is_file()


def test_a_change_re_evaluates_only_the_systems_it_affects(tmp_path, tiny_model_dir, harness_home, capsys):
    from tests.conftest import write_tiny_task

    common = ["--systems", "prompt,rag", "--reports-dir", tmp_path / "r", "--indices-dir", tmp_path / "i"]
    latest = tmp_path / "r" / "tiny-qa" / "latest"

    def run(task) -> dict:
        assert harness("run", task, *common) == 0
        return {n: e["evaluation_reused"] for n, e in load(latest.resolve())[0]["systems"].items()}

    assert run(write_tiny_task(tmp_path / "a", tiny_model_dir)) == {"prompt": None, "rag": None}
    # rag retrieves one passage more: its prompts change, the prompt system's do not
    reused = run(write_tiny_task(tmp_path / "b", tiny_model_dir, rag={"k": 3}))
    assert reused["prompt"] is not None and reused["rag"] is None
    # a damaged stored evaluation is reported, removed and measured again; the run still succeeds
    stored = sorted((harness_home / "evaluations" / "tiny-qa").glob("*.json"))
    assert len(stored) == 3
    for path in stored:
        path.write_text('{"format": 1, "test": [')
    capsys.readouterr()
    assert run(write_tiny_task(tmp_path / "b", tiny_model_dir, rag={"k": 3})) == {"prompt": None, "rag": None}
    err = capsys.readouterr().err
    assert "ignoring a damaged stored evaluation" in err and str(harness_home / "evaluations") in err
    # the two damaged files that were read are replaced; the k=2 rag one was not asked for and stays as it is
    assert sum(p.read_text().startswith('{"format": 1, "test": [') for p in stored if p.exists()) == 1


def test_an_evaluation_that_cannot_be_stored_does_not_fail_the_run(tmp_path, tiny_model_dir, harness_home, capsys):
    from tests.conftest import write_tiny_task

    (harness_home / "evaluations").write_text("a file where the folder should be")
    task = write_tiny_task(tmp_path / "a", tiny_model_dir)
    assert harness("run", task, "--systems", "prompt", "--limit", "3", "--reports-dir", tmp_path / "r") == 0
    err = capsys.readouterr().err
    assert "could not store the evaluation for reuse" in err and "the next run will evaluate again" in err
    res = load((tmp_path / "r" / "tiny-qa" / "latest").resolve())[0]
    assert res["systems"]["prompt"]["status"] == "ok" and res["systems"]["prompt"]["evaluation_reused"] is None


def test_a_limited_run_scores_with_what_the_whole_task_decides(tiny_task_session, tmp_path, monkeypatch):
    """The headline and has_answer's pool of answers come from every question, before --limit cuts the test split,
    so a limited run scores each question as the full run does and names the headline `harness tasks show` does."""
    from harness import results
    from harness.data import load_task_data
    from harness.spec import load_spec

    seen, real = [], results.Scoring.of
    monkeypatch.setattr(results.Scoring, "of", lambda spec, qs: (seen.append(len(qs)), real(spec, qs))[1])
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / "home"))
    common = ["--reports-dir", tmp_path / "r", "--indices-dir", tmp_path / "i", "--quiet"]
    assert harness("run", tiny_task_session, "--systems", "prompt", "--limit", "2", *common) == 0
    assert seen == [len(load_task_data(load_spec(tiny_task_session)).all_questions())]
