"""Render prompts. Training and evaluation call the same function, so a fine-tuned adapter is
evaluated on exactly the prompt format it was trained on."""

from __future__ import annotations

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
    try:
        return _ENV.from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise HarnessError(f"field '{field}': invalid Jinja2 template (line {e.lineno}: {e.message})") from None


def user_turn(question_template: str, q: Question) -> str:
    try:
        text = template(question_template, "question_template").render(question=q.question, choices=q.choices or [])
    except jinja2.UndefinedError as e:
        raise HarnessError(f"field 'question_template': {e.message} (available: question, choices)") from None
    except SecurityError as e:
        raise HarnessError(f"field 'question_template': not allowed in a task file: {e}") from None
    if q.choices and len(q.choices) > 2 and "choices" not in question_template:
        text += "\nOptions:\n" + "\n".join(f"- {c}" for c in q.choices)
    return text


def chat_prompt(tokenizer, system_prompt: str, user: str) -> str:
    """The full prompt, ending where the assistant's answer starts."""
    messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
        {"role": "user", "content": user}
    ]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # Base models without a chat template get a plain transcript.
    head = f"{system_prompt}\n\n" if system_prompt else ""
    return f"{head}Question: {user}\nAnswer: "


def answer_suffix(tokenizer) -> str:
    """What ends an answer in training data (the chat template's end-of-turn token)."""
    return tokenizer.eos_token or ""
