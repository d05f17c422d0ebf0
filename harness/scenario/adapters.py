"""Fine-tunes' `continue` refresh in the documents-change scenario: the previous stage's adapter, loaded with its
weights and trained further on the new wave only (the context it is given holds that wave's questions and
documents). The recipe is the system's own supervised one; only the starting model differs, and the cache key
holds the previous adapter's weights, so a continued adapter is cached and resumed like any other.
"""

from __future__ import annotations

from pathlib import Path

from harness.parts.adapter_trainer import AdapterTrainer


class ContinueRecipe:
    """`recipe` (a SupervisedRecipe), started from the adapter saved in `previous` instead of a new one."""

    def __init__(self, recipe, previous: Path):
        self.recipe, self.previous = recipe, Path(previous)

    def prepare(self, trainer: AdapterTrainer, workdir: Path) -> None:
        self.recipe.prepare(trainer, workdir)

    def start_model(self, trainer: AdapterTrainer):
        from peft import PeftModel

        model = PeftModel.from_pretrained(trainer.load_base(), str(self.previous), is_trainable=True)
        if trainer.settings.gradient_checkpointing:
            model.enable_input_require_grads()
        return model

    def phases(self, trainer: AdapterTrainer):
        return self.recipe.phases(trainer)

    def record(self, trainer: AdapterTrainer, runs, model) -> dict:
        return {**self.recipe.record(trainer, runs, model), "continued_from": self.previous.name}

    def record_after_memory(self) -> dict:
        return self.recipe.record_after_memory()


def continued(system, previous: AdapterTrainer) -> AdapterTrainer:
    """`system`'s adapter (lora, rag+lora, ...) as a continuation of `previous`, trained on its context's data."""
    own = system.adapter
    recipe = ContinueRecipe(own.recipe, previous.folder)
    identity = previous.weights_identity()
    return AdapterTrainer(
        own.ctx,
        own.name,
        own.method,
        recipe,
        settings_of=own.settings_of,
        key_extra=lambda: {"own": own.key_extra(), "continued_from": identity},
        folder_prefix=f"{own.folder_prefix}continue-",
    )
