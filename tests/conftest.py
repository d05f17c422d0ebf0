"""Shared fixtures: an offline, sandboxed environment, a tiny causal LM built in seconds, and a tiny task.

Nothing here downloads: the tokenizer is trained on the fixture's own text with `tokenizers`, and the model
is a randomly initialised (seeded) 2-layer Llama. Runs write under pytest's tmp folders, never ~/.cache.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Read at import time by huggingface_hub / datasets / transformers: set before anything imports them.
_OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}
os.environ.update(_OFFLINE)
# Spinning OpenMP threads thrash when other processes share the 2 cores (a tiny-model forward: 140 ms spinning,
# 4 ms passive). Read when torch first loads, so it is set here, before any test module imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# lm-eval loads its generated JSONL tasks through `datasets`, which caches them: keep that out of ~/.cache.
# One fixed folder (a cache keyed by content, safe to share), so a killed or collect-only session leaks nothing.
_HF_DATASETS_CACHE = os.path.join(tempfile.gettempdir(), f"harness-tests-datasets-{os.getuid()}")
os.environ["HF_DATASETS_CACHE"] = _HF_DATASETS_CACHE

REPO = Path(__file__).resolve().parent.parent
HARNESS_BIN = REPO / ".venv" / "bin" / "harness"

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL = ["<|im_start|>", "<|im_end|>", "<pad>"]
SYSTEM_PROMPT = "You are a careful assistant who knows these licences. Answer the question with Yes or No."

# ---------------------------------------------------------------- tiny task data (deterministic)

DOCS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
CATEGORIES = [  # (category, question template, what the licence text says when allowed / not)
    ("permissions/commercial-use", "Does the {L} licence allow commercial use?", "commercial use"),
    ("permissions/modifications", "May I modify software under the {L} licence?", "modification"),
    ("permissions/distribution", "Can I distribute copies under the {L} licence?", "distribution"),
    ("permissions/patent-use", "Does the {L} licence grant patent rights?", "a patent grant"),
    ("permissions/private-use", "Is private use allowed by the {L} licence?", "private use"),
    (
        "conditions/include-copyright",
        "Must I keep the copyright notice under the {L} licence?",
        "keeping the copyright notice",
    ),
    ("conditions/disclose-source", "Does the {L} licence require disclosing the source?", "disclosing the source"),
    (
        "conditions/same-license",
        "Must changes be released under the same {L} licence?",
        "releasing changes under the same licence",
    ),
    ("limitations/liability", "Does the {L} licence limit liability?", "a limitation of liability"),
    ("limitations/warranty", "Does the {L} licence exclude any warranty?", "an exclusion of warranty"),
]


def _answer(d: int, c: int) -> str:
    # A fixed pattern, with some categories mostly Yes and others mostly No, so baselines differ.
    return "Yes" if (d * 3 + c * 7) % 5 < (3 if c < 5 else 2) else "No"


def tiny_questions() -> list[dict]:
    rows = []
    for d, doc in enumerate(DOCS):
        for c, (cat, tmpl, _) in enumerate(CATEGORIES):
            rows.append(
                {
                    "id": f"{doc}--{cat.replace('/', '--')}",
                    "question": tmpl.format(L=doc.capitalize()),
                    "answer": _answer(d, c),
                    "doc_id": doc,
                    "category": cat,
                }
            )
    return rows


def tiny_docs() -> dict[str, str]:
    out = {}
    for d, doc in enumerate(DOCS):
        name = doc.capitalize()
        lines = [f"The {name} Licence", ""]
        for c, (_, _, what) in enumerate(CATEGORIES):
            verb = "requires" if c in (5, 6, 7) else "permits"
            if _answer(d, c) == "Yes":
                lines.append(f"Section {c + 1}. The {name} licence {verb} {what}.")
            else:
                lines.append(f"Section {c + 1}. The {name} licence does not mention {what}; it gives no such term.")
            lines.append("")
        out[doc] = "\n".join(lines)
    return out


def _training_text() -> list[str]:
    texts = [SYSTEM_PROMPT, "Yes", "No", "system", "user", "assistant", "Passages:", "Question:", "Answer:"]
    texts += [f"{q['question']} {q['answer']}" for q in tiny_questions()]
    texts += list(tiny_docs().values())
    return texts * 3


# ---------------------------------------------------------------- environment


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: runs the real embedded default model (a minute or more); deselect with -m 'not slow'"
    )


@pytest.fixture(scope="session", autouse=True)
def _offline_session():
    """Offline everywhere, and torch on this machine's cores, shared among pytest-xdist's workers."""
    saved = {k: os.environ.get(k) for k in _OFFLINE}
    os.environ.update(_OFFLINE)
    try:
        import torch

        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
        torch.set_num_threads(max(1, min(2, (os.cpu_count() or 2) // workers)))
    except ImportError:  # pragma: no cover
        pass
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(autouse=True)
def harness_home(tmp_path_factory, monkeypatch) -> Path:
    """A fresh HARNESS_HOME per test, so no test reads or writes ~/.cache/harness."""
    home = tmp_path_factory.mktemp("harness-home")
    monkeypatch.setenv("HARNESS_HOME", str(home))
    monkeypatch.delenv("HARNESS_TASKS", raising=False)
    # A first run in a fresh home probes the machine for its time estimate (seconds, in a child process): the
    # tests of the estimate and of memory turn it back on; the rest skip it as a user can (README).
    monkeypatch.setenv("HARNESS_ESTIMATE", "off")
    return home


# ---------------------------------------------------------------- tiny model


def build_tiny_model(folder: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=700,
        special_tokens=SPECIAL,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_training_text(), trainer=trainer)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<pad>", model_max_length=512
    )
    hf_tok.chat_template = CHATML
    config = LlamaConfig(
        vocab_size=len(hf_tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        bos_token_id=hf_tok.bos_token_id,
        eos_token_id=hf_tok.eos_token_id,
        pad_token_id=hf_tok.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    hf_tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "tiny-llama")


# ---------------------------------------------------------------- tiny task


def write_tiny_task(folder: Path, model_dir: Path, name: str = "tiny-qa", **overrides) -> Path:
    """A task YAML + questions.jsonl + corpus folder of .txt docs; returns the YAML's path."""
    import yaml

    data_dir = folder / name
    (data_dir / "corpus").mkdir(parents=True, exist_ok=True)
    (data_dir / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in tiny_questions()))
    for doc, text in tiny_docs().items():
        (data_dir / "corpus" / f"{doc}.txt").write_text(text)
    cfg = {
        "name": name,
        "description": "Yes/no questions about six made-up licences (test fixture).",
        "answer_format": "yes-no",
        "data": {
            "questions": {"path": f"{name}/questions.jsonl"},
            "corpus": {"path": f"{name}/corpus", "glob": "*.txt"},
            "split": {"by": "doc", "test_fraction": 0.3, "dev_fraction": 0.17, "seed": 0},
        },
        "system_prompt": SYSTEM_PROMPT,
        "model": str(model_dir),
        "systems": ["prompt", "lora", "rag"],
        "finetune": {
            "r": 4,
            "alpha": 8,
            "epochs": 1,
            "batch_size": 8,
            "logging_steps": 2,
            "max_length": 256,
            "bf16": "off",
        },
        "rag": {"k": 2, "chunk_tokens": 64, "overlap": 8},
        "evaluation": {"bootstrap": 200, "calibration_limit": 10, "warmup": 1, "dtype": "float32"},
        "seed": 0,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    path = folder / f"{name}.yaml"
    path.write_text(f"# harness run {path}\n" + yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture
def tiny_task(tmp_path, tiny_model_dir) -> Path:
    return write_tiny_task(tmp_path / "tasks", tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_task_session(tmp_path_factory, tiny_model_dir) -> Path:
    """The same task in a session folder, for tests that share one built set of artifacts."""
    return write_tiny_task(tmp_path_factory.mktemp("tiny-task"), tiny_model_dir)


@pytest.fixture(scope="session")
def harness_cmd() -> list[str]:
    import sys

    return [str(HARNESS_BIN)] if HARNESS_BIN.exists() else [sys.executable, "-m", "harness.cli"]


# ---------------------------------------------------------------- network guard + reliability summary (added)
# Any outbound connection fails, here and in every Python subprocess (tests/netguard.py); a test during which
# one was attempted fails, even if a library swallowed the error. Installed at import, so collection is covered.
from tests import netguard as _netguard  # noqa: E402
from tests import reliability_counts as _reliability  # noqa: E402

_netguard.install()


@pytest.fixture(scope="session", autouse=True)
def _network_guard_session():
    """Guard this process, and export the variables that make Python subprocesses install the guard too.
    Yields the log file of blocked attempts."""
    _netguard.install()
    log = Path(tempfile.mkdtemp(prefix="harness-tests-netguard-")) / "blocked.log"
    saved = {k: os.environ.get(k) for k in (_netguard.ENV_FLAG, _netguard.LOG_ENV, "PYTHONPATH")}
    os.environ.update(_netguard.environment(log))
    yield log
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    shutil.rmtree(log.parent, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_network_attempts(_network_guard_session):
    """Fail the test if code under test tried to reach the network (logged by the guard)."""
    log = _network_guard_session
    start = log.stat().st_size if log.exists() else 0
    yield
    attempts = _netguard.read_log(log, start)
    if attempts:
        pytest.fail("outbound network access attempted (tests must run offline):\n" + attempts[:4000], pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if call.when == "teardown":  # counts added in setup, call or teardown ride on the last report
        report.user_properties.extend((_reliability.PROPERTY, c) for c in _reliability.take_pending())


def pytest_runtest_logreport(report):
    _reliability.tally(report)


def pytest_terminal_summary(terminalreporter):
    if _reliability.touched():
        terminalreporter.write_sep("-", "reliability summary")
        terminalreporter.write_line(_reliability.summary_line())


def run_cli(*args) -> tuple[int, str, str]:
    """`harness ARGS` in this process (the heavy imports are paid once): (exit code, stdout, stderr)."""
    import contextlib
    import io

    from harness.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, out.getvalue(), err.getvalue()
