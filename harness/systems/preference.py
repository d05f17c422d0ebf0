"""dpo, orpo: a LoRA adapter trained with trl's preference trainers (DPOTrainer, ORPOTrainer).

Pairs (prompt, chosen, rejected) come from a file the task names (`preference.path`), or are made from the
training split: chosen is the gold answer, rejected a wrong answer the base model actually gives (choice
tasks: its highest-scoring option when that is wrong, else the highest-scoring wrong option; free text:
its greedy answer when that is wrong, else no pair). Validation loss comes from pairs made the same way
from the dev split. Prompts are rendered by the function evaluation uses, so the adapter is evaluated on
the format it learned, exactly as the prompt and lora systems are.

dpo starts, by default, from the supervised `lora` adapter (SFT, then DPO): that adapter is reused from
the cache, or trained first, and DPO continues it with a frozen copy as the reference. orpo needs no
reference model and starts from the base model. Caching, checkpoints, resume and training figures are
FinetuneSystem's.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from pathlib import Path

from harness import cache
from harness.data import Question
from harness.errors import HarnessError
from harness.measure import timer
from harness.prompts import chat_prompt, user_turn
from harness.systems import register_system
from harness.systems.finetune import (
    FinetuneSystem,
    _complete_checkpoints,
    library_versions,
    loss_curve,
    record_training_memory,
)

PAIRS_VERSION = 1  # part of the adapter key: bump when the way pairs are made changes
ROLES = ("prompt", "chosen", "rejected")


# ---------------------------------------------------------------- pairs from a split


def choice_rejected(q: Question, loglikelihoods: list[float]) -> tuple[str, str]:
    """(rejected option, where it came from) for a choice question the base model scored."""
    gold = q.gold_index
    pred = max(range(len(loglikelihoods)), key=lambda i: (loglikelihoods[i], -i))
    if pred != gold:
        return q.choices[pred], "model-wrong"
    wrong = max((i for i in range(len(q.choices)) if i != gold), key=lambda i: (loglikelihoods[i], -i))
    return q.choices[wrong], "other-option"


def text_rejected(q: Question, prediction: str) -> str | None:
    """The base model's answer when it is wrong (and not empty); None when there is no pair to make."""
    from harness.scorers import normalize_answer

    pred = (prediction or "").strip()
    norm = normalize_answer(pred)
    if not norm or norm in {normalize_answer(a) for a in q.answers}:
        return None
    return pred


def make_pairs(ctx, questions: list[Question], split: str) -> tuple[list[dict], dict]:
    """Preference pairs from a split, with counts of where the rejected answers came from."""
    spec, tok = ctx.spec, ctx.tokenizer
    prompts = [chat_prompt(tok, spec.system_prompt, user_turn(spec.question_template, q)) for q in questions]
    stats = {"split": split, "questions": len(questions), "model_wrong": 0, "other_option": 0, "skipped": 0}
    pairs: list[dict] = []
    if not questions:
        return pairs, stats
    if spec.answer_format == "yes-no":
        # With two options there is nothing to ask the base model: where it is wrong, its answer is the other
        # option, and where it is right, the other option is the only wrong answer. So rejected is always the
        # other option.
        for q, p in zip(questions, prompts):
            other = next(c for c in q.choices if c != q.answers[0])
            pairs.append(
                {"prompt": p, "chosen": q.answers[0], "rejected": other, "id": q.id, "source": "other-option"}
            )
        stats["other_option"] = len(pairs)
        return pairs, stats
    from harness.evaluate import run_lm_eval

    ctx.log(f"  asking the base model to answer {len(questions)} {split} questions, to find its wrong answers")
    with timer() as took:
        records = run_lm_eval(
            ctx.base_model(),
            tok,
            questions,
            prompts,
            answer_format=spec.answer_format,
            task_name=f"harness_pairs_{split}",
            batch_size=spec.evaluation.batch_size,
            warmup=0,
            max_new_tokens=spec.evaluation.max_new_tokens,
            seed=spec.seed,
            dtype=ctx.dtype,
        )
    stats["seconds"] = round(took(), 2)
    for q, p, r in zip(questions, prompts, records):
        if q.choices:
            rejected, source = choice_rejected(q, r["loglikelihoods"])
        else:
            rejected, source = text_rejected(q, r["prediction"]), "model-wrong"
            if rejected is None:
                stats["skipped"] += 1
                continue
        stats["model_wrong" if source == "model-wrong" else "other_option"] += 1
        pairs.append({"prompt": p, "chosen": q.answers[0], "rejected": rejected, "id": q.id, "source": source})
    return pairs, stats


