"""Quality and near-duplicate filters for long documents: measured values, thresholds, reasons.

The rules are Gopher's (Rae et al. 2021, table A1: duplicate line/paragraph fractions, top
n-gram character share, duplicate n-gram character fraction), a minimum distinct-word ratio,
a language check (lingua) and near-duplicate removal (MinHash + LSH from datasketch).

Gopher's thresholds were set for web pages. Documents here are books, manuals and code of
50k-1M tokens, where legitimate repetition grows with length (headings, license headers,
`self.` in code): on the embedded corpus (CPython stdlib source and docs, PostgreSQL and
Debian manuals) duplicate-line fractions reach 0.36 and duplicate 5-gram character fractions
0.68. The defaults keep Gopher's top n-gram shares (those documents stay under 0.06) and
raise the others above what that corpus shows, so they catch degenerate text (one word
repeated, numbered filler, the same line over and over), not long documents.

Every document gets every measured value (`stats`); a dropped one gets each rule that fired
with its value and threshold. Word n-grams are hashed with numpy, so a million-word document
costs seconds, not the gigabytes that lists of n-gram strings would take.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
from pydantic import model_validator

from lc_assets.lib.stepconfig import StepConfig

_WORD = re.compile(r"\w+|[^\w\s]+")
_PARAGRAPH_SPLIT = re.compile(r"\n[ \t]*\n+")
_MINHASH_BATCH = 16_384  # shingles per MinHash update (a batch x num_perm matrix of uint64)


class FilterConfig(StepConfig):
    """Thresholds of the quality and near-duplicate filters (None switches a rule off)."""

    #: documents with fewer words are kept without measuring (too short for the statistics; chunks' length
    #: filter drops them anyway)
    min_words: int = 200
    # Gopher repetition rules: fraction of lines/paragraphs that repeat an earlier one, and the
    # characters they hold (Gopher 0.30/0.30/0.20/0.20; raised for long documents, see module doc)
    #: off: a count weighs a closing brace like a paragraph. Books and API docs with code examples repeat short
    #: lines ("}", "```", "$ cargo run") without repeating text: the Rust book (dup_line_frac 0.506, 12% of its
    #: characters in repeated lines) and Node's fs.md (0.558, 43%) were dropped by this rule alone. Repeated
    #: text is what dup_line_char_frac measures.
    dup_line_frac: float | None = None
    #: off for the same reason: API references repeat short parameter paragraphs ("callback <Function>",
    #: "Added in: v0.1.29"); Node's fs.html was dropped by it alone (0.526 of paragraphs, 31% of characters).
    #: Repeated paragraphs of text are what dup_para_char_frac measures.
    dup_para_frac: float | None = None
    dup_line_char_frac: float | None = 0.5
    dup_para_char_frac: float | None = 0.4
    # characters in occurrences of the most frequent 2/3/4-gram (Gopher's values)
    top_2gram_char_frac: float | None = 0.20
    top_3gram_char_frac: float | None = 0.18
    top_4gram_char_frac: float | None = 0.16
    # characters of words covered by 5/10-grams that occur more than once (Gopher 0.15/0.10; raised)
    dup_5gram_char_frac: float | None = 0.85
    dup_10gram_char_frac: float | None = 0.75
    #: mean of distinct words / words over windows of `distinct_window_words` words
    min_distinct_word_ratio: float | None = 0.1
    #: mean characters per word, measured on every document (also those under `min_words`): text without word
    #: breaks (a run of letters, a dump) has few words but can fill chunks. Gopher's bound is 10 for English web
    #: text; 50 keeps space-less scripts, whose words run from punctuation to punctuation
    max_mean_word_chars: float | None = 50.0
    distinct_window_words: int = 1000
    #: ISO 639-1 codes of the languages to keep (None: no language check)
    languages: list[str] | None = ["en"]
    #: share of the sampled passages that must be in a kept language
    min_language_share: float = 0.5
    language_samples: int = 8
    language_sample_chars: int = 2000
    #: estimated Jaccard similarity of word 5-gram sets above which a document is a near-duplicate
    #: of one kept before it (None: no near-duplicate removal)
    near_duplicate_threshold: float | None = 0.8
    minhash_num_perm: int = 128
    minhash_seed: int = 1
    shingle_words: int = 5

    @model_validator(mode="after")
    def _check(self) -> FilterConfig:
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name.endswith(("_frac", "_ratio", "_threshold", "_share")) and value is not None:
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"{name} must lie within [0, 1], got {value}")
        if self.languages is not None and not all(len(code) == 2 for code in self.languages):
            raise ValueError(f"languages must be ISO 639-1 codes such as 'en', got {self.languages}")
        return self

    def minhash_hash(self) -> str:
        """Identifies the signature parameters (signatures are stored and reused across filter configs)."""
        return f"mh{self.minhash_num_perm}-s{self.minhash_seed}-w{self.shingle_words}"


@dataclass(frozen=True)
class Verdict:
    kept: bool
    reason: str | None  # the first rule that fired
    detail: str  # every rule that fired: "name value > threshold"; "" when kept
    stats: dict[str, Any]
    duplicate_of: str | None = None


@dataclass
class _Words:
    hashes: np.ndarray  # uint64 per word, stable across documents and processes
    lengths: np.ndarray  # characters per word
    ids: np.ndarray  # per-document vocabulary index (distinct-word counting)


@cache
def _word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")


def _words(text: str) -> _Words:
    words = _WORD.findall(text)
    vocab: dict[str, int] = {}
    ids = np.fromiter((vocab.setdefault(w, len(vocab)) for w in words), dtype=np.int64, count=len(words))
    by_id = np.fromiter((_word_hash(w) for w in vocab), dtype=np.uint64, count=len(vocab))
    lengths = np.fromiter((len(w) for w in vocab), dtype=np.int64, count=len(vocab))
    return _Words(by_id[ids], lengths[ids], ids)


def _ngram_hashes(hashes: np.ndarray, n: int) -> np.ndarray:
    """A 64-bit hash per position of every word n-gram (wrapping polynomial over word hashes)."""
    m = len(hashes) - n + 1
    out = np.zeros(max(m, 0), dtype=np.uint64)
    prime = np.uint64(1099511628211)
    with np.errstate(over="ignore"):
        for k in range(n):
            out = out * prime + hashes[k : k + m]
    return out


def _duplicate_fractions(parts: Sequence[str], total_chars: int) -> tuple[float, float]:
    seen: set[str] = set()
    dup = dup_chars = 0
    for part in parts:
        if part in seen:
            dup += 1
            dup_chars += len(part)
        else:
            seen.add(part)
    return dup / max(len(parts), 1), dup_chars / max(total_chars, 1)


def _top_ngram_share(words: _Words, n: int, total_chars: int) -> float:
    grams = _ngram_hashes(words.hashes, n)
    if not len(grams):
        return 0.0
    uniq, first, counts = np.unique(grams, return_index=True, return_counts=True)
    top = int(np.argmax(counts))
    pos = int(first[top])
    chars = int(words.lengths[pos : pos + n].sum()) + n - 1
    return min(1.0, chars * int(counts[top]) / max(total_chars, 1))


def _dup_ngram_char_frac(words: _Words, n: int) -> float:
    """Characters of words inside any n-gram that occurs more than once, each word counted once."""
    grams = _ngram_hashes(words.hashes, n)
    if not len(grams):
        return 0.0
    _, inverse, counts = np.unique(grams, return_inverse=True, return_counts=True)
    starts = np.nonzero(counts[inverse] > 1)[0]
    cover = np.zeros(len(words.hashes) + 1, dtype=np.int64)
    np.add.at(cover, starts, 1)
    np.add.at(cover, starts + n, -1)
    covered = np.cumsum(cover[:-1]) > 0
    return float(words.lengths[covered].sum() / max(int(words.lengths.sum()), 1))


def _distinct_ratio(words: _Words, window: int) -> float:
    ids = words.ids
    if len(ids) <= window:
        return len(np.unique(ids)) / max(len(ids), 1)
    ratios = [len(np.unique(ids[i : i + window])) / window for i in range(0, len(ids) - window + 1, window)]
    return float(np.mean(ratios))


@cache
def _language_detector() -> Any:
    from lingua import LanguageDetectorBuilder

    return LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()


def _language_samples(text: str, cfg: FilterConfig) -> list[str]:
    n, size = len(text), cfg.language_sample_chars
    if n <= size * cfg.language_samples:
        return [text[i : i + size] for i in range(0, n, size)]
    return [text[int(n * (i + 0.5) / cfg.language_samples) :][:size] for i in range(cfg.language_samples)]


def _languages(text: str, cfg: FilterConfig) -> dict[str, int]:
    """Detected language (ISO 639-1) per sampled passage, counted."""
    found: dict[str, int] = {}
    results = _language_detector().detect_languages_in_parallel_of(_language_samples(text, cfg))
    for lang in results:
        code = lang.iso_code_639_1.name.lower() if lang is not None else "unknown"
        found[code] = found.get(code, 0) + 1
    return found


def measure(text: str, cfg: FilterConfig) -> dict[str, Any]:
    """Every measured value the rules look at (rounded), plus the word count."""
    words = _words(text)
    stats: dict[str, Any] = {"words": len(words.hashes)}
    stats["mean_word_chars"] = round(float(words.lengths.mean()), 4) if len(words.lengths) else 0.0
    if len(words.hashes) < cfg.min_words:
        return stats
    n = len(text)
    paragraphs = _PARAGRAPH_SPLIT.split(text.strip())
    lines = [line for line in text.split("\n") if line.strip()]
    stats["dup_para_frac"], stats["dup_para_char_frac"] = _duplicate_fractions(paragraphs, n)
    stats["dup_line_frac"], stats["dup_line_char_frac"] = _duplicate_fractions(lines, n)
    for k in (2, 3, 4):
        stats[f"top_{k}gram_char_frac"] = _top_ngram_share(words, k, n)
    for k in (5, 10):
        stats[f"dup_{k}gram_char_frac"] = _dup_ngram_char_frac(words, k)
    stats["distinct_word_ratio"] = _distinct_ratio(words, cfg.distinct_window_words)
    if cfg.languages is not None:
        stats["languages"] = _languages(text, cfg)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in stats.items()}


_MAX_RULES = (
    "dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac", "top_2gram_char_frac",
    "top_3gram_char_frac", "top_4gram_char_frac", "dup_5gram_char_frac", "dup_10gram_char_frac",
)  # fmt: skip


def fired_rules(stats: dict[str, Any], cfg: FilterConfig) -> list[tuple[str, str]]:
    """(rule, "value vs threshold") for every rule the measured values break, in a fixed order."""
    fired: list[tuple[str, str]] = []
    for rule in _MAX_RULES:
        limit = getattr(cfg, rule)
        if limit is not None and rule in stats and stats[rule] > limit:
            fired.append((rule, f"{rule} {stats[rule]:.3f} > {limit}"))
    chars, limit = stats.get("mean_word_chars"), cfg.max_mean_word_chars
    if limit is not None and chars is not None and chars > limit:
        fired.append(("mean_word_chars", f"mean_word_chars {chars:.3f} > {limit}"))
    ratio, limit = stats.get("distinct_word_ratio"), cfg.min_distinct_word_ratio
    if limit is not None and ratio is not None and ratio < limit:
        fired.append(("distinct_word_ratio", f"distinct_word_ratio {ratio:.3f} < {limit}"))
    if cfg.languages is not None and "languages" in stats:
        found: dict[str, int] = stats["languages"]
        share = sum(v for k, v in found.items() if k in cfg.languages) / max(sum(found.values()), 1)
        if share < cfg.min_language_share:
            seen = ", ".join(f"{k} {v}" for k, v in sorted(found.items(), key=lambda kv: -kv[1]))
            fired.append(
                ("language", f"language: {share:.2f} of samples in {cfg.languages} < {cfg.min_language_share} ({seen})")
            )
    return fired


def judge(text: str, cfg: FilterConfig) -> Verdict:
    """The quality verdict of one document (near-duplicates are judged by `NearDuplicateIndex`)."""
    stats = measure(text, cfg)
    fired = fired_rules(stats, cfg)
    if fired:
        return Verdict(False, fired[0][0], "; ".join(d for _, d in fired), stats)
    return Verdict(True, None, "", stats)


def minhash_signature(text: str, cfg: FilterConfig) -> np.ndarray:
    """MinHash (datasketch, affine64) of the document's set of word `shingle_words`-grams."""
    from datasketch import MinHash

    grams = np.unique(_ngram_hashes(_words(text).hashes, cfg.shingle_words))
    m = MinHash(num_perm=cfg.minhash_num_perm, seed=cfg.minhash_seed, hashfunc=_identity, scheme="affine64")
    for i in range(0, len(grams), _MINHASH_BATCH):
        m.update_batch(grams[i : i + _MINHASH_BATCH])
    return np.asarray(m.hashvalues, dtype=np.uint64)


