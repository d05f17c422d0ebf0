"""rag: the top-k passages of the run's retriever (harness.parts.retriever) put into the user turn, within
the prompt budget (rag.max_prompt_tokens or the model's window, less the answer's room)."""

from __future__ import annotations

from harness.parts.outputs import BuildInfo, Prompts
from harness.systems import System, register_system


@register_system("rag")
class RagSystem(System):
    kind = "rag"

    def validate(self) -> None:
        self.ctx.retriever().validate()

    def build(self) -> BuildInfo:
        return self.ctx.retriever().build()

    def prompts(self, questions) -> Prompts:
        return self.ctx.retriever().retrieve(questions)