# ---------------------------------------------------------------- pairs from a file


def read_pair_file(spec) -> list[dict]:
    """Rows of the task's preference file as {prompt, chosen, rejected, origin}; every missing or empty field,
    and every unreadable line, is reported together, each as `file:line: field ...`."""
    from harness.sources import Problems, read_rows, resolve_path

    pref = spec.preference
    path = resolve_path(spec, "preference", pref.path, None)
    problems = Problems()
    rows = read_rows(path, "auto", spec, "preference", problems)
    pairs = []
    for where, row in rows:
        pair = {"origin": where}
        for role in ROLES:
            name = getattr(pref.fields, role)
            value = row.get(name)
            if name not in row:
                hint = f"; fields on this line: {', '.join(map(str, row))}" if row else ""
                problems.add(f"{where}: field '{name}' ({role}) is missing{hint}")
            elif not isinstance(value, (str, int, float)) or isinstance(value, bool):
                problems.add(f"{where}: field '{name}' ({role}) must be text, got {type(value).__name__}")
            elif not str(value).strip():
                problems.add(f"{where}: field '{name}' ({role}) is empty")
            else:
                pair[role] = str(value).strip()
        if len(pair) == 1 + len(ROLES):
            if pair["chosen"] == pair["rejected"]:
                problems.add(f"{where}: chosen and rejected are the same answer ({pair['chosen']!r:.40})")
            else:
                pairs.append(pair)
    problems.raise_if_any()
    if not pairs:
        raise HarnessError(f"{spec.where('preference.path')}: {path} holds no preference pairs")
    return pairs


def file_pairs(ctx) -> tuple[list[dict], dict]:
    spec, tok = ctx.spec, ctx.tokenizer
    rows = read_pair_file(spec)
    test_questions = {q.question.strip() for q in ctx.data.test}
    leaked = sum(r["prompt"] in test_questions for r in rows)
    if leaked:
        ctx.log(
            f"warning: {leaked} prompt(s) in {spec.preference.path} are test questions; "
            "the adapter will have seen them"
        )
    pairs = [
        {
            "prompt": chat_prompt(tok, spec.system_prompt, r["prompt"]),
            "chosen": r["chosen"],
            "rejected": r["rejected"],
            "id": r["origin"],
            "source": "file",
        }
        for r in rows
    ]
    return pairs, {"split": "file", "file": spec.preference.path, "pairs": len(pairs), "test_prompts": leaked}


# ---------------------------------------------------------------- the systems