def _identity(value: Any) -> Any:
    return value


@dataclass
class NearDuplicateIndex:
    """Kept documents' signatures in a MinHash LSH index; a new document is checked against them."""

    cfg: FilterConfig
    _lsh: Any = field(init=False, repr=False)
    _signatures: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        from datasketch import MinHashLSH

        assert self.cfg.near_duplicate_threshold is not None
        self._lsh = MinHashLSH(threshold=self.cfg.near_duplicate_threshold, num_perm=self.cfg.minhash_num_perm)

    def _minhash(self, signature: np.ndarray) -> Any:
        from datasketch import MinHash

        return MinHash(
            num_perm=self.cfg.minhash_num_perm, seed=self.cfg.minhash_seed, hashvalues=signature, scheme="affine64"
        )

    def add(self, document_id: str, signature: np.ndarray) -> None:
        if document_id not in self._signatures:
            self._signatures[document_id] = signature
            self._lsh.insert(document_id, self._minhash(signature))

    def add_many(self, items: Iterable[tuple[str, np.ndarray]]) -> None:
        for document_id, signature in items:
            self.add(document_id, signature)

    def nearest(self, signature: np.ndarray) -> tuple[str, float] | None:
        """The most similar kept document above the threshold, with its estimated Jaccard similarity."""
        candidates = self._lsh.query(self._minhash(signature))
        if not candidates:
            return None
        scored = [(float(np.mean(self._signatures[c] == signature)), c) for c in candidates]
        similarity, best = max(scored)
        threshold = self.cfg.near_duplicate_threshold or 0.0
        return (best, similarity) if similarity >= threshold else None
