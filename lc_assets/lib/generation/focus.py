"""Focus windows: coverage of the chunk by evidence, by construction rather than by the model's preference.

The masks spread what a step *shows* evenly over the chunk, but which shown window a pair quotes is the
model's choice: a model that prefers the first excerpt piles its evidence at the start of each step's
span, and even a model that picks at random leaves ~20 quotes per chunk decile at 200 pairs, where Poisson
noise alone puts least / most near 0.5. A step with several windows therefore names one *focus* window:
the one whose part of the chunk holds the fewest accepted evidence quotes of the section so far. The
prompt asks about that excerpt and the schema's evidence choices are its sentences only (the other
windows stay in the prompt as context). The section's histogram is rebuilt from its committed steps on
resume, so the focus of every step is the same whether the run went in one go or was resumed.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from lc_assets.lib.generation.masking import MaskWindow
from lc_assets.lib.generation.quality import N_DECILES, decile_histogram


@dataclass
class EvidenceDepth:
    """A section's accepted evidence quotes per chunk decile (the same bins as quality.decile_histogram)."""

    chunk_chars: int
    counts: list[int] = field(default_factory=lambda: [0] * N_DECILES)

    def add(self, spans: Iterable[tuple[int, int]]) -> None:
        for bin_, n in enumerate(decile_histogram(spans, self.chunk_chars)):
            self.counts[bin_] += n

    def load(self, char_start: int, char_end: int) -> float:
        """Quotes so far in the deciles the range ``[char_start, char_end)`` lies in, weighted by its overlap
        with each (where in the window a quote lands is the model's choice)."""
        if self.chunk_chars <= 0 or char_end <= char_start:
            return 0.0
        width = self.chunk_chars / N_DECILES
        total = 0.0
        for bin_ in range(N_DECILES):
            lo, hi = bin_ * width, (bin_ + 1) * width
            overlap = min(hi, char_end) - max(lo, char_start)
            if overlap > 0:
                total += overlap * self.counts[bin_]
        return total / (char_end - char_start)


def choose_focus(
    windows: Sequence[MaskWindow], depth: EvidenceDepth, rng: random.Random, eligible: Sequence[bool] | None = None
) -> int | None:
    """Index of the window whose deciles hold the fewest quotes so far (ties: ``rng``); None with fewer than two
    eligible windows (nothing to choose). ``eligible[i]`` False: window i cannot be quoted (no quotable piece)."""
    candidates = [i for i in range(len(windows)) if eligible is None or eligible[i]]
    if len(candidates) < 2:
        return None
    rng.shuffle(candidates)  # min() keeps the first of equal loads: a seeded, unbiased tie-break
    return min(candidates, key=lambda i: depth.load(windows[i].char_start, windows[i].char_end))
