"""Fine-tuning in depth, on the tiny model: objectives, resume after a kill, the accelerate launcher,
and settings rejected before any training starts."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from harness import cache, files
from harness.context import Reporter, RunContext
from harness.data import load_task_data
from harness.errors import HarnessError
from harness.models import resolve_model
from harness.parts.adapter_trainer import AdapterTrainer
from harness.spec import load_spec
from harness.systems import make_system
from tests.conftest import write_tiny_task


def make_ctx(task_path: Path, tmp_path: Path, **kw) -> RunContext:
    spec = load_spec(task_path)
    return RunContext(
        spec, load_task_data(spec), resolve_model(spec.model), Reporter(), indices_dir=tmp_path / "idx", **kw
    )


def test_objectives_train_and_record_phases(tmp_path, tiny_model_dir):
    task = write_tiny_task(
        tmp_path / "t", tiny_model_dir, finetune={"objective": "both", "corpus_chunk_tokens": 32, "corpus_epochs": 1}
    )
    ctx = make_ctx(task, tmp_path)
    system = make_system("lora", ctx)
    system.validate()
    info = system.build()
    t = info.training
    assert t["objective"] == "both"
    phases = {p["phase"] for p in t["loss_curve"]}
    assert phases == {"corpus", "qa"}
    steps = [p["step"] for p in t["loss_curve"]]
    assert steps == sorted(steps), "the second phase's steps continue after the first's"
    assert any(p["eval_loss"] is not None for p in t["loss_curve"] if p["phase"] == "qa")
    assert t["tokens_per_s"] > 0 and t["trainable_params"] > 0
    # a corpus-only adapter is a different artifact from a QA one
    qa = make_system("lora", make_ctx(write_tiny_task(tmp_path / "u", tiny_model_dir), tmp_path))
    assert qa.adapter.folder != system.adapter.folder


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_evaluation_merges_the_adapter_and_leaves_the_shared_model_clean(tmp_path, tiny_model_dir, method):
    """The adapter is merged into the weights for scoring (as fast as the base model), gives the unmerged
    adapter's outputs, and the next system gets weights identical to the model on disk."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ctx = make_ctx(write_tiny_task(tmp_path / "t", tiny_model_dir, finetune={"learning_rate": 5e-2}), tmp_path)
    system = make_system(method, ctx)
    system.build()
    ids = torch.tensor([[1, 5, 9, 14, 3, 7]])
    fresh = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        base_logits = fresh(ids).logits
        unmerged = (
            PeftModel.from_pretrained(
                AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32), str(system.adapter.folder)
            )
            .eval()(ids)
            .logits
        )
        with system.model() as model:
            assert all(m.merged for m in model.modules() if hasattr(m, "merged") and hasattr(m, "lora_A"))
            merged = model(ids).logits
        after = ctx.base_model()(ids).logits
    assert not torch.allclose(unmerged, base_logits, atol=1e-3), "the adapter was trained and changes the outputs"
    torch.testing.assert_close(merged, unmerged, atol=1e-4, rtol=1e-4)
    assert not hasattr(ctx.base_model(), "peft_config")
    assert torch.equal(after, base_logits), "the shared model holds the weights on disk again"


