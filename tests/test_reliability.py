"""Reliability on the tiny model: SIGINT and SIGKILL in every stage, damaged artifacts, concurrent runs, full
or read-only disks, bad and hostile input. Each check that passes adds to the counts conftest prints at the
end of the session (tests/reliability_counts.py); a run whose figures differ from an uninterrupted run's
counts as "results lost or wrong" before its test fails.

Stages are found by timing, as a user would meet them: a `harness run` subprocess is signalled once its
stage line appears on stderr (`▸ rag: build`), once a training checkpoint exists, or once the hidden run
folder it is writing appears (the report stage).
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness import files
from harness.errors import HarnessError
from tests import reliability_counts as counts
from tests.conftest import run_cli as _cli
from tests.conftest import write_tiny_task

REPO = Path(__file__).resolve().parent.parent
LIMIT = "3"
TASK = "tiny-qa"
NONE = object()


# ---------------------------------------------------------------- running and signalling `harness run`


def _default_sigint():  # a shell that starts us in the background may have set SIGINT to "ignore"
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Proc:
    """A subprocess whose stdout/stderr are collected as they come, so a test can wait for a line."""

    def __init__(self, args: list, env: dict | None = None):
        self.proc = subprocess.Popen(
            [str(a) for a in args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            preexec_fn=_default_sigint,
        )
        self._out: list[str] = []
        self._err: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(s, buf), daemon=True)
            for s, buf in ((self.proc.stdout, self._out), (self.proc.stderr, self._err))
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream, buf):
        for line in stream:
            buf.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    @property
    def stdout(self) -> str:
        return "".join(self._out)

    def wait_until(self, cond, timeout: float, poll: float = 0.05) -> bool:
        """True once cond() holds while the process still runs; False if it ended first or timed out."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return self.proc.poll() is None
            if self.proc.poll() is not None:
                return False
            time.sleep(poll)
        return False

    def finish(self, timeout: float = 300) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        for t in self._threads:
            t.join(timeout=10)
        return rc


class Workspace:
    """HARNESS_HOME, reports/ and indices/ of a series of runs of the reliability task."""

    def __init__(self, root: Path, task: Path, harness_cmd: list[str]):
        self.root, self.task, self.cmd = root, task, harness_cmd
        self.home, self.reports, self.indices = root / "home", root / "reports", root / "indices"

    def args(self, systems: str, *extra) -> list:
        return [
            *self.cmd,
            "run",
            self.task,
            "--systems",
            systems,
            "--limit",
            LIMIT,
            "--reports-dir",
            self.reports,
            "--indices-dir",
            self.indices,
            *extra,
        ]

    def start(self, systems: str, *extra, env: dict | None = None) -> Proc:
        return Proc(self.args(systems, *extra), {"HARNESS_HOME": str(self.home), **(env or {})})

    def runs(self) -> list[Path]:
        folder = self.reports / TASK
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))

    def hidden(self) -> list[str]:
        """Leftovers beside the run directories (temporary folders of a run that was killed)."""
        folder = self.reports / TASK
        return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) if folder.is_dir() else []


def metrics(run_dir: Path, systems: list[str] | None = None) -> dict:
    """{system: {metric: value}} of a run; latency and memory differ between runs and are left out."""
    res = json.loads((run_dir / "results.json").read_text())
    out = {}
    for name, entry in res["systems"].items():
        if systems is None or name in systems:
            assert entry["status"] == "ok", f"{name} failed in {run_dir}: {entry.get('error')}"
            out[name] = {m: v["value"] for m, v in entry["metrics"].items()}
    return out


def assert_same_metrics(got: dict, want: dict, where: str) -> None:
    expected = {name: want[name] for name in got}
    if got != expected or not got:
        counts.add("results lost or wrong")
    assert got, f"{where}: no system results"
    assert got == expected, f"{where}: metrics differ from the uninterrupted run\n got {got}\nwant {expected}"


def assert_interrupted(sig: int, rc: int, stderr: str, where: str) -> None:
    assert "Traceback" not in stderr, f"{where}: a traceback\n{stderr[-3000:]}"
    if sig == signal.SIGINT:
        assert rc == 130, f"{where}: exit {rc} after SIGINT\n{stderr[-2000:]}"
        last = [line for line in stderr.splitlines() if line.strip()][-1]
        assert last.startswith("interrupted: no run directory was written"), f"{where}: last line {last!r}"
    else:
        assert rc == -signal.SIGKILL, f"{where}: exit {rc} after SIGKILL\n{stderr[-2000:]}"


