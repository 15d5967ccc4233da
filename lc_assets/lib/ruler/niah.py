"""Needle-in-a-haystack generators (niah_single_*, niah_multikey_*, niah_multivalue, niah_multiquery)."""

from __future__ import annotations

import math
import random
import statistics
import uuid
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from lc_assets.lib.ruler.base import CountCache, Rendered, UnitGenerator, derive_rng, unit_cost
from lc_assets.lib.ruler.templates import full_template, niah_singular
from lc_assets.lib.ruler.words import EssayHaystack, key_word_parts

NEEDLE = "One of the special magic {type_needle_v} for {key} is: {value}."
NOISE_LINE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
#: ``np.round(np.linspace(0, 100, 40))``: the depths (percent) a needle may be put at in the essay.
DEPTHS: tuple[int, ...] = tuple(int(round(x * 100 / 39)) for x in range(40))
assert DEPTHS[:4] == (0, 3, 5, 8) and DEPTHS[-3:] == (95, 97, 100)


@dataclass
class NiahMaterial:
    """One sample's random draw: keys, values, needles, query, and (needle haystack) distractor lines."""

    needles: list[str]
    needle_tokens: list[int]
    answers: list[str]
    query: str
    shell_tokens: int
    position_seed: int
    depths: list[int] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    line_prefix: list[float] = field(default_factory=list)


