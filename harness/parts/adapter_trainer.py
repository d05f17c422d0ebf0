"""One adapter trainer for every system that trains a PEFT adapter (lora/qlora/dora, dpo/orpo, rag+lora...).

It owns what all of them share: the cache folder and its key, reuse of a complete cached adapter, the lock
(and the re-check after waiting for it), the work folder and resume from complete checkpoints, rank-0 logic
under `accelerate launch`, the training record (seconds, tokens/s, parameters, loss curve, peak memory), and
the atomic save, whose manifest is sealed once with the complete record. What differs between SFT, corpus
pre-training, DPO and ORPO is given to it as a recipe (see harness.parts.trainers): the model to start from,
the phases to train (each a small strategy that makes its datasets, its trl trainer and its config, and
counts its tokens), and the record to write.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from harness import cache, files, launch, models
from harness.errors import HarnessError
from harness.manifest import package_versions
from harness.measure import Footprint, timer
from harness.parts import answer_loss
from harness.parts.outputs import BuildInfo


def library_versions() -> dict[str, str]:
    return package_versions(("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate"))


def is_main_process() -> bool:
    """Under `accelerate launch` every process trains; only rank 0 writes files."""
    return int(os.environ.get("RANK", "0")) == 0


def nf4_config(compute_dtype):
    """qlora's 4-bit base: NF4 with double quantisation (harness.memory_estimate counts it so)."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=compute_dtype,
        bnb_4bit_use_double_quant=True,
    )


def complete_checkpoints(folder: Path) -> list[Path]:
    """Checkpoints a kill did not cut short (a trainer_state.json is written last); the others are removed."""
    found = []
    for ckpt in folder.glob("checkpoint-*"):
        if (ckpt / "trainer_state.json").exists() and any(ckpt.glob("adapter_model.*")):
            found.append(ckpt)
        else:
            shutil.rmtree(ckpt, ignore_errors=True)
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


class Phase(Protocol):
    """One trl training pass: a small strategy the AdapterTrainer runs (see harness.parts.trainers)."""

    name: str  # "qa", "corpus", "dpo", "orpo"
    folder: str  # the trainer's output folder inside the work folder ("" = the work folder itself)
    keep_done: bool  # save the adapter when the phase ends, so a rerun after a kill skips it

    def trainer(self, model, output_dir: Path, callbacks: list): ...

    def tokens(self, trainer) -> int: ...


@dataclass
class PhaseRun:
    """What one phase did: the figures the recipe turns into the training record."""

    phase: str
    resumed: str | None = None  # "qa/checkpoint-12", "checkpoint-12", "corpus phase (complete)"
    skipped: bool = False  # finished by an earlier, interrupted run; reused as it was
    runtime_s: float = 0.0  # trl's train_runtime
    wall_s: float = 0.0  # trainer.train() as timed here
    tokens: int = 0
    steps: int = 0
    final_loss: float | None = None
    history: list[dict] = field(default_factory=list)


class Recipe(Protocol):
    """What makes one kind of adapter: the AdapterTrainer calls these in this order."""

    def prepare(self, trainer: AdapterTrainer, workdir: Path) -> None: ...  # e.g. DPO's pairs, its SFT adapter

    def start_model(self, trainer: AdapterTrainer): ...  # the (PEFT) model the first phase trains

    def phases(self, trainer: AdapterTrainer) -> list[Phase]: ...

    def record(self, trainer: AdapterTrainer, runs: list[PhaseRun], model) -> dict: ...

    def record_after_memory(self) -> dict: ...  # entries that follow the peak memory in the record (rag's raft)