def interrupt(
    ws: Workspace,
    systems: str,
    sig: int,
    when,
    *,
    poll: float = 0.05,
    timeout: float = 240,
    where: str = "",
    stage_end: str | None = None,
    tries: int = 4,
) -> Proc:
    """Start a run, send `sig` once when(proc) holds, check it stopped cleanly and left no run directory.
    `stage_end`: a line that must not have appeared yet when the signal went (the stage was still running).
    A stage can end before the signal lands on a fast machine; that try is still checked (a clean stop)
    and the run is started again, up to `tries` times."""
    for _ in range(tries):
        before = ws.runs()
        p = ws.start(systems)
        try:
            hit = p.wait_until(lambda p=p: when(p), timeout, poll)
            if hit:
                p.proc.send_signal(sig)
                at_signal = p.stderr
            rc = p.finish(300)
        finally:
            if p.proc.poll() is None:
                p.proc.kill()
        assert hit, (
            f"{where}: the run ended (exit {p.proc.returncode}) before the stage was reached\n{p.stderr[-3000:]}"
        )
        assert_interrupted(sig, rc, p.stderr, where)
        assert ws.runs() == before, f"{where}: an interrupted run left a run directory"
        if stage_end is None or stage_end not in at_signal:
            return p
    pytest.fail(f"{where}: the stage had ended before the signal in {tries} tries\n{at_signal[-2000:]}")


def complete(ws: Workspace, systems: str, reference: dict, where: str, timeout: float = 400) -> tuple[Path, str]:
    """A run that must finish, write one new run directory, and give the reference's metrics."""
    before = set(ws.runs())
    p = ws.start(systems)
    rc = p.finish(timeout)
    assert rc == 0 and "Traceback" not in p.stderr, f"{where}: exit {rc}\n{p.stderr[-4000:]}"
    new = [r for r in ws.runs() if r not in before]
    if len(new) != 1:
        counts.add("results lost or wrong")
    assert len(new) == 1, f"{where}: expected one new run directory, found {new}"
    assert (ws.reports / TASK / "latest").resolve() == new[0]
    assert_same_metrics(metrics(new[0], systems.split(",")), reference, where)
    assert ws.hidden() == [], f"{where}: leftovers beside the run directories: {ws.hidden()}"
    return new[0], p.stderr


def after_line(text: str, delay: float = 0.0):
    """A when(proc) that holds `delay` seconds after `text` appeared on the run's stderr."""
    seen: dict = {}

    def when(p: Proc) -> bool:
        if seen.get("proc") is not p:  # a new try of interrupt() watches a new process
            seen.clear()
            seen["proc"] = p
        if "t" not in seen:
            if text not in p.stderr:
                return False
            seen["t"] = time.monotonic()
        return time.monotonic() - seen["t"] >= delay

    return when


def writing_run_dir(ws: Workspace):
    """A when(proc) that holds while that run's hidden run folder (`.<run-id>.tmp-<pid>`) exists: the report."""

    def when(p: Proc) -> bool:
        return any(name.endswith(f".tmp-{p.proc.pid}") for name in ws.hidden())

    return when


# ---------------------------------------------------------------- shared fixtures


