"""dpo, orpo: a LoRA adapter trained with trl's preference trainers (DPOTrainer, ORPOTrainer).

Pairs (prompt, chosen, rejected) come from a file the task names (`preference.path`), or are made from the
training split: chosen is the gold answer, rejected a wrong answer the base model actually gives (choice
tasks: its highest-scoring option when that is wrong, else the highest-scoring wrong option; free text:
its greedy answer when that is wrong, else no pair). Validation loss comes from pairs made the same way
from the dev split. Prompts are rendered by the function evaluation uses, so the adapter is evaluated on
the format it learned, exactly as the prompt and lora systems are.

dpo starts, by default, from the supervised `lora` adapter (SFT, then DPO): that adapter is reused from
the cache, or trained first, and DPO continues it with a frozen copy as the reference. orpo needs no
reference model and starts from the base model. A composition: the AdapterTrainer (caching, checkpoints,
resume, training figures) with the preference recipe below; the lora adapter it starts from is trained by
the same AdapterTrainer recipe the lora system uses.
"""

from __future__ import annotations

import json
import random
from functools import cached_property
from pathlib import Path

from harness import evaluate, files
from harness.data import Question
from harness.errors import HarnessError, excerpt
from harness.measure import timer
from harness.parts.adapter_trainer import AdapterTrainer, PhaseRun
from harness.parts.prompt_builder import render_chat
from harness.parts.trainers import PAIR_ROLES, PreferencePhase, lora_config, loss_curve
from harness.scorers import normalize_answer
from harness.sources import Problems, read_rows, resolve_path
from harness.systems import AdapterSystem, register_system
from harness.systems.finetune import supervised_adapter

PAIRS_VERSION = 1  # part of the adapter key: bump when the way pairs are made changes


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
    pred = (prediction or "").strip()
    norm = normalize_answer(pred)
    if not norm or norm in {normalize_answer(a) for a in q.answers}:
        return None
    return pred


def make_pairs(ctx, questions: list[Question], split: str) -> tuple[list[dict], dict]:
    """Preference pairs from a split, with counts of where the rejected answers came from."""
    spec, tok = ctx.spec, ctx.tokenizer
    prompts = [ctx.prompts.plain(q) for q in questions]
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
    ctx.log(f"  asking the base model to answer {len(questions)} {split} questions, to find its wrong answers")
    with timer() as took:
        records = evaluate.run_lm_eval(
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
            rejected, source = choice_rejected(q, r.loglikelihoods)
        else:
            rejected, source = text_rejected(q, r.prediction), "model-wrong"
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
    pref = spec.preference
    path = resolve_path(spec, "preference", pref.path, None)
    problems = Problems()
    rows = read_rows(path, "auto", spec, "preference", problems)
    pairs = []
    for where, row in rows:
        pair = {"origin": where}
        for role in PAIR_ROLES:
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
        if len(pair) == 1 + len(PAIR_ROLES):
            if pair["chosen"] == pair["rejected"]:
                problems.add(f"{where}: chosen and rejected are the same answer ({excerpt(pair['chosen'], 40)})")
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
            "prompt": render_chat(tok, spec.system_prompt, r["prompt"]),
            "chosen": r["chosen"],
            "rejected": r["rejected"],
            "id": r["origin"],
            "source": "file",
        }
        for r in rows
    ]
    return pairs, {"split": "file", "file": spec.preference.path, "pairs": len(pairs), "test_prompts": leaked}


# ---------------------------------------------------------------- the recipe and the systems


def load_or_make_pairs(ctx, method: str, workdir: Path) -> tuple[list[dict], list[dict], dict]:
    """Train pairs, dev pairs and their counts; saved in the work folder, so a resumed run reuses them."""
    saved = workdir / "pairs.json"
    if saved.exists():
        try:
            data = json.loads(saved.read_text())
            return data["train"], data["dev"], data["stats"]
        except (ValueError, KeyError):
            saved.unlink()
    pref = ctx.spec.preference
    train, train_stats = file_pairs(ctx) if pref.path else make_pairs(ctx, ctx.data.train, "train")
    dev, dev_stats = make_pairs(ctx, ctx.data.dev, "dev")
    if pref.max_pairs and len(train) > pref.max_pairs:
        keep = sorted(random.Random(ctx.spec.seed).sample(range(len(train)), pref.max_pairs))
        train = [train[i] for i in keep]
    if not train:
        raise HarnessError(
            f"{method}: no preference pairs could be made from the training split "
            "(the base model answered every question right); give preference.path"
        )
    stats = {"train": train_stats, "dev": dev_stats, "train_pairs": len(train), "dev_pairs": len(dev)}
    files.write_json_atomic(saved, {"train": train, "dev": dev, "stats": stats})
    return train, dev, stats


