"""The text a generation prompt showed, rebuilt from its chunk spans, with evidence quotes marked inside it.

A prompt shows a few windows of consecutive paragraphs (`masked_prompts.shown_spans`, chunk-relative
character spans). :func:`build_excerpt` turns the chunk text and those spans into segments — shown
text (with the numbers of the quotes that cover it) and skip markers where text was left out — so the
HTML quality report and the terminal review render the same thing. Quotes are chunk-relative spans
(`qa_evidence`), or located in the shown text by :func:`locate_quote` when only their words are known
(a rejected attempt's quotes).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Quote:
    """One evidence quote: its number (1-based, as shown), its words and, if found, its chunk span."""

    number: int
    text: str
    char_start: int | None = None  # chunk-relative, end exclusive; None: not found in the shown text
    char_end: int | None = None
    origin: str = "model"  # or "completed": a shown sentence the validator added
    score: float | None = None  # 100: found verbatim; lower: the fuzzy match score; None: not known

    @property
    def located(self) -> bool:
        return self.char_start is not None and self.char_end is not None


@dataclass(frozen=True)
class Segment:
    """A piece of the rendered excerpt."""

    text: str
    kind: Literal["text", "skip", "elided"] = "text"  # skip: not shown to the model; elided: cut for display
    quotes: tuple[int, ...] = ()  # numbers of the quotes covering this text


@dataclass(frozen=True)
class Excerpt:
    segments: tuple[Segment, ...]
    outside: tuple[int, ...] = ()  # located quotes that are not inside the shown text (numbers)

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments)

    @property
    def highlighted(self) -> dict[int, str]:
        """Quote number -> the text marked for it (joined over its segments)."""
        out: dict[int, str] = {}
        for s in self.segments:
            for n in s.quotes:
                out[n] = out.get(n, "") + s.text
        return out


def shown_ranges(chunk_text: str, spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The shown spans merged into windows: spans separated only by whitespace in the chunk join up."""
    out: list[tuple[int, int]] = []
    for start, end in sorted((max(0, a), min(len(chunk_text), b)) for a, b in spans):
        if end <= start:
            continue
        if out and (start <= out[-1][1] or not chunk_text[out[-1][1] : start].strip()):
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def build_excerpt(
    chunk_text: str, spans: Sequence[tuple[int, int]], quotes: Sequence[Quote] = (), skip_marker: str = "[...]"
) -> Excerpt:
    """Segments of the shown text in document order, skip markers where the chunk text was left out."""
    ranges = shown_ranges(chunk_text, spans)
    located = [q for q in quotes if q.located]
    segments: list[Segment] = []
    cursor = 0
    for start, end in ranges:
        if start > cursor:
            segments.append(Segment(skip_marker, "skip"))
        cuts = {start, end}
        for q in located:
            cuts.update(x for x in (q.char_start, q.char_end) if x is not None and start < x < end)
        points = sorted(cuts)
        for a, b in zip(points, points[1:], strict=False):
            numbers = tuple(q.number for q in located if q.char_start <= a and b <= q.char_end)  # type: ignore[operator]
            segments.append(Segment(chunk_text[a:b], "text", numbers))
        cursor = end
    if ranges and cursor < len(chunk_text):
        segments.append(Segment(skip_marker, "skip"))
    inside = [(a, b) for a, b in ranges]
    outside = tuple(
        q.number
        for q in located
        if not any(a <= q.char_start and q.char_end <= b for a, b in inside)  # type: ignore[operator]
    )
    return Excerpt(tuple(segments), outside)


#: shorter stretches are shown whole: an elision must save more than it costs to read
MIN_ELIDED_CHARS = 80


def trim_excerpt(excerpt: Excerpt, context_chars: int) -> Excerpt:
    """Keep `context_chars` of text on each side of every quote; longer stretches become an `elided` segment.

    An excerpt without any marked quote is returned whole (the reader needs all of it to judge).
    """
    segs = list(excerpt.segments)
    marked = [i for i, s in enumerate(segs) if s.quotes]
    if context_chars <= 0 or not marked:
        return excerpt
    out: list[Segment] = []
    for i, s in enumerate(segs):
        if s.kind != "text" or s.quotes:
            out.append(s)
            continue
        # a quote next to this text within the same window (skip markers end a window)
        before = _near(segs, i, -1)
        after = _near(segs, i, +1)
        head = _cut_head(s.text, context_chars) if before else ""
        tail = _cut_tail(s.text, context_chars) if after else ""
        if len(head) + len(tail) + MIN_ELIDED_CHARS >= len(s.text):
            out.append(s)
            continue
        if head:
            out.append(Segment(head))
        out.append(Segment(f" [… {len(s.text) - len(head) - len(tail):,} chars …] ", "elided"))
        if tail:
            out.append(Segment(tail))
    return Excerpt(tuple(out), excerpt.outside)


def _cut_head(text: str, n: int) -> str:
    """The first ~n chars, ending at a word boundary."""
    if len(text) <= n:
        return text
    space = text.rfind(" ", 0, n)
    return text[: space if space > n // 2 else n]


def _cut_tail(text: str, n: int) -> str:
    """The last ~n chars, starting at a word boundary."""
    if len(text) <= n:
        return text
    space = text.find(" ", len(text) - n)
    return text[space + 1 if 0 <= space < len(text) - n // 2 else len(text) - n :]


def _near(segs: Sequence[Segment], i: int, step: int) -> bool:
    j = i + step
    while 0 <= j < len(segs) and segs[j].kind == "text":
        if segs[j].quotes:
            return True
        j += step
    return False


def locate_quote(chunk_text: str, ranges: Sequence[tuple[int, int]], quote: str) -> tuple[int, int] | None:
    """The chunk span of `quote` inside the shown ranges (case- and whitespace-insensitive), first occurrence."""
    tokens = quote.split()
    if not tokens:
        return None
    pattern = re.compile(r"\s+".join(re.escape(t) for t in tokens), re.IGNORECASE)
    for start, end in ranges:
        m = pattern.search(chunk_text, start, end)
        if m:
            return m.start(), m.end()
    return None
