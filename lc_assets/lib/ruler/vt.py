"""Variable tracking (vt): one chain of 5 variables hidden in noise lines, with RULER's one-shot example."""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from lc_assets.lib.ruler.base import CountCache, Rendered, UnitGenerator, derive_rng, unit_cost
from lc_assets.lib.ruler.niah import NOISE_LINE
from lc_assets.lib.ruler.templates import TASK_TEMPLATES, full_template

_TASK = TASK_TEMPLATES["variable_tracking"]


def _name(rng: random.Random, k: int) -> str:
    return "".join(rng.choices(string.ascii_uppercase, k=k))


def _chain(rng: random.Random, num_hops: int, name_len: int, value: str) -> tuple[list[str], list[str]]:
    """Variable names and chain lines: ``VAR A = 12345`` then ``VAR B = VAR A `` (trailing space, as RULER)."""
    names = [_name(rng, name_len) for _ in range(num_hops + 1)]
    lines = [f"VAR {names[0]} = {value}"] + [f"VAR {names[j + 1]} = VAR {names[j]} " for j in range(num_hops)]
    return names, lines


def _context(num_noise: int, chain: list[str], rng: random.Random) -> str:
    sentences = [NOISE_LINE] * num_noise
    positions = sorted(rng.sample(range(num_noise), len(chain)))
    for j, (pos, line) in enumerate(zip(positions, chain, strict=True)):
        sentences.insert(pos + j, line)  # +j keeps the chain in order
    return "\n".join(sentences).replace(". \n", ".\n")


@lru_cache(maxsize=32)
def _one_shot_example(seed: int, num_hops: int, cache: CountCache) -> str:
    """RULER's one-shot example: a vt sample with 3-letter names and value 12345, the task template and
    answer prefix *without* model wrapper, fitted to 500 tokens (no generation budget), followed by
    ``" " + names + "\\n"`` (so ``they are:  AAA BBB ...`` with two spaces)."""
    rng = derive_rng(seed, "vt", "one_shot_example")
    names, chain = _chain(rng, min(10, num_hops), 3, "12345")
    template = _TASK.template + _TASK.answer_prefix

    def text(n: int) -> str:
        return template.format(
            context=_context(n, chain, derive_rng(seed, "vt", "example", n)), query="12345", num_v=num_hops + 1
        )

    lo, hi, best = 5, 200, 5  # a few hundred tokens: exact counts are cheap here
    while lo <= hi:
        mid = (lo + hi) // 2
        if cache.count(text(mid)) <= 500:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return text(best) + " " + " ".join(names) + "\n"


@dataclass
class VtMaterial:
    names: list[str]
    chain: list[str]
    value: str
    example: str
    fixed_tokens: float
    position_seed: int


class VariableTrackingGenerator(UnitGenerator[VtMaterial]):
    """RULER's ``variable_tracking.py`` (noise haystack, one chain, 4 hops, one-shot example always on)."""

    family = "variable_tracking"

    def __init__(
        self,
        params: dict[str, Any],
        max_seq_length: int,
        tokens_to_generate: int,
        model_template_type: str,
        cache: CountCache,
        seed: int,
    ) -> None:
        if params.get("num_chains", 1) != 1 or params.get("type_haystack", "noise") != "noise":
            raise ValueError("vt supports RULER's configuration: one chain in a noise haystack")
        self.num_hops = params["num_hops"]
        self._set_budget(max_seq_length, tokens_to_generate, cache)
        self.inc = 5 if max_seq_length < 4096 else 10
        self.template = full_template("variable_tracking", model_template_type)
        self.cutoff_marker = _TASK.template[:20]
        self.example = _one_shot_example(seed, self.num_hops, cache)
        self.line_cost = unit_cost(cache, NOISE_LINE, "\n")

    def upper_bound(self, rng: random.Random) -> int:
        # RULER's probe has no example in it: leave the example's tokens out of the per-unit figure
        probe_tokens = self.estimate(self.draw(rng, self.inc), self.inc) - self.cache.count(self.example)
        tokens_per_unit = probe_tokens / self.inc
        return int(self.max_seq_length / tokens_per_unit * 3)

    def _randomized_example(self, rng: random.Random, value: str) -> str:
        """RULER's ``randomize_icl``: fresh names (same length) and value for the example, by str.replace."""
        example = self.example
        for old in example.strip().split()[-self.num_hops - 1 :]:
            example = example.replace(old, _name(rng, len(old)))
        return example.replace("12345", value)

    def _assemble(self, context: str, m_value: str, example: str) -> str:
        text = self.template.format(context=context, query=m_value, num_v=self.num_hops + 1)
        cut = text.index(self.cutoff_marker)
        return text[:cut] + example + "\n" + text[cut:]

    def draw(self, rng: random.Random, max_units: int, index: int = 0) -> VtMaterial:
        value = str(rng.randint(10000, 99998))  # np.random.randint(10000, 99999): high end exclusive
        names, chain = _chain(rng, self.num_hops, 5, value)
        example = self._randomized_example(rng, str(rng.randint(10000, 99998)))
        shell = self._assemble("", value, example)
        fixed = self.cache.count(shell) + sum(self.cache.counts([line + "\n" for line in chain]))
        return VtMaterial(names, chain, value, example, fixed, rng.getrandbits(64))

    def estimate(self, m: VtMaterial, n: int) -> float:
        return m.fixed_tokens + n * self.line_cost

    def render(self, m: VtMaterial, n: int) -> Rendered:
        context = _context(n, m.chain, derive_rng(m.position_seed, n))
        return Rendered(text=self._assemble(context, m.value, m.example), outputs=list(m.names))