class NiahGenerator(UnitGenerator[NiahMaterial]):
    """RULER's ``niah.py`` with one task's parameters."""

    family = "niah"

    def __init__(
        self,
        params: dict[str, Any],
        max_seq_length: int,
        tokens_to_generate: int,
        model_template_type: str,
        cache: CountCache,
        essay: EssayHaystack | None = None,
    ) -> None:
        self.haystack = params["type_haystack"]
        self.type_k = params["type_needle_k"]
        self.type_v = params["type_needle_v"]
        self.k, self.v, self.q = params["num_needle_k"], params["num_needle_v"], params["num_needle_q"]
        self._set_budget(max_seq_length, tokens_to_generate, cache)
        if self.haystack == "essay":
            if essay is None:
                raise ValueError("essay-haystack NIAH tasks need the essay text")
            self.essay = essay
            self.inc = 500
        else:
            self.inc = 5 if max_seq_length < 4096 else 25
        template = full_template("niah", model_template_type)
        self.type_v_text = self.type_v
        if self.q * self.v == 1:  # singular question: RULER rewrites the whole template string
            template = niah_singular(template)
            self.type_v_text = self.type_v[:-1]
        self.template = template
        head = template[: template.index("{context}")].format(type_needle_v=self.type_v_text)
        self.head_tokens = cache.count(head)
        self._adjs, self._nouns = key_word_parts()
        self._mean_tokens: dict[str, float] = {}
        if self.haystack == "noise":
            self.line_cost = unit_cost(cache, NOISE_LINE, "\n")
        if self.haystack == "needle":
            self._calibrate_lines()

    # -- random values ----------------------------------------------------------------------
    def _random(self, rng: random.Random, kind: str) -> tuple[str, float]:
        """A random key/value of a kind, with its token estimate (exact parts for words, mean otherwise)."""
        if kind == "numbers":
            return str(rng.randint(10**6, 10**7 - 1)), self._mean_tokens.get("numbers", 0.0)
        if kind == "words":
            adj = self._adjs[rng.randrange(len(self._adjs))]
            noun = self._nouns[rng.randrange(len(self._nouns))]
            return f"{adj}-{noun}", self._word_tokens(adj, noun)
        if kind == "uuids":
            return str(uuid.UUID(int=rng.getrandbits(128), version=4)), self._mean_tokens.get("uuids", 0.0)
        raise ValueError(f"unknown needle type {kind!r}")

    def _word_tokens(self, adj: str, noun: str) -> float:
        # " adj" and "-noun" are separate pre-tokens for byte-level BPE tokenizers such as Llama-3's
        return float(sum(self.cache.counts([" " + adj, "-" + noun])))

    def _calibrate_lines(self) -> None:
        """Needle-haystack lines hold fresh random keys/values: estimate each line as a calibrated base +
        its key/value estimates (words exact per part, numbers/uuids by their mean), not by tokenizing it."""
        rng = derive_rng(0, "niah-calibration", self.type_k, self.type_v)
        for kind in {self.type_k, self.type_v} - {"words"}:
            samples = [self._random(rng, kind)[0] for _ in range(256)]
            self._mean_tokens[kind] = statistics.fmean(self.cache.counts([" " + s for s in samples]))
        lines, ests = [], []
        for _ in range(256):
            key, key_est = self._random(rng, self.type_k)
            value, value_est = self._random(rng, self.type_v)
            lines.append(NEEDLE.format(type_needle_v=self.type_v, key=key, value=value) + "\n")
            ests.append(key_est + value_est)
        diffs = [exact - est for exact, est in zip(self.cache.counts(lines), ests, strict=True)]
        self.line_base = statistics.fmean(diffs)
        # the error of a sum of `inc` lines grows like sqrt(inc): widen the exact-check margin to match
        self.margin = max(8.0, 3.0 * statistics.pstdev(diffs) * math.sqrt(self.inc))

    # -- UnitGenerator ------------------------------------------------------------------------
    def upper_bound(self, rng: random.Random) -> int:
        probe = self.draw(rng, self.inc)
        tokens_per_unit = self.estimate(probe, self.inc) / self.inc
        return int(self.max_seq_length / tokens_per_unit * 3)

    def draw(self, rng: random.Random, max_units: int, index: int = 0) -> NiahMaterial:
        keys: list[str] = []
        values: list[list[str]] = []
        needles: list[str] = []
        for _ in range(self.k):
            keys.append(self._random(rng, self.type_k)[0])
            values.append([])
            for _ in range(self.v):
                values[-1].append(self._random(rng, self.type_v)[0])
                needles.append(NEEDLE.format(type_needle_v=self.type_v, key=keys[-1], value=values[-1][-1]))
        random.Random(42).shuffle(needles)  # RULER: a fixed permutation per needle count
        picked = rng.sample(range(self.k), self.q)
        queries = [keys[i] for i in picked]
        query = ", ".join(queries[:-1]) + ", and " + queries[-1] if len(queries) > 1 else queries[0]
        answers = [a for i in picked for a in values[i]]
        shell = self.template.format(type_needle_v=self.type_v_text, context="", query=query)
        if self.haystack == "essay":
            needle_counts = self.cache.counts([" " + nd for nd in needles])
        else:
            needle_counts = self.cache.counts([nd + "\n" for nd in needles])
        material = NiahMaterial(
            needles=needles,
            needle_tokens=needle_counts,
            answers=answers,
            query=query,
            shell_tokens=self.cache.count(shell),
            position_seed=rng.getrandbits(64),
        )
        if self.haystack == "essay":
            material.depths = rng.sample(DEPTHS, len(needles))
        elif self.haystack == "needle":
            ests = []
            for _ in range(max_units):
                key, key_est = self._random(rng, self.type_k)
                value, value_est = self._random(rng, self.type_v)
                material.lines.append(NEEDLE.format(type_needle_v=self.type_v, key=key, value=value))
                ests.append(self.line_base + key_est + value_est)
            material.line_prefix = list(accumulate(ests, initial=0.0))
        return material

    def _haystack_tokens(self, m: NiahMaterial, n: int) -> float:
        if self.haystack == "essay":
            return self.essay.tokens(n)
        if self.haystack == "noise":
            return n * self.line_cost
        return m.line_prefix[n]

    def estimate(self, m: NiahMaterial, n: int) -> float:
        return m.shell_tokens + self._haystack_tokens(m, n) + sum(m.needle_tokens)

    def render(self, m: NiahMaterial, n: int) -> Rendered:
        if self.haystack == "essay":
            context, depths, units_before = self._essay_context(m, n)
        else:
            context, depths, units_before = self._line_context(m, n)
        text = self.template.format(type_needle_v=self.type_v_text, context=context, query=m.query)
        # token offset of each needle: the template head + haystack units + the needles before it
        order = sorted(range(len(m.needles)), key=lambda j: units_before[j])
        token_positions = [0] * len(m.needles)
        needles_before = 0.0
        for j in order:
            token_positions[j] = round(self.head_tokens + self._haystack_tokens(m, units_before[j]) + needles_before)
            needles_before += m.needle_tokens[j]
        return Rendered(
            text=text,
            outputs=list(m.answers),
            meta={
                "needle_depths": depths,
                "needle_char_positions": [text.find(nd) for nd in m.needles],
                "needle_token_positions": token_positions,
            },
        )

    def _essay_context(self, m: NiahMaterial, n: int) -> tuple[str, list[float], list[int]]:
        words = self.essay.text_words(n)
        starts = self.essay.sentence_starts(n)
        n_sents = len(starts)
        depths = sorted(m.depths)
        cuts = [0] + [int(n_sents * (d / 100)) for d in depths] + [n_sents]

        def word_at(sentence: int) -> int:
            return starts[sentence] if sentence < n_sents else n

        pieces: list[str] = []
        units_before: list[int] = []
        for i in range(1, len(cuts)):
            pieces.append(" ".join(words[word_at(cuts[i - 1]) : word_at(cuts[i])]))
            if i - 1 < len(m.needles):
                pieces.append(m.needles[i - 1])
                units_before.append(word_at(cuts[i]))
        return " ".join(pieces), [float(d) for d in depths], units_before

    def _line_context(self, m: NiahMaterial, n: int) -> tuple[str, list[float], list[int]]:
        lines = [NOISE_LINE] * n if self.haystack == "noise" else m.lines[:n]
        rng = derive_rng(m.position_seed, n)
        slots = sorted(rng.sample(range(n), len(m.needles)), reverse=True)
        for slot, needle in zip(slots, m.needles, strict=True):
            lines.insert(slot, needle)
        # needles[j] goes to line slot j; report its depth as the share of the haystack before it
        units_before = list(slots)
        depths = [round(100 * s / n, 2) for s in slots]
        return "\n".join(lines), depths, units_before
