"""`harness memory`: the QLoRA memory arithmetic, checked against hand-computed figures for Llama-3-8B (the config
shipped in configs/llama-3-8b) and against the parameters a real model and peft count on the tiny model."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from harness import memory_estimate as me
from harness.spec import check_include, load_spec
from tests.conftest import write_tiny_task

ROOT = Path(__file__).resolve().parent.parent
LLAMA_8B = ROOT / "configs" / "llama-3-8b"
GPU_8B = ROOT / "tasks" / "_shared" / "gpu-8b.yaml"


def llama_8b() -> me.Shape:
    return me.shape_of(me.load_config(str(LLAMA_8B)))


def test_llama_3_8b_parameters_by_hand():
    s = llama_8b()
    # per layer: q, o 4096x4096; k, v 4096x1024 (8 key/value heads of 128); gate, up, down 4096x14336
    per_layer = 2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336
    assert per_layer == 218_103_808
    assert me.quantised_params(s) == 32 * per_layer == 6_979_321_856
    # embeddings and the untied LM head (128,256 x 4096 each), 2 norms per layer and the final one
    assert me.full_precision_params(s) == 2 * 128_256 * 4096 + 65 * 4096 == 1_050_939_392
    assert me.quantised_params(s) + me.full_precision_params(s) == 8_030_261_248  # Llama-3-8B's 8.03B
    # LoRA r=16 on all 7 linears: 16 x (in + out) each = 16 x 81,920 per layer
    assert me.lora_params(s, 16, "all-linear") == 32 * 16 * 81_920 == 41_943_040
    assert me.lora_params(s, 16, ["q_proj", "v_proj"]) == 32 * 16 * (8192 + 5120)


def test_qlora_estimate_of_the_8b_recipe_by_hand():
    est = me.estimate(llama_8b(), "qlora", 16, "all-linear", batch=8, seq=512, checkpointing=True)
    got = {t: b for t, b, _ in est.terms}
    # NF4 + double quantisation: 0.5 + 1/64 + 4/16384 = 0.515869140625 bytes a weight
    assert got["weights"] == 3_489_660_928 + 109_051_904 + 1_703_936 + 1_050_939_392 * 4 == 7_804_174_336
    assert got["adapter"] == got["gradients"] == 41_943_040 * 4 == 167_772_160
    assert got["optimizer state"] == 41_943_040 * 8 == 335_544_320
    # checkpoints: 32 x 8 x 512 x 4096 fp32; one layer: 8 x 512 x (6*4096 + 4*1024 + 4*14336) x 2 B
    assert got["activations"] == 2_147_483_648 + 704_643_072
    assert got["logits"] == 8 * 512 * 128_256 * 10 == 5_253_365_760
    assert est.total == 16_580_755_456  # 15.44 GiB
    full = me.estimate(llama_8b(), "lora", 16, "all-linear", batch=8, seq=512, checkpointing=False)
    assert {t: b for t, b, _ in full.terms}["weights"] == 8_030_261_248 * 4
    assert {t: b for t, b, _ in full.terms}["activations"] == 32 * 704_643_072


def test_the_counts_match_a_real_model_and_peft(tiny_model_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_config(cfg)
    s = me.shape_of(cfg)
    assert me.quantised_params(s) + me.full_precision_params(s) == sum(p.numel() for p in model.parameters())
    linears = sum(
        m.weight.numel() for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "lm_head" not in n
    )
    assert me.quantised_params(s) == linears
    peft = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    assert me.lora_params(s, 4, "all-linear") == peft.get_nb_trainable_parameters()[0]


def test_the_8b_include_is_valid_and_sets_the_recipe(tmp_path):
    assert "shared include" in check_include(GPU_8B)
    task = tmp_path / "big.yaml"
    task.write_text(f"name: big\ninclude: {GPU_8B}\nanswer_format: yes-no\ndata: {{questions: {{path: q.jsonl}}}}\n")
    spec = load_spec(task)
    assert spec.model == "meta-llama/Meta-Llama-3-8B-Instruct" and spec.device == "cuda"
    q = spec.finetune.for_method("qlora")
    assert q.gradient_checkpointing and q.bf16 == "on" and "qlora" in spec.systems
    assert spec.evaluation.backend == "vllm" and spec.evaluation.dtype == "bfloat16"
    est = me.for_task(spec, LLAMA_8B)
    assert (est.method, est.batch, est.seq) == ("qlora", 8, 512)
    assert est.total == 16_580_755_456, "the recipe's estimate is the one computed by hand above"


def test_harness_memory_prints_the_estimate_or_one_line_without_a_config(tmp_path, tiny_model_dir, harness_cmd):
    task = write_tiny_task(tmp_path / "t", tiny_model_dir, systems=["prompt", "qlora"], model="org/not-here")
    out = subprocess.run(
        [*harness_cmd, "memory", str(task), "--config", str(LLAMA_8B)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("tiny-qa: qlora on org/not-here (32 layers, hidden 4096, vocab 128,256)")
    assert any(ln.startswith("optimizer state") for ln in lines) and lines[-1].startswith("total")
    out = subprocess.run([*harness_cmd, "memory", str(task)], capture_output=True, text=True)
    assert out.returncode == 2
    err = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and "org/not-here" in err[0] and "--config configs/llama-3-8b" in err[0]


@pytest.mark.parametrize("checkpointing", [True, False])
def test_lines_add_up_to_the_total(checkpointing):
    est = me.estimate(llama_8b(), "qlora", 8, "all-linear", batch=2, seq=256, checkpointing=checkpointing)
    shown = [float(re.search(r" (\d+\.\d\d) GiB", ln).group(1)) for ln in est.lines()[:-1]]
    assert abs(sum(shown) - est.total / 2**30) < 0.01 * len(shown)
