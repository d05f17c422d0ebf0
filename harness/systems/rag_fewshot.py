"""rag+fewshot: retrieved passages *and* solved examples in one prompt, composed from the run's parts: the
retriever (passages), the example selector (which training questions) and the prompt builder.

The prompt is fewshot's chat (examples as earlier user/assistant turns) whose last turn is rag's: passages,
then the question. Budget: rag's prompt budget (rag.max_prompt_tokens or the model's window, less the
answer's room) holds the whole prompt, examples included. The examples go in first; the passages get the
tokens they leave, best first, as in rag (the last one may be cut). When the examples leave no room for the
question itself, they are dropped, least similar (or first drawn) first, as fewshot does.
"""

from __future__ import annotations

from harness.parts.outputs import BuildInfo, Prompts
from harness.systems import System, register_system


@register_system("rag+fewshot")
class RagFewshotSystem(System):
    kind = "rag"

    def validate(self) -> None:
        self.ctx.retriever().validate()
        self.ctx.example_selector().validate()

    def build(self) -> BuildInfo:
        info, selector = self.ctx.retriever().build(), self.ctx.example_selector()
        if selector.settings.selection == "nearest":
            selector.pool_vectors()  # the training split is embedded here, not in the first question's latency
        info.notes = info.notes + selector.notes()
        return info

    def prompts(self, questions) -> Prompts:
        retriever, builder = self.ctx.retriever(), self.ctx.prompts
        budget = retriever.prompt_budget()
        hits, latency = retriever.top_k(questions)
        texts, retrieved = [], []
        for q, h, examples in zip(questions, hits, self.ctx.example_selector().examples(questions)):
            examples = builder.fit_examples(q, examples, budget, passages=[])
            render = lambda ps, q=q, examples=examples: builder.with_examples(q, examples, ps)
            passages = retriever.fit_passages(q, h, budget, render)
            retrieved.append(passages)
            texts.append(builder.with_examples(q, examples, passages))
        return Prompts(texts, retrieved, latency, [[c.doc_id for c, _ in x] for x in hits])
