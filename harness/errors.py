"""The one exception type a user can cause, and the one did-you-mean hint its messages use.
The CLI prints the message on one line and exits non-zero."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class HarnessError(Exception):
    """A problem with the user's input or environment, with a message that says what and where."""


def did_you_mean(word: object, options: Iterable[object]) -> str:
    """'; did you mean 'x'?' for the closest option, or '' when none is close."""
    guess = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean '{guess[0]}'?" if guess else ""


EXCERPT_CHARS = 60  # the most of a data value (a row, a header, an answer) an error message quotes


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """A data value as an error message quotes it: repr'd (quotes and control characters visible), at most
    `limit` characters of it, and clearly cut when longer: `'root:x:0:0:ro…' (+1,234 more characters)`.
    A message must say where the problem is, not echo the file."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text) if isinstance(value, str) else text
    shown = repr(text[:limit])[:-1] + "…" + repr(text[:limit])[-1] if isinstance(value, str) else text[:limit] + "…"
    return f"{shown} (+{len(text) - limit:,} more characters)"


def excerpts(values: Iterable[object], most: int = 8, limit: int = 30) -> str:
    """A few values, each a short excerpt, comma-separated, saying how many were left out."""
    values = list(values)
    shown = ", ".join(excerpt(v, limit) for v in values[:most])
    return shown + (f", … ({len(values) - most} more)" if len(values) > most else "")
