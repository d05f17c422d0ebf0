"""The run's data contract (harness.records): a real run's files are dumps of the models, keys left out vs null,
and the evaluation cache's stored Measurements (including entries written before the models existed)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import evalcache, results, run, systems
from harness.cli import main
from harness.records import (
    BaselineResult,
    Interval,
    Measurement,
    Passage,
    RunResults,
    Sample,
    SystemResult,
    always_written,
    written_when_set,
)


def harness(*args) -> int:
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        return int(e.code or 0)
    return 0


@pytest.fixture(scope="module")
def run_dir(tiny_task_session, tmp_path_factory) -> Path:
    """A real tiny run: a plain and a retrieval system, so both shapes of a system's entry are there."""
    root = tmp_path_factory.mktemp("records")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_HOME", str(root / "home"))
        args = ["--reports-dir", root / "reports", "--indices-dir", root / "indices", "--limit", "8", "--quiet"]
        assert harness("run", tiny_task_session, "--systems", "prompt,rag", *args) == 0
    return (root / "reports" / "tiny-qa" / "latest").resolve()


def test_results_json_is_a_runresults_dump_byte_for_byte(run_dir):
    text = (run_dir / "results.json").read_text()
    results = RunResults.model_validate_json(text)
    assert json.dumps(results.dump(), indent=2) + "\n" == text
    assert list(results.systems) == ["prompt", "rag"] and all(s.ok for s in results.systems.values())
    assert results.comparisons and results.baselines