@pytest.fixture(scope="module")
def rel_task(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny task, trained in 8 steps with a checkpoint every 2, and no calibration pass (faster)."""
    return write_tiny_task(
        tmp_path_factory.mktemp("rel-task"),
        tiny_model_dir,
        finetune={"batch_size": 4, "logging_steps": 2, "epochs": 1},
        evaluation={"calibration": "none"},
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory, rel_task, harness_cmd) -> dict:
    """Two runs of lora + rag started at once on one HARNESS_HOME, indices/ and reports/ (the concurrency
    check), whose figures are also the uninterrupted reference every other test compares against."""
    ws = Workspace(tmp_path_factory.mktemp("reference"), rel_task, harness_cmd)
    procs = [ws.start("lora,rag") for _ in range(2)]
    rcs = [p.finish(600) for p in procs]
    for p, rc in zip(procs, rcs):
        assert rc == 0 and "Traceback" not in p.stderr, p.stderr[-4000:]
    return {"ws": ws, "procs": procs, "runs": ws.runs(), "metrics": [metrics(r) for r in ws.runs()]}


def copy_workspace(src: Workspace, root: Path) -> Workspace:
    ws = Workspace(root, src.task, src.cmd)
    shutil.copytree(src.home, ws.home, ignore=shutil.ignore_patterns("*.lock"))
    shutil.copytree(src.indices, ws.indices, ignore=shutil.ignore_patterns("*.lock"))
    return ws


def artifact_folders(ws: Workspace) -> dict[str, list[Path]]:
    return {
        "adapters": sorted(p for p in (ws.home / "adapters").glob("*/*") if p.is_dir()),
        "indices": sorted(p for p in ws.indices.glob(f"{TASK}/*") if p.is_dir()),
    }


# ---------------------------------------------------------------- concurrent runs


def test_concurrent_runs_share_the_cache_safely(reference):
    ws, runs = reference["ws"], reference["runs"]
    assert len(runs) == 2 and runs[0] != runs[1], f"each run gets its own run directory: {runs}"
    a, b = reference["metrics"]
    assert set(a) == {"lora", "rag"}
    assert_same_metrics(b, a, "the second of two concurrent runs")
    # one of the two trained the adapter and built the index; the other waited on the lock and reused them
    reused = sum("lora: reused the cached artifact" in p.stderr for p in reference["procs"])
    assert reused == 1, "exactly one run trains the adapter; the other reuses it"
    from harness.retrieval import RetrievalIndex

    folders = artifact_folders(ws)
    assert len(folders["adapters"]) == 1 and len(folders["indices"]) == 1, folders
    for folder in folders["adapters"]:
        assert files.verify(folder) is None, folder
    for folder in folders["indices"]:
        RetrievalIndex.load(folder)  # raises IndexCorrupt on a bad checksum
    leftovers = [*ws.home.rglob(".*tmp*"), *ws.indices.rglob("*.tmp-*"), *ws.indices.rglob("*.old-*")]
    assert leftovers == [] and ws.hidden() == [], leftovers
    assert not (ws.home / "train").exists() or not any((ws.home / "train").rglob("checkpoint-*"))


# ---------------------------------------------------------------- interruptions, stage by stage


def test_interrupted_training_resumes(reference, tmp_path):
    """SIGINT after the first checkpoint, SIGKILL after the next: each later run resumes where the previous
    one stopped, and the finished adapter gives the uninterrupted run's figures."""
    ws = Workspace(tmp_path, reference["ws"].task, reference["ws"].cmd)

    def checkpoints() -> list[int]:
        return sorted(
            int(p.parent.name.split("-")[1]) for p in ws.home.glob("train/*/*/qa/checkpoint-*/trainer_state.json")
        )

    def checkpoint_after(n: int):
        return lambda p: any(c > n for c in checkpoints())

    interrupt(ws, "lora", signal.SIGINT, checkpoint_after(0), where="training, SIGINT", stage_end="lora: build: done")
    first = checkpoints()[-1]
    second = interrupt(
        ws, "lora", signal.SIGKILL, checkpoint_after(first), where="training, SIGKILL", stage_end="lora: build: done"
    )
    assert f"lora: resuming qa training from checkpoint-{first} " in second.stderr, second.stderr[-3000:]
    last = checkpoints()[-1]
    assert last > first
    run, stderr = complete(ws, "lora", reference["metrics"][0], "training, after SIGINT and SIGKILL")
    if last < 8:  # the kill came before the last step's checkpoint: the run resumed from the newest one
        assert f"lora: resuming qa training from checkpoint-{last} " in stderr, stderr[-3000:]
    training = json.loads((run / "results.json").read_text())["systems"]["lora"]["training"]
    assert training["resumed_from"].startswith("qa/checkpoint-") and training["steps"] == 8
    (adapter,) = artifact_folders(ws)["adapters"]
    assert files.verify(adapter) is None
    counts.add("interruptions survived", 2)


def test_interrupted_indexing_evaluation_and_report_resume(reference, tmp_path):
    """rag alone, interrupted with SIGINT and then SIGKILL in each of its stages in turn: building the index,
    evaluating, writing the report. Each next run gets past the point where the previous one stopped; the
    last finishes with the uninterrupted run's figures and no leftovers."""
    from harness.retrieval import IndexCorrupt, RetrievalIndex

    ws = Workspace(tmp_path, reference["ws"].task, reference["ws"].cmd)
    survived = 0
    for sig in (signal.SIGINT, signal.SIGKILL):  # the run's estimate loads the embedder: indexing is embedding only
        interrupt(
            ws,
            "rag",
            sig,
            after_line("▸ rag: build", 0.0),
            where=f"indexing, {sig.name}",
            stage_end="rag: build: done",
        )
        for folder in ws.indices.glob(f"{TASK}/*"):
            if folder.is_dir() and not re.search(r"\.(tmp|old)-\d+$", folder.name):
                try:
                    RetrievalIndex.load(folder)  # a half-built index never sits at the final path
                except IndexCorrupt as e:
                    counts.add("results lost or wrong")
                    raise AssertionError(f"an interrupted build left a damaged index in place: {e}") from None
        survived += 1
    for sig in (signal.SIGINT, signal.SIGKILL):
        interrupt(
            ws,
            "rag",
            sig,
            after_line("▸ rag: evaluate", 0.05),
            poll=0.005,
            where=f"evaluation, {sig.name}",
            stage_end=f"rag: evaluate {LIMIT} questions: done",
        )
        survived += 1
    for sig in (signal.SIGINT, signal.SIGKILL):
        # the report stage lasts a fraction of a second: poll for the hidden run folder being written, and
        # try again if the run finished first (it then wrote a complete run directory, which is fine)
        for _ in range(4):
            before = ws.runs()
            p = ws.start("rag")
            hit = p.wait_until(lambda p=p: writing_run_dir(ws)(p), 300, poll=0.002)
            if hit:
                p.proc.send_signal(sig)
            rc = p.finish(120)
            if hit and rc != 0:
                assert_interrupted(sig, rc, p.stderr, f"report, {sig.name}")
                assert ws.runs() == before, "an interrupted report left a run directory"
                survived += 1
                break
            assert rc == 0, p.stderr[-3000:]
        else:
            pytest.fail(f"could not catch the report stage with {sig.name} in 4 tries")
    # the SIGKILL left its hidden folder behind; the next run removes it (complete() checks)
    complete(ws, "rag", reference["metrics"][0], "rag after interruptions in indexing, evaluation and report")
    (index,) = artifact_folders(ws)["indices"]
    RetrievalIndex.load(index)
    counts.add("interruptions survived", survived)


CONVERT = r"""
import sys, time
import transformers
tiny, mode = sys.argv[1], sys.argv[2]
load_model, load_tok = transformers.AutoModelForCausalLM.from_pretrained, transformers.AutoTokenizer.from_pretrained

def model(*a, **k):  # the packaged GGUF takes ~20 s to dequantise: convert the tiny model in its place
    m = load_model(tiny)
    save = m.save_pretrained
    def slow_save(folder, **kw):
        save(folder, **kw)
        if mode == "slow":
            print("SAVED", flush=True)
            time.sleep(120)
    m.save_pretrained = slow_save
    return m

transformers.AutoModelForCausalLM.from_pretrained = model
transformers.AutoTokenizer.from_pretrained = lambda *a, **k: load_tok(tiny)
from harness.models import convert_default
print("RESULT", convert_default(), flush=True)
"""


def _convert_in_process(monkeypatch, tiny_model_dir, log):
    import transformers

    from harness.models import convert_default

    load_model, load_tok = (
        transformers.AutoModelForCausalLM.from_pretrained,
        transformers.AutoTokenizer.from_pretrained,
    )
    monkeypatch.setattr(
        transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: load_model(tiny_model_dir)
    )
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: load_tok(tiny_model_dir))
    return convert_default(log)


