"""`harness memory TASK`: the GPU memory one training process of the task's adapter is expected to take, from the
model's config.json alone (no weights are loaded), by the QLoRA arithmetic of the harness's own training path.

Terms (bytes), for a decoder of `L` layers, hidden size `h`, MLP size `m`, key/value width `kv`, vocabulary `V`:
- weights: qlora keeps every linear layer of the decoder in NF4 with double quantisation (bitsandbytes: 4 bits a
  weight, one 8-bit absmax per 64 weights, one fp32 constant per 256 blocks: 0.5 + 1/64 + 4/16384 bytes a
  weight); what is not quantised (embeddings, LM head, norms) is fp32, because
  `prepare_model_for_kbit_training` casts it so. lora/dora train on an fp32 base (harness.parts.adapter_trainer).
- adapter: LoRA's A and B of rank r on each adapted linear layer, r x (in + out) parameters, fp32.
- gradients: one fp32 value per adapter parameter; optimizer: AdamW's two fp32 moments per adapter parameter.
- activations, for `b` sequences of `s` tokens (`finetune.max_length`, the longest a batch pads to):
  with gradient checkpointing, the fp32 residual stream kept at each of the L layer boundaries (b*s*h*4) and one
  layer recomputed in bf16 during its backward pass; without it, every layer's bf16 activations. One layer keeps
  the inputs and outputs of its linear layers and the attention: b*s*(6h + 4kv + 4m)*2 bytes.
- logits: b*s*V in bf16, their fp32 copy for the loss and its gradient (10 bytes each). An upper bound: a fused
  or chunked loss (trl on CUDA, or the harness's answer-positions loss off CUDA) holds less.
Not counted: the CUDA context and allocator fragmentation (torch.cuda.max_memory_allocated does not count them
either), and the evaluation that follows training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError

NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4-bit code + 8-bit absmax per 64 + fp32 constant per 256 blocks
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
GIB = 2**30


@dataclass(frozen=True)
class Shape:
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool

    @property
    def kv(self) -> int:
        return self.kv_heads * (self.hidden // self.heads)

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear layer of one decoder layer (Llama/Mistral/Qwen layout)."""
        h, m, kv = self.hidden, self.intermediate, self.kv
        return {
            "q_proj": (h, h),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (h, h),
            "gate_proj": (h, m),
            "up_proj": (h, m),
            "down_proj": (m, h),
        }


def shape_of(config) -> Shape:
    try:
        return Shape(
            layers=int(config.num_hidden_layers),
            hidden=int(config.hidden_size),
            intermediate=int(config.intermediate_size),
            heads=int(config.num_attention_heads),
            kv_heads=int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads),
            vocab=int(config.vocab_size),
            tied=bool(getattr(config, "tie_word_embeddings", False)),
        )
    except AttributeError as e:
        raise HarnessError(f"model config ({type(config).__name__}): not a Llama-style decoder ({e})") from None


def quantised_params(s: Shape) -> int:
    return s.layers * sum(i * o for i, o in s.linears().values())


def full_precision_params(s: Shape) -> int:
    """Embeddings, the LM head (unless tied), two norms per layer and the final norm."""
    return s.vocab * s.hidden * (1 if s.tied else 2) + (2 * s.layers + 1) * s.hidden


def lora_params(s: Shape, r: int, targets) -> int:
    names = LINEARS if targets == "all-linear" else [t for t in targets if t in LINEARS]
    return s.layers * sum(r * (s.linears()[n][0] + s.linears()[n][1]) for n in names)


@dataclass
class Estimate:
    method: str
    shape: Shape
    batch: int
    seq: int
    terms: list[tuple[str, int, str]]  # (term, bytes, how)

    @property
    def total(self) -> int:
        return sum(b for _, b, _ in self.terms)

    def lines(self) -> list[str]:
        width = max(len(t) for t, _, _ in self.terms)
        out = [f"{t:<{width}}  {b / GIB:7.2f} GiB  {how}" for t, b, how in self.terms]
        out.append(f"{'total':<{width}}  {self.total / GIB:7.2f} GiB  (one training process; no CUDA context)")
        return out


def estimate(shape: Shape, method: str, r: int, targets, batch: int, seq: int, checkpointing: bool) -> Estimate:
    s, b, n = shape, batch, seq
    q, full, a = quantised_params(s), full_precision_params(s), lora_params(s, r, targets)
    if method == "qlora":
        weights = (round(q * NF4_BYTES) + full * 4, f"{q:,} NF4 x {NF4_BYTES:.4f} B + {full:,} fp32 x 4 B")
    else:
        weights = ((q + full) * 4, f"{q + full:,} fp32 x 4 B")
    layer = b * n * (6 * s.hidden + 4 * s.kv + 4 * s.intermediate) * 2
    if checkpointing:
        acts = (s.layers * b * n * s.hidden * 4 + layer, f"{s.layers} x {b}x{n}x{s.hidden} x 4 B + one layer")
    else:
        acts = (s.layers * layer, f"{s.layers} layers x {b}x{n} x (6h+4kv+4m) x 2 B")
    terms = [
        ("weights", *weights),
        ("adapter", a * 4, f"{a:,} LoRA parameters (r={r}) x 4 B"),
        ("gradients", a * 4, "one fp32 per adapter parameter"),
        ("optimizer state", a * 8, "AdamW: two fp32 moments per adapter parameter"),
        ("activations", *acts),
        ("logits", b * n * s.vocab * 10, f"{b}x{n}x{s.vocab:,} x (2 + 4 + 4) B, an upper bound"),
    ]
    return Estimate(method, shape, batch, seq, terms)


def load_config(model_path: str, config: Path | None = None):
    """The model's config: `config` (a folder or a config.json), else the model's folder or the hub cache."""
    from transformers import AutoConfig

    where = config or model_path
    try:
        return AutoConfig.from_pretrained(str(where))
    except Exception as e:
        raise HarnessError(
            f"model {where}: no config.json to read offline ({type(e).__name__}); pass --config, e.g. "
            "--config configs/llama-3-8b"
        ) from None


def for_task(spec, config: Path | None = None, method: str | None = None) -> Estimate:
    """The estimate for the task's adapter training: `method`, else the first adapter system it lists."""
    from harness.models import resolve_model

    adapters = [m for m in spec.systems if m in ("qlora", "lora", "dora")]
    method = method or (adapters[0] if adapters else "qlora")
    s = spec.finetune.for_method(method)
    try:
        path = str(config) if config else resolve_model(spec.model, fingerprint=False).path
    except HarnessError as e:
        raise HarnessError(f"{e}; or pass its config with --config, e.g. --config configs/llama-3-8b") from None
    per_process = max(1, s.batch_size // s.accelerate.num_processes)
    cfg = load_config(path, config)
    return estimate(shape_of(cfg), method, s.r, s.target_modules, per_process, s.max_length, s.gradient_checkpointing)