def test_answer_positions_loss_equals_the_models_own_loss(tmp_path, tiny_model_dir):
    """Off CUDA the trainer projects only the labelled (answer) positions through the LM head; the loss and its
    gradients are those of the model's own loss on the same completion-only labels, padding included."""
    import torch
    import transformers
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig

    from harness.parts.answer_loss import loss_applies as answer_positions_loss_applies
    from harness.parts.trainers import sft_trainer_class

    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
        LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    trainer = sft_trainer_class()(
        model=model,
        train_dataset=Dataset.from_list([{"prompt": "Q?", "completion": "Yes"}]),
        # fp32, to compare the arithmetic exactly (trl's default is bf16, which the next test covers)
        args=SFTConfig(output_dir=str(tmp_path / "o"), use_cpu=True, report_to="none", disable_tqdm=True, bf16=False),
    )
    assert answer_positions_loss_applies(model)  # the harness's own path is the one under test
    ids = torch.randint(3, 60, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # a right-padded row
    labels = torch.full_like(ids, -100)
    labels[0, 8:10], labels[1, 6:9], labels[2, 10:12] = ids[0, 8:10], ids[1, 6:9], ids[2, 10:12]
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    grads = []
    for compute in (trainer.compute_loss, lambda m, b: transformers.Trainer.compute_loss(trainer, m, b)):
        model.zero_grad()
        loss = compute(model, dict(batch))
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-5, rtol=1e-5)
    assert any(g.abs().sum() > 0 for g in grads[0][1])
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("bf16", [True, False])
def test_the_answer_positions_loss_trains_under_the_trainers_autocast(tmp_path, tiny_model_dir, bf16):
    """bf16=True trains under bf16 autocast, as trl's own loss does through the model's wrapped forward; the
    answer-positions path calls the backbone itself, and once trained in fp32 while the record said bf16."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig

    from harness.parts.trainers import sft_trainer_class

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    seen, forward = [], base.model.forward

    def spy(*args, **kwargs):
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return forward(*args, **kwargs)

    base.model.forward = spy
    rows = [{"prompt": f"Is {i} even?", "completion": " Yes" if i % 2 == 0 else " No"} for i in range(4)]
    trainer = sft_trainer_class()(
        model=model,
        train_dataset=Dataset.from_list(rows),
        processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
        args=SFTConfig(
            output_dir=str(tmp_path / "o"),
            max_steps=1,
            per_device_train_batch_size=4,
            bf16=bf16,
            use_cpu=True,
            report_to="none",
            disable_tqdm=True,
            completion_only_loss=True,
            save_strategy="no",
        ),
    )
    trainer.train()
    assert seen == [bf16]


def test_an_adapter_trained_in_bf16_has_a_key_of_its_own(tmp_path, tiny_model_dir, monkeypatch):
    """`bf16: auto` trains in bf16 on one machine and fp32 on another: the key tells the two apart, so that no
    adapter trained in fp32 (as every bf16 one was before the loss entered autocast) is reused as a bf16 one."""
    from harness import models

    task = write_tiny_task(tmp_path / "t", tiny_model_dir, finetune={"bf16": "auto"})
    keys = {}
    for supported in (True, False):
        monkeypatch.setattr(models, "bf16_supported", lambda on=None, s=supported: s)
        keys[supported] = make_system("lora", make_ctx(task, tmp_path)).adapter.key
    assert keys[True] != keys[False]


def test_corpus_objective_needs_a_corpus(tmp_path, tiny_model_dir):
    task = write_tiny_task(tmp_path / "t", tiny_model_dir, finetune={"objective": "corpus"})
    cfg = yaml.safe_load(task.read_text())
    del cfg["data"]["corpus"]
    task.write_text(yaml.safe_dump(cfg))
    with pytest.raises(HarnessError, match="objective 'corpus'"):
        make_system("lora", make_ctx(task, tmp_path)).validate()


def test_unknown_target_module_lists_the_models_linear_layers(tmp_path, tiny_model_dir):
    task = write_tiny_task(tmp_path / "t", tiny_model_dir, finetune={"target_modules": ["q_proj", "qkv"]})
    with pytest.raises(HarnessError) as e:
        make_system("lora", make_ctx(task, tmp_path)).validate()
    assert "qkv" in str(e.value) and "q_proj" in str(e.value) and "down_proj" in str(e.value)


@pytest.mark.parametrize(
    "field,value,words", [("r", 0, "r"), ("learning_rate", -1e-4, "learning_rate"), ("alpha", -2, "alpha")]
)
def test_bad_hyperparameters_fail_before_training(tmp_path, tiny_model_dir, harness_cmd, field, value, words):
    task = write_tiny_task(tmp_path / "t", tiny_model_dir, finetune={field: value})
    out = subprocess.run(
        [
            *harness_cmd,
            "run",
            str(task),
            "--systems",
            "lora",
            "--reports-dir",
            str(tmp_path / "r"),
            "--indices-dir",
            str(tmp_path / "i"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert words in out.stderr and str(task.name) in out.stderr
    assert not list((tmp_path / "r").glob("*/*")), "no run directory for a rejected run"
    assert not (Path(os.environ["HARNESS_HOME"]) / "train").exists(), "training never started"


def _wait_for(path_glob, root: Path, timeout: float) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if list(root.glob(path_glob)):
            return True
        time.sleep(0.2)
    return False


def test_killed_training_resumes_from_its_checkpoint(tmp_path, tiny_model_dir, harness_cmd):
    # Two epochs with a checkpoint every 2 steps: enough steps to kill the process in the middle.
    task = write_tiny_task(tmp_path / "t", tiny_model_dir, finetune={"epochs": 3, "batch_size": 2, "logging_steps": 2})
    home = Path(os.environ["HARNESS_HOME"])
    args = [
        *harness_cmd,
        "run",
        str(task),
        "--systems",
        "lora",
        "--limit",
        "3",
        "--reports-dir",
        str(tmp_path / "r"),
        "--indices-dir",
        str(tmp_path / "i"),
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for("train/*/*/qa/checkpoint-*/trainer_state.json", home, 120), "no checkpoint was written"
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not list((tmp_path / "r").glob("*/*")), "a killed run leaves no run directory"
    state = json.loads(sorted(home.glob("train/*/*/qa/checkpoint-*/trainer_state.json"))[-1].read_text())
    killed_at = state["global_step"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resuming qa training from checkpoint-" in out.stderr
    run = sorted(p for p in (tmp_path / "r").glob("*/*") if p.name != "latest")[-1]
    training = json.loads((run / "results.json").read_text())["systems"]["lora"]["training"]
    assert training["resumed_from"].startswith("qa/checkpoint-")
    total = training["steps"]
    assert killed_at < total, "the kill came before training ended"
    assert not (home / "train").exists() or not any((home / "train").rglob("checkpoint-*")), (
        "checkpoints are removed once the adapter is saved"
    )


def test_accelerate_launcher_writes_config_and_trains(tmp_path, tiny_model_dir):
    task = write_tiny_task(tmp_path / "t", tiny_model_dir)
    ctx = make_ctx(task, tmp_path, launcher="accelerate")
    system = make_system("lora", ctx)
    info = system.build()
    record = info.launch  # the run's manifest records it from the build
    assert record["config"]["distributed_type"] == "NO" and record["config"]["num_processes"] == 1
    assert "accelerate" in record["command"] and "harness.train_worker" in record["command"]
    cfg = yaml.safe_load(Path(record["command"].split("--config_file ")[1].split()[0]).read_text())
    assert cfg == record["config"]
    assert files.verify(system.adapter.folder) is None
    assert info.training["steps"] > 0


def test_accelerate_config_for_fsdp_and_deepspeed():
    from harness.launch import accelerate_config
    from harness.spec import AccelerateSpec

    fsdp = accelerate_config(AccelerateSpec(num_processes=8, distributed_type="FSDP"), use_cpu=False)
    assert fsdp["num_processes"] == 8 and fsdp["fsdp_config"]["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    ds = accelerate_config(
        AccelerateSpec(num_processes=4, distributed_type="DEEPSPEED", deepspeed_stage=3), use_cpu=False
    )
    assert ds["deepspeed_config"]["zero_stage"] == 3 and ds["deepspeed_config"]["zero3_init_flag"] is True
    assert "fsdp_config" not in ds


def test_adapter_manifest_is_sealed_once_and_a_lock_wait_reuses_what_another_process_built(
    tmp_path, tiny_model_dir, monkeypatch
):
    """The manifest is written once, by the atomic save, with the complete record; a build that waited for the
    lock while another process trained the same adapter returns that adapter without training again."""
    ctx = make_ctx(write_tiny_task(tmp_path / "t", tiny_model_dir), tmp_path)
    lora = make_system("lora", ctx)
    folder = lora.adapter.folder
    writes = []
    real_write = files.write_json_atomic
    monkeypatch.setattr(files, "write_json_atomic", lambda path, data: (writes.append(path), real_write(path, data)))
    info = lora.build()
    assert not info.cached and not [p for p in writes if p.name == files.MANIFEST], "nothing rewrites the manifest"
    meta = json.loads((folder / files.MANIFEST).read_text())
    assert meta["checksums"] == files.folder_checksums(folder), "the checksums cover the final files"
    drop = {"peak_memory_mb", "cuda_peak_memory_mb"}  # the build's peak is measured after the save
    assert {k: v for k, v in meta["training"].items() if k not in drop} == {
        k: v for k, v in info.training.items() if k not in drop
    }
    assert meta["training"]["peak_memory_mb"] > 0
    # Another process finishes the adapter while this one waits for the lock.
    built = tmp_path / "built"
    folder.rename(built)
    real_lock = cache.lock

    @contextlib.contextmanager
    def lock_held_by_another_process(path, timeout=3600):
        with real_lock(path, timeout):
            shutil.copytree(built, folder)
            yield

    def no_training(self, mem):
        raise AssertionError("trained again although the adapter was there after the lock wait")

    monkeypatch.setattr(cache, "lock", lock_held_by_another_process)
    monkeypatch.setattr(AdapterTrainer, "_train", no_training)
    again = make_system("lora", make_ctx(write_tiny_task(tmp_path / "t", tiny_model_dir), tmp_path)).build()
    assert again.cached and again.training == meta["training"] and again.build_s == 0.0


def test_an_adapter_does_not_depend_on_what_ran_before_it(tmp_path, tiny_model_dir, monkeypatch):
    """The adapter's starting weights come from the task's seed, not from whatever used torch's generator before
    (a `--systems lora` run alone and one after `prompt` train the same adapter, as their shared cache key says)."""
    import torch

    task = write_tiny_task(tmp_path / "t", tiny_model_dir)
    weights = []
    for state in (1, 12345):
        monkeypatch.setenv("HARNESS_HOME", str(tmp_path / f"home-{state}"))
        torch.manual_seed(state)
        torch.rand(7)  # some earlier stage drew from the generator
        lora = make_system("lora", make_ctx(task, tmp_path))
        lora.build()
        weights.append((lora.adapter.folder / "adapter_model.safetensors").read_bytes())
    assert weights[0] == weights[1]
