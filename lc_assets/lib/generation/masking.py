"""Context masking: which paragraphs of a chunk (and which earlier pairs) one generation step shows.

The Gradient method shows a short-context model a random *mask* of a long chunk: paragraphs
sampled from the WHOLE chunk, kept in document order, with a marker where text was skipped.
We sample paragraphs *without replacement per epoch*: each section walks a shuffled order of
all its paragraphs and every step takes the next ones that fit its token budget, so after about
``chunk_tokens / budget`` steps every paragraph has been shown once, and coverage stays even over
long runs (pure random sampling leaves gaps in small chunks and over-shows others).

Everything here is deterministic given ``(seed, section_id, step)`` and the chunk text: each
random choice draws from its own hash-derived RNG, never from the global ``random`` state, so a
resumed run regenerates exactly the same masks.
"""

from __future__ import annotations

import hashlib
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


def _raw_spans(text: str) -> list[tuple[int, int]]:
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


def split_paragraphs(text: str, count: TokenCounter, max_paragraph_tokens: int) -> list[Paragraph]:
    """Split a chunk into paragraphs with stable ids and exact generator-token counts.

    Paragraphs are blank-line separated; one longer than ``max_paragraph_tokens`` is split at line,
    sentence or word boundaries so that every piece fits a step's smallest budget.
    """
    if max_paragraph_tokens < 1:
        raise ValueError(f"max_paragraph_tokens must be >= 1, got {max_paragraph_tokens}")
    spans = _raw_spans(text)
    counts = count([text[s:e] for s, e in spans]) if spans else []
    pieces: list[tuple[int, int, int]] = []
    for (start, end), n in zip(spans, counts, strict=True):
        pieces.extend(_split_oversized(text, start, end, n, max_paragraph_tokens, count))
    return [Paragraph(i, _paragraph_id(i, text[s:e]), s, e, text[s:e], n) for i, (s, e, n) in enumerate(pieces)]


@dataclass(frozen=True)
class Mask:
    """What one step shows: sampled paragraphs (selection order kept for the overflow guard)."""

    step: int
    budget_tokens: int
    selected: tuple[Paragraph, ...]  # in selection order: the guard drops from the end

    @property
    def in_document_order(self) -> tuple[Paragraph, ...]:
        return tuple(sorted(self.selected, key=lambda p: p.index))

    @property
    def n_tokens(self) -> int:
        return sum(p.n_tokens for p in self.selected)

    def without_last(self, n: int) -> Mask:
        return Mask(self.step, self.budget_tokens, self.selected[: max(0, len(self.selected) - n)])


def render_mask(paragraphs: Sequence[Paragraph], n_total: int, marker: str = DEFAULT_SKIP_MARKER) -> str:
    """Join paragraphs in document order; ``marker`` stands where text was skipped (also at the edges)."""
    ordered = sorted(paragraphs, key=lambda p: p.index)
    parts: list[str] = []
    prev = -1
    for para in ordered:
        if para.index != prev + 1:
            parts.append(marker)
        parts.append(para.text)
        prev = para.index
    if ordered and prev != n_total - 1:
        parts.append(marker)
    return "\n\n".join(parts)


class SectionMasker:
    """Deterministic masks for one section: step k depends only on (seed, section_id, k) and the chunk.

    Internally the section walks epoch permutations of its paragraphs; the state before step k is
    replayed from step 0 (cheap: integer work only), so a resumed run needs no stored cursor.
    """

    def __init__(
        self,
        section_id: str,
        paragraphs: Sequence[Paragraph],
        seed: int,
        min_tokens: int,
        max_tokens: int,
    ) -> None:
        if not paragraphs:
            raise ValueError(f"section {section_id!r} has no paragraphs to sample")
        if not 1 <= min_tokens <= max_tokens:
            raise ValueError(f"need 1 <= min_tokens <= max_tokens, got {min_tokens}..{max_tokens}")
        self.section_id = section_id
        self.paragraphs = tuple(paragraphs)
        self.seed = seed
        self.min_tokens = min_tokens
        self.max_tokens = max_tokens
        # replay state: the queue of the current epoch and the next step it serves
        self._epoch = 0
        self._queue: list[int] = self._epoch_order(0)
        self._next_step = 0
        self._cache: dict[int, Mask] = {}

    def _epoch_order(self, epoch: int) -> list[int]:
        order = list(range(len(self.paragraphs)))
        derive_rng(self.seed, self.section_id, "epoch", epoch).shuffle(order)
        return order

    def budget(self, step: int) -> int:
        """The step's token budget, uniform in [min_tokens, max_tokens]."""
        return derive_rng(self.seed, self.section_id, step, "budget").randint(self.min_tokens, self.max_tokens)

    def _advance(self) -> Mask:
        step = self._next_step
        budget = self.budget(step)
        remaining = budget
        chosen: list[int] = []
        taken: set[int] = set()
        epochs_started = 0
        while remaining > 0:
            if not self._queue:
                if epochs_started:
                    break  # the whole chunk is smaller than the budget: it is all shown
                # epoch exhausted: start the next shuffled pass over the whole chunk
                self._epoch += 1
                epochs_started += 1
                self._queue = [i for i in self._epoch_order(self._epoch) if i not in taken]
                continue
            picked_pos = None
            for pos, idx in enumerate(self._queue[:_LOOKAHEAD]):
                if self.paragraphs[idx].n_tokens <= remaining:
                    picked_pos = pos
                    break
            if picked_pos is None:
                break  # nothing near the head fits: the rest stays queued for the next steps
            idx = self._queue.pop(picked_pos)
            chosen.append(idx)
            taken.add(idx)
            remaining -= self.paragraphs[idx].n_tokens
        if not chosen:  # guarantee progress even if a paragraph exceeds the budget
            idx = self._queue.pop(0) if self._queue else 0
            chosen.append(idx)
        self._next_step += 1
        return Mask(step, budget, tuple(self.paragraphs[i] for i in chosen))

    def mask(self, step: int) -> Mask:
        """The mask of ``step`` (replays earlier steps if needed; results cached)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        if step in self._cache:
            return self._cache[step]
        if step < self._next_step:  # evicted from cache: replay from scratch
            self._epoch, self._queue, self._next_step = 0, self._epoch_order(0), 0
        while self._next_step <= step:
            mask = self._advance()
            self._cache[mask.step] = mask
        # keep memory flat over thousands of steps: only recent masks matter
        for old in [s for s in self._cache if s < step - 8]:
            del self._cache[old]
        return self._cache[step]


def sample_earlier_pairs(pairs: Sequence[QAPair], k: int, seed: int, section_id: str, step: int) -> tuple[QAPair, ...]:
    """Up to ``k`` of the section's pairs made before ``step``, shown in step order.

    The most recent pair is always included (it is the likeliest to be repeated next); the others
    are a uniform sample of the older ones.
    """
    earlier = [p for p in pairs if p.step < step]
    if k <= 0 or not earlier:
        return ()
    if len(earlier) <= k:
        return tuple(sorted(earlier, key=lambda p: p.step))
    latest = max(earlier, key=lambda p: p.step)
    older = [p for p in earlier if p is not latest]
    picked = derive_rng(seed, section_id, step, "pairs").sample(older, k - 1)
    return tuple(sorted([*picked, latest], key=lambda p: p.step))