def test_interrupted_model_conversion_is_redone(tmp_path, tiny_model_dir, monkeypatch):
    """convert_default (the GGUF -> transformers step, with the tiny model in place of the 20 s conversion)
    killed while saving: nothing incomplete is ever used, and the next call converts again."""
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / "ref-home"))
    want = files.folder_checksums(_convert_in_process(monkeypatch, tiny_model_dir, lambda m: None))
    home = tmp_path / "home"
    env = {"HARNESS_HOME": str(home)}
    for sig in (signal.SIGINT, signal.SIGKILL):
        p = Proc([sys.executable, "-c", CONVERT, tiny_model_dir, "slow"], env)
        try:
            hit = p.wait_until(lambda p=p: "SAVED" in p.stdout, 120)
            assert hit, p.stderr[-3000:]
            p.proc.send_signal(sig)
            rc = p.finish(60)
        finally:
            if p.proc.poll() is None:
                p.proc.kill()
        assert rc != 0
        finals = [f for f in (home / "models").iterdir() if not f.name.startswith(".") and f.is_dir()]
        assert finals == [], f"a half-converted model in place after {sig.name}: {finals}"
    assert any(p.name.startswith(".") for p in (home / "models").iterdir()), "the killed conversion's temp folder"
    p = Proc([sys.executable, "-c", CONVERT, tiny_model_dir, "fast"], env)
    assert p.finish(120) == 0, p.stderr[-3000:]
    final = Path(p.stdout.split("RESULT", 1)[1].strip())
    assert files.verify(final) is None
    got = files.folder_checksums(final)
    if got != want:
        counts.add("results lost or wrong")
    assert got == want, "the converted model differs from an uninterrupted conversion"
    assert [p.name for p in (home / "models").iterdir() if p.name.startswith(".") and "tmp" in p.name] == [], (
        "the killed conversion's temporary folder is removed"
    )
    counts.add("interruptions survived", 2)


