"""Structure-aware chunking for retrieval: documents cut into windows of embedder tokens that keep whole
paragraphs together where they fit and start at word boundaries, each an exact slice of the original text."""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# Markdown headings, "Section 2"/"Article IV", and numbered headings "1. Definitions", "2) Scope", "1.2 Terms".
_HEADING = re.compile(
    r"^\s{0,3}(#{1,6}\s|(section|article|chapter|part|§)\s*[\dIVXLC]+\b"
    r"|\d{1,3}(\.\d{1,3})*[.)]\s+\S|\d{1,3}(\.\d{1,3})+\s+\S)",
    re.IGNORECASE,
)


@dataclass
class Chunk:
    doc_id: str
    position: int  # index of the chunk within its document
    text: str
    start_token: int  # [start_token, end_token) in the embedder tokenisation of the whole document
    end_token: int


def validate_docs(docs: Sequence[Any]) -> None:
    if not docs:
        raise ValueError("the corpus is empty: there are no documents to index")
    seen = set()
    for doc in docs:
        if not (doc.text or "").strip():
            raise ValueError(f"document {doc.doc_id!r} has no text (empty or whitespace only)")
        if doc.doc_id in seen:
            raise ValueError(f"duplicate doc_id {doc.doc_id!r} in the corpus")
        seen.add(doc.doc_id)


def _paragraph_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of paragraphs: split at blank lines, and before lines that look like headings
    (so a heading starts the section it names instead of trailing the previous one)."""
    spans, start, end, pos = [], None, 0, 0
    for line in text.splitlines(keepends=True):
        line_start, pos = pos, pos + len(line)
        if not line.strip() or (start is not None and _HEADING.match(line)):
            if start is not None:
                spans.append((start, end))
            start = None
            if not line.strip():
                continue
        if start is None:
            start = line_start + len(line) - len(line.lstrip())
        end = line_start + len(line.rstrip())
    if start is not None:
        spans.append((start, end))
    return spans


def _word_at_or_after(word_starts: list[int], i: int, hi: int) -> int:
    """First token >= i that starts a word (so overlaps never open on a '##piece'); hi if there is none."""
    j = bisect_left(word_starts, i)
    return word_starts[j] if j < len(word_starts) and word_starts[j] < hi else hi


def _token_bounds(
    n: int, para_ends: list[int], word_starts: list[int], size: int, overlap: int, fits: Callable[[int, int], bool]
) -> list[tuple[int, int]]:
    """Greedy [start, end) token windows: end at the furthest paragraph end that fits, else cut a window of
    `size` at a word boundary; each next window starts ~`overlap` tokens before the previous end."""
    ends_set, bounds, s, e = set(para_ends), [], 0, 0
    while e < n:
        i = bisect_right(para_ends, s + size) - 1
        if i >= 0 and para_ends[i] > e:
            new_e = para_ends[i]
        else:
            nxt = para_ends[bisect_right(para_ends, e)]
            if e in ends_set and nxt - e <= size:
                # The next paragraph fits on its own but not behind a full overlap: shorten the overlap
                # rather than cut a paragraph that could stay whole.
                s, new_e = _word_at_or_after(word_starts, nxt - size, e), nxt
            else:
                j = bisect_right(word_starts, s + size) - 1  # cut before the last word start that fits
                new_e = word_starts[j] if j >= 0 and word_starts[j] > e else min(s + size, n)
        while new_e > e + 1 and not fits(s, new_e):  # rare: re-tokenised slice is longer (non-BERT vocabularies)
            new_e -= 1
        bounds.append((s, new_e))
        # Next start: ~overlap tokens back, but strictly after this start so no two chunks begin alike.
        e, s = new_e, _word_at_or_after(word_starts, max(new_e - overlap, s + 1), new_e)
    return bounds


def _tokenize_offsets(tokenizer: Any, text: str) -> list[tuple[int, int]]:
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    except NotImplementedError as exc:
        raise ValueError("chunking needs a fast tokenizer (return_offsets_mapping)") from exc
    return [tuple(o) for o in enc["offset_mapping"]]


def _chunk_document(doc: Any, tokenizer: Any, size: int, overlap: int) -> list[Chunk]:
    text = doc.text
    offsets = _tokenize_offsets(tokenizer, text)
    if not offsets:
        raise ValueError(f"document {doc.doc_id!r} has no text the embedder can tokenise")
    starts = [o[0] for o in offsets]
    # A paragraph ends before the first token starting at or after its last character.
    para_ends = sorted({bisect_right(starts, end - 1) for _, end in _paragraph_spans(text)} - {0} | {len(offsets)})
    # Tokens after whitespace begin words; the rest are word pieces or punctuation glued to a word.
    word_starts = [i for i in range(1, len(offsets)) if offsets[i][0] > offsets[i - 1][1]]

    def span(s: int, e: int) -> str:
        # Exact slice of the original text, so no detokenisation artefacts.
        return text[offsets[s][0] : max(o[1] for o in offsets[s:e])]

    def fits(s: int, e: int) -> bool:
        ids = tokenizer(span(s, e), add_special_tokens=False, verbose=False)["input_ids"]
        return e - s <= size and len(ids) <= size

    bounds = _token_bounds(len(offsets), para_ends, word_starts, size, overlap, fits)
    return [Chunk(doc.doc_id, i, span(s, e), s, e) for i, (s, e) in enumerate(bounds)]


def chunk_documents(
    docs: Sequence[Any], tokenizer: Any, chunk_tokens: int = 200, overlap: int = 32, max_tokens: int | None = None
) -> list[Chunk]:
    """Split documents into chunks of at most `chunk_tokens` embedder tokens, packing whole paragraphs."""
    for field, value in (("chunk_tokens", chunk_tokens), ("overlap", overlap)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{field} must be a positive integer, got {value!r}")
    if overlap >= chunk_tokens:
        raise ValueError(f"overlap ({overlap}) must be smaller than chunk_tokens ({chunk_tokens})")
    if max_tokens is not None and chunk_tokens > max_tokens:
        raise ValueError(
            f"chunk_tokens={chunk_tokens} exceeds the embedder's window of max_tokens={max_tokens} "
            "(max_seq_length minus special tokens); the tail of every chunk would be truncated"
        )
    validate_docs(docs)
    return [c for doc in docs for c in _chunk_document(doc, tokenizer, chunk_tokens, overlap)]
