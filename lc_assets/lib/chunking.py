"""Cut documents into contiguous token-bounded chunks at natural boundaries, in linear time.

A document is encoded once (ids + character offsets). Documents longer than
`SEGMENT_CHARS` are encoded as pieces cut at likely pre-token boundaries, several pieces
per parallel batch: memory stays bounded, both cores work on one long document and
progress can be reported between batches. Every cut point is then found from those
offsets: the boundary regexes run over a character window around the ideal cut, and each
candidate position is mapped to its token by binary search over token start offsets
(`Encoding.token_to_chars` is O(1); `char_to_token` scans and is never used). Boundaries
fall back from paragraph to line, sentence, whitespace and finally token boundaries, so
no token is split and the chunks joined give back the document exactly.

Counts are exact. A cut (or a piece seam) is verified by encoding a window of ~48 tokens
on each side alone, each window starting and ending at a pre-token boundary of the
document's encoding; a chunk whose edges and seams all verify has exactly the tokens of
the document's encoding that it covers. Any other chunk is encoded alone to count it, and
the reason is recorded (`RECOUNT_REASONS`).
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
from pydantic import model_validator
from tokenizers import Encoding

from lc_assets.lib.generation.masking import paragraph_spans, spans_digest
from lc_assets.lib.stepconfig import StepConfig
from lc_assets.lib.tokenizer import TextTokenizer

CutKind = Literal["paragraph", "line", "sentence", "whitespace", "token", "end"]
RecountReason = Literal["cut_unverified", "seam_unverified"]

#: what each cut kind means (shown with the counts in the chunks metadata)
CUT_KINDS: dict[str, str] = {
    "paragraph": "after a blank line",
    "line": "after a line break: no blank line within the bounds",
    "sentence": "after . ! or ? (and closing quotes/brackets), before the space: no line break within the bounds",
    "whitespace": "before a space between words: no sentence end within the bounds",
    "token": "at a pre-token boundary of the target tokenizer: no whitespace within the bounds (minified code, "
    "long runs without spaces)",
    "end": "the end of the document (the last chunk)",
}

#: why a chunk's count came from encoding it alone instead of from the document's encoding
RECOUNT_REASONS: dict[str, str] = {
    "cut_unverified": "at one of the chunk's cuts the text on either side, encoded alone, does not give the "
    "document's tokens (a token or pre-token spans the cut, e.g. a cut inside a long run of letters or digits "
    "with no other boundary, or a tokenizer that marks the start of a text)",
    "seam_unverified": "a very long document is encoded in pieces; at a piece boundary inside this chunk the "
    "tokens differ from the encoding across it",
}

#: documents longer than this (characters) are encoded in pieces of about this size, four pieces per
#: parallel batch (bounds the tokenizer's working memory, ~150 bytes per character encoded at once)
SEGMENT_CHARS = 1 << 20

# A boundary is the character position where the next chunk starts. Cuts go right after
# newlines and right before spaces: a chunk must not end in spaces or indentation, whose
# tokens merge differently at the end of a text than in the middle of it.
_BOUNDARY_PATTERNS: tuple[tuple[CutKind, re.Pattern[str]], ...] = (
    ("paragraph", re.compile(r"\n[ \t]*\n+(?=.)", re.DOTALL)),
    ("line", re.compile(r"\n+(?=.)", re.DOTALL)),
    ("sentence", re.compile(r"[.!?][\"')\]]*(?=[ \t]+\S)")),
    ("whitespace", re.compile(r"(?<=\S)(?=[ \t]+\S)")),
)
# where a long document is split into pieces: after a line break, else before a space between words
_SEAM_PATTERNS = (re.compile(r"\n+(?=\S)"), re.compile(r"(?<=\w)(?= \w)"), re.compile(r"(?<=\w)(?=[^\w\s])"))
_SEAM_SEARCH_CHARS = 1 << 16

_VERIFY_WINDOW_TOKENS = 48
_ANCHOR_SEARCH_TOKENS = 4096  # how far a window edge may move to reach a pre-token boundary
_CANDIDATES_PER_CUT = 16  # nearest boundaries tried (verified) before a cut is taken unverified
_TOKEN_FALLBACK_SCAN = 4096


class ChunkingConfig(StepConfig):
    """Bounds of a chunk, in target-tokenizer tokens."""

    min_tokens: int = 50_000
    max_tokens: int = 150_000
    #: preferred chunk size; None splits a document into equal parts within the bounds
    target_tokens: int | None = None
    #: at most this many documents per batch (one transaction each); does not change results. Large, so many
    #: tiny files do not pay a DuckDB read and a transaction per few documents (batch_chars bounds memory)
    batch_documents: int = 1024
    #: at most this many characters of text per batch (memory bound); does not change results
    batch_chars: int = 64 * 1024 * 1024

    HASH_EXCLUDE = frozenset({"batch_documents", "batch_chars"})

    @model_validator(mode="after")
    def _check_bounds(self) -> ChunkingConfig:
        if self.min_tokens < 1:
            raise ValueError(f"min_tokens must be >= 1, got {self.min_tokens}")
        if self.max_tokens < self.min_tokens:
            raise ValueError(f"max_tokens ({self.max_tokens}) must be >= min_tokens ({self.min_tokens})")
        if self.target_tokens is not None and not self.min_tokens <= self.target_tokens <= self.max_tokens:
            raise ValueError(
                f"target_tokens ({self.target_tokens}) must lie within [{self.min_tokens}, {self.max_tokens}]"
            )
        if self.batch_documents < 1:
            raise ValueError(f"batch_documents must be >= 1, got {self.batch_documents}")
        if self.batch_chars < 1:
            raise ValueError(f"batch_chars must be >= 1, got {self.batch_chars}")
        return self


@dataclass(frozen=True)
class ChunkSpan:
    index: int
    char_start: int
    char_end: int
    token_start: int  # position in the document's encoding (for pieces: their concatenation)
    token_end: int
    n_tokens: int  # exact count of text[char_start:char_end] encoded alone
    cut: CutKind  # the kind of boundary that ends this chunk
    recount_reason: RecountReason | None = None  # None: counted from the document's encoding, edges verified
    #: target tokens of each blank-line paragraph of the chunk (`masking.paragraph_spans` of its text), each as
    #: the paragraph encoded alone counts it (see `_paragraph_counts`)
    paragraph_tokens: tuple[int, ...] = ()
    paragraph_spans_digest: str = ""  # masking.spans_digest of those paragraphs


@dataclass(frozen=True)
class DocumentChunking:
    n_tokens: int
    spans: tuple[ChunkSpan, ...]
    filtered_reason: str | None = None  # e.g. "below_min_tokens"
    pieces: int = 1  # encoded in this many pieces (long documents)
    unverified_seams: int = 0


def chunk_id(document_id: str, char_start: int, char_end: int) -> str:
    return hashlib.sha256(f"{document_id}:{char_start}:{char_end}".encode()).hexdigest()[:32]


def _plan_chunk_count(n_tokens: int, cfg: ChunkingConfig) -> int:
    """Aim at the target (default: the middle of the bounds) so each cut has room to find a boundary."""
    target = cfg.target_tokens or (cfg.min_tokens + cfg.max_tokens) / 2
    fewest, most = math.ceil(n_tokens / cfg.max_tokens), max(1, n_tokens // cfg.min_tokens)
    return max(1, min(max(round(n_tokens / target), fewest), most))


def segment_starts(text: str, segment_chars: int | None = None) -> list[int]:
    """Character positions where the pieces of a long document start (always [0, ...])."""
    segment_chars = segment_chars or SEGMENT_CHARS
    starts = [0]
    while len(text) - starts[-1] > segment_chars + segment_chars // 2:
        target = starts[-1] + segment_chars
        for pattern in _SEAM_PATTERNS:
            m = pattern.search(text, target, target + _SEAM_SEARCH_CHARS)
            if m:
                starts.append(m.end())
                break
        else:  # no line break or word gap nearby: any position (the seam check will tell)
            starts.append(target)
    return starts


@dataclass
class _Piece:
    char_start: int
    token_start: int
    enc: Encoding
    _ids: list[int] | None = field(default=None, repr=False)

    @property
    def ids(self) -> list[int]:
        if self._ids is None:
            self._ids = self.enc.ids
        return self._ids

    @cached_property
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Document char start, char end and pre-token ("word") of each token (words unique to this piece)."""
        offsets = np.asarray(self.enc.offsets, dtype=np.int64).reshape(-1, 2) + self.char_start
        # shifted by the piece's first token, so no two pieces share a word; a token of no word (None) is a word
        # of its own (negative, distinct)
        t0 = self.token_start
        words = np.asarray([t0 + w if w is not None else -1 - t0 - i for i, w in enumerate(self.enc.word_ids)])
        return offsets[:, 0], offsets[:, 1], words


