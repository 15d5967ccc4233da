"""Cut documents into contiguous token-bounded chunks at natural boundaries.

A document is encoded once (ids + character offsets, batch-parallel); cut points are
chosen among paragraph, then line, then sentence, then whitespace boundaries that
are also token boundaries, so no token is split and the chunks joined give back the
document exactly. A chunk's token count is the number of whole-document tokens it
covers; each cut is verified by re-encoding a small window on both sides, and a
chunk whose cut fails that check is counted by encoding it whole. Counts are exact.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import model_validator
from tokenizers import Encoding

from lc_assets.lib.stepconfig import StepConfig
from lc_assets.lib.tokenizer import TextTokenizer

CutKind = Literal["paragraph", "line", "sentence", "whitespace", "token", "end"]

# A boundary is the character position where the next chunk starts. Cuts go right after
# newlines and right before spaces: a chunk must not end in spaces or indentation, whose
# tokens merge differently at the end of a text than in the middle of it.
_BOUNDARY_PATTERNS: tuple[tuple[CutKind, re.Pattern[str]], ...] = (
    ("paragraph", re.compile(r"\n[ \t]*\n+(?=.)", re.DOTALL)),
    ("line", re.compile(r"\n+(?=.)", re.DOTALL)),
    ("sentence", re.compile(r"[.!?][\"')\]]*(?=[ \t]+\S)")),
    ("whitespace", re.compile(r"(?<=\S)(?=[ \t]+\S)")),
)

_VERIFY_WINDOW_TOKENS = 48


class ChunkingConfig(StepConfig):
    """Bounds of a chunk, in target-tokenizer tokens."""

    min_tokens: int = 50_000
    max_tokens: int = 150_000
    #: preferred chunk size; None splits a document into equal parts within the bounds
    target_tokens: int | None = None
    #: documents encoded per batch (memory bound); does not change results
    batch_documents: int = 32

    HASH_EXCLUDE = frozenset({"batch_documents"})

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
        return self


@dataclass(frozen=True)
class ChunkSpan:
    index: int
    char_start: int
    char_end: int
    token_start: int
    token_end: int
    n_tokens: int  # exact count of text[char_start:char_end] encoded alone
    cut: CutKind  # the kind of boundary that ends this chunk
    verified_by_window: bool  # False: counted by a full re-encode


@dataclass(frozen=True)
class DocumentChunking:
    n_tokens: int
    spans: tuple[ChunkSpan, ...]
    filtered_reason: str | None = None  # e.g. "below_min_tokens"


def chunk_id(document_id: str, char_start: int, char_end: int) -> str:
    return hashlib.sha256(f"{document_id}:{char_start}:{char_end}".encode()).hexdigest()[:32]


def _plan_chunk_count(n_tokens: int, cfg: ChunkingConfig) -> int:
    """Aim at the target (default: the middle of the bounds) so each cut has room to find a boundary."""
    target = cfg.target_tokens or (cfg.min_tokens + cfg.max_tokens) / 2
    fewest, most = math.ceil(n_tokens / cfg.max_tokens), max(1, n_tokens // cfg.min_tokens)
    return max(1, min(max(round(n_tokens / target), fewest), most))


class _DocCutter:
    def __init__(self, text: str, enc: Encoding, tokenizer: TextTokenizer) -> None:
        self.text = text
        self.enc = enc
        self.ids = enc.ids
        self.n = len(enc.ids)
        self.tokenizer = tokenizer

    def char_of_token(self, t: int) -> int:
        if t >= self.n:
            return len(self.text)
        return self.enc.token_to_chars(t)[0]

    def token_at_char(self, p: int) -> int | None:
        """Token index that starts exactly at char p, or None if p is inside a token."""
        t = self.enc.char_to_token(p)
        if t is None or self.enc.token_to_chars(t)[0] != p:
            return None
        # several tokens can share a start offset (byte-level pieces of one char): take the first
        while t > 0 and self.enc.token_to_chars(t - 1)[0] == p:
            t -= 1
        return t

    def candidates(self, lo_tok: int, hi_tok: int, ideal_tok: int) -> tuple[CutKind, list[tuple[int, int]]]:
        """(kind, [(token, char)] nearest the ideal first) of the best boundary kind in [lo_tok, hi_tok].

        Searches a growing window around the ideal position, so a cut costs work in
        proportion to the distance to the nearest boundary, not to the chunk size.
        """
        for radius in (1024, 16384, max(hi_tok - lo_tok, 1)):
            a, b = max(lo_tok, ideal_tok - radius), min(hi_tok, ideal_tok + radius)
            lo_char, hi_char = self.char_of_token(a), self.char_of_token(b)
            for kind, pattern in _BOUNDARY_PATTERNS:
                found: list[tuple[int, int]] = []
                for m in pattern.finditer(self.text, lo_char, hi_char + 1):
                    t = self.token_at_char(m.end())
                    if t is not None and a <= t <= b:
                        found.append((t, m.end()))
                if found:
                    found.sort(key=lambda tp: abs(tp[0] - ideal_tok))
                    return kind, found
        # no natural boundary at all: any token start (never mid-token)
        tokens = sorted(range(lo_tok, hi_tok + 1), key=lambda t: abs(t - ideal_tok))[:64]
        return "token", [(t, self.char_of_token(t)) for t in tokens]

    def _line_start_token_before(self, char: int) -> tuple[int, int] | None:
        """The nearest line start at or before `char` that is also a token start."""
        for _ in range(8):
            nl = self.text.rfind("\n", 0, char)
            if nl < 0:
                return 0, 0
            t = self.token_at_char(nl + 1)
            if t is not None:
                return t, nl + 1
            char = nl
        return None

    def _line_end_token_after(self, char: int) -> tuple[int, int] | None:
        """The nearest newline at or after `char` that starts a token (or the end of text)."""
        for _ in range(8):
            nl = self.text.find("\n", char)
            if nl < 0:
                return self.n, len(self.text)
            t = self.token_at_char(nl)
            if t is not None:
                return t, nl
            char = nl + 1
        return None

    def cut_is_stable(self, t: int, p: int) -> bool:
        """Encoding each side alone near the cut gives the whole-document tokens there.

        Windows start and end at line breaks that are token starts, so each begins on a
        pre-token boundary of the whole-document encoding.
        """
        w = _VERIFY_WINDOW_TOKENS
        left = self._line_start_token_before(self.char_of_token(max(0, t - w)))
        right = self._line_end_token_after(self.char_of_token(min(self.n, t + w)))
        if left is None or right is None:
            return False
        (left_tok, left_char), (right_tok, right_char) = left, right
        left_ids, right_ids = self.tokenizer.encode_batch([self.text[left_char:p], self.text[p:right_char]])
        return left_ids == self.ids[left_tok:t] and right_ids == self.ids[t:right_tok]


def chunk_encoded_document(text: str, enc: Encoding, tokenizer: TextTokenizer, cfg: ChunkingConfig) -> DocumentChunking:
    """Chunk one document given its whole-text encoding."""
    n = len(enc.ids)
    if n < cfg.min_tokens:
        return DocumentChunking(n, (), "below_min_tokens")
    cutter = _DocCutter(text, enc, tokenizer)
    k = _plan_chunk_count(n, cfg)
    cuts: list[tuple[int, int, CutKind, bool]] = []  # (token, char, kind, stable)
    prev = 0
    for i in range(1, k):
        remaining = k - i  # chunks after this cut
        lo = max(prev + cfg.min_tokens, n - remaining * cfg.max_tokens)
        hi = min(prev + cfg.max_tokens, n - remaining * cfg.min_tokens)
        ideal = prev + round((n - prev) / (remaining + 1))
        if lo > hi:  # bounds cannot both hold (tiny min/max gap): favour the max bound
            lo = hi = min(prev + cfg.max_tokens, n - 1)
        kind, found = cutter.candidates(lo, hi, min(max(ideal, lo), hi))
        chosen = next(((t, p, True) for t, p in found[:16] if cutter.cut_is_stable(t, p)), None)
        t, p, stable = chosen or (found[0][0], found[0][1], False)
        cuts.append((t, p, kind, stable))
        prev = t
    spans: list[ChunkSpan] = []
    start_tok, start_char, start_stable = 0, 0, True
    for idx, (t, p, kind, stable) in enumerate([*cuts, (n, len(text), "end", True)]):
        exact = start_stable and stable
        n_tok = t - start_tok if exact else tokenizer.count(text[start_char:p])
        spans.append(ChunkSpan(idx, start_char, p, start_tok, t, n_tok, kind, exact))  # type: ignore[arg-type]
        start_tok, start_char, start_stable = t, p, stable
    return DocumentChunking(n, tuple(spans))


def chunk_documents(texts: Sequence[str], tokenizer: TextTokenizer, cfg: ChunkingConfig) -> list[DocumentChunking]:
    """Chunk many documents; one parallel batch encode for all of them."""
    encodings = tokenizer.encodings(texts)
    return [chunk_encoded_document(t, e, tokenizer, cfg) for t, e in zip(texts, encodings, strict=True)]
