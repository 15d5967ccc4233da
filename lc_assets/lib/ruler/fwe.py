"""Frequent words extraction (fwe): coded words with zeta-law counts; RULER's own length rule."""

from __future__ import annotations

import math
import random
import string
from dataclasses import dataclass
from typing import Any

from lc_assets.lib.ruler.base import CountCache, Rendered, UnitGenerator
from lc_assets.lib.ruler.templates import full_template


def riemann_zeta(s: float) -> float:
    """zeta(s) for s > 1 (scipy.special.zeta's value): pi^2/6 at 2, else Euler-Maclaurin."""
    if s <= 1:
        raise ValueError("zeta needs alpha > 1")
    if s == 2.0:
        return math.pi**2 / 6
    n = 20
    total = sum(k**-s for k in range(1, n))
    # tail from n: integral + half term + first Bernoulli corrections
    total += n ** (1 - s) / (s - 1) + 0.5 * n**-s + s * n ** (-s - 1) / 12 - s * (s + 1) * (s + 2) * n ** (-s - 3) / 720
    return total


def zeta_counts(num_words: int, vocab_size: int, alpha: float) -> list[int]:
    """Count of the word of rank k (1-based): ``int(num_words * k**-alpha / zeta(alpha))`` (RULER)."""
    z = riemann_zeta(alpha)
    counts = []
    for k in range(1, vocab_size + 1):
        c = int(num_words * (k**-alpha) / z)
        if c == 0:  # counts only fall with k
            break
        counts.append(c)
    return counts


@dataclass
class FweMaterial:
    vocab: list[str]
    vocab_tokens: list[int]
    fixed_tokens: int


class FreqWordsGenerator(UnitGenerator[FweMaterial]):
    """RULER's ``freq_words_extraction.py``: units are words of the coded text.

    Length rule (RULER's own): ``max_len = max_seq_length - 50``, ``vocab_size = max_len // 50``,
    ``inc = max_len // 32``; calibration starts at ``max_len // 6`` words and adds ``inc`` while the
    prompt has fewer than ``max_len`` tokens, then steps back one ``inc``; each sample then drops
    ``inc`` words while its prompt has more than ``max_len`` tokens.
    """

    family = "freq_words_extraction"

    def __init__(
        self,
        params: dict[str, Any],
        max_seq_length: int,
        tokens_to_generate: int,
        model_template_type: str,
        cache: CountCache,
    ) -> None:
        self.alpha = params["alpha"]
        self.wordlen = params["coded_wordlen"]
        self._set_budget(max_seq_length, tokens_to_generate, cache)
        self.vocab_size = self.budget // 50 if params["vocab_size"] == -1 else params["vocab_size"]
        if self.vocab_size < 4:
            raise ValueError(f"fwe at max_seq_length={max_seq_length} has a vocabulary of {self.vocab_size} (< 4)")
        self.inc = max(self.budget // 32, 1)
        self.template = full_template("freq_words_extraction", model_template_type)

    def upper_bound(self, rng: random.Random) -> int:  # fwe has no binary search (see search_start)
        return self.budget

    def draw(self, rng: random.Random, max_units: int, index: int = 0) -> FweMaterial:
        vocab = ["".join(rng.choices(string.ascii_lowercase, k=self.wordlen)) for _ in range(self.vocab_size)]
        while len(set(vocab)) < self.vocab_size:
            vocab.append("".join(rng.choices(string.ascii_lowercase, k=self.wordlen)))
        vocab = sorted(set(vocab))
        random.Random(42).shuffle(vocab)
        vocab[0] = "..."  # the top rank is noise
        # only the words with a non-zero count at max_units can ever appear
        used = len(zeta_counts(max(max_units, 1), self.vocab_size, self.alpha))
        return FweMaterial(
            vocab=vocab,
            vocab_tokens=self.cache.counts([" " + w for w in vocab[: max(used, 4)]]),
            fixed_tokens=self.cache.count(self.template.format(context="", query="")),
        )

    def estimate(self, m: FweMaterial, n: int) -> float:
        counts = zeta_counts(n, self.vocab_size, self.alpha)
        return m.fixed_tokens + sum(c * t for c, t in zip(counts, m.vocab_tokens, strict=False))

    def render(self, m: FweMaterial, n: int) -> Rendered:
        words = [
            w for w, c in zip(m.vocab, zeta_counts(n, self.vocab_size, self.alpha), strict=False) for _ in range(c)
        ]
        random.Random(42).shuffle(words)
        text = self.template.format(context=" ".join(words), query="")
        return Rendered(text=text, outputs=m.vocab[1:4], meta={"vocab_size": self.vocab_size})

    def search_start(self, cache: CountCache, rng: random.Random) -> tuple[int, dict[str, Any]]:
        """RULER's fwe calibration on estimates, confirmed by exact counts at the boundary."""
        start = self.budget // self.wordlen
        probe = self.draw(rng, start + 64 * self.inc)
        bias = 0.0
        exact_checks = 0

        def tokens(n: int) -> float:
            return self.estimate(probe, n) + bias

        for _ in range(6):
            n = start
            while tokens(n) < self.budget:
                n += self.inc
            n -= self.inc  # RULER steps back one inc after the first count that is >= max_len
            # the boundary: tokens(n) < max_len <= tokens(n + inc); confirm both sides exactly
            low, high = cache.count_prompts([self.render(probe, n).text, self.render(probe, n + self.inc).text])
            exact_checks += 2
            new_bias = ((low - self.estimate(probe, n)) + (high - self.estimate(probe, n + self.inc))) / 2
            if (low < self.budget or n < start) and high >= self.budget:
                bias = new_bias
                break
            bias = new_bias if abs(new_bias - bias) > 0.5 else bias + (1 if high < self.budget else -1)
        return n, {"search_exact_counts": exact_checks, "estimate_bias": bias, "vocab_size": self.vocab_size}