def test_leftovers_of_killed_writers_are_removed_and_live_ones_kept(tmp_path):
    """What a SIGKILL leaves (a temporary folder named after its process) is removed by the next writer of the
    same artifact; a temporary folder of a process that is still running is never touched."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = os.getppid()
    for name in (f".artifact.tmp-{dead.pid}-1", f".artifact.tmp-{live}-1", f".other.tmp-{dead.pid}-1"):
        (tmp_path / name).mkdir()
    with files.build_atomically(tmp_path / "artifact") as tmp:
        (tmp / "weights").write_text("w")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f".artifact.tmp-{live}-1",
        f".other.tmp-{dead.pid}-1",
        "artifact",
    ]
    assert files.verify(tmp_path / "artifact") is None


# ---------------------------------------------------------------- damaged artifacts


def test_damaged_converted_model_is_converted_again(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / "home"))
    final = _convert_in_process(monkeypatch, tiny_model_dir, lambda m: None)
    want = files.folder_checksums(final)
    weights = final / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated
    assert files.verify(final) == "model.safetensors does not match its checksum"
    lines: list[str] = []
    again = _convert_in_process(monkeypatch, tiny_model_dir, lines.append)
    warning = [m for m in lines if m.startswith("warning:")]
    assert warning and str(final) in warning[0] and "model.safetensors" in warning[0], lines
    assert again == final and files.verify(final) is None and files.folder_checksums(final) == want
    counts.add("corrupt artifacts detected")


def test_damaged_adapter_and_index_are_rebuilt(reference, tmp_path):
    """A truncated adapter and an index altered in place (same size, one byte changed): the next run names
    each damaged path in a warning, rebuilds both, and gets the same figures."""
    ws = copy_workspace(reference["ws"], tmp_path)
    (adapter,) = artifact_folders(ws)["adapters"]
    (index,) = artifact_folders(ws)["indices"]
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    blob = bytearray((index / "index.faiss").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (index / "index.faiss").write_bytes(bytes(blob))
    run, stderr = complete(ws, "lora,rag", reference["metrics"][0], "after damaging the adapter and the index")
    lines = stderr.splitlines()  # each warning on one line, naming the damaged path
    assert any(line.startswith(f"warning: adapter at {adapter} is damaged") for line in lines), stderr[-3000:]
    assert any(line.startswith(f"warning: index at {index} failed its checksum") for line in lines), stderr[-3000:]
    res = json.loads((run / "results.json").read_text())
    assert not res["systems"]["lora"]["cached"] and not res["systems"]["rag"]["cached"]
    assert files.verify(adapter) is None
    from harness.retrieval import RetrievalIndex

    RetrievalIndex.load(index)
    counts.add("corrupt artifacts detected", 2)


def assert_one_line_error(code: int, err: str, *words: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0 and "Traceback" not in err, err
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    for w in words:
        assert w in lines[0], f"{w!r} not in {lines[0]!r}"
    counts.add("bad inputs rejected cleanly")
    return lines[0]


def test_damaged_results_are_detected_by_report(reference, tmp_path):
    """results.json edited after the run (still valid JSON): its checksum in manifest.json no longer matches,
    and `harness report` says so in one line instead of rendering figures nobody produced."""
    run = tmp_path / "run"
    shutil.copytree(reference["runs"][0], run)
    assert _cli("report", run)[0] == 0, "an intact run renders"
    res = json.loads((run / "results.json").read_text())
    res["systems"]["lora"]["metrics"]["accuracy"]["value"] = 1.0
    (run / "results.json").write_text(json.dumps(res))
    code, _, err = _cli("report", run)
    assert_one_line_error(code, err, str(run / "results.json"), "checksum", "harness run")
    counts.add("corrupt artifacts detected")
    (run / "results.json").write_text(json.dumps(res)[:200])  # truncated
    code, _, err = _cli("report", run)
    assert_one_line_error(code, err, str(run / "results.json"))
    counts.add("corrupt artifacts detected")


# ---------------------------------------------------------------- disks and permissions


def _unshare_works(tmp: Path) -> bool:
    """Can this machine give a test its own mount namespace (a private tmpfs, a read-only bind)?"""
    if not shutil.which("unshare"):
        return False
    tmp.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(
        ["unshare", "-Urm", "sh", "-c", f"mount -t tmpfs -o size=16k tmpfs '{tmp}'"], capture_output=True, timeout=30
    )
    return probe.returncode == 0


@pytest.mark.parametrize("which", ["HARNESS_HOME", "--reports-dir", "--indices-dir"])
def test_unwritable_folders_fail_before_any_work(which, tmp_path, rel_task, monkeypatch):
    """Root ignores chmod, so the folder is placed under a regular file: it can never be created."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    bad = blocker / "sub"
    home = tmp_path / "home"
    monkeypatch.setenv("HARNESS_HOME", str(bad if which == "HARNESS_HOME" else home))
    args = [
        "run",
        rel_task,
        "--systems",
        "lora",
        "--reports-dir",
        bad if which == "--reports-dir" else tmp_path / "r",
        "--indices-dir",
        bad if which == "--indices-dir" else tmp_path / "i",
    ]
    code, _, err = _cli(*args)
    assert_one_line_error(code, err, str(bad))
    assert not (home / "train").exists() and not (home / "adapters").exists(), "nothing started"