class _DocTokens:
    """The document's token sequence over its encoded pieces: O(1) offsets, O(log n) char -> token."""

    def __init__(self, text: str, pieces: list[_Piece]) -> None:
        self.text = text
        self.pieces = pieces
        self.piece_token_starts = [p.token_start for p in pieces]
        last = pieces[-1]
        self.n = last.token_start + len(last.enc)
        self.bad_seams: set[int] = set()  # token indices of seams whose encoding across differs

    def _piece(self, t: int) -> _Piece:
        return self.pieces[bisect.bisect_right(self.piece_token_starts, t) - 1]

    def char_of(self, t: int) -> int:
        """Start offset of token t (len(text) for t == n)."""
        if t >= self.n:
            return len(self.text)
        p = self._piece(t)
        return p.char_start + p.enc.token_to_chars(t - p.token_start)[0]

    def end_of(self, t: int) -> int:
        p = self._piece(t)
        return p.char_start + p.enc.token_to_chars(t - p.token_start)[1]

    def token_at(self, char: int) -> int | None:
        """The token that starts exactly at `char`, or None when `char` is inside a token."""
        t = bisect.bisect_left(range(self.n), char, key=self.char_of)
        if t < self.n and self.char_of(t) == char:
            return t
        return None

    def is_boundary(self, t: int) -> bool:
        """Token t starts a pre-token of the encoding (no token or character spans the position)."""
        if t <= 0 or t >= self.n:
            return True
        p = self._piece(t)
        local = t - p.token_start
        if local == 0:  # a piece seam: chosen at a likely pre-token boundary, then checked
            return t not in self.bad_seams
        if self.end_of(t - 1) > self.char_of(t):  # byte pieces of one character
            return False
        word, prev = p.enc.token_to_word(local), p.enc.token_to_word(local - 1)
        return word is None or word != prev

    def arrays(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`_Piece.arrays` of tokens a..b-1 over the pieces they lie in."""
        parts = [
            [arr[max(a, p.token_start) - p.token_start : min(b, p.token_start + len(p.enc)) - p.token_start]
             for arr in p.arrays]
            for p in self.pieces[bisect.bisect_right(self.piece_token_starts, a) - 1 :]
            if p.token_start < b
        ]  # fmt: skip
        return tuple(np.concatenate([part[i] for part in parts]) for i in range(3))  # type: ignore[return-value]

    def ids(self, a: int, b: int) -> list[int]:
        out: list[int] = []
        for p in self.pieces[bisect.bisect_right(self.piece_token_starts, a) - 1 :]:
            if p.token_start >= b:
                break
            lo, hi = max(a, p.token_start) - p.token_start, min(b, p.token_start + len(p.enc)) - p.token_start
            out.extend(p.ids[lo:hi])
        return out


class _DocCutter:
    def __init__(self, text: str, tokens: _DocTokens, tokenizer: TextTokenizer) -> None:
        self.text = text
        self.tok = tokens
        self.tokenizer = tokenizer

    def candidates(self, lo_tok: int, hi_tok: int, ideal_tok: int) -> tuple[CutKind, list[tuple[int, int]]]:
        """(kind, [(token, char)] nearest the ideal first) of the best boundary kind in [lo_tok, hi_tok].

        Searches a growing window around the ideal position, so a cut costs work in
        proportion to the distance to the nearest boundary, not to the document size.
        """
        tok = self.tok
        ideal_char = tok.char_of(ideal_tok)
        for radius in (1024, 16384, max(hi_tok - lo_tok, 1)):
            a, b = max(lo_tok, ideal_tok - radius), min(hi_tok, ideal_tok + radius)
            lo_char, hi_char = tok.char_of(a), tok.char_of(b)
            for kind, pattern in _BOUNDARY_PATTERNS:
                positions = [m.end() for m in pattern.finditer(self.text, lo_char, hi_char + 1)]
                positions.sort(key=lambda p: abs(p - ideal_char))
                found: list[tuple[int, int]] = []
                for p in positions:
                    t = tok.token_at(p)
                    if t is not None and a <= t <= b and tok.is_boundary(t):
                        found.append((t, p))
                        if len(found) == _CANDIDATES_PER_CUT:
                            break
                if found:
                    return kind, found
        # no whitespace at all: the nearest pre-token boundaries (never mid-token)
        found = []
        for d in range(_TOKEN_FALLBACK_SCAN):
            for t in {ideal_tok - d, ideal_tok + d}:
                if lo_tok <= t <= hi_tok and tok.is_boundary(t):
                    found.append((t, tok.char_of(t)))
            if len(found) >= _CANDIDATES_PER_CUT:
                break
        if not found:  # one pre-token longer than the scan (a run of letters): any token start
            t = next(
                (t for d in range(hi_tok - lo_tok + 1) for t in (ideal_tok - d, ideal_tok + d)
                 if lo_tok <= t <= hi_tok and (t == 0 or tok.end_of(t - 1) <= tok.char_of(t))),
                ideal_tok,
            )  # fmt: skip
            found = [(t, tok.char_of(t))]
        return "token", found

    def _anchor(self, t: int, step: int, limit: int) -> int | None:
        """The nearest pre-token boundary from t in direction `step`, not past `limit`."""
        for _ in range(_ANCHOR_SEARCH_TOKENS):
            if (step < 0 and t <= limit) or (step > 0 and t >= limit):
                return limit
            if self.tok.is_boundary(t):
                return t
            t += step
        return None

    def _window(self, t: int, floor_tok: int) -> tuple[int, int] | None:
        w = _VERIFY_WINDOW_TOKENS
        left = self._anchor(t - w, -1, floor_tok)
        right = self._anchor(t + w, +1, self.tok.n)
        return None if left is None or right is None else (left, right)

    def verified(self, t: int, p: int, floor_tok: int = 0) -> bool:
        """Encoding each side alone near the cut gives the document's tokens there."""
        window = self._window(t, floor_tok)
        if window is None:
            return False
        left, right = window
        left_ids, right_ids = self.tokenizer.encode_batch(
            [self.text[self.tok.char_of(left) : p], self.text[p : self.tok.char_of(right)]]
        )
        return left_ids == self.tok.ids(left, t) and right_ids == self.tok.ids(t, right)

    def seam_verified(self, t: int) -> bool:
        """Encoding across a piece seam gives the two pieces' tokens joined."""
        window = self._window(t, 0)
        if window is None:
            return False
        left, right = window
        (ids,) = self.tokenizer.encode_batch([self.text[self.tok.char_of(left) : self.tok.char_of(right)]])
        return ids == self.tok.ids(left, right)


def _cut_document(
    text: str, tokens: _DocTokens, tokenizer: TextTokenizer, cfg: ChunkingConfig
) -> tuple[DocumentChunking, list[int]]:
    """Spans of one document; returns (result with provisional counts, indices of spans to recount)."""
    n = tokens.n
    if n < cfg.min_tokens:
        return DocumentChunking(n, (), "below_min_tokens", len(tokens.pieces)), []
    cutter = _DocCutter(text, tokens, tokenizer)
    tokens.bad_seams = {p.token_start for p in tokens.pieces[1:] if not cutter.seam_verified(p.token_start)}
    bad_seams = [tokens.char_of(t) for t in sorted(tokens.bad_seams)]
    k = _plan_chunk_count(n, cfg)
    cuts: list[tuple[int, int, CutKind, bool]] = []  # (token, char, kind, verified)
    prev = 0
    for i in range(1, k):
        remaining = k - i  # chunks after this cut
        lo = max(prev + cfg.min_tokens, n - remaining * cfg.max_tokens)
        hi = min(prev + cfg.max_tokens, n - remaining * cfg.min_tokens)
        ideal = prev + round((n - prev) / (remaining + 1))
        if lo > hi:  # bounds cannot both hold (tiny min/max gap): favour the max bound
            lo = hi = min(prev + cfg.max_tokens, n - 1)
        kind, found = cutter.candidates(lo, hi, min(max(ideal, lo), hi))
        chosen = next(((t, p, True) for t, p in found if cutter.verified(t, p, prev)), None)
        t, p, ok = chosen or (found[0][0], found[0][1], False)
        cuts.append((t, p, kind, ok))
        prev = t
    spans: list[ChunkSpan] = []
    recount: list[int] = []
    start_tok, start_char, start_ok = 0, 0, True
    for idx, (t, p, kind, ok) in enumerate([*cuts, (n, len(text), "end", True)]):
        reason: RecountReason | None = None
        if not (start_ok and ok):
            reason = "cut_unverified"
        elif any(start_char < c < p for c in bad_seams):
            reason = "seam_unverified"
        if reason:
            recount.append(idx)
        spans.append(ChunkSpan(idx, start_char, p, start_tok, t, t - start_tok, kind, reason))  # type: ignore[arg-type]
        start_tok, start_char, start_ok = t, p, ok
    return DocumentChunking(n, tuple(spans), None, len(tokens.pieces), len(bad_seams)), recount


def _paragraph_counts(
    text: str, tokens: _DocTokens, span: ChunkSpan
) -> tuple[list[int], list[tuple[int, int, int, int]]]:
    """Target tokens of each of the chunk's paragraphs from the document's encoding, and what to encode alone.

    A paragraph counts the document's tokens that overlap it, except where a pre-token ("word") of the
    document's encoding crosses one of its edges (a punctuation run that takes the blank line, `).\n\n`; a space
    before its first word): the part of that word inside the paragraph is encoded alone and replaces the word's
    tokens. A paragraph holding a piece seam that did not verify, one word over both edges, or at the edge of a
    chunk whose cut did not verify is encoded alone whole. So each count is the paragraph's own count, as `split_paragraphs` takes
    it (measured equal on every paragraph of the embedded corpus with Llama-3), at the cost of encoding a few
    characters per crossing edge instead of the chunk again.

    Returns the counts and the fixes ``(paragraph, char_start, char_end, tokens it replaces)``, in document chars.
    """
    spans = paragraph_spans(text[span.char_start : span.char_end])
    if not spans:
        return [], []
    lo, hi = max(0, span.token_start - 1), min(tokens.n, span.token_end + 1)
    starts, ends, words = tokens.arrays(lo, hi)
    first = np.fromiter((s for s, _ in spans), np.int64, len(spans)) + span.char_start
    last = np.fromiter((e for _, e in spans), np.int64, len(spans)) + span.char_start
    i0 = np.searchsorted(ends, first, "right")  # the first token that ends inside the paragraph
    i1 = np.searchsorted(starts, last, "left")  # past the last token that starts inside it
    counts = (i1 - i0).tolist()
    n = len(words)
    ia, ib = np.minimum(i0, n - 1), np.maximum(i1 - 1, 0)  # first and last token (clamped: no token inside)
    none = np.int64(-(1 << 62))
    prev_word = np.where(i0 > 0, words[np.maximum(i0 - 1, 0)], none)
    next_word = np.where(i1 < n, words[np.minimum(i1, n - 1)], none)
    lead = (starts[ia] < first) | (prev_word == words[ia])
    trail = (ends[ib] > last) | (next_word == words[ib])
    # piece seams whose tokens differ from the encoding across them (verified seams give the document's tokens)
    seams = [tokens.char_of(t) for t in tokens.bad_seams]
    alone = set(np.flatnonzero(i0 >= i1).tolist())
    if span.recount_reason == "cut_unverified":
        alone |= {0, len(spans) - 1}
    fixes: list[tuple[int, int, int, int]] = []
    for k in sorted(set(np.flatnonzero(lead | trail).tolist()) | alone):
        a, b, s, e = int(i0[k]), int(i1[k]), int(first[k]), int(last[k])
        if k in alone or words[a] == words[b - 1] or any(s < c < e for c in seams):
            fixes.append((k, s, e, max(0, b - a)))
            continue
        lead_end, trail_start = a - 1, b  # tokens a..lead_end and trail_start..b-1 are encoded again
        if lead[k]:  # the first word's tokens in the paragraph, and the next word's: alone, the first word can
            # take the next one in (`@property` after indentation is ` @` + `property` in the document)
            lead_end = a
            for next_word in (False, True):
                if next_word and lead_end + 1 < b:
                    lead_end += 1
                while lead_end + 1 < b and words[lead_end + 1] == words[lead_end]:
                    lead_end += 1
        if trail[k]:  # the last word's tokens
            trail_start = b - 1
            while trail_start - 1 >= a and words[trail_start - 1] == words[b - 1]:
                trail_start -= 1
        if trail_start <= lead_end:  # the two fragments meet: the paragraph alone
            fixes.append((k, s, e, b - a))
            continue
        if lead[k]:
            fixes.append((k, s, int(ends[lead_end]), lead_end + 1 - a))
        if trail[k]:
            fixes.append((k, int(starts[trail_start]), e, b - trail_start))
    return counts, fixes


def _with_paragraph_counts(
    text: str, tokens: _DocTokens, tokenizer: TextTokenizer, result: DocumentChunking
) -> DocumentChunking:
    """The document's spans with their paragraphs' target-token counts (one batched call for the fixes)."""
    per_span = [_paragraph_counts(text, tokens, sp) for sp in result.spans]
    fixes = [(j, *f) for j, (_, fx) in enumerate(per_span) for f in fx]
    fixed = tokenizer.count_batch([text[s:e] for _, _, s, e, _ in fixes])
    for (j, k, _, _, replaced), n in zip(fixes, fixed, strict=True):
        per_span[j][0][k] += n - replaced
    spans = tuple(
        dataclasses.replace(
            sp,
            paragraph_tokens=tuple(counts),
            paragraph_spans_digest=spans_digest(paragraph_spans(text[sp.char_start : sp.char_end])),
        )
        for sp, (counts, _) in zip(result.spans, per_span, strict=True)
    )
    return dataclasses.replace(result, spans=spans)


def chunk_documents(
    texts: Sequence[str],
    tokenizer: TextTokenizer,
    cfg: ChunkingConfig,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[DocumentChunking]:
    """Chunk many documents: pieces encoded in parallel batches, each document cut as soon as it is encoded.

    `on_progress(tokens, documents)` is called after every encoded batch with what it added.
    """
    pieces = [(d, s, e) for d, text in enumerate(texts) for s, e in _piece_bounds(text)]
    encoded: dict[int, list[_Piece]] = {}
    results: list[DocumentChunking] = []
    recounts: list[tuple[int, int]] = []  # (document, span index)

    def cut_next() -> None:
        d = len(results)
        doc_pieces = encoded.pop(d, None) or [_Piece(0, 0, tokenizer.encodings([""])[0])]
        doc_tokens = _DocTokens(texts[d], doc_pieces)
        result, recount = _cut_document(texts[d], doc_tokens, tokenizer, cfg)
        results.append(_with_paragraph_counts(texts[d], doc_tokens, tokenizer, result))
        recounts.extend((d, j) for j in recount)

    i = 0
    while i < len(pieces):
        group, size = [], 0
        while i < len(pieces) and (not group or size + pieces[i][2] - pieces[i][1] <= 4 * SEGMENT_CHARS):
            group.append(pieces[i])
            size += pieces[i][2] - pieces[i][1]
            i += 1
        encodings = tokenizer.encodings([texts[d][s:e] for d, s, e in group])
        for (d, s, _), enc in zip(group, encodings, strict=True):
            doc_pieces = encoded.setdefault(d, [])
            token_start = doc_pieces[-1].token_start + len(doc_pieces[-1].enc) if doc_pieces else 0
            doc_pieces.append(_Piece(s, token_start, enc))
        done_before = len(results)
        # documents whose last piece is encoded are cut now, and their encodings freed
        while len(results) < len(texts) and (i == len(pieces) or pieces[i][0] > len(results)):
            cut_next()
        if on_progress:
            on_progress(sum(len(e) for e in encodings), len(results) - done_before)
    while len(results) < len(texts):  # only empty texts are left
        cut_next()
    if recounts:
        counts = tokenizer.count_batch(
            [texts[d][sp.char_start : sp.char_end] for d, j in recounts for sp in [results[d].spans[j]]]
        )
        for (d, j), count in zip(recounts, counts, strict=True):
            spans = list(results[d].spans)
            spans[j] = dataclasses.replace(spans[j], n_tokens=count)
            results[d] = dataclasses.replace(results[d], spans=tuple(spans))
    return results


def _piece_bounds(text: str) -> list[tuple[int, int]]:
    starts = segment_starts(text)
    return [(s, e) for s, e in zip(starts, [*starts[1:], len(text)], strict=True) if e > s]
