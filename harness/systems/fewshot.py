"""fewshot: the base model with k solved training questions in the prompt, as earlier chat turns.

The prompt is the chat the prompt system sends, with k (question, gold answer) pairs from the training
split placed before the question as prior user/assistant turns, so the model sees the answer format it
should follow. Which k is the run's example selector's choice (harness.parts.example_selector: `random`,
seeded per question, or `nearest` in the embedder's space; training split only).

What it costs is longer prompts: the report's prompt tokens and latency against the prompt system.
"""

from __future__ import annotations

from harness.measure import timer
from harness.parts.outputs import BuildInfo, Prompts
from harness.systems import System, register_system


@register_system("fewshot")
class FewshotSystem(System):
    kind = "prompt"

    def validate(self) -> None:
        self.ctx.example_selector().validate()

    def build(self) -> BuildInfo:
        ctx, selector = self.ctx, self.ctx.example_selector()
        took = lambda: 0.0
        if selector.settings.selection == "nearest":
            with timer() as took:
                selector.pool_vectors()
        notes = selector.notes()
        if ctx.data.test:
            plain = [ctx.prompts.tokens(ctx.prompts.plain(q)) for q in ctx.data.test]
            shots = [ctx.prompts.tokens(t) for t in self.prompts(ctx.data.test).texts]
            added = (sum(shots) - sum(plain)) / len(plain)
            notes.append(
                f"adds {added:.0f} prompt tokens per question on average "
                f"({sum(shots) / len(shots):.0f} against {sum(plain) / len(plain):.0f} without examples)"
            )
        return BuildInfo(build_s=took(), cached=False, notes=notes)

    def prompts(self, questions):
        ctx, builder = self.ctx, self.ctx.prompts
        budget = ctx.model_max_length() - ctx.spec.evaluation.max_new_tokens
        texts, trimmed = [], 0
        for q, examples in zip(questions, ctx.example_selector().examples(questions)):
            kept = builder.fit_examples(q, examples, budget)  # the prompt must fit the model's window
            trimmed += len(examples) - len(kept)
            texts.append(builder.with_examples(q, kept))
        if trimmed:
            ctx.log(
                f"warning: {self.name}: dropped {trimmed} example(s) so prompts fit the model's {budget}-token window"
            )
        return Prompts(texts)