class AdapterTrainer:
    """Builds (or reuses) one adapter under HARNESS_HOME/adapters/<task>/<prefix><method>-<key>."""

    def __init__(
        self,
        ctx,
        name: str,
        method: str,
        recipe: Recipe,
        *,
        settings_of: str | None = None,
        key_extra: Callable[[], Any] = lambda: None,
        folder_prefix: str = "",
    ):
        self.ctx, self.name, self.method, self.recipe = ctx, name, method, recipe
        self.settings_of = settings_of or method  # dpo/orpo train an adapter of the lora adapter's shape
        self.key_extra, self.folder_prefix = key_extra, folder_prefix

    @property
    def settings(self):
        return self.ctx.spec.finetune.for_method(self.settings_of)

    # ------------------------------------------------------------ checks before any work

    def validate(self) -> None:
        ctx = self.ctx
        try:
            s = self.settings
        except Exception as e:  # pydantic error from an override
            raise HarnessError(f"{ctx.spec.source_path}: finetune.overrides.{self.method}: {e}") from None
        if isinstance(s.target_modules, list):
            valid = ctx.linear_layer_names()
            bad = [m for m in s.target_modules if m not in valid]
            if bad:
                raise HarnessError(
                    f"finetune.target_modules: {', '.join(bad)} not in the model; "
                    f"its linear layers are: {', '.join(valid)}"
                )
        if not ctx.linear_layer_names():
            raise HarnessError(f"{self.name}: model {ctx.model_ref.path} has no linear layers an adapter can target")
        n = s.accelerate.num_processes
        size = ctx.spec.preference.batch_size if self.method in ("dpo", "orpo") else s.batch_size
        if ctx.launcher == "accelerate" and size % n:
            field = "preference.batch_size" if self.method in ("dpo", "orpo") else "finetune.batch_size"
            raise HarnessError(
                f"{ctx.spec.where(field)}: {size} examples per step do not split evenly over "
                f"finetune.accelerate.num_processes {n}; use a multiple of {n}"
            )
        if self.method == "qlora":
            try:
                import bitsandbytes  # noqa: F401
            except ImportError:
                raise HarnessError("qlora needs bitsandbytes (pip install bitsandbytes)") from None
        if s.objective != "supervised-qa" and ctx.data.corpus_is_fallback:
            raise HarnessError(
                f"finetune.objective '{s.objective}' trains on the corpus, but the task has no "
                "data.corpus; use objective: supervised-qa or add a corpus"
            )

    # ------------------------------------------------------------ cache identity

    @cached_property
    def key(self) -> str:
        ctx = self.ctx
        return cache.key_of(
            self.method,
            self.settings.model_dump(exclude={"workers"}),
            ctx.model_ref.fingerprint,
            ctx.training_data_fingerprint,
            ctx.spec.system_prompt,
            ctx.spec.question_template,
            ctx.spec.seed,
            library_versions(),
            self.key_extra(),
            # Off CUDA, adapters trained with bf16 before the answer-positions loss entered autocast were trained in
            # fp32 (parts.trainers.sft_trainer_class): the marker retrains them; fp32 and CUDA keys stay as they were.
            *(["bf16-autocast"] if ctx.use_bf16(self.settings.bf16) and ctx.device != "cuda" else []),
            # The resolved count, not the setting, and only above 1: one worker is the step the keys always meant.
            *([f"workers-{self.workers}"] if self.workers > 1 else []),
        )

    @cached_property
    def workers(self) -> int:
        """Threads sharing each training step's rows (`finetune.workers`, harness.parts.answer_loss)."""
        import torch

        return answer_loss.resolve_workers(
            self.settings.workers, torch.get_num_threads(), self.ctx.device, self.why_one_worker()
        )

    def why_one_worker(self) -> str | None:
        """Why this adapter trains on one thread group whatever `finetune.workers` says, or None."""
        s, ctx = self.settings, self.ctx
        if self.method in ("dpo", "orpo"):
            return "trl's preference trainers take their own step"
        if self.method == "qlora":
            return "4-bit layers were not measured on threads"
        if ctx.launcher != "local" or int(os.environ.get("WORLD_SIZE", "1")) > 1:
            return "each training process takes its own share of the rows"
        if s.dropout > 0:
            return "two threads would draw dropout masks in no fixed order"
        if s.gradient_checkpointing:
            return "gradient checkpointing was not measured on threads"
        from transformers import AutoConfig

        if not answer_loss.config_allows(AutoConfig.from_pretrained(ctx.model_ref.path)):
            return "the model scales its logits, so trl's own loss trains it"
        return None

    @property
    def folder(self) -> Path:
        return cache.home() / "adapters" / self.ctx.spec.name / f"{self.folder_prefix}{self.method}-{self.key}"

    @property
    def workdir(self) -> Path:
        return cache.home() / "train" / self.ctx.spec.name / self.folder.name

    def weights_identity(self) -> str:
        # The adapter's weights by content, not only its key (`--retrain` writes new weights under the same key),
        # and not by the file's time, which a copy or restore of HARNESS_HOME changes: the checksum recorded when
        # it was saved (build() verified it), or the file's own when there is no record.
        weights = "adapter_model.safetensors"
        digest = ((files.read_manifest(self.folder) or {}).get("checksums") or {}).get(weights)
        digest = digest or files.file_sha256(self.folder / weights)
        return cache.key_of(self.ctx.model_ref.fingerprint, self.folder.name, digest)

    # ------------------------------------------------------------ build

    def cached(self) -> BuildInfo | None:
        """The complete cached adapter, with the record it was trained with; None when it must be trained."""
        final = self.folder
        if self.ctx.retrain or files.verify(final) is not None:
            return None
        training = json.loads((final / files.MANIFEST).read_text()).get("training")
        return BuildInfo(
            0.0,
            True,
            files.folder_size_mb(final),
            training=training,
            build_cost_s=(training or {}).get("seconds"),
        )

    def build(self) -> BuildInfo:
        info = self.cached()
        if info is not None:
            return info
        cache.require_writable(f"{self.name}: the adapter {self.folder.name}")
        if self.ctx.launcher == "accelerate":
            return self._build_with_accelerate()
        final = self.folder
        # Under `accelerate launch` every process trains; only the main one writes. A lock would
        # serialise the processes, so it is only taken for single-process training.
        distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        with contextlib.nullcontext() if distributed else cache.lock(final):
            info = self.cached()  # another process may have finished it while this one waited for the lock
            if info is not None:
                return info
            if final.exists() and files.verify(final):
                self.ctx.log(f"warning: adapter at {final} is damaged ({files.verify(final)}); training again")
            self.ctx.release_base_model()
            # The training peak as if this system trained alone: what an earlier system left loaded and this one
            # does not use is not in it (harness.measure.MemoryLedger).
            # training keeps the peak written with the adapter (up to saving it), so that a run reusing the adapter
            # reports the same figure as the run that trained it; BuildInfo carries the whole build's peak.
            with self.ctx.memory.footprint() as mem, timer() as took:
                training = self._train(mem)
            size = files.folder_size_mb(final) if final.exists() else 0.0
            return BuildInfo(took(), False, size, mem.peak_mb, training=training)

    def _build_with_accelerate(self) -> BuildInfo:
        ctx, final = self.ctx, self.folder
        cmd, record = launch.write_job(
            cache.home() / "launch" / ctx.spec.name / final.name,
            task_file=ctx.spec.source_path,
            system=self.name,
            model=ctx.spec.model,
            seed=ctx.spec.seed,
            device=ctx.spec.device,
            home=str(cache.home()),
            indices_dir=str(ctx.indices_dir),
            settings=self.settings.accelerate,
            use_cpu=ctx.device == "cpu",
        )
        with timer() as took:
            launch.run(cmd, ctx.log)
        if files.verify(final) is not None:
            raise RuntimeError(f"accelerate launch finished but wrote no adapter at {final}")
        meta = json.loads((final / files.MANIFEST).read_text())
        info = BuildInfo(took(), False, files.folder_size_mb(final), training=meta.get("training"), launch=record)
        info.notes.append(f"trained with: {record['command']}")
        return info

    def _train(self, mem: Footprint) -> dict:
        ctx, recipe, workdir = self.ctx, self.recipe, self.workdir
        if ctx.retrain and workdir.exists() and is_main_process():
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        recipe.prepare(self, workdir)
        import torch

        # The adapter's starting weights (LoRA's random A matrices) come from the task's seed, not from whatever drew
        # from torch's generator earlier in the process: the cache key promises the same adapter either way.
        torch.manual_seed(ctx.spec.seed)
        model = recipe.start_model(self)
        runs = []
        for phase in recipe.phases(self):
            run, model = self._run_phase(phase, model, workdir)
            runs.append(run)
        training = recipe.record(self, runs, model)
        # The peak so far goes into the record written with the adapter, so that a run reusing it reports what
        # training took, the same figure as this run.
        training["peak_memory_mb"] = round(mem.peak_mb, 1)
        import torch

        if torch.cuda.is_available():  # PeakMemory reset the CUDA peak when the build started
            training["cuda_peak_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        training.update(recipe.record_after_memory())
        if is_main_process():
            with files.build_atomically(self.folder, {"training": training, "versions": library_versions()}) as tmp:
                # DPO keeps a frozen copy of the starting adapter as "ref"; only the trained one is the artifact.
                model.save_pretrained(tmp, selected_adapters=["default"])
            shutil.rmtree(workdir, ignore_errors=True)
        del model
        return training

    def _run_phase(self, phase: Phase, model, workdir: Path) -> tuple[PhaseRun, Any]:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file
        from transformers.trainer_callback import PrinterCallback

        ctx = self.ctx
        done = workdir / f"{phase.name}-done"
        if phase.keep_done and (done / "adapter_model.safetensors").exists():
            # an earlier, interrupted run finished this phase
            set_peft_model_state_dict(model, load_file(str(done / "adapter_model.safetensors")))
            ctx.log(f"{self.name}: reusing the finished {phase.name} phase from an interrupted run")
            return PhaseRun(phase.name, resumed=f"{phase.name} phase (complete)", skipped=True), model
        output_dir = workdir / phase.folder if phase.folder else workdir
        checkpoints = complete_checkpoints(output_dir) if output_dir.exists() else []
        trainer = phase.trainer(model, output_dir, [ctx.training_callback(self.name)])
        # With tqdm off, transformers prints every log dict to stdout; progress goes through our Reporter.
        trainer.remove_callback(PrinterCallback)
        resume = str(checkpoints[-1]) if checkpoints else None
        resumed = None
        if resume:
            resumed = f"{phase.folder}/{checkpoints[-1].name}" if phase.folder else checkpoints[-1].name
            what = f"{phase.folder} training" if phase.folder else "training"
            ctx.log(f"{self.name}: resuming {what} from {checkpoints[-1].name} (interrupted earlier)")
        with timer() as took:
            result = trainer.train(resume_from_checkpoint=resume)
        run = PhaseRun(
            phase.name,
            resumed=resumed,
            runtime_s=result.metrics.get("train_runtime", took()),
            wall_s=took(),
            tokens=phase.tokens(trainer),
            steps=int(trainer.state.global_step),
            final_loss=float(result.training_loss),
            history=trainer.state.log_history,
        )
        if phase.keep_done and trainer.is_world_process_zero():
            trainer.model.save_pretrained(done)
        model = trainer.model
        del trainer
        return run, model

    # ------------------------------------------------------------ evaluation

    def load_base(self):
        """The base model to train on: fp32, or 4-bit NF4 for qlora (on this process's GPU under accelerate)."""
        import torch
        from transformers import AutoModelForCausalLM

        ctx, s = self.ctx, self.settings
        kwargs = {"dtype": torch.float32}
        if self.method == "qlora":
            kwargs["quantization_config"] = nf4_config(torch.bfloat16 if ctx.use_bf16(s.bf16) else torch.float32)
            if ctx.device == "cuda":
                kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
        model = models.standard_head_input(AutoModelForCausalLM.from_pretrained(ctx.model_ref.path, **kwargs))
        if self.method == "qlora":
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=s.gradient_checkpointing)
        return model

    @contextlib.contextmanager
    def model(self):
        """The base model with this adapter, for evaluation, for the duration of the block."""
        from peft import PeftModel

        if self.method == "qlora":
            # The adapter was trained on the 4-bit base; evaluate it there too.
            base = self.load_base()
            peft = PeftModel.from_pretrained(base, str(self.folder))
            peft.eval()
            try:
                yield peft
            finally:
                del peft, base
            return
        # Put the adapter on the shared base model and merge it into the weights: an unmerged adapter adds two
        # small matmuls to each adapted layer, which made scoring markedly slower (see docs/performance.md,
        # "Merged adapters"). Unmerging would leave rounding error in the shared weights, so the merged copy
        # is dropped afterwards and the next system reloads clean weights from disk.
        peft = PeftModel.from_pretrained(self.ctx.base_model(), str(self.folder))
        peft.eval()
        peft.merge_adapter()
        try:
            yield peft
        finally:
            peft.unload()
            self.ctx.release_base_model()
