"""Prompt rendering for callers that have no PromptBuilder yet: the training code (finetune, preference,
rag_finetune) and `harness tasks validate`. Each function is the PromptBuilder's own code in
harness.parts.prompt_builder, so these callers render byte-identical prompts; they move to `ctx.prompts`
and this module goes away."""

from __future__ import annotations

from harness.data import Question
from harness.parts.prompt_builder import question_turn, render_chat, template

__all__ = ["chat_prompt", "template", "user_turn"]


def user_turn(question_template: str, q: Question) -> str:
    return question_turn(question_template, q)


def chat_prompt(tokenizer, system_prompt: str, user: str) -> str:
    """The full prompt, ending where the assistant's answer starts."""
    return render_chat(tokenizer, system_prompt, user)
