"""The task-file sections of the optional engines: `finetune.accelerate` (multi-process training through
`accelerate launch`) and `evaluation.vllm` (serving through vLLM on a GPU). Part of the task schema
(harness.spec), kept apart so that the schema's core stays readable; docs/tasks.md documents them with it.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from harness.dataspec import Strict


class AccelerateSpec(Strict):
    """The configuration `harness run --launcher accelerate` writes for `accelerate launch`."""

    example: ClassVar[str] = """\
finetune: {accelerate: {num_processes: 8, distributed_type: FSDP}}"""

    num_processes: int = Field(1, gt=0, description="Training processes (one per GPU).")
    distributed_type: Literal["NO", "MULTI_GPU", "MULTI_CPU", "FSDP", "DEEPSPEED"] = Field(
        "NO", description="Accelerate's distribution: plain DDP (`MULTI_GPU`), FSDP or DeepSpeed."
    )
    mixed_precision: Literal["no", "bf16", "fp16"] = Field(
        "no", description="Mixed precision inside accelerate (the trainer's bf16 setting still applies)."
    )
    deepspeed_stage: int = Field(2, ge=0, le=3, description="ZeRO stage when `distributed_type` is `DEEPSPEED`.")
    num_machines: int = Field(1, gt=0, description="Machines taking part.")


class VllmSpec(Strict):
    """How `evaluation.backend: vllm` runs vLLM (through lm-eval's own vLLM model class; GPU only)."""

    example: ClassVar[str] = """\
vllm: {tensor_parallel_size: 2, gpu_memory_utilization: 0.85}"""

    tensor_parallel_size: int = Field(1, gt=0, description="GPUs one copy of the model is split over.")
    data_parallel_size: int = Field(
        1, gt=0, description="Copies of the model, each on its own GPUs (lm-eval dispatches them through Ray)."
    )
    gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="Share of each GPU's memory vLLM may take (weights, KV cache, adapters)."
    )
    max_model_len: int | None = Field(
        None, gt=0, description="Longest sequence vLLM reserves KV cache for; unset: the model's context length."
    )