@register_system("dpo", "orpo")
class PreferenceSystem(FinetuneSystem):
    kind = "finetune"

    @property
    def pref(self):
        return self.ctx.spec.preference

    @property
    def settings(self):
        # The adapter's shape is the supervised lora adapter's, so DPO can continue that adapter.
        return self.ctx.spec.finetune.for_method("lora")

    @property
    def start_from(self) -> str:
        return "base" if self.method == "orpo" else self.pref.start_from

    def sft(self) -> FinetuneSystem:
        return FinetuneSystem("lora", self.ctx)

    def objective(self) -> str:
        return f"preference-{self.method}"

    def validate(self) -> None:
        super().validate()
        if self.pref.path:
            read_pair_file(self.ctx.spec)  # a bad file stops the run before any training
        elif not self.ctx.data.train:
            raise HarnessError(
                f"{self.method} makes its preference pairs from the training split, which is empty; "
                "give preference.path"
            )

    def extra_key(self):
        pairs_file = None
        if self.pref.path:
            from harness.sources import resolve_path

            pairs_file = cache.file_sha256(resolve_path(self.ctx.spec, "preference", self.pref.path, None))
        return {
            "preference": self.pref.model_dump(exclude={"start_from"}),
            "start_from": self.start_from,
            "sft": self.sft().key() if self.start_from == "sft" else None,
            "pairs_file": pairs_file,
            "pairs_version": PAIRS_VERSION,
        }

    # ------------------------------------------------------------ pairs

    def pairs(self, workdir: Path) -> tuple[list[dict], list[dict], dict]:
        """Train pairs, dev pairs and their counts; saved in the work folder, so a resumed run reuses them."""
        saved = workdir / "pairs.json"
        if saved.exists():
            try:
                data = json.loads(saved.read_text())
                return data["train"], data["dev"], data["stats"]
            except (ValueError, KeyError):
                saved.unlink()
        ctx = self.ctx
        train, train_stats = file_pairs(ctx) if self.pref.path else make_pairs(ctx, ctx.data.train, "train")
        dev, dev_stats = make_pairs(ctx, ctx.data.dev, "dev")
        if self.pref.max_pairs and len(train) > self.pref.max_pairs:
            keep = sorted(random.Random(ctx.spec.seed).sample(range(len(train)), self.pref.max_pairs))
            train = [train[i] for i in keep]
        if not train:
            raise HarnessError(
                f"{self.method}: no preference pairs could be made from the training split "
                "(the base model answered every question right); give preference.path"
            )
        stats = {"train": train_stats, "dev": dev_stats, "train_pairs": len(train), "dev_pairs": len(dev)}
        cache.write_json_atomic(saved, {"train": train, "dev": dev, "stats": stats})
        return train, dev, stats

    # ------------------------------------------------------------ training

    def _train(self, final: Path) -> dict:
        from datasets import Dataset

        s, p, ctx = self.settings, self.pref, self.ctx
        workdir = cache.home() / "train" / ctx.spec.name / final.name
        if ctx.retrain and workdir.exists() and int(os.environ.get("RANK", "0")) == 0:
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        checkpoints = _complete_checkpoints(workdir)
        sft_record = None
        if self.start_from == "sft":
            sft = self.sft()
            with ctx.reporter.stage(f"{self.name}: supervised adapter first (lora)"):
                info = sft.build()
            sft_record = {
                "system": "lora",
                "adapter": sft.adapter_dir().name,
                "cached": info.cached,
                "seconds": round(info.build_s, 2),
            }
        train_pairs, dev_pairs, pair_stats = self.pairs(workdir)
        ctx.log(f"  {self.name}: {len(train_pairs)} training pairs, {len(dev_pairs)} validation pairs")
        cols = lambda rows: [{k: r[k] for k in ROLES} for r in rows]
        train_ds = Dataset.from_list(cols(train_pairs))
        eval_ds = Dataset.from_list(cols(dev_pairs)) if dev_pairs else None
        bf16 = ctx.use_bf16(s.bf16)
        # A validation pass scores every dev pair with the policy and the reference: about six of them per run
        # draw the curve at a fraction of the cost of one every logging step.
        total_steps = math.ceil(math.ceil(len(train_pairs) / p.batch_size) * p.epochs)
        eval_every = max(s.logging_steps, math.ceil(total_steps / 6))
        common = dict(
            output_dir=str(workdir),
            num_train_epochs=p.epochs,
            per_device_train_batch_size=p.batch_size,
            per_device_eval_batch_size=p.batch_size,
            learning_rate=p.learning_rate,
            lr_scheduler_type="cosine",
            warmup_steps=0.1,
            logging_steps=s.logging_steps,
            eval_strategy="steps" if eval_ds else "no",
            eval_steps=eval_every,
            save_strategy="steps",
            save_steps=eval_every,
            save_total_limit=2,
            bf16=bf16,
            use_cpu=ctx.device == "cpu",
            report_to="none",
            seed=ctx.spec.seed,
            data_seed=ctx.spec.seed,
            max_length=s.max_length,
            gradient_checkpointing=s.gradient_checkpointing,
            beta=p.beta,
            dataloader_num_workers=0,
            disable_tqdm=True,
            save_only_model=False,
            dataset_num_proc=None,
        )
        model, peft_config = self._policy(sft_record)
        trainer_kwargs = dict(
            model=model,
            train_dataset=train_ds,
            eval_dataset=eval_ds,
            processing_class=ctx.tokenizer,
            peft_config=peft_config,
            callbacks=[ctx.training_callback(self.name)],
        )
        if self.method == "dpo":
            from trl import DPOConfig, DPOTrainer

            trainer = DPOTrainer(args=DPOConfig(**common), **trainer_kwargs)
        else:
            import warnings

            with warnings.catch_warnings():  # trl warns that its experimental package may change
                warnings.simplefilter("ignore")
                from trl.experimental.orpo import ORPOConfig, ORPOTrainer
            trainer = ORPOTrainer(args=ORPOConfig(**common), **trainer_kwargs)
        resume = str(checkpoints[-1]) if checkpoints else None
        if resume:
            ctx.log(f"{self.name}: resuming training from {checkpoints[-1].name} (interrupted earlier)")
        with timer() as took:
            result = trainer.train(resume_from_checkpoint=resume)
        seconds = took()
        tok = ctx.tokenizer
        n_tokens = (
            sum(
                len(tok(r["prompt"] + r["chosen"]).input_ids) + len(tok(r["prompt"] + r["rejected"]).input_ids)
                for r in train_pairs
            )
            * p.epochs
        )
        runtime = result.metrics.get("train_runtime", seconds)
        trainable, total = trainer.model.get_nb_trainable_parameters()
        total -= sum(t.numel() for n, t in trainer.model.named_parameters() if ".ref." in n)  # DPO's frozen copy
        history = trainer.state.log_history
        last_eval = next((h for h in reversed(history) if "eval_loss" in h), {})
        training = {
            "method": self.method,
            "objective": self.objective(),
            "start_from": self.start_from,
            "seconds": round(seconds, 2),
            "tokens_per_s": round(n_tokens / max(runtime, 1e-9), 1),
            "train_runtime_s": round(runtime, 2),
            "resumed_from": checkpoints[-1].name if resume else None,
            "trainable_params": int(trainable),
            "total_params": int(total),
            "epochs": p.epochs,
            "steps": int(trainer.state.global_step),
            "examples": len(train_pairs),
            "bf16": bf16,
            "final_train_loss": round(float(result.training_loss), 4),
            "final_eval": {
                k.removeprefix("eval_"): round(float(v), 4)
                for k, v in last_eval.items()
                if k in ("eval_loss", "eval_rewards/accuracies", "eval_rewards/margins")
            }
            or None,
            "loss_curve": preference_curve(history),
            "pairs": pair_stats,
            "sft": sft_record,
            "settings": {**s.model_dump(exclude={"overrides"}, mode="json"), "preference": p.model_dump(mode="json")},
        }
        if int(os.environ.get("RANK", "0")) == 0:  # under `accelerate launch`, only the main process writes
            record_training_memory(self, training)
            with cache.build_atomically(final, {"training": training, "versions": library_versions()}) as tmp:
                # DPO keeps a frozen copy of the starting adapter as "ref"; only the trained one is the artifact.
                trainer.model.save_pretrained(tmp, selected_adapters=["default"])
            shutil.rmtree(workdir, ignore_errors=True)
        del trainer, model
        return training

    def _policy(self, sft_record):
        """The model to train and the adapter config for the trainer to add (None when continuing an adapter)."""
        from peft import LoraConfig, PeftModel

        s = self.settings
        base = self._load_trainable_base()
        if sft_record is not None:
            # The trainer sees an adapter already on the model and copies it as the frozen reference.
            return PeftModel.from_pretrained(base, str(self.sft().adapter_dir()), is_trainable=True), None
        return base, LoraConfig(
            r=s.r, lora_alpha=s.alpha, lora_dropout=s.dropout, target_modules=s.target_modules, task_type="CAUSAL_LM"
        )


def preference_curve(log_history: list[dict]) -> list[dict]:
    """loss_curve's points (train and validation loss), plus DPO's validation reward accuracy where logged."""
    points = {pt["step"]: pt for pt in loss_curve(log_history)}
    for entry in log_history:
        if "eval_rewards/accuracies" in entry and entry.get("step") in points:
            points[entry["step"]]["eval_reward_accuracy"] = round(float(entry["eval_rewards/accuracies"]), 4)
    return [points[s] for s in sorted(points)]
