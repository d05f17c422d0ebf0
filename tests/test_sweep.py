"""`harness sweep`: --set checked at plan time, variants as systems of one run (artifacts reused through the
cache), the Pareto front in the report, resuming after an interrupt, Ray for real, MLflow read back."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.records import Interval, RunResults
from harness.report import pareto
from harness.spec import load_spec
from harness.sweep import grid
from tests.conftest import run_cli, write_tiny_task


@pytest.fixture
def spec(tiny_task):
    return load_spec(tiny_task)


def sweep_args(task, root: Path, *extra) -> list:
    return ["sweep", task, "--reports-dir", root / "reports", "--indices-dir", root / "indices", "--quiet", *extra]


def latest(root: Path) -> Path:
    return (root / "reports" / "tiny-qa" / "latest").resolve()


def results_of(run_dir: Path) -> RunResults:
    return RunResults.model_validate_json((run_dir / "results.json").read_text())


# ---------------------------------------------------------------- the grid


def test_variants_are_named_by_the_settings_they_change(spec):
    found = grid.variants(spec, ["prompt", "lora", "rag"], ["finetune.r=2,8", "rag.k=1,3"])
    assert [v.name for v in found] == ["prompt", "lora[r=2]", "lora[r=8]", "rag[k=1]", "rag[k=3]"]
    assert [v.kind for v in found] == ["prompt", "lora", "lora", "rag", "rag"]
    assert found[1].settings == {"finetune.r": 2}  # typed by the schema, not the text
    assert found[1].spec_for(spec).finetune.r == 2 and found[1].spec_for(spec).finetune.alpha == spec.finetune.alpha
    both = grid.variants(spec, ["rag+lora"], ["finetune.r=2,8", "rag.k=1,3"])
    assert [v.name for v in both] == [
        "rag+lora[r=2,k=1]",
        "rag+lora[r=2,k=3]",
        "rag+lora[r=8,k=1]",
        "rag+lora[r=8,k=3]",
    ]
    shared = grid.variants(spec, ["rag+fewshot"], ["rag.k=1", "fewshot.k=2"])  # same field name: full paths
    assert [v.name for v in shared] == ["rag+fewshot[rag.k=1,fewshot.k=2]"]


@pytest.mark.parametrize(
    "option, words",
    [
        ("finetune.epoch=1,2", ["unknown field 'finetune.epoch'", "did you mean 'epochs'"]),
        ("finetune.r=four", ["'finetune.r' = 'four'", "integer"]),
        ("finetune.r=0,4", ["'finetune.r' = '0'", "greater than 0"]),
        ("finetune.r=", ["empty value", "finetune.r"]),
        ("finetune.r=4,", ["empty value", "finetune.r"]),
        ("rag.index=flat,tree", ["'rag.index' = 'tree'"]),
        ("evaluation.batch_size=1,2", ["'evaluation' cannot be swept", "finetune, rag, fewshot, preference"]),
        ("finetune.r", ["expected section.field=value1,value2"]),
        ("finetune.r=4,4", ["listed twice"]),
        ("fewshot.k=1,2", ["fewshot.k", "none of the systems (prompt, lora) reads fewshot"]),
    ],
)
def test_a_bad_set_fails_in_one_line_naming_it(spec, option, words):
    with pytest.raises(HarnessError) as e:
        grid.variants(spec, ["prompt", "lora"], [option])
    message = str(e.value)
    assert "\n" not in message
    for w in words:
        assert w in message


def test_a_bad_set_fails_before_anything_loads_and_writes_nothing(tiny_task, tmp_path, monkeypatch):
    import harness.models as models

    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("the model loaded before the check"))
    code, _, err = run_cli(*sweep_args(tiny_task, tmp_path, "--set", "finetune.rank=4,8", "--systems", "lora"))
    assert code == 2
    assert err.strip().count("\n") == 0 and "unknown field 'finetune.rank'" in err
    assert not (tmp_path / "reports" / "tiny-qa").exists()


def test_missing_ray_and_mlflow_say_how_to_install(tiny_task, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    monkeypatch.setitem(sys.modules, "mlflow", None)
    code, _, err = run_cli(*sweep_args(tiny_task, tmp_path, "--set", "rag.k=1,2", "--executor", "ray"))
    assert code == 2 and "pip install -e '.[ray]'" in err and err.strip().count("\n") == 0
    code, _, err = run_cli(*sweep_args(tiny_task, tmp_path, "--set", "rag.k=1,2", "--track", "mlflow"))
    assert code == 2 and "pip install -e '.[mlflow]'" in err and err.strip().count("\n") == 0


def test_a_sweep_takes_the_runs_profile_overrides_and_device(tiny_task, tmp_path, monkeypatch):
    """--profile, --dtype, --batch-size, --latency-sample, --threads and --device reach the sweep's plan as they
    reach a run's, and a bad value fails the same clean way."""
    import harness.cli as cli

    planned = []
    monkeypatch.setattr(cli, "_execute_and_print", lambda p, quiet, track: planned.append(p))
    extra = ["--set", "rag.k=1,2", "--systems", "rag", "--profile", "queries_per_day=1234,usd_per_hour=2"]
    extra += ["--dtype", "float32", "--batch-size", "2", "--latency-sample", "3", "--threads", "1", "--device", "cpu"]
    code, _, err = run_cli(*sweep_args(tiny_task, tmp_path, *extra))
    assert code == 0, err
    [p] = planned
    assert (p.spec.decision.queries_per_day, p.spec.decision.usd_per_hour) == (1234, 2)
    e = p.spec.evaluation
    assert (e.dtype, e.batch_size, e.latency_sample, p.spec.device) == ("float32", 2, 3, "cpu")
    assert p.opts.overridden["evaluation.dtype"] == "float32" and p.opts.overridden["threads"] == 1
    assert [v.name for v in p.variants] == ["rag[k=1]", "rag[k=2]"]
    for bad, words in (
        (["--device", "tpu"], "--device must be auto, cpu or cuda, got 'tpu'"),
        (["--profile", "queries_per_day"], "'queries_per_day' is not key=value"),
        (["--threads", "0"], "--threads must be a positive number"),
    ):
        code, _, err = run_cli(*sweep_args(tiny_task, tmp_path, "--set", "rag.k=1,2", *bad))
        assert code == 2 and words in err and err.strip().count("\n") == 0, err


