"""What the `harness` command prints through, and the exit codes it ends with (harness.cli's docstring)."""

from __future__ import annotations

from rich.console import Console

# Everything these print is literal text: paths, task values and data rows come from files the user (or
# someone else) wrote, and `[bold]` or `:x:` in them must print as written, not as rich markup or emoji.
PLAIN = {"highlight": False, "markup": False, "emoji": False}
console = Console(stderr=False, **PLAIN)
err_console = Console(stderr=True, **PLAIN)

# Exit codes: see harness.cli's docstring.
OK, BAD_INPUT, SYSTEMS_FAILED = 0, 2, 3
INTERRUPTED = 130  # what shells report for a process stopped by Ctrl-C (128 + SIGINT)
TERMINATED = 143  # 128 + SIGTERM

_LINE_BREAKERS = {"\x85", "\u2028", "\u2029"}


def one_line(text: str) -> str:
    """A message on one line, whatever it quotes: control characters (a newline in a file name, a NUL from a
    task file) are shown escaped, as Python writes them, instead of breaking or garbling the line."""
    import unicodedata

    return "".join(repr(c)[1:-1] if unicodedata.category(c) == "Cc" or c in _LINE_BREAKERS else c for c in str(text))
