"""Deterministic chunking of document text into passages, and the keys that name passages.

Every device must cut the same text into the same passages (sync ships documents, not
passages, and bundles refer to passages by key), so chunking depends only on the text and
``ChunkingParams``: no locale, no model tokenizer, no randomness.

How a text is cut: a chunk runs from its start up to ``max_chars`` characters and ends at the
last paragraph break inside that window, else the last sentence end, else the last word
boundary — but only where that leaves the chunk at least half full; otherwise it is cut hard
at ``max_chars``. The next chunk starts up to ``overlap_chars`` before the previous end, at a
sentence start if one lies in that window, else at the first word start in it (a hard cut
inside one long token gets no overlap), so a thought cut at a boundary keeps some context.
Line endings are normalised to ``\\n`` first and each passage is stripped of surrounding
whitespace.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from dataclasses import dataclass

from meshdex.index.errors import InvalidArgument

DEFAULT_MAX_CHARS = 1200
DEFAULT_OVERLAP_CHARS = 150
PASSAGE_KEY_BYTES = 32
PASSAGE_LABEL_BYTES = 8

# Each break is a run of whitespace (group "gap"): a passage may end where the gap begins
# and the next may start where it ends.
_PARAGRAPH_BREAK = re.compile(r"(?P<gap>[ \t]*\n[ \t]*\n\s*)")
_SENTENCE_BREAK = re.compile(r"[.!?\u2026\u3002][\"'\u201d\u2019)\]]*(?P<gap>\s+)")
_WORD_BREAK = re.compile(r"(?P<gap>\s+)")


@dataclass(frozen=True, kw_only=True)
class ChunkingParams:
    """How documents are cut into passages; stored with each collection.

    ``max_chars`` bounds a passage's length in characters (code points); ``overlap_chars``
    is how much of the end of one passage may be repeated at the start of the next.
    """

    max_chars: int = DEFAULT_MAX_CHARS
    overlap_chars: int = DEFAULT_OVERLAP_CHARS

    def __post_init__(self) -> None:
        if not isinstance(self.max_chars, int) or self.max_chars < 1:
            raise InvalidArgument(
                f"chunking max_chars must be a positive integer, got {self.max_chars!r}"
            )
        if not isinstance(self.overlap_chars, int) or not 0 <= self.overlap_chars < self.max_chars:
            raise InvalidArgument(
                f"chunking overlap_chars must be an integer in [0, max_chars={self.max_chars}), "
                f"got {self.overlap_chars!r}"
            )

    def to_dict(self) -> dict[str, int]:
        return {"max_chars": self.max_chars, "overlap_chars": self.overlap_chars}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ChunkingParams:
        unknown = set(data) - {"max_chars", "overlap_chars"}
        if unknown:
            raise InvalidArgument(f"unknown chunking parameter(s): {', '.join(sorted(unknown))}")
        return cls(**data)  # type: ignore[arg-type]


class _Breaks:
    """Break positions of one kind: where passages may end (``cuts``) and start (``starts``)."""

    def __init__(self, pattern: re.Pattern[str], text: str) -> None:
        matches = list(pattern.finditer(text))
        self.cuts = [match.start("gap") for match in matches]
        self.starts = [match.end("gap") for match in matches]

    def last_cut(self, low: int, high: int) -> int | None:
        """The largest cut c with low <= c <= high, or None."""
        i = bisect.bisect_right(self.cuts, high)
        return self.cuts[i - 1] if i and self.cuts[i - 1] >= low else None

    def first_start(self, low: int, high: int) -> int | None:
        """The smallest start s with low <= s <= high, or None."""
        i = bisect.bisect_left(self.starts, low)
        return self.starts[i] if i < len(self.starts) and self.starts[i] <= high else None


def normalize_newlines(text: str) -> str:
    """``text`` with ``\\r\\n`` and ``\\r`` turned into ``\\n``: what chunk spans index into."""
    if "\r" not in text:  # the common case, and a read path: no copies
        return text
    return text.replace("\r\n", "\n").replace("\r", "\n")


def chunk_text(text: str, params: ChunkingParams) -> list[str]:
    """Cut ``text`` into passages; the same text and params give the same list everywhere."""
    normal = normalize_newlines(text)
    return [normal[start:end] for start, end in chunk_spans(normal, params)]


def chunk_spans(text: str, params: ChunkingParams) -> list[tuple[int, int]]:
    """Where ``chunk_text`` cuts: ``(start, end)`` character offsets into
    ``normalize_newlines(text)``, one per passage, starts strictly increasing.

    The store keeps these spans instead of a second copy of each passage's text.
    """
    text = normalize_newlines(text)
    length = len(text)
    paragraphs = _Breaks(_PARAGRAPH_BREAK, text)
    sentences = _Breaks(_SENTENCE_BREAK, text)
    words = _Breaks(_WORD_BREAK, text)
    max_chars, overlap = params.max_chars, params.overlap_chars

    spans: list[tuple[int, int]] = []
    start = length - len(text.lstrip())
    while start < length:
        limit = start + max_chars
        if limit >= length:
            end = length
        else:
            half_full = start + max(1, max_chars // 2)
            end = (
                paragraphs.last_cut(half_full, limit)
                or sentences.last_cut(half_full, limit)
                or words.last_cut(half_full, limit)
                or limit
            )
        piece = text[start:end]
        stripped = piece.strip()
        if stripped:
            first = start + len(piece) - len(piece.lstrip())
            spans.append((first, first + len(stripped)))
        if end >= length:
            break
        start = _next_start(start, end, overlap, sentences, words)
        gap = _WORD_BREAK.match(text, start)
        if gap:  # a passage never starts with whitespace: it would only use up max_chars
            start = gap.end()
    return spans


def _next_start(start: int, end: int, overlap: int, sentences: _Breaks, words: _Breaks) -> int:
    """Where the chunk after ``[start, end)`` begins: inside the overlap window, or at ``end``.

    Always strictly after ``start``, so chunking terminates.
    """
    if overlap and end - start > overlap:
        window_low = end - overlap
        overlapping = sentences.first_start(window_low, end - 1) or words.first_start(
            window_low, end - 1
        )
        if overlapping:
            return overlapping
    return end


def passage_key(text: str) -> bytes:
    """The passage's identity: SHA-256 of its UTF-8 text (32 bytes)."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def passage_label(key: bytes) -> int:
    """The compact id the index stores per node: the key's first 8 bytes, big-endian uint64."""
    if len(key) != PASSAGE_KEY_BYTES:
        raise InvalidArgument(f"passage key must be {PASSAGE_KEY_BYTES} bytes, got {len(key)}")
    return int.from_bytes(key[:PASSAGE_LABEL_BYTES], "big")
