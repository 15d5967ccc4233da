"""Bin-packing of item lengths into fixed-capacity samples (pure: lengths and cut points only).

The plan, for a pool whose total is T tokens and a capacity of C tokens per sample:

1. B = floor(T / C) bins. Items go in by best-fit decreasing: longest first, each into the
   fullest bin it still fits; items whose lengths differ by less than `bucket_ratio` count as
   equal and are ordered by a seeded shuffle, so which of several near-equal sections goes
   first is random but the packing stays tight. Items that fit nowhere stay unplaced.
2. Closing the gaps, bin by bin (smallest gap first), until every bin's slack is at most
   `pad_tolerance` tokens or is closed by a cut:
   a. put in the longest unplaced item that fits whole;
   b. swap one of the bin's items for a longer unplaced one that closes the gap;
   c. trade one of its items for a longer one of another open bin (the one with the largest
      gap): this bin is closed, the other's gap grows, so the slack of many bins gathers in a
      few, which take unplaced items whole or are dissolved;
   only when no whole-item move helps any bin:
   d. fill with the prefix of one unplaced item, cut at its last allowed cut point that fits:
      cut points carry a rank (0 = pair or paragraph end, 1 = line end, 2 = sentence end), and a
      finer rank is used only where no coarser one closes the gap to within `pad_tolerance`
      (the best rank, then the smallest cut-off tail wins; if no cut closes it, the smallest gap);
   e. if no bin could be helped, dissolve the bin with the largest gap if that gap exceeds
      `max_slack`: its items return to the unplaced pool (they help the other bins, or are
      carried to the next run); gaps up to `max_slack` are padded.
3. What remains unplaced is the leftover pool, carried to the next run.

No item is placed twice; the plan depends only on (lengths, cut points, keys, seed).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: unplaced items scanned for the best cut filler of one bin (they are scanned shortest first)
_FILLER_CANDIDATES = 64


@dataclass
class Filler:
    """The prefix of one item that closes a bin: tokens [0, used) of the item."""

    item: int
    used: int
    cut_index: int  # index into the item's cut points


@dataclass
class BinPlan:
    """Which items fill which sample; whole items in `bins`, a cut prefix in `fillers`."""

    capacity: int
    bins: list[list[int]] = field(default_factory=list)
    fillers: list[Filler | None] = field(default_factory=list)
    unplaced: list[int] = field(default_factory=list)
    dissolved_bins: int = 0
    dissolved_gaps: list[int] = field(default_factory=list)  # the gap (tokens) each dissolved bin could not close

    def used_tokens(self, lengths: Sequence[int]) -> list[int]:
        return [
            sum(int(lengths[i]) for i in items) + (f.used if f else 0)
            for items, f in zip(self.bins, self.fillers, strict=True)
        ]


def seeded_order(lengths: np.ndarray, keys: Sequence[str], seed: int, bucket_ratio: float) -> list[int]:
    """Longest first; near-equal lengths (within bucket_ratio) in a seeded random order.

    Items are first sorted by key so the order does not depend on input order.
    """
    n = len(lengths)
    by_key = sorted(range(n), key=lambda i: keys[i])
    rand = np.empty(n)
    rand[by_key] = np.random.default_rng(seed).random(n)
    if bucket_ratio > 0:
        bucket = np.floor(np.log(np.maximum(lengths, 1)) / math.log1p(bucket_ratio)).astype(np.int64)
    else:
        bucket = lengths.astype(np.int64)
    return sorted(range(n), key=lambda i: (-int(bucket[i]), float(rand[i])))


def plan_bins(
    lengths: Sequence[int],
    cut_points: Sequence[np.ndarray],
    capacity: int,
    *,
    keys: Sequence[str] | None = None,
    seed: int = 0,
    bucket_ratio: float = 0.02,
    pad_tolerance: int = 0,
    max_slack: int | None = None,
    cut_ranks: Sequence[np.ndarray] | None = None,
    max_bins: int | None = None,
) -> BinPlan:
    """Assign items to bins of `capacity` tokens (see the module docstring).

    lengths: item lengths in tokens, each <= capacity.
    cut_points: per item, ascending token offsets (0 < offset < length) where it may be cut.
    keys: stable item ids (for an input-order-independent result); default the indices.
    pad_tolerance: a bin whose slack is at most this many tokens is done (the slack is padded).
    max_slack: when nothing closes the remaining gaps, bins with at most this slack are padded and
        the others dissolved (default: pad_tolerance, i.e. dissolve every bin that cannot be closed).
    cut_ranks: per item, the rank of each cut point (0 best); default all 0.
    max_bins: at most this many bins (a curriculum stage's remaining quota); default floor(total / capacity).
    """
    max_slack = pad_tolerance if max_slack is None else max(max_slack, pad_tolerance)
    lens = np.asarray(lengths, dtype=np.int64)
    n = len(lens)
    if len(cut_points) != n:
        raise ValueError(f"{len(cut_points)} cut point arrays for {n} items")
    ranks = list(cut_ranks) if cut_ranks is not None else [np.zeros(len(c), np.int8) for c in cut_points]
    max_rank = max((int(r.max()) for r in ranks if len(r)), default=0)
    if n and int(lens.max()) > capacity:
        raise ValueError(f"item of {int(lens.max())} tokens is longer than the capacity {capacity}")
    if n and int(lens.min()) <= 0:
        raise ValueError("items must have a positive length")
    keys = list(keys) if keys is not None else [f"{i:012d}" for i in range(n)]
    order = seeded_order(lens, keys, seed, bucket_ratio)
    rank = {item: r for r, item in enumerate(order)}
    n_bins = int(lens.sum()) // capacity if n else 0
    if max_bins is not None:
        n_bins = min(n_bins, max(0, max_bins))
    plan = BinPlan(capacity=capacity)
    if n_bins == 0:
        plan.unplaced = sorted(order, key=lambda i: keys[i])
        return plan

    # -- 1. best-fit decreasing into a fixed number of bins ------------------------------
    contents: list[list[int]] = [[] for _ in range(n_bins)]
    slack = [capacity] * n_bins
    open_bins = [(capacity, b) for b in range(n_bins)]  # sorted by (slack, bin)
    unplaced: list[tuple[int, int, int]] = []  # sorted (length, rank, item)
    for i in order:
        need = int(lens[i])
        k = bisect.bisect_left(open_bins, (need, -1))
        if k == len(open_bins):
            bisect.insort(unplaced, (need, rank[i], i))
            continue
        s, b = open_bins.pop(k)
        contents[b].append(i)
        slack[b] = s - need
        if slack[b] > 0:
            bisect.insort(open_bins, (slack[b], b))

    # -- 2. close the gaps ------------------------------------------------------------------
    fillers: list[Filler | None] = [None] * n_bins
    active = set(range(n_bins))
    where = {item: b for b in range(n_bins) for item in contents[b]}
    placed = sorted((int(lens[i]), rank[i], i) for i in where)  # every whole item in a bin

    def is_pending(b: int) -> bool:
        return b in active and fillers[b] is None and slack[b] > pad_tolerance

    def take_whole(b: int) -> bool:
        moved = False
        while slack[b] > pad_tolerance:
            k = bisect.bisect_right(unplaced, (slack[b], math.inf, 0))
            if k == 0:
                break
            entry = unplaced.pop(k - 1)
            contents[b].append(entry[2])
            where[entry[2]] = b
            bisect.insort(placed, entry)
            slack[b] -= entry[0]
            moved = True
        return moved

    def swap(b: int) -> bool:
        """Swap one item of bin b for a longer unplaced one that closes its gap."""
        s = slack[b]
        for pos, x in enumerate(contents[b]):
            lo, hi = int(lens[x]) + s - pad_tolerance, int(lens[x]) + s
            k = bisect.bisect_right(unplaced, (hi, math.inf, 0)) - 1
            if k >= 0 and unplaced[k][0] >= lo:
                entry = unplaced.pop(k)
                y = entry[2]
                contents[b][pos] = y
                where[y] = b
                del where[x]
                bisect.insort(placed, entry)
                x_entry = (int(lens[x]), rank[x], x)
                placed.pop(bisect.bisect_left(placed, x_entry))
                bisect.insort(unplaced, x_entry)
                slack[b] = s + int(lens[x]) - entry[0]
                return True
        return False

    def trade(b: int) -> bool:
        """Swap one item of bin b for a longer one of another open bin, closing b's gap.

        The other bin's gap grows by as much: trades gather the slack of many bins into a few,
        which then take unplaced items whole or are dissolved (their items carried over),
        instead of every bin needing a cut.
        """
        s = slack[b]
        best: tuple[int, int, int, int] | None = None  # (partner slack, pos, y, partner)
        for pos, x in enumerate(contents[b]):
            lo, hi = int(lens[x]) + s - pad_tolerance, int(lens[x]) + s
            k = bisect.bisect_right(placed, (hi, math.inf, 0)) - 1
            while k >= 0 and placed[k][0] >= lo:
                y = placed[k][2]
                c = where[y]
                if c != b and is_pending(c) and (best is None or slack[c] > best[0]):
                    best = (slack[c], pos, y, c)
                k -= 1
        if best is None:
            return False
        _, pos, y, c = best
        x = contents[b][pos]
        contents[b][pos] = y
        contents[c][contents[c].index(y)] = x
        where[x], where[y] = c, b
        delta = int(lens[y]) - int(lens[x])
        slack[b] -= delta
        slack[c] += delta
        return True

    def best_cut(y: int, s: int) -> tuple[tuple[int, int, int], int] | None:
        """(score, cut index) of item y's best cut within s tokens: the coarsest rank that closes the gap."""
        cps, rks = cut_points[y], ranks[y]
        fallback: tuple[tuple[int, int, int], int] | None = None
        for r in range(max_rank + 1):
            allowed = np.flatnonzero(rks <= r) if r < max_rank else None
            pts = cps if allowed is None else cps[allowed]
            j = int(np.searchsorted(pts, s, side="right")) - 1
            if j < 0:
                continue
            used = int(pts[j])
            index = j if allowed is None else int(allowed[j])
            if s - used <= pad_tolerance:
                return (0, r, int(lens[y]) - used), index
            if r == max_rank and s - used <= max_slack:
                # a cut that leaves more than max_slack would write a sample below min_fill
                fallback = ((1, s - used, 0), index)
        return fallback

    def fill_with_cut(b: int) -> bool:
        s = slack[b]
        start = bisect.bisect_right(unplaced, (s, math.inf, 0))
        best: tuple[tuple[int, int, int], int, Filler] | None = None
        for k in range(start, min(len(unplaced), start + _FILLER_CANDIDATES)):
            y = unplaced[k][2]
            found = best_cut(y, s)
            if found is None:
                continue
            score, j = found
            if best is None or score < best[0]:
                best = (score, k, Filler(item=y, used=int(cut_points[y][j]), cut_index=j))
        if best is None:
            return False
        _, k, filler = best
        unplaced.pop(k)
        fillers[b] = filler
        slack[b] = s - filler.used
        return True

    while True:
        pending = sorted(
            (b for b in active if fillers[b] is None and slack[b] > pad_tolerance), key=lambda b: (slack[b], b)
        )
        if not pending:
            break
        progress = False
        for b in pending:
            if take_whole(b):
                progress = True
            if slack[b] <= pad_tolerance:
                continue
            if swap(b) or trade(b):
                progress = True
        if progress:
            continue
        # no whole-item move closes any gap: cut fillers, smallest gap first
        for b in pending:
            if fill_with_cut(b):
                progress = True
        if not progress:
            worst = max(pending, key=lambda b: (slack[b], b))
            if slack[worst] <= max_slack:
                break  # every open gap is small enough to pad; dissolving would lose more than it gains
            for item in contents[worst]:
                entry = (int(lens[item]), rank[item], item)
                placed.pop(bisect.bisect_left(placed, entry))
                del where[item]
                bisect.insort(unplaced, entry)
            contents[worst] = []
            active.discard(worst)
            plan.dissolved_bins += 1
            plan.dissolved_gaps.append(slack[worst])

    for b in sorted(active):
        plan.bins.append(contents[b])
        plan.fillers.append(fillers[b])
    plan.unplaced = sorted((item for _, _, item in unplaced), key=lambda i: keys[i])
    return plan
