"""The trainers an AdapterTrainer is given: supervised QA and corpus pre-training (trl's SFTTrainer), and
preference training (trl's DPOTrainer, ORPOTrainer). Each phase makes its datasets, its config and its trl
trainer, and counts its tokens; `SupervisedRecipe` strings the supervised phases together for lora, qlora,
dora and rag+lora, with the rows (plain prompts, or prompts with passages) given to it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

from harness.parts import answer_loss
from harness.parts.adapter_trainer import AdapterTrainer, PhaseRun


def loss_curve(log_history: list[dict]) -> list[dict]:
    """Train and validation loss per logged step, from a trl trainer's log history."""
    by_step: dict[int, dict] = {}
    for entry in log_history:
        step = entry.get("step")
        if step is None:
            continue
        point = by_step.setdefault(step, {"step": step, "train_loss": None, "eval_loss": None})
        if "loss" in entry:
            point["train_loss"] = float(entry["loss"])
        if "eval_loss" in entry:
            point["eval_loss"] = float(entry["eval_loss"])
    return [by_step[s] for s in sorted(by_step)]


def sft_trainer_class():
    """trl's SFTTrainer, with a loss that projects only the answer positions through the LM head off CUDA.

    trl computes the loss through a chunked, fused LM head that, off Triton devices, scores *every* position
    through the vocabulary-sized head (recomputing it in the backward pass) and adds entropy and top-1
    metrics; the model's own loss projects every position too. With the loss on the completion only, two or
    three positions per example matter (see docs/performance.md, "Answer-positions loss"). On CUDA trl's
    path is kept. `harness_workers` > 1 splits each batch's rows over that many threads (harness.parts.answer_loss).
    """
    from trl import SFTTrainer

    class HarnessSFTTrainer(SFTTrainer):
        harness_workers = 1

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            # Wrapped for DDP (several CPU processes), the model must run its own forward, which syncs the
            # gradients; the shortcut below calls the backbone directly, so it is for a bare model only.
            wrapped = model is not self.accelerator.unwrap_model(model)
            if self.args.device.type == "cuda" or wrapped or not answer_loss.loss_applies(model):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            backbone, head = getattr(base, base.base_model_prefix), base.get_output_embeddings()
            denominator = num_items_in_batch
            if denominator is None:
                denominator = answer_loss.answer_tokens(inputs["labels"])
            # accelerate puts bf16 autocast around the model's forward only; this path calls the backbone and the
            # head itself, so it enters the same autocast (without it, bf16=True trained in fp32).
            params = [p for p in model.parameters() if p.requires_grad]
            loss = answer_loss.loss_on_workers(
                backbone, head, inputs, denominator, self.accelerator.autocast, params, self.harness_workers
            )
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # as Trainer.compute_loss: DDP averages gradients
            return (loss, {"loss": loss}) if return_outputs else loss

    return HarnessSFTTrainer


def lora_config(settings, use_dora: bool = False):
    from peft import LoraConfig

    s = settings
    return LoraConfig(
        r=s.r,
        lora_alpha=s.alpha,
        lora_dropout=s.dropout,
        target_modules=s.target_modules,
        task_type="CAUSAL_LM",
        use_dora=use_dora,
    )


# ---------------------------------------------------------------- supervised: QA and corpus phases


class Rows(Protocol):
    """Where supervised QA rows come from: plain prompts (lora) or prompts with passages (rag+lora)."""

    def start(self) -> None: ...  # training starts: forget what an earlier attempt recorded

    def rows(self, questions) -> list[dict]: ...  # {"prompt", "completion"}

    def fit_batch(self, config) -> None: ...  # split long rows into micro-batches (changes the config)

    def record(self) -> dict: ...  # entries for the training record, after the peak memory


def sft_config(trainer: AdapterTrainer, output_dir: Path, phase: str, has_eval: bool):
    from trl import SFTConfig

    s, ctx = trainer.settings, trainer.ctx
    # Random batches (transformers' default `train_sampling_strategy`), not length-grouped ones: those were nearly
    # single-category on legal-qa and the adapter did much worse on dev (see docs/performance.md, "group_by_length").
    return SFTConfig(
        output_dir=str(output_dir),
        num_train_epochs=s.corpus_epochs if phase == "corpus" else s.epochs,
        per_device_train_batch_size=per_process(s.batch_size),
        per_device_eval_batch_size=per_process(s.batch_size),
        learning_rate=s.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        logging_steps=s.logging_steps,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=s.logging_steps,
        save_strategy="steps",
        save_steps=s.logging_steps,
        save_total_limit=2,
        bf16=ctx.use_bf16(s.bf16),
        use_cpu=ctx.device == "cpu",
        report_to="none",
        seed=ctx.spec.seed,
        data_seed=ctx.spec.seed,
        max_length=s.corpus_chunk_tokens + 8 if phase == "corpus" else s.max_length,
        packing=s.packing,
        gradient_checkpointing=s.gradient_checkpointing,
        completion_only_loss=phase != "corpus",
        dataset_text_field="text",
        dataloader_num_workers=0,
        disable_tqdm=True,
        prediction_loss_only=True,
    )


