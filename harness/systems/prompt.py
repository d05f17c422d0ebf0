"""prompt: the base instruct model with the task's system prompt only. Costs nothing to build."""

from __future__ import annotations

from harness.prompts import chat_prompt, user_turn
from harness.systems import Prompts, System, register_system


@register_system("prompt")
class PromptSystem(System):
    kind = "prompt"

    def prompts(self, questions):
        spec, tok = self.ctx.spec, self.ctx.tokenizer
        return Prompts([chat_prompt(tok, spec.system_prompt, user_turn(spec.question_template, q)) for q in questions])
