"""lora, qlora, dora: a PEFT adapter trained with trl's SFTTrainer on the training split, evaluated on plain
prompts. A composition: the AdapterTrainer with the supervised recipe, on rows the PromptBuilder renders.

Training rows are prompt/completion pairs rendered by the same PromptBuilder evaluation uses, so the loss
falls on the answer only and the adapter sees at test time exactly the format it learned. The adapter is
cached under HARNESS_HOME, keyed by everything that determines it; interrupted training resumes from its
last checkpoint.
"""

from __future__ import annotations

from functools import cached_property

from harness.parts.adapter_trainer import AdapterTrainer
from harness.parts.trainers import SupervisedRecipe
from harness.systems import AdapterSystem, register_system

METHODS = ("lora", "qlora", "dora")


def training_rows(ctx, questions) -> list[dict]:
    """Rows for supervised QA: the evaluation prompt, and the first gold answer as the completion."""
    return [{"prompt": ctx.prompts.plain(q), "completion": q.answers[0]} for q in questions]


class PlainRows:
    """The supervised recipe's rows for plain prompts: nothing to split, nothing extra to record."""

    def __init__(self, ctx):
        self.ctx = ctx

    def start(self) -> None:
        pass

    def rows(self, questions) -> list[dict]:
        return training_rows(self.ctx, questions)

    def fit_batch(self, config) -> None:
        pass

    def record(self) -> dict:
        return {}


def supervised_adapter(ctx, method: str, name: str | None = None) -> AdapterTrainer:
    """The adapter the `method` system (lora, qlora, dora) trains; dpo starts from the lora one."""
    return AdapterTrainer(ctx, name or method, method, SupervisedRecipe(PlainRows(ctx)))


@register_system(*METHODS)
class FinetuneSystem(AdapterSystem):
    kind = "finetune"

    @cached_property
    def adapter(self) -> AdapterTrainer:
        return supervised_adapter(self.ctx, self.name)