def test_nearly_full_disk_fails_before_any_work(tmp_path, rel_task, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HARNESS_HOME", str(home))
    monkeypatch.setenv("HARNESS_MIN_FREE_MB", str(10**12))
    code, _, err = _cli(
        "run", rel_task, "--systems", "lora", "--reports-dir", tmp_path / "r", "--indices-dir", tmp_path / "i"
    )
    assert_one_line_error(code, err, "HARNESS_HOME", str(home), "MB free")
    assert not (home / "train").exists()


def _in_namespace(setup: str, args: list, env: dict, out: Path, timeout: float = 300) -> tuple[int, str]:
    """Run `setup` (mounts) then `args` in a private user + mount namespace; (exit code, stdout + stderr)."""
    script = f"{setup} && exec {shlex.join(map(str, args))} > {shlex.quote(str(out))} 2>&1"
    r = subprocess.run(
        ["unshare", "-Urm", "sh", "-c", script],
        env={**os.environ, **env},
        timeout=timeout,
        preexec_fn=_default_sigint,
        capture_output=True,
        text=True,
    )
    return r.returncode, (out.read_text() if out.exists() else "") + r.stderr


def test_read_only_and_full_disks_for_real(reference, tmp_path):
    """In a private mount namespace (bind mounts, which stop root too): a read-only HARNESS_HOME that holds the
    adapter is used as it is, one that lacks an adapter says so in one line; a read-only reports/ fails at
    once; a 32 KB tmpfs as reports/ fills up while the run directory is written, which ends in one clear line,
    leaves no half-written run directory, and keeps the cached adapter intact."""
    if not _unshare_works(tmp_path / "probe"):
        pytest.skip("no private mount namespace here (unshare -Urm); the monkeypatched test below covers ENOSPC")
    ws = copy_workspace(reference["ws"], tmp_path / "ws")
    ws.reports.mkdir()
    (adapter,) = artifact_folders(ws)["adapters"]
    before = files.folder_checksums(adapter)
    env = {"HARNESS_HOME": str(ws.home)}

    def read_only(folder: Path) -> str:
        q = shlex.quote(str(folder))
        return f"mount --bind {q} {q} && mount -o remount,bind,ro {q} {q}"

    # a read-only HARNESS_HOME that holds what the run needs is used as it is; one that misses something
    # says what, in one line
    ro_reports = tmp_path / "ro-reports"
    args = [ro_reports if a == ws.reports else a for a in ws.args("lora")]
    code, out = _in_namespace(read_only(ws.home), args, env, tmp_path / "home.out")
    assert code == 0 and "Traceback" not in out, out[-3000:]
    assert f"HARNESS_HOME {ws.home} is read-only" in out and "lora: reused the cached artifact" in out, out[-3000:]
    args = [ro_reports if a == ws.reports else a for a in ws.args("dora")]
    code, out = _in_namespace(read_only(ws.home), args, env, tmp_path / "home-missing.out")
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert code == 2 and "Traceback" not in out and len(errors) == 1, out[-3000:]
    assert "dora: the adapter dora-" in errors[0] and f"HARNESS_HOME {ws.home}, which is read-only" in errors[0]
    counts.add("bad inputs rejected cleanly")
    code, out = _in_namespace(read_only(ws.reports), ws.args("lora"), env, tmp_path / "reports.out")
    assert_one_line_error(code, out, str(ws.reports), "not writable")

    tmpfs = f"mount -t tmpfs -o size=32k tmpfs {shlex.quote(str(ws.reports))}"
    code, out = _in_namespace(tmpfs, ws.args("lora"), env, tmp_path / "low.out")  # the free-space check
    assert_one_line_error(code, out, str(ws.reports), "MB free")
    code, out = _in_namespace(tmpfs, ws.args("lora"), {**env, "HARNESS_MIN_FREE_MB": "0"}, tmp_path / "full.out")
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert code == 2 and "Traceback" not in out, out[-3000:]
    assert len(errors) == 1 and "disk is full" in errors[0] and "reuses them" in errors[0], out[-3000:]
    assert str(ws.reports / TASK) in errors[0]
    counts.add("bad inputs rejected cleanly")
    assert list(ws.reports.iterdir()) == [], "the tmpfs was private to the namespace"
    assert files.verify(adapter) is None and files.folder_checksums(adapter) == before, "cached adapter intact"


def test_disk_full_while_writing_the_run_directory(reference, tmp_path, monkeypatch):
    """The same failure injected in-process (works where mounts are not allowed): ENOSPC from every write
    into reports/ while the run directory is assembled."""
    ws = copy_workspace(reference["ws"], tmp_path / "ws")
    monkeypatch.setenv("HARNESS_HOME", str(ws.home))
    (adapter,) = artifact_folders(ws)["adapters"]
    before = files.folder_checksums(adapter)
    reports = str(ws.reports.resolve())
    real_open = open
    real_write_text = Path.write_text

    def full(path):
        return str(Path(path).resolve()).startswith(reports + os.sep) and ".tmp-" in str(path)

    def write_text(self, *a, **k):
        if full(self):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real_write_text(self, *a, **k)

    def opener(file, mode="r", *a, **k):
        if any(c in mode for c in "wax") and isinstance(file, (str, os.PathLike)) and full(file):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr(Path, "write_text", write_text)
    monkeypatch.setattr("builtins.open", opener)
    code, _, err = _cli(
        "run",
        ws.task,
        "--systems",
        "lora",
        "--limit",
        LIMIT,
        "--reports-dir",
        ws.reports,
        "--indices-dir",
        ws.indices,
        "--quiet",
    )
    monkeypatch.undo()
    # in this process libraries imported earlier may still draw progress bars: judge the error lines
    errors = "\n".join(line for line in err.splitlines() if line.startswith(("error", "Traceback")))
    line = assert_one_line_error(code, errors, "disk is full", str(ws.reports / TASK))
    assert "reuses them" in line
    assert ws.runs() == [] and ws.hidden() == [], "no half-written run directory"
    assert files.verify(adapter) is None and files.folder_checksums(adapter) == before, "cached adapter intact"


# ---------------------------------------------------------------- safe loading, hostile task files

UNSAFE = [
    (
        re.compile(
            r"\bimport\s+(c?pickle|dill|cloudpickle|joblib|shelve|marshal)\b|\bfrom\s+(c?pickle|dill|shelve)\b"
        ),
        "a pickle-family import",
    ),
    (re.compile(r"\bpickle\.loads?\("), "pickle.load"),
    (re.compile(r"\byaml\.(load|load_all|unsafe_load|full_load)\s*\("), "a non-safe yaml loader"),
    (re.compile(r"Loader\s*=\s*yaml\.(Loader|UnsafeLoader|FullLoader)\b"), "a non-safe yaml Loader"),
    (re.compile(r"(?<![\w.])(eval|exec)\s*\("), "eval/exec"),
    (re.compile(r"\bweights_only\s*=\s*False"), "torch.load(weights_only=False)"),
    (re.compile(r"\ballow_pickle\s*=\s*True"), "numpy allow_pickle=True"),
    (re.compile(r"\btrust_remote_code\s*=\s*True"), "trust_remote_code=True"),
]
# A plain jinja2 Environment may only render the package's own templates (FileSystemLoader) or parse
# (syntax checks); templates from task files go through the sandbox in harness/parts/prompt_builder.py.
ENVIRONMENT = re.compile(r"(?<![\w.])(jinja2\.)?Environment\s*\(")


def test_no_unsafe_loading_in_the_code():
    problems = []
    for path in sorted((REPO / "harness").rglob("*.py")):
        text = path.read_text()
        for lineno, line in enumerate(text.splitlines(), 1):
            code = line.split("#", 1)[0]
            for pattern, what in UNSAFE:
                if pattern.search(code):
                    problems.append(f"{path.relative_to(REPO)}:{lineno}: {what}: {line.strip()}")
            if "torch.load(" in code and "weights_only=True" not in code:
                problems.append(f"{path.relative_to(REPO)}:{lineno}: torch.load without weights_only=True")
        for m in ENVIRONMENT.finditer(text):
            after = text[m.end() : m.end() + 300]
            if not ("FileSystemLoader" in after.split(")\n", 1)[0] or after.startswith(").parse(")):
                lineno = text[: m.start()].count("\n") + 1
                problems.append(f"{path.relative_to(REPO)}:{lineno}: an unsandboxed jinja2 Environment")
    assert problems == [], "\n".join(problems)


def test_python_tags_in_a_task_file_are_refused(tmp_path):
    from harness.spec import load_spec

    marker = tmp_path / "pwned"
    for tag in (
        "!!python/object/apply:os.system",
        "!!python/object/new:os.system",
        "!!python/name:os.system",
        "!!python/module:os",
    ):
        bad = tmp_path / "bad.yaml"
        bad.write_text(f'name: bad\nanswer_format: yes-no\ndata: {tag} ["touch {marker}"]\n')
        with pytest.raises(HarnessError) as e:
            load_spec(bad)
        assert str(bad) in str(e.value) and "\n" not in str(e.value)
        code, _, err = _cli("tasks", "validate", bad)
        assert code == 2 and "Traceback" not in err and str(bad) in err
        assert_one_line_error(*_cli("run", bad)[::2], str(bad))
    assert not marker.exists(), "a YAML tag ran code"


def test_templates_in_a_task_file_cannot_run_code(tmp_path, tiny_model_dir):
    """question_template and rag.context_template are jinja2: rendered in a sandbox, a template that reaches
    for Python internals is refused with a message naming the field, and runs nothing."""
    marker = tmp_path / "pwned"
    payload = "{{ cycler.__init__.__globals__.os.system('touch " + str(marker) + "') }}{{ question }}"
    task = write_tiny_task(tmp_path / "t", tiny_model_dir, question_template=payload)
    code, _, err = _cli("tasks", "validate", task)
    assert code == 2 and "Traceback" not in err and "question_template" in err, err
    from harness.data import Question
    from harness.parts.prompt_builder import question_turn

    with pytest.raises(HarnessError, match="question_template"):
        question_turn(payload, Question(id="q", question="Q?", answers=["Yes"]))
    task = write_tiny_task(tmp_path / "u", tiny_model_dir, rag={"context_template": payload})
    code, _, err = _cli("tasks", "validate", task)
    assert code == 2 and "Traceback" not in err and "context_template" in err, err
    assert not marker.exists(), "a template ran code"
    counts.add("bad inputs rejected cleanly", 2)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_weights_and_data_are_never_unpickled(tmp_path, tiny_model_dir):
    """A model folder whose weights are a pickle (pytorch_model.bin) that runs code when unpickled, and a
    questions file that is a pickle: both are refused, and the code never runs."""
    from harness.models import load_model, resolve_model

    marker = tmp_path / "pwned"
    folder = tmp_path / "evil-model"
    folder.mkdir()
    shutil.copy(tiny_model_dir / "config.json", folder / "config.json")
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"w": _Exploit(marker)}))
    with pytest.raises(HarnessError) as e:
        load_model(resolve_model(str(folder)))
    assert str(folder) in str(e.value)
    assert not marker.exists(), "loading model weights unpickled code"

    task = write_tiny_task(tmp_path / "t", tiny_model_dir)
    data = task.parent / TASK / "questions.pkl"
    data.write_bytes(pickle.dumps([_Exploit(marker)]))
    text = task.read_text().replace(f"{TASK}/questions.jsonl", f"{TASK}/questions.pkl")
    task.write_text(text)
    code, _, err = _cli("tasks", "validate", task)
    assert code == 2 and "Traceback" not in err and "questions.pkl" in err, err
    assert not marker.exists(), "loading a questions file unpickled code"
    counts.add("bad inputs rejected cleanly", 2)


