"""Common words extraction (cwe): a numbered word list where 10 words repeat most, with a one-shot example."""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from lc_assets.lib.ruler.base import CountCache, Rendered, UnitGenerator
from lc_assets.lib.ruler.templates import full_template
from lc_assets.lib.ruler.words import cwe_large_pool, cwe_word_pool


def numbered(words: list[str]) -> str:
    """``"1. w1 2. w2 ..."``."""
    return " ".join(f"{i + 1}. {w}" for i, w in enumerate(words))


def word_list(words: list[str], common: int, common_repeats: int, uncommon_repeats: int) -> list[str]:
    """The first ``common`` words repeated ``common_repeats`` times, the rest ``uncommon_repeats``,
    shuffled by ``Random(42)`` (RULER: a fixed permutation for a given list length)."""
    out = words[:common] * common_repeats + words[common:] * uncommon_repeats
    random.Random(42).shuffle(out)
    return out


@dataclass
class CweMaterial:
    small: list[str]  # words from the wonderwords pool (used when n <= pool size)
    big: list[str]  # words from the large pool (used when n > pool size)
    small_prefix: list[int]
    big_prefix: list[int]
    shot: str  # the one-shot example, with its trailing "\n"
    fixed_tokens: int


class CommonWordsGenerator(UnitGenerator[CweMaterial]):
    """RULER's ``common_words_extraction.py`` (freq_cw=30, freq_ucw=3, num_cw=10, one one-shot example)."""

    family = "common_words_extraction"

    def __init__(
        self,
        params: dict[str, Any],
        max_seq_length: int,
        tokens_to_generate: int,
        model_template_type: str,
        cache: CountCache,
    ) -> None:
        self.num_cw = params["num_cw"]
        self._set_budget(max_seq_length, tokens_to_generate, cache)
        self.inc = 10
        if max_seq_length < 4096:  # RULER's short-context variant
            self.shot_shape = (20, 3, 1)
            self.repeats = (6, 1)
        else:
            self.shot_shape = (40, 10, 3)
            self.repeats = (params["freq_cw"], params["freq_ucw"])
        self.template = full_template("common_words_extraction", model_template_type)
        self.pool = cwe_word_pool()
        self._numbering: list[int] = [0]  # tokens of the " {i}." labels, prefix sums

    def _numbering_tokens(self, entries: int) -> int:
        have = len(self._numbering) - 1
        if entries > have:
            labels = [f" {i}." for i in range(have + 1, entries + 1)]
            self._numbering.extend(accumulate(self.cache.counts(labels), initial=self._numbering[-1]))
            del self._numbering[have + 1]
        return self._numbering[entries]

    def _entries(self, n: int) -> int:
        return self.num_cw * self.repeats[0] + (n - self.num_cw) * self.repeats[1]

    def upper_bound(self, rng: random.Random) -> int:
        tokens_per_word = self.estimate(self.draw(rng, 4096), 4096) / 4096
        return max(int(self.max_seq_length // tokens_per_word) * 2, 20)

    def _prefix(self, words: list[str]) -> list[int]:
        return list(accumulate(self.cache.counts([" " + w for w in words]), initial=0))

    def draw(self, rng: random.Random, max_units: int, index: int = 0) -> CweMaterial:
        max_units = max(max_units, self.num_cw)
        shot_words, shot_common, shot_uncommon = self.shot_shape
        shot_list = rng.sample(self.pool, shot_words)
        shot = (
            self.template.format(
                context=numbered(word_list(shot_list, self.num_cw, shot_common, shot_uncommon)), query=""
            )
            + " "
            + numbered(shot_list[: self.num_cw])
            + "\n"
        )
        small = rng.sample(self.pool, min(max_units, len(self.pool)))
        big: list[str] = []
        if max_units > len(self.pool):  # RULER falls back to a larger English word list
            big = rng.sample(cwe_large_pool(), max_units)
        shell = shot + self.template.format(context="", query="")
        return CweMaterial(
            small=small,
            big=big,
            small_prefix=self._prefix(small),
            big_prefix=self._prefix(big) if big else [0],
            shot=shot,
            fixed_tokens=self.cache.count(shell),
        )

    def _words(self, m: CweMaterial, n: int) -> tuple[list[str], list[int]]:
        return (m.small, m.small_prefix) if n <= len(self.pool) else (m.big, m.big_prefix)

    def estimate(self, m: CweMaterial, n: int) -> float:
        _, prefix = self._words(m, n)
        common, uncommon = self.repeats
        word_tokens = common * prefix[self.num_cw] + uncommon * (prefix[n] - prefix[self.num_cw])
        return m.fixed_tokens + self._numbering_tokens(self._entries(n)) + word_tokens

    def render(self, m: CweMaterial, n: int) -> Rendered:
        words, _ = self._words(m, n)
        chosen = words[:n]
        context = numbered(word_list(chosen, self.num_cw, *self.repeats))
        text = m.shot + self.template.format(context=context, query="")
        return Rendered(text=text, outputs=chosen[: self.num_cw])