def test_samples_lines_are_sample_dumps_byte_for_byte(run_dir):
    lines = (run_dir / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 8
    for line in lines:
        assert json.dumps(Sample.model_validate_json(line).model_dump(mode="json")) == line


def test_a_successful_entry_has_every_always_written_key_and_only_known_ones(run_dir):
    results = json.loads((run_dir / "results.json").read_text())
    always, optional = set(always_written(SystemResult)), set(written_when_set(SystemResult))
    for name, entry in results["systems"].items():
        assert always <= set(entry), (name, sorted(always - set(entry)))
        assert set(entry) - always <= optional, (name, sorted(set(entry) - always - optional))
    assert "model_latency_s" in results["systems"]["rag"] and "model_latency_s" not in results["systems"]["prompt"]
    for name, b in results["baselines"].items():  # the headline value at the top level, under its own name
        assert set(b) == {"accuracy", "metrics", "description"}, name


def test_a_failed_entry_keeps_every_key_and_leaves_its_traceback_out_of_the_json():
    failed = SystemResult(kind="finetune", status="failed", error="RuntimeError: boom", traceback="Traceback ...")
    dumped = failed.model_dump(mode="json")
    assert not failed.ok and dumped["status"] == "failed" and dumped["error"] == "RuntimeError: boom"
    assert list(dumped) == always_written(SystemResult) and "traceback" not in dumped
    assert dumped["metrics"] == {} and dumped["latency_s"] is None


def test_a_failing_system_keeps_its_entry_and_the_launch_record_reaches_the_manifest(tiny_task, tmp_path, monkeypatch):
    """rag breaks after its build: its entry says so (with what the build recorded), its traceback goes to
    errors.log, and the other system's figures are unaffected. The prompt system reports a launch record, as a
    system trained under `--launcher accelerate` does, and the manifest carries it."""
    launch = {"command": ["accelerate", "launch", "--num_processes", "2"], "config": {"num_processes": 2}}
    systems.available()  # loads the registry
    monkeypatch.setattr(systems.SYSTEMS["prompt"], "build", lambda self: systems.BuildInfo(launch=launch))
    evaluate = run.evaluate_or_reuse

    def breaks_for_rag(system, ctx):
        if system.name == "rag":
            raise RuntimeError("boom")
        return evaluate(system, ctx)

    monkeypatch.setattr(run, "evaluate_or_reuse", breaks_for_rag)
    reports = tmp_path / "reports"
    args = ["--reports-dir", reports, "--indices-dir", tmp_path / "indices", "--limit", "4", "--quiet"]
    assert harness("run", tiny_task, "--systems", "prompt,rag", *args) == 3  # a system failed: exit code 3
    run_dir = (reports / "tiny-qa" / "latest").resolve()
    results = RunResults.model_validate_json((run_dir / "results.json").read_text())
    prompt, rag = results.systems["prompt"], results.systems["rag"]
    assert prompt.ok and prompt.vs_best_baseline is not None and prompt.metrics["accuracy"].value is not None
    assert not rag.ok and rag.error == "RuntimeError: boom" and rag.metrics == {} and rag.latency_s is None
    assert rag.cached is False and rag.artifact_mb > 0 and rag.index  # the build's record is kept
    assert results.comparisons == []  # one system left: nothing to compare
    assert "traceback" not in (run_dir / "results.json").read_text()
    assert "RuntimeError: boom" in (run_dir / "errors.log").read_text()
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert {s["system"] for s in samples} == {"prompt"} and len(samples) == 4
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["launch"] == {"prompt": launch}
    assert list(manifest)[-2:] == ["launch", "checksums"]


def test_omitted_versus_null():
    plain = Measurement(
        id="q", prediction="Yes", latency_s=0.1, prompt_tokens=5, loglikelihoods=[-1.0, -2.0], margin=1.0
    )
    assert list(plain.model_dump(mode="json")) == [
        "id",
        "prediction",
        "latency_s",
        "prompt_tokens",
        "loglikelihoods",
        "margin",
    ]
    interval = Interval(value=0.5, ci_low=0.25, ci_high=0.75)
    assert "threshold" not in interval.model_dump(mode="json")  # calibrated_accuracy's alone
    free_text = BaselineResult(token_f1=0.4, metrics={"token_f1": {"value": 0.4}}, description="d")
    assert list(free_text.model_dump(mode="json")) == ["token_f1", "metrics", "description"]
    sample = Sample(
        system="prompt", id="q", question="Q?", gold="Yes", golds=["Yes"], prediction="No", correct=0.0,
        latency_s=0.1, prompt_tokens=5, scores={"accuracy": 0.0},
    )  # fmt: skip
    dumped = sample.model_dump(mode="json")
    assert dumped["margin"] is None and dumped["retrieved"] is None and dumped["calibrated_prediction"] is None


def test_unknown_keys_are_kept_so_a_newer_run_still_reads():
    entry = SystemResult.model_validate({"kind": "prompt", "energy_j": 12.5})
    assert entry.model_dump(mode="json")["energy_j"] == 12.5


def test_docs_results_format_md_is_generated_from_the_models():
    repo = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("gen_results_md", repo / "docs" / "gen_results_md.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    committed = (repo / "docs" / "results-format.md").read_text(encoding="utf-8")
    assert committed == generator.render(), "docs/results-format.md is stale: run `python docs/gen_results_md.py`"
    for model in (RunResults, SystemResult, Sample, Measurement):  # every key of the main models is documented
        for name in always_written(model) + written_when_set(model):
            assert f"| `{name}` |" in committed, (model.__name__, name)


# ---------------------------------------------------------------- the evaluation cache


def _stored(tmp_path, monkeypatch, entry: dict) -> tuple[evalcache.StoredEvaluation | None, list[str], Path]:
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path))
    path = tmp_path / "evaluations" / "t" / "k.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(entry))
    log: list[str] = []
    return evalcache.load("t", "k", log.append), log, path


def test_an_entry_written_before_the_models_still_loads(tmp_path, monkeypatch):
    """The layout the dict-based code wrote (keys in its order, free-text Nones written as null)."""
    old = {
        "format": evalcache.FORMAT,  # format 1 wrote this layout; 2 changed what peak_memory_mb means, not the keys
        "measured_at": "2026-11-28T10:00:00+00:00",
        "seconds": 1.5,
        "peak_memory_mb": 700.1,
        "cuda_peak_memory_mb": None,
        "test": [
            {"id": "q1", "latency_s": 0.2, "prompt_tokens": 30, "prediction": "Yes", "loglikelihoods": [-0.5, -1.5],
             "margin": 1.0, "retrieved": [{"doc_id": "alpha", "chunk": 0, "score": 0.5, "text": "T"}],
             "ranked_doc_ids": ["alpha"], "retrieval_latency_s": 0.05, "model_latency_s": 0.15},
            {"id": "q2", "latency_s": 0.3, "prompt_tokens": 9, "prediction": "an answer", "new_tokens": 2,
             "first_token_s": None, "tokens_per_s": None},
        ],
        "calibration": None,
    }  # fmt: skip
    stored, log, path = _stored(tmp_path, monkeypatch, old)
    assert not log and path.exists()
    assert stored.peak_memory_mb == 700.1 and stored.calibration is None
    first, second = stored.test
    assert first.retrieved == [Passage(doc_id="alpha", chunk=0, score=0.5, text="T")] and first.margin == 1.0
    assert second.new_tokens == 2 and second.tokens_per_s is None