# ---------------------------------------------------------------- CLI misuse


def test_cli_misuse_is_one_line(tmp_path, rel_task):
    not_a_run = tmp_path / "not-a-run"
    not_a_run.mkdir()
    cases = [
        (("run", "no-such-task"), "unknown task"),
        (("run", rel_task, "--systems", "prompt,lorax"), "lorax"),
        (("run", rel_task, "--model", tmp_path / "no-model"), "does not exist"),
        (("run", rel_task, "--limit", "-3"), "--limit"),
        (("run", rel_task, "--limit", "lots"), "--limit"),
        (("run", rel_task, "--launcher", "slurm"), "--launcher"),
        (("report", not_a_run), "not a run directory"),
        (("report", tmp_path / "nowhere"), "not a run directory"),
        (("tasks", "show", "no-such-task"), "unknown task"),
        (("tasks", "validate", tmp_path / "missing.yaml"), "missing.yaml"),
        (("frobnicate",), "frobnicate"),
    ]
    for args, word in cases:
        code, _, err = _cli(*args)
        assert code in (1, 2), (args, code, err)
        lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("Usage:", "Try "))]
        assert "Traceback" not in err and len(lines) == 1 and word in lines[0], (args, err)
        counts.add("bad inputs rejected cleanly")
    assert list(not_a_run.iterdir()) == []


