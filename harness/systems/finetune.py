"""lora, qlora, dora: a PEFT adapter trained with trl's SFTTrainer on the training split.

Training data is prompt/completion pairs rendered by the same function evaluation uses, so the loss falls
on the answer only and the adapter sees at test time exactly the format it learned. The adapter is
cached under HARNESS_HOME, keyed by everything that determines it; interrupted training resumes from
its last checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

from harness import cache
from harness.errors import HarnessError
from harness.measure import PeakMemory, timer
from harness.prompts import chat_prompt, user_turn
from harness.systems import BuildInfo, Prompts, System, register_system

METHODS = ("lora", "qlora", "dora")


def library_versions() -> dict[str, str]:
    from harness.manifest import package_versions

    return package_versions(("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate"))


def training_rows(ctx, questions, user_text=None) -> list[dict]:
    spec, tok = ctx.spec, ctx.tokenizer
    render = user_text or (lambda q: user_turn(spec.question_template, q))
    return [{"prompt": chat_prompt(tok, spec.system_prompt, render(q)), "completion": q.answers[0]} for q in questions]


def sft_trainer_class():
    """trl's SFTTrainer, with a loss that projects only the answer positions through the LM head off CUDA.

    trl computes the loss through a chunked, fused LM head that, off Triton devices, scores *every* position
    through the 49k-word head (recomputing it in the backward pass) and adds entropy and top-1 metrics;
    the model's own loss projects every position too. With the loss on the completion only, two or three
    positions per example matter. Measured on this 2-core CPU, 8 legal-qa examples per step: trl 4.3 s,
    the model's own loss 3.5 s (both with LoRA dropout 0.05). On CUDA trl's path is kept.
    """
    import torch
    from trl import SFTTrainer

    class HarnessSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.args.device.type == "cuda" or not _answer_positions_loss_applies(model):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            backbone = getattr(base, base.base_model_prefix)
            hidden = backbone(
                input_ids=inputs["input_ids"],
                attention_mask=inputs.get("attention_mask"),
                position_ids=inputs.get("position_ids"),
                use_cache=False,
            ).last_hidden_state
            labels = inputs["labels"][:, 1:]
            mask = labels != -100
            logits = base.get_output_embeddings()(hidden[:, :-1][mask]).float()
            loss = torch.nn.functional.cross_entropy(logits, labels[mask], reduction="sum")
            loss = loss / (num_items_in_batch if num_items_in_batch is not None else mask.sum().clamp(min=1))
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # as Trainer.compute_loss: DDP averages gradients
            return (loss, {"loss": loss}) if return_outputs else loss

    return HarnessSFTTrainer


def _answer_positions_loss_applies(model) -> bool:
    """Plain causal LMs only: models that scale or soft-cap their logits keep trl's loss."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = base.config.get_text_config()
    return (
        getattr(base, "base_model_prefix", None)
        and hasattr(base, base.base_model_prefix)
        and base.get_output_embeddings() is not None
        and getattr(cfg, "final_logit_softcapping", None) is None
        and getattr(cfg, "logit_scale", None) is None
        and getattr(cfg, "logits_scaling", None) is None
    )


