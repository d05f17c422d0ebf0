"""Resolving models: local folders, hub ids offline, the embedded default's folder; loading the tiny model."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from harness import files, models
from harness.errors import HarnessError


@pytest.fixture
def copy_of_tiny(tiny_model_dir, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, dst)
    return dst


def test_resolve_local_folder(tiny_model_dir):
    ref = models.resolve_model(str(tiny_model_dir))
    assert ref.path == str(tiny_model_dir.resolve())
    assert ref.display == tiny_model_dir.name
    assert ref.fingerprint == models.resolve_model(str(tiny_model_dir)).fingerprint


def test_fingerprint_is_the_content_not_the_path_or_file_times(copy_of_tiny, tiny_model_dir, tmp_path):
    """Adapter and evaluation keys hash it: a copy elsewhere, with every file touched, is the same model."""
    import os

    original = models.resolve_model(str(tiny_model_dir)).fingerprint
    later = time.time() + 3600
    for p in copy_of_tiny.rglob("*"):
        os.utime(p, (later, later))
    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    shutil.move(copy_of_tiny, moved)
    assert models.resolve_model(str(moved)).fingerprint == original
    assert models.resolve_model(str(moved), fingerprint=False).fingerprint == ""  # plan's check reads no weights


def test_a_folder_is_read_once_per_copy(copy_of_tiny, monkeypatch):
    logs = []
    first = models.resolve_model(str(copy_of_tiny), logs.append).fingerprint
    assert len(logs) == 1 and "fingerprinting the weights" in logs[0] and "by content" in logs[0]
    reads = []
    monkeypatch.setattr(files, "file_sha256", lambda p: reads.append(p) or "x")
    assert models.resolve_model(str(copy_of_tiny), logs.append).fingerprint == first  # recorded: stats only
    assert reads == [] and len(logs) == 1


def test_the_converted_default_is_keyed_by_its_recorded_checksums(tmp_path, monkeypatch):
    final = tmp_path / "home" / "models" / "smollm2-135m-instruct-0123456789abcdef"
    with files.build_atomically(final, {"source": "test"}) as tmp:
        (tmp / "config.json").write_text('{"model_type": "llama"}')
        (tmp / "model.safetensors").write_bytes(b"weights")
    monkeypatch.setattr(models, "_default_folder", lambda: final)
    ref = models.resolve_model("default", lambda m: None)
    moved = tmp_path / "other-home" / "models" / final.name
    moved.parent.mkdir(parents=True)
    shutil.copytree(final, moved)  # copytree gives new file times
    monkeypatch.setattr(models, "_default_folder", lambda: moved)
    assert models.resolve_model("default", lambda m: None).fingerprint == ref.fingerprint
    (moved / "model.safetensors").write_bytes(b"other weights")  # convert_default sees the damage and converts
    assert files.recorded_fingerprint(moved) == files.recorded_fingerprint(final)  # the record alone is unchanged
    assert files.verify(moved) == "model.safetensors does not match its checksum"


def test_a_model_converted_by_the_earlier_code_is_reused(tmp_path, monkeypatch):
    final = tmp_path / "smollm2-135m-instruct-0123456789abcdef"
    final.mkdir()
    (final / "config.json").write_text("{}")
    manifest = {
        "created": "2026-01-01T00:00:00+0000",
        "source": f"{models.DEFAULT_PACKAGE}/{models.DEFAULT_GGUF}",
        "checksums": {"config.json": files.file_sha256(final / "config.json")},
    }
    (final / "_artifact.json").write_text(json.dumps(manifest, indent=2, default=str))  # as files.build_atomically
    monkeypatch.setattr(models, "_default_folder", lambda: final)
    logs = []
    assert models.convert_default(logs.append) == final and logs == []  # verified, not converted again


def test_embedder_and_model_names_resolve_in_one_place(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert models.locate_weights("default", "embedder", lambda: tmp_path) == tmp_path
    assert models.locate_weights(str(tmp_path), "embedder", lambda: None) == tmp_path
    with pytest.raises(HarnessError, match="embedder 'org/x' is not a local folder.*pass a local embedder folder"):
        models.locate_weights("org/x", "embedder", lambda: None)
    with pytest.raises(HarnessError, match="embedder path .*nope does not exist"):
        models.locate_weights(str(tmp_path / "nope"), "embedder", lambda: None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert models.locate_weights("org/x", "embedder", lambda: None) == "org/x"


def test_fingerprint_changes_with_weights(copy_of_tiny):
    before = models.resolve_model(str(copy_of_tiny)).fingerprint
    (copy_of_tiny / "model.safetensors").write_bytes(b"different")
    assert models.resolve_model(str(copy_of_tiny)).fingerprint != before


@pytest.mark.parametrize("name", ["./does-not-exist", "/no/such/model/folder", "~/no-such-model-xyz", "a/b/c"])
def test_missing_path(name):
    with pytest.raises(HarnessError, match="does not exist"):
        models.resolve_model(name)


def test_file_not_folder(tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"x")
    with pytest.raises(HarnessError, match="is a file, not a model folder"):
        models.resolve_model(str(f))


def test_folder_without_config(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(HarnessError, match="no config.json"):
        models.resolve_model(str(tmp_path / "empty"))


def test_bad_config_json(copy_of_tiny):
    (copy_of_tiny / "config.json").write_text("{oops")
    with pytest.raises(HarnessError, match="config.json is not valid JSON"):
        models.resolve_model(str(copy_of_tiny))


def test_no_weights(copy_of_tiny):
    (copy_of_tiny / "model.safetensors").unlink()
    with pytest.raises(HarnessError, match="no weights"):
        models.resolve_model(str(copy_of_tiny))


@pytest.mark.parametrize("name", ["HuggingFaceTB/SmolLM2-135M-Instruct", "gpt2"])
def test_hub_id_offline_fails_at_once(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(HarnessError, match="pass a local model folder") as e:
        models.resolve_model(name)
    assert time.perf_counter() - start < 1
    assert name in str(e.value) and "\n" not in str(e.value)


def test_hub_id_online_is_passed_through(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    ref = models.resolve_model("org/some-model")
    assert ref.path == "org/some-model" and ref.fingerprint


def test_set_offline_defaults_respects_user(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    models.set_offline_defaults()
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "0"  # the user's choice stands
    assert os.environ["HF_DATASETS_OFFLINE"] == "1"


def test_eval_dtype():
    assert models.eval_dtype("float32") == "float32"
    assert models.eval_dtype("bfloat16") == "bfloat16"
    assert models.eval_dtype("auto") in ("float32", "bfloat16")
    assert models.eval_dtype("auto") == ("bfloat16" if models.bf16_supported() else "float32")


def test_default_folder_is_under_harness_home(harness_home):
    folder = models._default_folder()  # no conversion: only where it would go
    assert folder.parent == harness_home / "models"
    assert folder.name.startswith("smollm2-135m-instruct-")
    assert not folder.exists()


def test_load_tiny_model_and_tokenizer(tiny_model_dir):
    ref = models.resolve_model(str(tiny_model_dir))
    tok = models.load_tokenizer(ref)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<pad>"
    assert (
        tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
        == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    model = models.load_model(ref)
    assert not model.training and model.config.hidden_size == 32
    assert models.linear_layer_names(model) == [
        "down_proj",
        "gate_proj",
        "k_proj",
        "o_proj",
        "q_proj",
        "up_proj",
        "v_proj",
    ]


def test_a_frozen_head_gets_its_input_in_standard_strides(tiny_model_dir):
    """Under an adapter (peft freezes the head) the last positions reach the vocabulary head as a strided view,
    which torch multiplies against a copy of the whole head per row (harness.models.standard_head_input). The
    head must see standard strides, in scoring and in generation, and give the same logits and tokens (bf16 and
    fp16 heads: in fp32 the strided product is no slower, and the hook is left off)."""
    import torch
    from peft import LoraConfig, get_peft_model

    ref = models.resolve_model(str(tiny_model_dir))
    assert not models.load_model(ref).get_output_embeddings()._forward_pre_hooks  # fp32: strided is as fast
    plain = models.load_model(ref, "bfloat16")
    model = models.load_model(ref, "bfloat16")
    peft = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM")).eval()
    assert not model.get_output_embeddings().weight.requires_grad  # frozen, as under every adapter
    seen = []
    model.get_output_embeddings().register_forward_pre_hook(lambda m, args: seen.append(args[0].stride()))
    ids = torch.randint(3, model.config.vocab_size, (3, 9), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        peft.merge_adapter()  # B is zero at init: the merged weights are the plain model's
        logits = peft(ids, logits_to_keep=2).logits
        tokens = peft.generate(ids[:1], max_new_tokens=3, do_sample=False)
        assert torch.equal(logits, plain(ids, logits_to_keep=2).logits)
        assert torch.equal(tokens, plain.generate(ids[:1], max_new_tokens=3, do_sample=False))
    assert seen[0] == (2 * 32, 32, 1)  # not (9 * 32, 32, 1): the view of the whole sequence
    assert seen[1:] and all(s == (32, 32, 1) for s in seen[1:])  # generation: one position of one row


def test_load_tokenizer_pad_falls_back_to_eos(copy_of_tiny):
    cfg_path = copy_of_tiny / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("pad_token", None)
    cfg_path.write_text(json.dumps(cfg))
    special = copy_of_tiny / "special_tokens_map.json"
    if special.exists():
        sm = json.loads(special.read_text())
        sm.pop("pad_token", None)
        special.write_text(json.dumps(sm))
    tok = models.load_tokenizer(models.resolve_model(str(copy_of_tiny)))
    assert tok.pad_token == tok.eos_token == "<|im_end|>"


def test_broken_weights_give_a_clear_error(copy_of_tiny):
    (copy_of_tiny / "model.safetensors").write_bytes(b"not safetensors")
    ref = models.resolve_model(str(copy_of_tiny))
    with pytest.raises(HarnessError, match="cannot load it as a causal LM"):
        models.load_model(ref)


def test_broken_tokenizer_gives_a_clear_error(copy_of_tiny):
    for f in copy_of_tiny.glob("tokenizer*"):
        f.unlink()
    ref = models.resolve_model(str(copy_of_tiny))
    with pytest.raises(HarnessError, match="cannot load its tokenizer"):
        models.load_tokenizer(ref)


def test_kernels_limited_to_avx2_do_not_use_bf16(monkeypatch):
    """An AVX2 machine imitated on an AVX-512 one (ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY) runs in fp32, as the
    real one would: its kernels have no native bf16."""
    for var, value in (("ONEDNN_MAX_CPU_ISA", "AVX2"), ("ATEN_CPU_CAPABILITY", "avx2")):
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
        monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
        monkeypatch.setenv(var, value)
        assert models.isa_limited() and not models.bf16_supported("cpu")
        assert models.eval_dtype("auto", "cpu") == "float32"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    assert not models.isa_limited()


def test_the_gguf_file_is_parsed_once_while_converting_and_gguf_is_left_as_it_was(tmp_path):
    import gguf
    import numpy as np

    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_tensor("token_embd.weight", np.ones((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    reader_class, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    with models.gguf_parsed_once():
        first = gguf.GGUFReader(path)
        assert gguf.GGUFReader(str(path)) is first  # the tokenizer, config and weights share one parse
        assert first.tensors[0].name == "token_embd.weight"
        arch = gguf.MODEL_ARCH.LLAMA
        assert gguf.get_tensor_name_map(arch, 2) is gguf.get_tensor_name_map(arch, 2)
    assert (gguf.GGUFReader, gguf.get_tensor_name_map) == (reader_class, name_map)
    assert gguf.GGUFReader(path) is not first
