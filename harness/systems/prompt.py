"""prompt: the base instruct model with the task's system prompt only. Costs nothing to build."""

from __future__ import annotations

from harness.parts.outputs import Prompts
from harness.systems import System, register_system


@register_system("prompt")
class PromptSystem(System):
    kind = "prompt"

    def prompts(self, questions):
        return Prompts([self.ctx.prompts.plain(q) for q in questions])