# ---------------------------------------------------------------- the network guard every test runs under

GUARDED_CHILD = """
import socket, sys
try:
    socket.create_connection(("203.0.113.1", 80), timeout=2)
    print("CONNECTED")
except ConnectionError as e:
    print("BLOCKED", e)
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
socket.create_connection(srv.getsockname(), timeout=5).close()
print("LOOPBACK OK")
"""


def test_network_guard_blocks_outbound_connections(tmp_path):
    import socket

    from tests import netguard

    assert netguard.installed() and os.environ.get(netguard.ENV_FLAG) == "1"
    with netguard.expected():
        with pytest.raises(
            netguard.NetworkBlocked, match=r"network guard: outbound connection to \('203\.0\.113\.1', 80\) blocked"
        ):
            socket.create_connection(("203.0.113.1", 80), timeout=2)
        s = socket.socket()
        try:
            with pytest.raises(netguard.NetworkBlocked, match="203.0.113.1"):
                s.connect(("203.0.113.1", 80))
            with pytest.raises(netguard.NetworkBlocked):
                s.connect_ex(("203.0.113.1", 443))
        finally:
            s.close()
        with pytest.raises(netguard.NetworkBlocked, match="DNS lookup"):
            socket.getaddrinfo("example.com", 443)
        with pytest.raises(netguard.NetworkBlocked):
            socket.create_connection(("2001:db8::1", 80), timeout=2)
    # loopback and AF_UNIX still work (servers in tests, Chromium's pipe, lm-eval's local calls)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    try:
        socket.create_connection(srv.getsockname(), timeout=5).close()
        socket.create_connection(("localhost", srv.getsockname()[1]), timeout=5).close()
    finally:
        srv.close()
    a, b = socket.socketpair()
    a.sendall(b"x")
    assert b.recv(1) == b"x"
    a.close()
    b.close()
    # every Python subprocess the tests start is guarded too (sitecustomize on PYTHONPATH)
    log = tmp_path / "blocked.log"
    r = subprocess.run(
        [sys.executable, "-c", GUARDED_CHILD],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, netguard.LOG_ENV: str(log)},
    )
    assert "BLOCKED network guard: outbound connection to ('203.0.113.1', 80) blocked" in r.stdout, r.stdout + r.stderr
    assert "LOOPBACK OK" in r.stdout and "CONNECTED" not in r.stdout
    assert "203.0.113.1" in log.read_text(), "blocked attempts are logged, so a swallowed error still fails a test"
    from tests.conftest import HARNESS_BIN

    if HARNESS_BIN.exists():  # the interpreter of the `harness` console script the CLI tests run
        python = HARNESS_BIN.read_text().splitlines()[0].removeprefix("#!").strip()
        r = subprocess.run(
            [python, "-c", GUARDED_CHILD],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, netguard.LOG_ENV: str(log)},
        )
        assert "BLOCKED network guard" in r.stdout, r.stdout + r.stderr
