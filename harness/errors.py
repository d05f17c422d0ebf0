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