def corpus_rows(ctx, size: int) -> list[dict]:
    """The corpus cut into pieces of `size` model tokens, for continued pre-training."""
    tok, rows = ctx.tokenizer, []
    for doc in ctx.data.corpus:
        ids = tok(doc.text, add_special_tokens=False).input_ids
        rows += [{"text": tok.decode(ids[i : i + size])} for i in range(0, len(ids), size)]
    return rows


@dataclass
class SupervisedPhase:
    """SFT on question/answer rows ("qa"), or continued pre-training on the corpus ("corpus")."""

    adapter: AdapterTrainer
    name: str
    source: Rows
    keep_done: bool = True

    @property
    def folder(self) -> str:
        return self.name

    @property
    def epochs(self) -> float:
        s = self.adapter.settings
        return s.corpus_epochs if self.name == "corpus" else s.epochs

    def trainer(self, model, output_dir: Path, callbacks: list):
        from datasets import Dataset

        a, s = self.adapter, self.adapter.settings
        if self.name == "corpus":
            train_ds, eval_ds = Dataset.from_list(corpus_rows(a.ctx, s.corpus_chunk_tokens)), None
        else:
            train_q, dev_q = a.ctx.data.train, a.ctx.data.dev
            train_ds = Dataset.from_list(self.source.rows(train_q))
            dev_rows = self.source.rows(dev_q[: s.validation_examples])
            eval_ds = Dataset.from_list(dev_rows) if dev_rows else None
        config = sft_config(a, output_dir, self.name, eval_ds is not None)
        if self.name != "corpus":  # the corpus phase has its own, short pieces
            self.source.fit_batch(config)
        trainer = sft_trainer_class()(
            model=model,
            args=config,
            train_dataset=train_ds,
            eval_dataset=eval_ds,
            processing_class=a.ctx.tokenizer,
            callbacks=callbacks,
        )
        trainer.harness_workers = a.workers
        return trainer

    def tokens(self, trainer) -> int:
        return int(sum(len(ids) for ids in trainer.train_dataset["input_ids"]) * self.epochs)