class PreferenceRecipe:
    """dpo: continues the supervised lora adapter (or a new one on the base model, preference.start_from);
    orpo: a new adapter on the base model. Pairs are made (or read) before the policy is loaded."""

    def __init__(self, ctx, method: str):
        self.ctx, self.method = ctx, method
        self.sft_record: dict | None = None
        self.train_pairs: list[dict] = []
        self.dev_pairs: list[dict] = []
        self.pair_stats: dict = {}

    @property
    def start_from(self) -> str:
        return "base" if self.method == "orpo" else self.ctx.spec.preference.start_from

    @cached_property
    def sft(self) -> AdapterTrainer | None:
        return supervised_adapter(self.ctx, "lora") if self.start_from == "sft" else None

    def key_extra(self) -> dict:
        pref, pairs_file = self.ctx.spec.preference, None
        if pref.path:
            pairs_file = files.file_sha256(resolve_path(self.ctx.spec, "preference", pref.path, None))
        return {
            "preference": pref.model_dump(exclude={"start_from"}),
            "start_from": self.start_from,
            "sft": self.sft.key if self.sft is not None else None,
            "pairs_file": pairs_file,
            "pairs_version": PAIRS_VERSION,
        }

    def prepare(self, trainer: AdapterTrainer, workdir: Path) -> None:
        ctx = self.ctx
        self.sft_record = None
        if self.sft is not None:
            with ctx.reporter.stage(f"{trainer.name}: supervised adapter first (lora)"):
                info = self.sft.build()
            self.sft_record = {
                "system": "lora",
                "adapter": self.sft.folder.name,
                "cached": info.cached,
                "seconds": round(info.build_s, 2),
            }
        self.train_pairs, self.dev_pairs, self.pair_stats = load_or_make_pairs(ctx, self.method, workdir)
        ctx.log(f"  {trainer.name}: {len(self.train_pairs)} training pairs, {len(self.dev_pairs)} validation pairs")

    def start_model(self, trainer: AdapterTrainer):
        from peft import PeftModel

        base = trainer.load_base()
        if self.sft_record is None:
            return base
        # The trainer sees an adapter already on the model and copies it as the frozen reference.
        return PeftModel.from_pretrained(base, str(self.sft.folder), is_trainable=True)

    def phases(self, trainer: AdapterTrainer) -> list[PreferencePhase]:
        peft_config = lora_config(trainer.settings) if self.sft_record is None else None
        return [PreferencePhase(trainer, self.method, self.train_pairs, self.dev_pairs, peft_config)]

    def record(self, trainer: AdapterTrainer, runs: list[PhaseRun], model) -> dict:
        (run,) = runs
        s, p, ctx = trainer.settings, self.ctx.spec.preference, self.ctx
        trainable, total = model.get_nb_trainable_parameters()
        total -= sum(t.numel() for n, t in model.named_parameters() if ".ref." in n)  # DPO's frozen copy
        last_eval = next((h for h in reversed(run.history) if "eval_loss" in h), {})
        return {
            "method": self.method,
            "objective": f"preference-{self.method}",
            "start_from": self.start_from,
            "seconds": round(run.wall_s, 2),
            "tokens_per_s": round(run.tokens / max(run.runtime_s, 1e-9), 1),
            "train_runtime_s": round(run.runtime_s, 2),
            "resumed_from": run.resumed,
            "trainable_params": int(trainable),
            "total_params": int(total),
            "epochs": p.epochs,
            "steps": run.steps,
            "examples": len(self.train_pairs),
            "bf16": ctx.use_bf16(s.bf16),
            "final_train_loss": round(run.final_loss, 4),
            "final_eval": {
                k.removeprefix("eval_"): round(float(v), 4)
                for k, v in last_eval.items()
                if k in ("eval_loss", "eval_rewards/accuracies", "eval_rewards/margins")
            }
            or None,
            "loss_curve": preference_curve(run.history),
            "pairs": self.pair_stats,
            "sft": self.sft_record,
            "settings": {**s.model_dump(exclude={"overrides"}, mode="json"), "preference": p.model_dump(mode="json")},
        }

    def record_after_memory(self) -> dict:
        return {}


@register_system("dpo", "orpo")
class PreferenceSystem(AdapterSystem):
    kind = "finetune"

    @cached_property
    def recipe(self) -> PreferenceRecipe:
        return PreferenceRecipe(self.ctx, self.name)

    @cached_property
    def adapter(self) -> AdapterTrainer:
        # The adapter's shape is the supervised lora adapter's, so DPO can continue that adapter.
        recipe = self.recipe
        return AdapterTrainer(self.ctx, self.name, self.name, recipe, settings_of="lora", key_extra=recipe.key_extra)

    def validate(self) -> None:
        super().validate()
        if self.ctx.spec.preference.path:
            read_pair_file(self.ctx.spec)  # a bad file stops the run before any training
        elif not self.ctx.data.train:
            raise HarnessError(
                f"{self.name} makes its preference pairs from the training split, which is empty; give preference.path"
            )


def preference_curve(log_history: list[dict]) -> list[dict]:
    """loss_curve's points (train and validation loss), plus DPO's validation reward accuracy where logged."""
    points = {pt["step"]: pt for pt in loss_curve(log_history)}
    for entry in log_history:
        if "eval_rewards/accuracies" in entry and entry.get("step") in points:
            points[entry["step"]]["eval_reward_accuracy"] = round(float(entry["eval_rewards/accuracies"]), 4)
    return [points[s] for s in sorted(points)]