def record_training_memory(system, training: dict) -> None:
    """The peak memory so far of the build, into the training record before it is written with the adapter,
    so that a run that reuses the adapter still reports what training took."""
    mem = getattr(system, "_training_memory", None)
    if mem is not None:
        training["peak_memory_mb"] = round(mem.peak_mb, 1)
        import torch

        if torch.cuda.is_available():  # PeakMemory reset the CUDA peak when the build started
            training["cuda_peak_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)


def loss_curve(log_history: list[dict]) -> list[dict]:
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


def _complete_checkpoints(folder: Path) -> list[Path]:
    """Checkpoints a kill did not cut short (a trainer_state.json is written last)."""
    found = []
    for ckpt in folder.glob("checkpoint-*"):
        if (ckpt / "trainer_state.json").exists() and any(ckpt.glob("adapter_model.*")):
            found.append(ckpt)
        else:
            shutil.rmtree(ckpt, ignore_errors=True)
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


@register_system(*METHODS)
class FinetuneSystem(System):
    kind = "finetune"

    @property
    def method(self) -> str:
        return self.name

    @property
    def settings(self):
        return self.ctx.spec.finetune.for_method(self.method)

    # ------------------------------------------------------------ checks before any work

    def validate(self) -> None:
        try:
            s = self.settings
        except Exception as e:  # pydantic error from an override
            raise HarnessError(f"{self.ctx.spec.source_path}: finetune.overrides.{self.method}: {e}") from None
        if isinstance(s.target_modules, list):
            valid = self.ctx.linear_layer_names()
            bad = [m for m in s.target_modules if m not in valid]
            if bad:
                raise HarnessError(
                    f"finetune.target_modules: {', '.join(bad)} not in the model; "
                    f"its linear layers are: {', '.join(valid)}"
                )
        if not self.ctx.linear_layer_names():
            raise HarnessError(
                f"{self.name}: model {self.ctx.model_ref.path} has no linear layers an adapter can target"
            )
        if self.method == "qlora":
            try:
                import bitsandbytes  # noqa: F401
            except ImportError:
                raise HarnessError("qlora needs bitsandbytes (pip install bitsandbytes)") from None
        if s.objective != "supervised-qa" and self.ctx.data.corpus_is_fallback:
            raise HarnessError(
                f"finetune.objective '{s.objective}' trains on the corpus, but the task has no "
                "data.corpus; use objective: supervised-qa or add a corpus"
            )

    # ------------------------------------------------------------ cache identity

    def key(self) -> str:
        ctx = self.ctx
        return cache.key_of(
            self.method,
            self.settings.model_dump(),
            ctx.model_ref.fingerprint,
            ctx.data_fingerprint,
            ctx.spec.system_prompt,
            ctx.spec.question_template,
            ctx.spec.seed,
            library_versions(),
            self.extra_key(),
        )

    def extra_key(self):
        return None

    def adapter_dir(self) -> Path:
        return cache.home() / "adapters" / self.ctx.spec.name / f"{self.method}-{self.key()}"

    def weights_identity(self) -> str:
        # the adapter file itself, not only its key: `--retrain` writes new weights under the same key
        folder = self.adapter_dir()
        stat = (folder / "adapter_model.safetensors").stat()
        return cache.key_of(self.ctx.model_ref.fingerprint, folder.name, stat.st_size, stat.st_mtime_ns)

    # ------------------------------------------------------------ build

    def train_questions(self):
        return self.ctx.data.train, self.ctx.data.dev

    def rows(self, questions):
        return training_rows(self.ctx, questions)

    def build(self) -> BuildInfo:
        final = self.adapter_dir()
        if not self.ctx.retrain and cache.verify(final) is None:
            meta = json.loads((final / cache.MANIFEST).read_text())
            training = meta.get("training") or {}
            return BuildInfo(
                0.0,
                True,
                cache.folder_size_mb(final),
                training=meta.get("training"),
                build_cost_s=training.get("seconds"),
            )
        if self.ctx.launcher == "accelerate":
            return self._build_with_accelerate(final)
        # Under `accelerate launch` every process trains; only the main one writes. A lock would
        # serialise the processes, so it is only taken for single-process training.
        distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        with contextlib.nullcontext() if distributed else cache.lock(final):
            if not self.ctx.retrain and cache.verify(final) is None:
                return self.build()
            if final.exists() and cache.verify(final):
                self.ctx.log(f"warning: adapter at {final} is damaged ({cache.verify(final)}); training again")
            self.ctx.release_base_model()
            with PeakMemory() as mem, timer() as took:
                self._training_memory = mem  # read by _train when it writes the adapter's manifest
                training = self._train(final)
            training["peak_memory_mb"] = round(mem.peak_mb, 1)
            if mem.cuda_peak_mb is not None:
                training["cuda_peak_memory_mb"] = round(mem.cuda_peak_mb, 1)
            size = cache.folder_size_mb(final) if final.exists() else 0.0
            return BuildInfo(took(), False, size, mem.peak_mb, training=training)

    def _build_with_accelerate(self, final: Path) -> BuildInfo:
        from harness import launch

        ctx = self.ctx
        folder = cache.home() / "launch" / ctx.spec.name / final.name
        cmd, record = launch.write_job(
            folder,
            task_file=ctx.spec.source_path,
            system=self.name,
            model=ctx.spec.model,
            seed=ctx.spec.seed,
            home=str(cache.home()),
            indices_dir=str(ctx.indices_dir),
            settings=self.settings.accelerate,
            use_cpu=ctx.device == "cpu",
        )
        ctx.cache_put(f"launch:{self.name}", record)
        with timer() as took:
            launch.run(cmd, ctx.log)
        if cache.verify(final) is not None:
            raise RuntimeError(f"accelerate launch finished but wrote no adapter at {final}")
        meta = json.loads((final / cache.MANIFEST).read_text())
        info = BuildInfo(took(), False, cache.folder_size_mb(final), training=meta.get("training"))
        info.notes.append(f"trained with: {record['command']}")
        return info

    def _load_trainable_base(self):
        import torch
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig

        kwargs = {"dtype": torch.float32}
        if self.method == "qlora":
            compute = torch.bfloat16 if self.ctx.use_bf16(self.settings.bf16) else torch.float32
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_compute_dtype=compute,
                bnb_4bit_use_double_quant=True,
            )
            if self.ctx.device == "cuda":
                kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
        model = AutoModelForCausalLM.from_pretrained(self.ctx.model_ref.path, **kwargs)
        if self.method == "qlora":
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=self.settings.gradient_checkpointing
            )
        return model

    def corpus_rows(self) -> list[dict]:
        """The corpus cut into pieces of `corpus_chunk_tokens` model tokens, for continued pre-training."""
        tok, size = self.ctx.tokenizer, self.settings.corpus_chunk_tokens
        rows = []
        for doc in self.ctx.data.corpus:
            ids = tok(doc.text, add_special_tokens=False).input_ids
            rows += [{"text": tok.decode(ids[i : i + size])} for i in range(0, len(ids), size)]
        return rows

    def _sft_config(self, workdir: Path, phase: str, has_eval: bool):
        from trl import SFTConfig

        s, ctx = self.settings, self.ctx
        # Random batches, not `group_by_length`: that saved padding, but legal-qa's wording (and so its length)
        # follows the category, length-grouped batches were nearly single-category, and the adapter's test
        # accuracy fell from 0.82 to 0.63 (measured).
        return SFTConfig(
            output_dir=str(workdir / phase),
            num_train_epochs=s.corpus_epochs if phase == "corpus" else s.epochs,
            per_device_train_batch_size=s.batch_size,
            per_device_eval_batch_size=s.batch_size,
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

    def _train(self, final: Path) -> dict:
        from datasets import Dataset
        from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
        from safetensors.torch import load_file

        s, ctx = self.settings, self.ctx
        SFTTrainer = sft_trainer_class()
        workdir = cache.home() / "train" / ctx.spec.name / final.name
        if ctx.retrain and workdir.exists() and int(os.environ.get("RANK", "0")) == 0:
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        model = self._load_trainable_base()
        model = get_peft_model(
            model,
            LoraConfig(
                r=s.r,
                lora_alpha=s.alpha,
                lora_dropout=s.dropout,
                target_modules=s.target_modules,
                task_type="CAUSAL_LM",
                use_dora=self.method == "dora",
            ),
        )
        if s.gradient_checkpointing:
            model.enable_input_require_grads()
        train_q, dev_q = self.train_questions()
        phases = {"supervised-qa": ["qa"], "corpus": ["corpus"], "both": ["corpus", "qa"]}[s.objective]
        curve, seconds, tokens, steps, resumed, final_loss, offset = [], 0.0, 0, 0, [], None, 0
        for phase in phases:
            done = workdir / f"{phase}-done"
            if (done / "adapter_model.safetensors").exists():  # an earlier, interrupted run finished this phase
                set_peft_model_state_dict(model, load_file(str(done / "adapter_model.safetensors")))
                resumed.append(f"{phase} phase (complete)")
                ctx.log(f"{self.name}: reusing the finished {phase} phase from an interrupted run")
                continue
            if phase == "corpus":
                train_ds, eval_ds = Dataset.from_list(self.corpus_rows()), None
            else:
                train_ds = Dataset.from_list(self.rows(train_q))
                dev_rows = self.rows(dev_q[: s.validation_examples])
                eval_ds = Dataset.from_list(dev_rows) if dev_rows else None
            checkpoints = _complete_checkpoints(workdir / phase) if (workdir / phase).exists() else []
            trainer = SFTTrainer(
                model=model,
                args=self._sft_config(workdir, phase, eval_ds is not None),
                train_dataset=train_ds,
                eval_dataset=eval_ds,
                processing_class=ctx.tokenizer,
                callbacks=[ctx.training_callback(self.name)],
            )
            # With tqdm off, transformers prints every log dict to stdout; progress goes through our Reporter.
            from transformers.trainer_callback import PrinterCallback

            trainer.remove_callback(PrinterCallback)
            resume = str(checkpoints[-1]) if checkpoints else None
            if resume:
                resumed.append(f"{phase}/{checkpoints[-1].name}")
                ctx.log(f"{self.name}: resuming {phase} training from {checkpoints[-1].name} (interrupted earlier)")
            result = trainer.train(resume_from_checkpoint=resume)
            runtime = result.metrics.get("train_runtime", 0.0)
            epochs = s.corpus_epochs if phase == "corpus" else s.epochs
            tokens += int(sum(len(ids) for ids in trainer.train_dataset["input_ids"]) * epochs)
            seconds += runtime
            for point in loss_curve(trainer.state.log_history):
                curve.append({**point, "step": point["step"] + offset, "phase": phase})
            offset += int(trainer.state.global_step)
            steps += int(trainer.state.global_step)
            final_loss = float(result.training_loss)
            if trainer.is_world_process_zero():
                model.save_pretrained(done)
            model = trainer.model
            del trainer
        trainable, total = model.get_nb_trainable_parameters()
        training = {
            "method": self.method,
            "objective": s.objective,
            "seconds": round(seconds, 2),
            "tokens_per_s": round(tokens / max(seconds, 1e-9), 1),
            "tokens": tokens,
            "resumed_from": ", ".join(resumed) or None,
            "trainable_params": int(trainable),
            "total_params": int(total),
            "epochs": s.epochs,
            "steps": steps,
            "examples": len(train_q),
            "bf16": ctx.use_bf16(s.bf16),
            "final_train_loss": None if final_loss is None else round(final_loss, 4),
            "loss_curve": curve,
            "world_size": int(os.environ.get("WORLD_SIZE", "1")),
            "settings": s.model_dump(exclude={"overrides"}, mode="json"),
        }
        record_training_memory(self, training)
        if int(os.environ.get("RANK", "0")) == 0:
            with cache.build_atomically(final, {"training": training, "versions": library_versions()}) as tmp:
                model.save_pretrained(tmp)
            shutil.rmtree(workdir, ignore_errors=True)
        return training

    # ------------------------------------------------------------ evaluation

    def prompts(self, questions):
        spec, tok = self.ctx.spec, self.ctx.tokenizer
        return Prompts([chat_prompt(tok, spec.system_prompt, user_turn(spec.question_template, q)) for q in questions])

    @contextlib.contextmanager
    def model(self):
        from peft import PeftModel

        if self.method == "qlora":
            # The adapter was trained on the 4-bit base; evaluate it there too.
            base = self._load_trainable_base()
            peft = PeftModel.from_pretrained(base, str(self.adapter_dir()))
            peft.eval()
            try:
                yield peft
            finally:
                del peft, base
            return
        # Put the adapter on the shared base model and merge it into the weights: an unmerged adapter adds two
        # small matmuls to each of the ~200 adapted layers, which made scoring 1.8x slower on this CPU
        # (0.345 vs 0.191 s per legal-qa question). Unmerging would leave rounding error in the shared
        # weights, so the merged copy is dropped afterwards and the next system reloads clean weights from
        # disk (0.1 s from the page cache).
        peft = PeftModel.from_pretrained(self.ctx.base_model(), str(self.adapter_dir()))
        peft.eval()
        peft.merge_adapter()
        try:
            yield peft
        finally:
            peft.unload()
            self.ctx.release_base_model()