class SupervisedRecipe:
    """lora, qlora, dora (and rag+ each): a new adapter on the base model, trained on the corpus, on QA
    rows, or both in turn (finetune.objective)."""

    PHASES: ClassVar[dict[str, list[str]]] = {"supervised-qa": ["qa"], "corpus": ["corpus"], "both": ["corpus", "qa"]}

    def __init__(self, source: Rows):
        self.source = source

    def prepare(self, trainer: AdapterTrainer, workdir: Path) -> None:
        self.source.start()

    def start_model(self, trainer: AdapterTrainer):
        from peft import get_peft_model

        model = get_peft_model(trainer.load_base(), lora_config(trainer.settings, trainer.method == "dora"))
        if trainer.settings.gradient_checkpointing:
            model.enable_input_require_grads()
        return model

    def phases(self, trainer: AdapterTrainer) -> list[SupervisedPhase]:
        return [SupervisedPhase(trainer, name, self.source) for name in self.PHASES[trainer.settings.objective]]

    def record(self, trainer: AdapterTrainer, runs: list[PhaseRun], model) -> dict:
        s, ctx = trainer.settings, trainer.ctx
        curve, offset = [], 0
        for run in runs:
            for point in loss_curve(run.history):
                curve.append({**point, "step": point["step"] + offset, "phase": run.phase})
            offset += run.steps
        seconds = sum(run.runtime_s for run in runs)
        tokens = sum(run.tokens for run in runs)
        final_loss = next((run.final_loss for run in reversed(runs) if run.final_loss is not None), None)
        trainable, total = model.get_nb_trainable_parameters()
        return {
            "method": trainer.method,
            "objective": s.objective,
            "seconds": round(seconds, 2),
            "tokens_per_s": round(tokens / max(seconds, 1e-9), 1),
            "tokens": tokens,
            "resumed_from": ", ".join(run.resumed for run in runs if run.resumed) or None,
            "trainable_params": int(trainable),
            "total_params": int(total),
            "epochs": s.epochs,
            "steps": sum(run.steps for run in runs),
            "examples": len(ctx.data.train),
            "bf16": ctx.use_bf16(s.bf16),
            "final_train_loss": None if final_loss is None else round(final_loss, 4),
            "loss_curve": curve,
            "world_size": world_size(),
            "workers": trainer.workers,
            "settings": s.model_dump(exclude={"overrides"}, mode="json"),
        }

    def record_after_memory(self) -> dict:
        return self.source.record()


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def per_process(batch_size: int) -> int:
    """Each training process's share of a batch. `batch_size` is examples per optimiser step whatever the
    launcher: DDP averages the processes' gradients, so N processes with a 1/N share each take the step one
    process takes on the whole batch (same examples, same loss curve: tests/test_finetune.py). The plan checks
    that the batch divides evenly (AdapterTrainer.validate)."""
    return max(1, batch_size // world_size())


# ---------------------------------------------------------------- preference: DPO and ORPO

PAIR_ROLES = ("prompt", "chosen", "rejected")


@dataclass
class PreferencePhase:
    """DPO or ORPO on (prompt, chosen, rejected) pairs; `peft_config` is None when continuing an adapter."""

    adapter: AdapterTrainer
    name: str  # "dpo" or "orpo"
    train_pairs: list[dict]
    dev_pairs: list[dict]
    peft_config: object | None
    folder: str = ""
    keep_done: bool = False

    def columns(self, pairs: list[dict]) -> list[dict]:
        return [{k: r[k] for k in PAIR_ROLES} for r in pairs]

    def trainer(self, model, output_dir: Path, callbacks: list):
        from datasets import Dataset

        a = self.adapter
        s, p, ctx = a.settings, a.ctx.spec.preference, a.ctx
        train_ds = Dataset.from_list(self.columns(self.train_pairs))
        eval_ds = Dataset.from_list(self.columns(self.dev_pairs)) if self.dev_pairs else None
        # A validation pass scores every dev pair with the policy and the reference: about six of them per run
        # draw the curve at a fraction of the cost of one every logging step.
        total_steps = math.ceil(math.ceil(len(self.train_pairs) / p.batch_size) * p.epochs)
        eval_every = max(s.logging_steps, math.ceil(total_steps / 6))
        common = {
            "output_dir": str(output_dir),
            "num_train_epochs": p.epochs,
            "per_device_train_batch_size": per_process(p.batch_size),
            "per_device_eval_batch_size": per_process(p.batch_size),
            "learning_rate": p.learning_rate,
            "lr_scheduler_type": "cosine",
            "warmup_steps": 0.1,
            "logging_steps": s.logging_steps,
            "eval_strategy": "steps" if eval_ds else "no",
            "eval_steps": eval_every,
            "save_strategy": "steps",
            "save_steps": eval_every,
            "save_total_limit": 2,
            "bf16": ctx.use_bf16(s.bf16),
            "use_cpu": ctx.device == "cpu",
            "report_to": "none",
            "seed": ctx.spec.seed,
            "data_seed": ctx.spec.seed,
            "max_length": s.max_length,
            "gradient_checkpointing": s.gradient_checkpointing,
            "beta": p.beta,
            "dataloader_num_workers": 0,
            "disable_tqdm": True,
            "save_only_model": False,
            "dataset_num_proc": None,
        }
        kwargs = {
            "model": model,
            "train_dataset": train_ds,
            "eval_dataset": eval_ds,
            "processing_class": ctx.tokenizer,
            "peft_config": self.peft_config,
            "callbacks": callbacks,
        }
        if self.name == "dpo":
            from trl import DPOConfig, DPOTrainer

            return DPOTrainer(args=DPOConfig(**common), **kwargs)
        import warnings

        with warnings.catch_warnings():  # trl warns that its experimental package may change
            warnings.simplefilter("ignore")
            from trl.experimental.orpo import ORPOConfig, ORPOTrainer
        return ORPOTrainer(args=ORPOConfig(**common), **kwargs)

    def tokens(self, trainer) -> int:
        tok, epochs = self.adapter.ctx.tokenizer, self.adapter.ctx.spec.preference.epochs
        return (
            sum(
                len(tok(r["prompt"] + r["chosen"]).input_ids) + len(tok(r["prompt"] + r["rejected"]).input_ids)
                for r in self.train_pairs
            )
            * epochs
        )
