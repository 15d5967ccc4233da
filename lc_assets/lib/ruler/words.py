"""Word lists (wonderwords, as RULER) and the essay haystack (corpus words + sentence boundaries)."""

from __future__ import annotations

import bisect
import importlib.resources
import random
import re
from functools import cache
from itertools import accumulate

from lc_assets.lib.ruler.base import CountCache


@cache
def wonderwords_list(name: str) -> tuple[str, ...]:
    """One of wonderwords' packaged lists (``nounlist.txt``, ``adjectivelist.txt``, ``verblist.txt``)."""
    text = importlib.resources.files("wonderwords").joinpath("assets", name).read_text(encoding="utf-8")
    return tuple(line.rstrip() for line in text.splitlines())


@cache
def key_word_parts() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Distinct adjectives and nouns; RULER's NIAH "words" are ``f"{adj}-{noun}"`` drawn uniformly.

    RULER materialises the sorted set of all 6.2M pairs and calls ``random.choice``; the pairs are
    all distinct with wonderwords 3.0.1, so drawing an adjective and a noun uniformly is the same law.
    """
    adjs = tuple(sorted(set(wonderwords_list("adjectivelist.txt"))))
    nouns = tuple(sorted(set(wonderwords_list("nounlist.txt"))))
    return adjs, nouns


@cache
def cwe_word_pool() -> tuple[str, ...]:
    """cwe's pool: sorted set of wonderwords nouns+adjectives+verbs, shuffled by ``Random(42)`` (as RULER)."""
    words = sorted(
        set(wonderwords_list("nounlist.txt") + wonderwords_list("adjectivelist.txt") + wonderwords_list("verblist.txt"))
    )
    random.Random(42).shuffle(words)
    return tuple(words)


@cache
def cwe_large_pool() -> tuple[str, ...]:
    """Fallback pool when a cwe sample needs more distinct words than wonderwords has.

    RULER reads ``json/english_words.json`` (git-LFS, not shipped); we use the ``english-words``
    package's web2 list (lower-case, alphabetic) instead.
    """
    try:
        from english_words import get_english_words_set
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RulerWordsError(
            "cwe needs more distinct words than wonderwords has at this length; install `english-words`"
        ) from exc
    return tuple(sorted(get_english_words_set(["web2"], lower=True, alpha=True)))


class RulerWordsError(RuntimeError):
    """A word list needed by a task is not installed."""


# -- essay haystack ----------------------------------------------------------------------------

_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc e.g i.e u.s u.k inc ltd co no fig al approx dept est govt".split()
)
_SENTENCE_END = re.compile(r"[.!?][\"'\u201d\u2019)\]]*$")


def _ends_sentence(word: str, next_word: str) -> bool:
    """A light stand-in for nltk's Punkt: a sentence ends after [.!?] (+closing quotes) before a
    word that does not start in lower case, unless the word is a known abbreviation or an initial."""
    if not _SENTENCE_END.search(word) or not next_word:
        return False
    if next_word[0].islower():
        return False
    core = word.rstrip("\"'\u201d\u2019)]").rstrip(".!?").lstrip("(\"'\u201c\u2018").lower()
    if core in _ABBREVIATIONS or (len(core) == 1 and core.isalpha()):
        return False
    return True


class EssayHaystack:
    """The essay corpus as RULER uses it: ``re.sub(r'\\s+', ' ', text).split(' ')``, always from the start.

    Keeps, over the (cyclically repeated) word sequence, each word's token count with its leading
    space (prefix sums, so a haystack of n words costs O(1) to estimate) and the sentence boundaries.
    """

    def __init__(self, text: str, cache: CountCache) -> None:
        words = re.sub(r"\s+", " ", text).strip().split(" ")
        if not words or words == [""]:
            raise ValueError("the essay haystack text is empty")
        self.words = words
        self.cache = cache
        self._seq: list[str] = []  # words repeated as needed
        self._prefix: list[int] = [0]  # tokens of " ".join(seq[:n]) (approx., additive per word)
        self._ends: list[int] = []  # sorted word indices after which a sentence ends

    def _extend(self, n: int) -> None:
        # grows in chunks so that a huge corpus is only read (and counted) as far as needed
        while len(self._seq) < n + 1:  # +1: a boundary after word n-1 looks at word n
            start = len(self._seq)
            offset = start % len(self.words)
            chunk = self.words[offset : offset + 65536]
            self._seq.extend(chunk)
            counts = self.cache.counts([" " + w for w in chunk])
            self._prefix.extend(accumulate(counts, initial=self._prefix[-1]))
            del self._prefix[start + 1]  # accumulate repeats the initial value
            seq = self._seq
            for i in range(max(start - 1, 0), len(seq) - 1):
                if _ends_sentence(seq[i], seq[i + 1]):
                    self._ends.append(i)

    def tokens(self, n: int) -> int:
        """Estimated tokens of the first n words joined by spaces."""
        self._extend(n)
        return self._prefix[n]

    def text_words(self, n: int) -> list[str]:
        self._extend(n)
        return self._seq[:n]

    def sentence_starts(self, n: int) -> list[int]:
        """Word index where each sentence of the first n words starts (first is 0)."""
        self._extend(n)
        k = bisect.bisect_left(self._ends, n - 1)  # a boundary after the last word is no boundary
        return [0] + [e + 1 for e in self._ends[:k]]
