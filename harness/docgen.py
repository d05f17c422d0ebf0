"""What the generated reference docs share (docs/gen_tasks_md.py from the task schema, docs/gen_results_md.py
from the run-data models): a Markdown table cell, and writing a doc or checking that the committed one is
current."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path


def cell(text: str) -> str:
    """Text for one Markdown table cell: pipes escaped, on one line."""
    return text.replace("|", "\\|").replace("\n", " ")


def write_or_check(out: Path, render: Callable[[], str], script: str, argv: list[str]) -> int:
    """`script --check`: exit status 1 when `out` differs from what `render` makes; else rewrite `out`."""
    text = render()
    if "--check" in argv:
        if not out.exists() or out.read_text(encoding="utf-8") != text:
            print(f"{out} is stale: run `python {script}`", file=sys.stderr)
            return 1
        return 0
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")
    return 0
