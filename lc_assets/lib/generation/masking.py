"""Context masking: which parts of a chunk (and which earlier pairs) one generation step shows.

The Gradient method shows a short-context model a random *mask* of a long chunk: text sampled from
the WHOLE chunk, kept in document order, with a marker where text was skipped. Isolated paragraphs
read as a salad of fragments ("reserved", "Notes", one code line), too little to ask a good
question about, so a step here shows a few *windows* of consecutive paragraphs spread over the
chunk. Windows are placed in regions served in shuffled epochs (without replacement), so every
region of the chunk is used and exposure stays even over long runs (pure random sampling leaves
gaps in small chunks and over-shows others). Optional *long-range* steps show two windows far
apart and require evidence from both.

Everything here is deterministic given ``(seed, section_id, step)`` and the chunk text: each
random choice draws from its own hash-derived RNG, never from the global ``random`` state, so a
resumed run regenerates exactly the same masks.
"""

from __future__ import annotations

import functools
import hashlib
import operator
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lc_assets.lib.sections import QAPair

#: Counts tokens of many texts in the *generator's* vocabulary (e.g. ``backend.count_text_tokens``).
TokenCounter = Callable[[Sequence[str]], list[int]]

DEFAULT_SKIP_MARKER = "[...]"

_BLANK_LINES = re.compile(r"\n[ \t]*\n+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
#: How far past a paragraph that does not fit the remaining budget we look for smaller ones.
_LOOKAHEAD = 32


def derive_rng(seed: int, *keys: object) -> random.Random:
    """An RNG private to (seed, keys): independent of call order and of the global RNG."""
    blob = "\x1f".join([str(seed), *(str(k) for k in keys)]).encode("utf-8")
    return random.Random(int.from_bytes(hashlib.sha256(blob).digest()[:8], "big"))


@dataclass(frozen=True)
class Paragraph:
    """One unit of masking: a span of the chunk text with a stable id."""

    index: int
    paragraph_id: str
    char_start: int
    char_end: int
    text: str
    n_tokens: int  # in the generator's tokens


def _paragraph_id(index: int, text: str) -> str:
    # index keeps ids unique and ordered; the short hash catches a changed chunk text on resume
    return f"p{index:05d}-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:8]}"


def paragraph_spans(text: str) -> list[tuple[int, int]]:
    """Blank-line separated paragraphs as (start, end) char spans, whitespace-only ones dropped."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for match in _BLANK_LINES.finditer(text):
        spans.append((pos, match.start()))
        pos = match.end()
    spans.append((pos, len(text)))
    out = []
    for start, end in spans:
        piece = text[start:end]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            trail = len(piece) - len(piece.rstrip())
            out.append((start + lead, end - trail))
    return out


def spans_digest(spans: Sequence[tuple[int, int]]) -> str:
    """Identifies a chunk's paragraph spans: stored counts are used only for the spans they were taken over."""
    return hashlib.sha1(",".join(f"{s}:{e}" for s, e in spans).encode("ascii")).hexdigest()[:16]


def _split_points(piece: str) -> list[tuple[int, int]]:
    """Separators inside an oversized paragraph as (start, end): line breaks, then sentence ends, then spaces."""
    for pattern in (re.compile(r"\s*\n\s*"), _SENTENCE_END, re.compile(r"\s+")):
        points = [(m.start(), m.end()) for m in pattern.finditer(piece) if 0 < m.start() and m.end() < len(piece)]
        if points:
            return points
    return []


def _split_oversized(
    text: str, start: int, end: int, n_tokens: int, max_tokens: int, count: TokenCounter
) -> list[tuple[int, int, int]]:
    """Split a span of more than ``max_tokens`` tokens at natural points, recursively halving."""
    if n_tokens <= max_tokens or end - start < 2:
        return [(start, end, n_tokens)]
    piece = text[start:end]
    half = len(piece) // 2
    # the separator nearest the middle; one giant "word" (minified data, base64) is cut by characters
    sep_start, sep_end = min(_split_points(piece), key=lambda p: abs(p[0] - half), default=(half, half))
    left, right = (start, start + sep_start), (start + sep_end, end)
    counts = count([text[left[0] : left[1]], text[right[0] : right[1]]])
    return _split_oversized(text, *left, counts[0], max_tokens, count) + _split_oversized(
        text, *right, counts[1], max_tokens, count
    )


def split_paragraphs(
    text: str,
    count: TokenCounter,
    max_paragraph_tokens: int,
    span_counts: tuple[Sequence[tuple[int, int]], Sequence[int]] | None = None,
) -> list[Paragraph]:
    """Split a chunk into paragraphs with stable ids and exact generator-token counts.

    Paragraphs are blank-line separated; one longer than ``max_paragraph_tokens`` is split at line,
    sentence or word boundaries so that every piece fits a step's smallest budget. ``span_counts``:
    the text's :func:`paragraph_spans` and their counts, already known (stored when the chunk was cut);
    ``count`` then counts only the pieces of oversized paragraphs.
    """
    if max_paragraph_tokens < 1:
        raise ValueError(f"max_paragraph_tokens must be >= 1, got {max_paragraph_tokens}")
    spans = paragraph_spans(text) if span_counts is None else span_counts[0]
    counts = span_counts[1] if span_counts is not None else count([text[s:e] for s, e in spans]) if spans else []
    pieces: list[tuple[int, int, int]] = []
    for (start, end), n in zip(spans, counts, strict=True):
        pieces.extend(_split_oversized(text, start, end, n, max_paragraph_tokens, count))
    return [Paragraph(i, _paragraph_id(i, text[s:e]), s, e, text[s:e], n) for i, (s, e, n) in enumerate(pieces)]


@dataclass(frozen=True)
class MaskWindow:
    """A run of consecutive paragraphs shown together: readable text, not isolated fragments."""

    paragraphs: tuple[Paragraph, ...]  # consecutive indices, document order

    @property
    def first_index(self) -> int:
        return self.paragraphs[0].index

    @property
    def last_index(self) -> int:
        return self.paragraphs[-1].index

    @property
    def char_start(self) -> int:
        return self.paragraphs[0].char_start

    @property
    def char_end(self) -> int:
        return self.paragraphs[-1].char_end

    @property
    def n_tokens(self) -> int:
        return sum(p.n_tokens for p in self.paragraphs)

    @functools.cached_property
    def text(self) -> str:
        """The window's text, offset-exact: ``text[i]`` is chunk char ``char_start + i``.

        The whitespace between two paragraphs is kept at its length in the chunk (as newlines), so a
        quote found here maps to its exact chunk span without the chunk text at hand.
        """
        parts = [self.paragraphs[0].text]
        for prev, para in zip(self.paragraphs, self.paragraphs[1:], strict=False):
            parts.append("\n" * (para.char_start - prev.char_end))
            parts.append(para.text)
        return "".join(parts)


_by_index = operator.attrgetter("index")


def windows_of(paragraphs: Sequence[Paragraph]) -> tuple[MaskWindow, ...]:
    """Maximal runs of consecutive paragraphs, in document order."""
    ordered = sorted(paragraphs, key=_by_index)
    runs: list[list[Paragraph]] = []
    for para in ordered:
        if runs and para.index == runs[-1][-1].index + 1:
            runs[-1].append(para)
        else:
            runs.append([para])
    return tuple(MaskWindow(tuple(run)) for run in runs)


@dataclass(frozen=True)
class Mask:
    """What one step shows: windows of consecutive paragraphs (selection order kept for the overflow guard).

    ``long_range`` marks a step built from two windows far apart in the chunk, whose pair must cite
    evidence from both (see :func:`lc_assets.lib.generation.validate.validate_output`).
    """

    step: int
    budget_tokens: int
    selected: tuple[Paragraph, ...]  # in selection order: the guard drops from the end
    long_range: bool = False

    @property
    def in_document_order(self) -> tuple[Paragraph, ...]:
        return tuple(sorted(self.selected, key=lambda p: p.index))

    @property
    def windows(self) -> tuple[MaskWindow, ...]:
        return windows_of(self.selected)

    @property
    def n_tokens(self) -> int:
        return sum(p.n_tokens for p in self.selected)

    def without_last(self, n: int) -> Mask:
        kept = self.selected[: max(0, len(self.selected) - n)]
        # a long-range step that lost one of its two windows is an ordinary step now
        return Mask(self.step, self.budget_tokens, kept, self.long_range and len(windows_of(kept)) >= 2)


def render_mask(
    paragraphs: Sequence[Paragraph], n_total: int, marker: str = DEFAULT_SKIP_MARKER, *, numbered: bool = False
) -> str:
    """Join paragraphs in document order; ``marker`` stands where text was skipped (also at the edges).

    With ``numbered`` each window of consecutive paragraphs starts with a line "Excerpt i:", so a
    prompt can ask for evidence from two named excerpts.
    """
    ordered = sorted(paragraphs, key=_by_index)
    parts: list[str] = []
    prev = -1
    window = 0
    for para in ordered:
        if para.index != prev + 1:
            if para.index > 0 or prev >= 0:
                parts.append(marker)
            if numbered:
                window += 1
                parts.append(f"Excerpt {window}:")
        elif prev == -1 and numbered:  # the chunk's first paragraph opens excerpt 1 without a marker
            window += 1
            parts.append(f"Excerpt {window}:")
        parts.append(para.text)
        prev = para.index
    if ordered and prev != n_total - 1:
        parts.append(marker)
    return "\n\n".join(parts)


@dataclass(frozen=True)
class _Region:
    """A stretch of the chunk about one window long; every region is shown once per epoch."""

    index: int
    first: int  # paragraph index
    last: int  # inclusive
    center_char: float


def _regions(paragraphs: Sequence[Paragraph], region_tokens: int) -> tuple[_Region, ...]:
    out: list[_Region] = []
    first, tokens = 0, 0
    for para in paragraphs:
        tokens += para.n_tokens
        if tokens >= region_tokens or para.index == len(paragraphs) - 1:
            lo, hi = paragraphs[first], para
            out.append(_Region(len(out), first, para.index, (lo.char_start + hi.char_end) / 2))
            first, tokens = para.index + 1, 0
    return tuple(out)


class SectionMasker:
    """Deterministic masks for one section: step k depends only on (seed, section_id, k) and the chunk.

    A step shows ``min_windows``..``max_windows`` windows of consecutive paragraphs (readable text)
    that fill its token budget, placed in *regions* of the chunk about one window long. Regions are
    served in shuffled epochs (without replacement), so after about ``chunk_tokens / budget`` steps
    every region of the chunk has been shown and exposure stays even over long runs; each region
    keeps a cursor, so its next visit continues where the last window ended.

    A share ``long_range_share`` of steps are *long-range*: exactly two windows whose centres are at
    least ``long_range_min_distance`` (a fraction of the chunk's characters) apart.

    The state before step k (epoch queue, region cursors) is replayed from step 0 (integer work only), so a
    resumed run needs no stored cursor.
    """

    def __init__(
        self,
        section_id: str,
        paragraphs: Sequence[Paragraph],
        seed: int,
        min_tokens: int,
        max_tokens: int,
        *,
        min_windows: int = 2,
        max_windows: int = 3,
        long_range_share: float = 0.0,
        long_range_min_distance: float = 0.5,
    ) -> None:
        if not paragraphs:
            raise ValueError(f"section {section_id!r} has no paragraphs to sample")
        if not 1 <= min_tokens <= max_tokens:
            raise ValueError(f"need 1 <= min_tokens <= max_tokens, got {min_tokens}..{max_tokens}")
        if not 1 <= min_windows <= max_windows:
            raise ValueError(f"need 1 <= min_windows <= max_windows, got {min_windows}..{max_windows}")
        if not 0.0 <= long_range_share <= 1.0:
            raise ValueError(f"long_range_share must be in [0, 1], got {long_range_share}")
        if not 0.0 < long_range_min_distance < 1.0:
            raise ValueError(f"long_range_min_distance must be in (0, 1), got {long_range_min_distance}")
        self.section_id = section_id
        self.paragraphs = tuple(paragraphs)
        self.seed = seed
        self.min_tokens = min_tokens
        self.max_tokens = max_tokens
        self.min_windows = min_windows
        self.max_windows = max_windows
        self.long_range_share = long_range_share
        self.long_range_min_distance = long_range_min_distance
        self.total_tokens = sum(p.n_tokens for p in self.paragraphs)
        self.total_chars = self.paragraphs[-1].char_end
        # one region per average window: (mean budget) / (mean number of windows)
        region_tokens = max(1, round((min_tokens + max_tokens) / (min_windows + max_windows)))
        self.regions = _regions(self.paragraphs, region_tokens)
        # replay state: the queue of the current epoch and the next step it serves
        self._epoch = 0
        self._queue: list[int] = self._epoch_order(0)
        self._next_step = 0
        self._cursor: dict[int, int] = {}  # region -> paragraph where its next window starts
        self._cache: dict[int, Mask] = {}

    def _epoch_order(self, epoch: int) -> list[int]:
        order = list(range(len(self.regions)))
        derive_rng(self.seed, self.section_id, "epoch", epoch).shuffle(order)
        return order

    def budget(self, step: int) -> int:
        """The step's token budget, uniform in [min_tokens, max_tokens]."""
        return derive_rng(self.seed, self.section_id, step, "budget").randint(self.min_tokens, self.max_tokens)

    def is_long_range(self, step: int) -> bool:
        """Whether ``step`` asks for a long-range window pair (it may still fall back if the chunk is too short)."""
        if self.long_range_share <= 0.0:
            return False
        return derive_rng(self.seed, self.section_id, step, "long_range").random() < self.long_range_share

    # -- choosing regions -----------------------------------------------------------------------
    def _pop_region(self, chosen: list[int], accept: Callable[[int], bool]) -> int | None:
        """The first queued region (within the lookahead) that ``accept``s; starts a new epoch when empty."""
        for _ in range(2):
            for pos, reg in enumerate(self._queue[:_LOOKAHEAD]):
                if reg not in chosen and accept(reg):
                    return self._queue.pop(pos)
            if self._queue:
                return None
            self._epoch += 1  # epoch exhausted: the next shuffled pass over the whole chunk
            self._queue = [r for r in self._epoch_order(self._epoch) if r not in chosen]
        return None

    def _far_apart(self, a: int, b: int) -> bool:
        distance = abs(self.regions[a].center_char - self.regions[b].center_char)
        return distance >= self.long_range_min_distance * self.total_chars

    def _choose_regions(self, step: int) -> tuple[list[int], bool]:
        long_range = self.is_long_range(step)
        n_windows = (
            2
            if long_range
            else derive_rng(self.seed, self.section_id, step, "windows").randint(self.min_windows, self.max_windows)
        )
        chosen: list[int] = []
        first = self._pop_region(chosen, lambda r: True)
        if first is None:
            return chosen, False
        chosen.append(first)
        if long_range:
            partner = self._pop_region(chosen, lambda r: self._far_apart(first, r))
            if partner is None:  # nothing far enough near the head of the queue: any far region
                far = [r.index for r in self.regions if self._far_apart(first, r.index)]
                if far:
                    partner = derive_rng(self.seed, self.section_id, step, "partner").choice(far)
            if partner is not None:
                chosen.append(partner)
                return chosen, True
            long_range = False  # the chunk is too short for the distance: an ordinary step
        while len(chosen) < n_windows:
            # windows of one step keep a region apart, so they read as separate excerpts
            nxt = self._pop_region(chosen, lambda r: all(abs(r - c) >= 2 for c in chosen))
            if nxt is None:
                break
            chosen.append(nxt)
        return chosen, False

    # -- filling windows ------------------------------------------------------------------------
    def _grow(self, start: int, share: int, taken: set[int]) -> list[int]:
        """Consecutive paragraphs from ``start`` (forward, then backward) within ``share`` tokens."""
        window = [start]
        used = self.paragraphs[start].n_tokens
        nxt = start + 1
        while nxt < len(self.paragraphs) and nxt not in taken:
            n = self.paragraphs[nxt].n_tokens
            if used + n > share:
                break
            window.append(nxt)
            used += n
            nxt += 1
        prev = start - 1
        while prev >= 0 and prev not in taken:
            n = self.paragraphs[prev].n_tokens
            if used + n > share:
                break
            window.insert(0, prev)
            used += n
            prev -= 1
        return window

    def _advance(self) -> Mask:
        step = self._next_step
        budget = self.budget(step)
        if self.total_tokens <= budget:  # the whole chunk fits: it is all shown
            self._next_step += 1
            return Mask(step, budget, self.paragraphs, False)
        regions, long_range = self._choose_regions(step)
        remaining = budget
        taken: set[int] = set()
        windows: list[list[int]] = []
        # windows are filled in a drawn order: each takes its share of what is left, so a fixed order
        # (document order) would hand the rounding leftovers to the chunk's later windows every time
        fill_order = list(regions)
        derive_rng(self.seed, self.section_id, step, "fill").shuffle(fill_order)
        for i, reg in enumerate(fill_order):
            share = remaining // (len(regions) - i)
            region = self.regions[reg]
            start = self._cursor.get(reg, region.first)
            if start in taken or self.paragraphs[start].n_tokens > remaining:
                continue
            window = self._grow(start, max(share, self.paragraphs[start].n_tokens), taken)
            windows.append(window)
            taken.update(window)
            # the region's next visit continues after this window, so repeated visits walk all of it
            self._cursor[reg] = window[-1] + 1 if window[-1] < region.last else region.first
            remaining -= sum(self.paragraphs[j].n_tokens for j in window)
        # leftover budget (a window stopped short at a neighbour): widen the windows, in a drawn order
        # (always widening the last window would over-show the end of the chunk)
        order = list(range(len(windows)))
        derive_rng(self.seed, self.section_id, step, "widen").shuffle(order)
        paragraphs = self.paragraphs
        for window in (windows[i] for i in order):
            # what `_grow` from the window's first paragraph within its own tokens + the leftover adds: the
            # neighbours after its end, then before its start, while the leftover lasts (without regrowing it)
            after = window[-1] + 1
            while after < len(paragraphs) and after not in taken and paragraphs[after].n_tokens <= remaining:
                remaining -= paragraphs[after].n_tokens
                after += 1
            before = window[0] - 1
            while before >= 0 and before not in taken and paragraphs[before].n_tokens <= remaining:
                remaining -= paragraphs[before].n_tokens
                before -= 1
            extra = [*range(before + 1, window[0]), *range(window[-1] + 1, after)]
            window[:] = range(before + 1, after)
            taken.update(extra)
        chosen = [j for window in sorted(windows) for j in window]  # selection order = document order
        if not chosen:  # guarantee progress even if a paragraph exceeds the budget
            chosen = [self.regions[regions[0]].first if regions else 0]
        self._next_step += 1
        return Mask(step, budget, tuple(self.paragraphs[j] for j in chosen), long_range and len(windows) == 2)

    def mask(self, step: int) -> Mask:
        """The mask of ``step`` (replays earlier steps if needed; results cached)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        if step in self._cache:
            return self._cache[step]
        if step < self._next_step:  # evicted from cache: replay from scratch
            self._epoch, self._queue, self._next_step, self._cursor = 0, self._epoch_order(0), 0, {}
        while self._next_step <= step:
            mask = self._advance()
            self._cache[mask.step] = mask
        # keep memory flat over thousands of steps: only recent masks matter
        for old in [s for s in self._cache if s < step - 8]:
            del self._cache[old]
        return self._cache[step]


def sample_earlier_pairs(
    pairs: Sequence[QAPair], k: int, seed: int, section_id: str, step: int, *, ascending: bool = False
) -> tuple[QAPair, ...]:
    """Up to ``k`` of the section's pairs made before ``step``, shown in step order.

    ``ascending``: the caller guarantees ``pairs`` are in increasing step order and all before ``step``.

    The most recent pair is always included (it is the likeliest to be repeated next); the others
    are a uniform sample of the older ones.
    """
    if k <= 0:
        return ()
    if ascending:
        # a section's own pairs, appended step by step before this step: the same sample without a pass per step
        earlier, latest, older = pairs, (pairs[-1] if pairs else None), pairs[:-1]
    else:
        earlier = [p for p in pairs if p.step < step]
        latest = max(earlier, key=lambda p: p.step) if earlier else None
        older = [p for p in earlier if p is not latest]
    if latest is None:
        return ()
    if len(earlier) <= k:
        return tuple(sorted(earlier, key=lambda p: p.step))
    picked = derive_rng(seed, section_id, step, "pairs").sample(older, k - 1)
    return tuple(sorted([*picked, latest], key=lambda p: p.step))
