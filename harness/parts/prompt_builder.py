"""The only renderer of prompts. Training and evaluation render through the same code, so a fine-tuned
adapter is evaluated on exactly the prompt format it was trained on.

Three shapes, all ending where the assistant's answer starts:
  plain          system prompt, then the question (question_template)
  with_passages  system prompt, then passages and the question (rag.context_template)
  with_examples  system prompt, solved examples as earlier user/assistant turns, then the question (with
                 passages in that last turn when given)
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from harness.data import Question
from harness.errors import HarnessError

# Templates come from task files, which must not be able to run code: the sandbox refuses attribute access
# to Python internals (`{{ cycler.__init__.__globals__.os... }}`), which a plain Environment would allow.
_ENV = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False)


@lru_cache(maxsize=64)
def template(source: str, field: str) -> jinja2.Template:
    """A task file's template, compiled in the sandbox; `field` names it in the error."""
    try:
        return _ENV.from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise HarnessError(f"field '{field}': invalid Jinja2 template (line {e.lineno}: {e.message})") from None


def question_turn(question_template: str, q: Question) -> str:
    """The user turn asking `q` (question_template), with the options listed when the template leaves them out."""
    try:
        text = template(question_template, "question_template").render(question=q.question, choices=q.choices or [])
    except jinja2.UndefinedError as e:
        raise HarnessError(f"field 'question_template': {e.message} (available: question, choices)") from None
    except SecurityError as e:
        raise HarnessError(f"field 'question_template': not allowed in a task file: {e}") from None
    if q.choices and len(q.choices) > 2 and "choices" not in question_template:
        text += "\nOptions:\n" + "\n".join(f"- {c}" for c in q.choices)
    return text


def render_chat(tokenizer, system_prompt: str, user: str, examples: Sequence[tuple[str, str]] = ()) -> str:
    """The full prompt: system turn, each (question, answer) example as a user and an assistant turn, then
    `user`, ending where the assistant's answer starts."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for question, answer in examples:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": user})
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # Base models without a chat template get a plain transcript.
    head = f"{system_prompt}\n\n" if system_prompt else ""
    shots = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in examples)
    return f"{head}{shots}Question: {user}\nAnswer: "


class PromptBuilder:
    """Renders the task's prompts with the run's tokenizer (its chat template, and its token counts)."""

    def __init__(self, spec, tokenizer):
        self.spec, self.tokenizer = spec, tokenizer

    def user_text(self, q: Question) -> str:
        """The question_template turn."""
        return question_turn(self.spec.question_template, q)

    def passages_text(self, q: Question, passages: list[dict]) -> str:
        """The rag.context_template turn: the passages, then the question turn."""
        return template(self.spec.rag.context_template, "rag.context_template").render(
            passages=passages, question=self.user_text(q)
        )

    def plain(self, q: Question) -> str:
        """System prompt and question."""
        return render_chat(self.tokenizer, self.spec.system_prompt, self.user_text(q))

    def with_passages(self, q: Question, passages: list[dict]) -> str:
        """System prompt, then passages and question in one user turn."""
        return render_chat(self.tokenizer, self.spec.system_prompt, self.passages_text(q, passages))

    def with_examples(self, q: Question, examples: list[Question], passages: list[dict] | None = None) -> str:
        """Solved examples (each question turn and its first gold answer) as earlier chat turns, then the
        question; with `passages` (even an empty list), the last turn is the rag.context_template turn."""
        shots = [(self.user_text(e), e.answers[0]) for e in examples]
        user = self.user_text(q) if passages is None else self.passages_text(q, passages)
        return render_chat(self.tokenizer, self.spec.system_prompt, user, shots)

    def fit_examples(
        self, q: Question, examples: list[Question], budget: int, passages: list[dict] | None = None
    ) -> list[Question]:
        """The examples whose with_examples prompt fits `budget` tokens: the first ones (least similar, or first
        drawn) are dropped first, so the closest example stays next to the question."""
        while examples and self.tokens(self.with_examples(q, examples, passages)) > budget:
            examples = examples[1:]
        return examples

    def tokens(self, text: str) -> int:
        """Tokens `text` takes as the model reads it (special tokens included)."""
        return len(self.tokenizer(text).input_ids)
