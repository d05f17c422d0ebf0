"""The loss a LoRA step takes off CUDA, on the answer positions only, and the same step split over threads.

The answer-positions loss runs the backbone over the padded rows and projects only the labelled positions (the
answer's tokens) through the vocabulary head: trl's loss and the model's own project every position
(docs/performance.md, "Answer-positions loss").

Training workers (`finetune.workers`) split a batch's rows into parts, one per Python thread with its share of
torch's threads, as harness.workers does for scoring: a 135M-parameter model's matrices are small, and two
half-batches side by side, one thread each, finish sooner than the whole batch on two threads
(docs/performance.md, "Training workers"). Each thread runs its part's forward and backward and returns its
gradients; they are added in part order, so a step is the same from one run to the next. It is not the
one-thread-count step's arithmetic: the kernels round by shape and thread count, so an adapter trained on two
workers differs from one trained on one by rounding, and the worker count is in the adapter's cache key.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from harness import workers as scoring_workers


def loss_applies(model) -> bool:
    """Plain causal LMs only: models that scale or soft-cap their logits keep trl's loss."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return (
        bool(getattr(base, "base_model_prefix", None))
        and hasattr(base, base.base_model_prefix)
        and base.get_output_embeddings() is not None
        and config_allows(base.config)
    )


def config_allows(config) -> bool:
    cfg = config.get_text_config()
    scaling = ("final_logit_softcapping", "logit_scale", "logits_scaling")
    return all(getattr(cfg, name, None) is None for name in scaling)


def resolve_workers(setting, threads: int, device: str, why_one: str | None) -> int:
    """Training workers for `finetune.workers`: 1 when `why_one` names a reason (see AdapterTrainer.workers),
    else as harness.workers resolves scoring's."""
    return 1 if why_one else scoring_workers.resolve(setting, threads, device)


def answer_tokens(labels):
    """How many positions the loss is over (the denominator when the trainer gives none)."""
    return (labels[:, 1:] != -100).sum().clamp(min=1)


def loss_sum(backbone, head, inputs: dict, autocast: Callable):
    """The summed cross-entropy of `inputs`' answer positions (labels other than -100), under `autocast()`."""
    import torch

    with autocast():
        hidden = backbone(
            input_ids=inputs["input_ids"],
            attention_mask=inputs.get("attention_mask"),
            position_ids=inputs.get("position_ids"),
            use_cache=False,
        ).last_hidden_state
        labels = inputs["labels"][:, 1:]
        mask = labels != -100
        logits = head(hidden[:, :-1][mask]).float()
        return torch.nn.functional.cross_entropy(logits, labels[mask], reduction="sum")


def split_rows(inputs: dict, parts: int) -> list[dict]:
    """`inputs`' rows in `parts` consecutive groups (the first ones one row larger when they do not divide), each
    cut to its own longest row: the columns every row of a group pads are dropped (right padding, as trl's
    collator makes it; a causal model's real positions never see the padding after them)."""
    rows = inputs["input_ids"].shape[0]
    size, extra = divmod(rows, parts)
    out, start = [], 0
    for k in range(parts):
        stop = start + size + (k < extra)
        part = {key: value[start:stop] for key, value in inputs.items() if key in ROW_KEYS and value is not None}
        mask = part.get("attention_mask")
        if mask is not None:
            width = int(mask.any(dim=0).nonzero().max()) + 1 if mask.any() else mask.shape[1]
            part = {key: value[:, :width] for key, value in part.items()}
        out.append(part)
        start = stop
    return out


ROW_KEYS = ("input_ids", "attention_mask", "position_ids", "labels")


def loss_on_workers(backbone, head, inputs: dict, denominator, autocast: Callable, params: list, workers: int):
    """The answer-positions loss of `inputs` over `denominator` tokens, its rows split over `workers` threads.

    With gradients on, each thread also takes its part's gradients with respect to `params`; the loss returned
    carries their sum, so that the trainer's own `backward()` (with whatever scale it puts on the loss, e.g.
    gradient accumulation's) puts exactly that sum, scaled, into the parameters' `.grad`. One worker is the plain
    loss on this thread, the step earlier versions took."""
    import torch

    if workers <= 1:
        return loss_sum(backbone, head, inputs, autocast) / denominator
    parts = [p for p in split_rows(inputs, workers) if p["input_ids"].shape[0]]
    grad_on = torch.is_grad_enabled()
    results: list = [None] * len(parts)

    def work(k: int) -> None:
        loss = loss_sum(backbone, head, parts[k], autocast) / denominator
        grads = torch.autograd.grad(loss, params, allow_unused=True) if grad_on else None
        results[k] = (loss.detach(), grads)

    scoring_workers.run_shared(range(len(parts)), work, min(workers, len(parts)), grad=grad_on)
    loss = results[0][0]
    for part_loss, _ in results[1:]:
        loss = loss + part_loss
    if not grad_on:
        return loss
    total = []
    for p, *grads in zip(params, *(g for _, g in results), strict=True):
        present = [g for g in grads if g is not None]
        if present:
            summed = present[0]
            for g in present[1:]:
                summed = summed + g
            total.append((p * summed).sum())
    # d(sum p*g)/dp = g: the surrogate's gradient is the workers' sum; it adds exactly 0 to the loss's value.
    surrogate = torch.stack(total).sum() if total else torch.zeros((), requires_grad=True)
    return loss + (surrogate - surrogate.detach())


def step(backbone, head, opt, input_ids, attention, labels, bf16: bool, workers: int = 1) -> None:
    """One optimiser step as the harness trains off CUDA (parts.trainers.sft_trainer_class) on padded rows, under
    bf16 autocast when `bf16`, split over `workers` threads: what the probe times, and what the benches vary."""
    import torch

    inputs = {"input_ids": input_ids, "attention_mask": attention, "labels": labels}

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    params = [p for group in opt.param_groups for p in group["params"]]
    loss = loss_on_workers(backbone, head, inputs, answer_tokens(inputs["labels"]), autocast, params, workers)
    loss.backward()
    opt.step()
    opt.zero_grad()
