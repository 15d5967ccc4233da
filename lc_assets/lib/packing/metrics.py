"""Quality metrics of a packing run: fill, cuts, reuse, length bias, source mix."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


def ks_2samp(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and its asymptotic p-value.

    D = max |F_a(x) - F_b(x)| over the pooled values; the p-value uses the Kolmogorov
    distribution with Stephens' small-sample correction (as in scipy's 'asymp' mode).
    Returns (0.0, 1.0) when either sample is empty.
    """
    x = np.sort(np.asarray(a, dtype=np.float64))
    y = np.sort(np.asarray(b, dtype=np.float64))
    n, m = len(x), len(y)
    if n == 0 or m == 0:
        return 0.0, 1.0
    grid = np.concatenate([x, y])
    cdf_x = np.searchsorted(x, grid, side="right") / n
    cdf_y = np.searchsorted(y, grid, side="right") / m
    d = float(np.max(np.abs(cdf_x - cdf_y)))
    en = math.sqrt(n * m / (n + m))
    lam = (en + 0.12 + 0.11 / en) * d
    if lam < 1e-3:
        return d, 1.0
    p = 2.0 * sum((-1) ** (k - 1) * math.exp(-2.0 * k * k * lam * lam) for k in range(1, 101))
    return d, float(min(1.0, max(0.0, p)))


@dataclass
class PackingMetrics:
    """What a packing run did; `as_metadata()` is flat enough for Dagster asset metadata."""

    sample_tokens: int
    mode: str = "mixed"
    n_samples: int = 0
    fill_mean: float = 0.0
    fill_min: float = 0.0
    real_tokens: int = 0
    pad_tokens: int = 0
    n_sections_in: int = 0
    n_items_in: int = 0  # after splitting oversize sections into parts
    n_sections_packed: int = 0
    n_split_sections: int = 0
    n_cut_sections: int = 0
    cuts_by_kind: dict[str, int] = field(default_factory=dict)
    cut_dropped_tokens: int = 0  # tails of cut sections that were not carried
    n_carried_remainders: int = 0
    section_reuse_count: int = 0
    ks_length_bias: float = 0.0
    ks_pvalue: float = 1.0
    n_leftover_sections: int = 0
    leftover_tokens: int = 0
    n_rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    dissolved_samples: int = 0
    seam_mismatches: int = 0
    packable_tokens: int = 0  # rendered pool after rejections and splits
    source_tokens: dict[str, int] = field(default_factory=dict)
    documents_per_sample: float = 0.0
    #: mean share of a sample's real tokens that come from its largest document (1.0: one document per sample)
    main_document_share: float = 0.0
    n_pairs: int = 0  # QA pairs in the samples
    #: dependency distance (answer -> farthest evidence, tokens) over the pairs with known evidence
    dependency: dict[str, float] = field(default_factory=dict)
    #: cross pairs (coherent mode): offered by generation, appended to samples, and their distances (tokens)
    #: from the answer back to the nearest and to the farthest evidence
    cross_pairs_offered: int = 0
    n_cross_pairs: int = 0
    cross_nearest: dict[str, float] = field(default_factory=dict)
    cross_farthest: dict[str, float] = field(default_factory=dict)
    render_seconds: float = 0.0
    plan_seconds: float = 0.0
    assemble_seconds: float = 0.0

    def as_metadata(self) -> dict[str, Any]:
        return asdict(self)


def reuse_count(section_ids_per_sample: Sequence[Sequence[str]]) -> int:
    """How many placements repeat a section already placed (0 for packing without replacement)."""
    counts = Counter(sid for ids in section_ids_per_sample for sid in ids)
    return sum(c - 1 for c in counts.values() if c > 1)


def reason_kind(reason: str) -> str:
    """Group rejection reasons by their leading words (drop the numbers and names)."""
    return reason.split(":")[0].split(" (")[0]


def distance_summary(distances: Sequence[int] | np.ndarray) -> dict[str, float]:
    """Count and quantiles of dependency distances (tokens); empty dict when there are none."""
    d = np.asarray(distances, dtype=np.float64)
    if not d.size:
        return {}
    q = np.quantile(d, [0.1, 0.5, 0.9])
    return {
        "pairs": int(d.size),
        "p10": float(q[0]),
        "median": float(q[1]),
        "p90": float(q[2]),
        "max": float(d.max()),
        "mean": float(d.mean()),
    }