def test_a_damaged_entry_is_measured_again_with_a_one_line_notice(tmp_path, monkeypatch):
    stored, log, path = _stored(tmp_path, monkeypatch, {"format": 1, "measured_at": "x", "test": [{"id": 3}]})
    assert stored is None and not path.exists()
    assert len(log) == 1 and "damaged stored evaluation" in log[0] and "evaluating again" in log[0]


def test_saved_measurements_load_back_equal(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path))
    test = [
        Measurement(
            id="q1", prediction="No", latency_s=0.25, prompt_tokens=12, loglikelihoods=[-2.0, -1.0], margin=-1.0
        )
    ]
    evalcache.save(
        "t", "k", test=test, calibration=test, peak_memory_mb=512.0, cuda_peak_memory_mb=None, seconds=0.5, log=print
    )
    stored = evalcache.load("t", "k", print)
    assert stored.test == test and stored.calibration == test and stored.seconds == 0.5


# ---------------------------------------------------------------- a system's entry, from its parts


def test_a_systems_entry_is_built_from_its_build_record_measurements_and_scores():
    """Figures that apply only sometimes (a GPU's memory, free-text generation speed) are in the entry exactly
    when they were measured."""
    spec = SimpleNamespace(
        answer_format="free-text",
        rag=SimpleNamespace(k=2),
        evaluation=SimpleNamespace(max_new_tokens=6, bootstrap=100),
        seed=0,
    )
    ctx = SimpleNamespace(spec=spec, data=SimpleNamespace(test=[], corpus_is_fallback=False))
    info = systems.BuildInfo(build_s=1.234, cached=False, artifact_mb=2.5, notes=["n"])
    test = [
        Measurement(id=f"q{i}", prediction="x", latency_s=0.5 * (i + 1), prompt_tokens=10 + i, new_tokens=2,
                    first_token_s=0.1, tokens_per_s=4.0 / (i + 1), hit_max_new_tokens=i == 1)
        for i in range(2)
    ]  # fmt: skip
    scored = results.Scored({"token_f1": Interval(value=0.5, ci_low=0.0, ci_high=1.0)}, [{}, {}])
    on_gpu = run.Evaluation(test, None, peak_memory_mb=900.0, cuda_peak_memory_mb=123.456)
    entry = run.system_result("prompt", info, on_gpu, scored, None, ctx).model_dump(mode="json")
    assert entry["cuda_peak_memory_mb"] == 123.5 and entry["build_s"] == 1.23 and entry["build_cost_s"] == 1.23
    assert entry["latency_s"]["p50"] == 0.75 and entry["prompt_tokens_mean"] == 10.5 and entry["notes"][0] == "n"
    assert entry["latency_s"]["n"] == 2 and len(entry["latency_s"]["p50_ci"]) == 2  # the timed sample's size
    assert entry["first_token_s"]["mean"] == 0.1 and entry["tokens_per_s"]["p50"] == 3.0
    assert entry["retrieval"] is None and "model_latency_s" not in entry
    assert entry["truncated_share"] == 0.5
    assert entry["notes"][-1] == "1 of 2 answers (50%) were cut off at evaluation.max_new_tokens (6)"
    on_cpu = run.Evaluation(test, None, peak_memory_mb=900.0, cuda_peak_memory_mb=None)
    assert "cuda_peak_memory_mb" not in run.system_result("prompt", info, on_cpu, scored, None, ctx).model_dump()