def test_a_sweep_file_gives_the_same_sets(spec, tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("systems: [prompt, lora, rag]\ngrid:\n  finetune.r: [2, 8]\n  rag: {k: [1, 3], index: flat}\n")
    sets, systems = grid.read_grid(path)
    assert sets == ["finetune.r=2,8", "rag.k=1,3", "rag.index=flat"] and systems == ["prompt", "lora", "rag"]
    names = [v.name for v in grid.variants(spec, systems, sets)]
    assert names == ["prompt", "lora[r=2]", "lora[r=8]", "rag[k=1,index=flat]", "rag[k=3,index=flat]"]
    for text, words in (
        ("grid: [1, 2]\n", "expected a mapping with a 'grid:'"),
        ("grid: {rag.k: [1]}\nsystem: [rag]\n", "unknown key 'system'"),
        ("grid: {rag.k: [[1]]}\n", "'rag.k' must be a list of plain values"),
        ("grid: {rag.k: [1\n", "not valid YAML"),
    ):
        path.write_text(text)
        with pytest.raises(HarnessError, match=words) as e:
            grid.read_grid(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value)


# ---------------------------------------------------------------- a sweep end to end


@pytest.fixture(scope="module")
def swept(tmp_path_factory, tiny_model_dir):
    """One local sweep over LoRA rank and RAG k on the tiny model."""
    root = tmp_path_factory.mktemp("sweep")
    task = write_tiny_task(root / "tasks", tiny_model_dir)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_HOME", str(root / "home"))
        args = sweep_args(task, root, "--set", "finetune.r=2,4", "--set", "rag.k=1,2", "--systems", "prompt,lora,rag")
        code, out, err = run_cli(*args)
    assert code == 0, err
    return {"root": root, "task": task, "run": latest(root), "out": out}


def test_a_sweep_is_one_run_of_named_variants(swept):
    res = results_of(swept["run"])
    assert list(res.systems) == ["prompt", "lora[r=2]", "lora[r=4]", "rag[k=1]", "rag[k=2]"]
    assert all(s.ok for s in res.systems.values())
    assert res.sweep.grid == {"finetune.r": [2, 4], "rag.k": [1, 2]} and res.sweep.executor == "local"
    assert res.sweep.variants["lora[r=4]"].system == "lora"
    assert res.sweep.variants["lora[r=4]"].settings == {"finetune.r": 4}
    assert res.sweep.variants["prompt"].settings == {}
    assert res.systems["rag[k=2]"].retrieval.k == 2 and res.systems["rag[k=1]"].retrieval.k == 1
    # paired like any systems: every pair compared on the same questions, Holm-adjusted
    pairs = {(c.a, c.b) for c in res.comparisons if c.metric == res.headline_metric}
    assert len(pairs) == 10 and all(c.n == res.n_test for c in res.comparisons)
    rows = [json.loads(line) for line in (swept["run"] / "samples.jsonl").read_text().splitlines()]
    ids = {name: [r["id"] for r in rows if r["system"] == name] for name in res.systems}
    assert len({tuple(v) for v in ids.values()}) == 1  # the same questions, in the same order


def test_variants_reuse_what_their_settings_do_not_change(swept):
    root = swept["root"]
    adapters = sorted(p.name for p in (root / "home" / "adapters" / "tiny-qa").iterdir() if p.is_dir())
    assert len(adapters) == 2 and all(a.startswith("lora-") for a in adapters)  # one per rank
    indices = [p for p in (root / "indices" / "tiny-qa").iterdir() if p.is_dir()]
    assert len(indices) == 1  # k does not change the index: both rag variants use one
    res = results_of(swept["run"])
    assert res.systems["rag[k=1]"].cached is not res.systems["rag[k=2]"].cached  # built once, then reused
    r2, r4 = (res.systems[n].training for n in ("lora[r=2]", "lora[r=4]"))
    assert r2["trainable_params"] < r4["trainable_params"]  # each rank trained with its own setting


def test_a_variant_with_the_tasks_own_setting_is_the_plain_systems_adapter(swept):
    root = swept["root"]  # the tiny task trains lora at r=4: lora[r=4] built the adapter a plain run uses
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_HOME", str(root / "home"))
        code, _, err = run_cli("run", swept["task"], "--systems", "lora", *sweep_args("", root)[2:])
    assert code == 0, err
    res = results_of(latest(root))
    assert (
        res.systems["lora"].cached
        and res.systems["lora"].training == results_of(swept["run"]).systems["lora[r=4]"].training
    )
    assert len([p for p in (root / "home" / "adapters" / "tiny-qa").iterdir() if p.is_dir()]) == 2


def test_the_report_shows_the_front(swept):
    html = (swept["run"] / "index.html").read_text()
    assert 'id="pareto"' in html and "The cheapest variant not significantly below the best is" in html
    assert html.count("<svg") >= 4  # three cost charts besides the others
    summary = (swept["run"] / "summary.md").read_text()
    assert "## Pareto front" in summary and "| lora[r=2] |" in summary
    assert "The cheapest variant not significantly below the best is" in swept["out"]  # printed at the end too
    front = pareto.pareto(results_of(swept["run"]))
    assert {p.name for p in front.points} == set(results_of(swept["run"]).systems)
    assert any(p.on_front["serving_s"] for p in front.points)


def test_an_interrupted_sweep_resumes_without_redoing_finished_variants(tmp_path, tiny_model_dir, monkeypatch):
    import harness.run as run

    task = write_tiny_task(tmp_path / "tasks", tiny_model_dir)
    args = sweep_args(task, tmp_path, "--set", "finetune.r=2,4", "--systems", "prompt,lora")
    real, ran = run.run_system, []

    def stop_at_the_third(system, *a, **k):
        if len(ran) == 2:
            raise KeyboardInterrupt
        ran.append(system.name)
        return real(system, *a, **k)

    monkeypatch.setattr(run, "run_system", stop_at_the_third)
    code, _, err = run_cli(*args)
    assert code == 130 and ran == ["prompt", "lora[r=2]"]
    assert not (tmp_path / "reports" / "tiny-qa").exists() or not any((tmp_path / "reports" / "tiny-qa").iterdir())
    monkeypatch.setattr(run, "run_system", real)
    code, _, err = run_cli(*args)
    assert code == 0, err
    res = results_of(latest(tmp_path))
    for name in ("prompt", "lora[r=2]"):  # finished before the interrupt: neither built nor measured again
        assert res.systems[name].evaluation_reused is not None
    assert res.systems["lora[r=2]"].cached
    assert res.systems["lora[r=4]"].evaluation_reused is None and not res.systems["lora[r=4]"].cached


# ---------------------------------------------------------------- the front


def _point(name, value, serving, lo=None, hi=None):
    return pareto.Point(name, Interval(value=value, ci_low=lo, ci_high=hi), {"serving_s": serving})


def test_non_dominated_keeps_what_no_other_beats_on_both():
    pts = [_point("a", 0.8, 10), _point("b", 0.7, 5), _point("c", 0.7, 8), _point("d", 0.9, 50), _point("e", 0.6, 5)]
    assert pareto.non_dominated(pts, "serving_s") == {"a", "b", "d"}


def test_the_sentence_names_the_cheapest_not_significantly_below_the_best():
    pts = [_point("best", 0.9, 50), _point("cheap", 0.85, 5), _point("cheaper", 0.5, 1)]
    pts[1].diff, pts[1].p_holm = -0.05, 0.4
    pts[2].diff, pts[2].p_holm, pts[2].below_best = -0.4, 0.001, True
    text = pareto.sentence(pts, "best", "accuracy")
    assert text.startswith("The cheapest variant not significantly below the best is cheap (accuracy 0.850")


# ---------------------------------------------------------------- Ray and MLflow, for real


def test_a_sweep_through_ray_gives_the_local_metrics(swept, tmp_path):
    pytest.importorskip("ray")
    root = swept["root"]
    # Ray's head process asks the cloud metadata service which cloud it runs on (for its usage report, even when
    # reporting is off) unless ~/ray_bootstrap_config.yaml names the provider; the network guard would catch
    # that probe, so this test's HOME holds one saying "local".
    (tmp_path / "ray_bootstrap_config.yaml").write_text("provider: {type: local}\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(tmp_path))
        mp.setenv("HARNESS_HOME", str(root / "home"))
        mp.delenv("HARNESS_THREADS", raising=False)  # the workers take the run's thread count, as the local sweep
        args = sweep_args(swept["task"], root, "--set", "rag.k=1,2", "--systems", "rag", "--executor", "ray")
        code, _, err = run_cli(*args, "--reevaluate")
    assert code == 0, err
    ray_res, local = results_of(latest(root)), results_of(swept["run"])
    assert ray_res.sweep.executor == "ray" and list(ray_res.systems) == ["rag[k=1]", "rag[k=2]"]
    for name, entry in ray_res.systems.items():
        assert entry.evaluation_reused is None  # measured in the Ray workers, not read back
        assert entry.metrics == local.systems[name].metrics


def test_a_tracked_sweep_reads_back_from_mlflow(swept, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    root = swept["root"]
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("HARNESS_HOME", str(root / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    args = sweep_args(swept["task"], root, "--set", "finetune.r=2,4", "--systems", "prompt,lora", "--track", "mlflow")
    code, out, err = run_cli(*args)
    assert code == 0, err
    assert "tracked: MLflow run" in out
    res = results_of(latest(root))
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("harness/tiny-qa")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.info.run_name == res.run_id)
    assert parent.data.params["finetune.r"] == "4" and parent.data.params["rag.k"] == "2"
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"index.html", "results.json", "summary.md"}
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert set(children) == {"prompt", "lora[r=2]", "lora[r=4]"}
    lora2 = children["lora[r=2]"].data
    assert lora2.params["system"] == "lora" and lora2.params["finetune.r"] == "2"
    acc = res.systems["lora[r=2]"].metrics["accuracy"]
    assert lora2.metrics["accuracy"] == pytest.approx(acc.value)
    assert lora2.metrics["accuracy_ci_low"] == pytest.approx(acc.ci_low)
    assert lora2.metrics["serving_s_per_1000_questions"] == pytest.approx(
        res.systems["lora[r=2]"].latency_s.mean * 1000
    )
    assert lora2.metrics["peak_memory_mb"] == pytest.approx(res.systems["lora[r=2]"].peak_memory_mb)
