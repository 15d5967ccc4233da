"""Property tests of the bin-packing plan (lengths only, no tokenizer)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lc_assets.lib.packing import ks_2samp, plan_bins


@st.composite
def pools(draw):
    capacity = draw(st.integers(500, 5000))
    n = draw(st.integers(0, 60))
    lengths = [draw(st.integers(1, capacity)) for _ in range(n)]
    cuts = []
    for length in lengths:
        k = draw(st.integers(0, 6))
        pts = sorted({draw(st.integers(1, max(1, length - 1))) for _ in range(k)} - {length})
        cuts.append(np.asarray([p for p in pts if 0 < p < length], dtype=np.int64))
    return capacity, lengths, cuts


@settings(max_examples=150, deadline=None)
@given(pools(), st.integers(0, 3), st.sampled_from([0, 5, 50]))
def test_plan_places_each_item_at_most_once_within_capacity(data, seed, tol):
    capacity, lengths, cuts = data
    plan = plan_bins(lengths, cuts, capacity, seed=seed, pad_tolerance=tol)
    placed = [i for b in plan.bins for i in b] + [f.item for f in plan.fillers if f]
    assert len(placed) == len(set(placed))  # no reuse
    assert sorted(placed + plan.unplaced) == list(range(len(lengths)))  # nothing vanishes
    for _items, f, used in zip(plan.bins, plan.fillers, plan.used_tokens(lengths), strict=True):
        assert used <= capacity
        if f is not None:
            assert f.used == cuts[f.item][f.cut_index] and f.used < lengths[f.item]
    again = plan_bins(lengths, cuts, capacity, seed=seed, pad_tolerance=tol)
    assert again.bins == plan.bins and again.unplaced == plan.unplaced


@settings(max_examples=150, deadline=None)
@given(pools(), st.integers(0, 3), st.sampled_from([0, 5]), st.sampled_from([10, 100]))
def test_no_bin_is_left_with_more_than_max_slack(data, seed, tol, max_slack):
    # a bin closed by a cut that leaves a gap above max_slack would be written below min_fill (seen: slack 28 of
    # 2,048 with max_slack 20): such a bin is padded only within max_slack, else dissolved
    capacity, lengths, cuts = data
    plan = plan_bins(lengths, cuts, capacity, seed=seed, pad_tolerance=tol, max_slack=max_slack)
    for used in plan.used_tokens(lengths):
        assert capacity - used <= max(max_slack, tol)


def test_a_cut_leaving_too_big_a_gap_is_not_taken():
    # bin of 100: item 0 (70) is placed, gap 30; item 1 (50) can only be cut at 5 -> gap 25 > max_slack 10
    plan = plan_bins([70, 50], [np.zeros(0, np.int64), np.asarray([5])], 100, pad_tolerance=0, max_slack=10)
    assert plan.bins == [] and sorted(plan.unplaced) == [0, 1] and plan.dissolved_gaps == [30]
    ok = plan_bins([70, 50], [np.zeros(0, np.int64), np.asarray([25])], 100, pad_tolerance=0, max_slack=10)
    assert ok.bins == [[0]] and ok.fillers[0] is not None and ok.fillers[0].used == 25


def test_plan_is_independent_of_input_order():
    rng = np.random.default_rng(0)
    lengths = rng.integers(100, 900, 200).tolist()
    keys = [f"k{i:03d}" for i in range(200)]
    cuts = [np.arange(50, n, 50) for n in lengths]
    a = plan_bins(lengths, cuts, 4000, keys=keys, seed=3, pad_tolerance=4)
    perm = rng.permutation(200)
    b = plan_bins(
        [lengths[i] for i in perm], [cuts[i] for i in perm], 4000, keys=[keys[i] for i in perm], seed=3, pad_tolerance=4
    )
    as_keys = lambda plan, ks: [sorted(ks[i] for i in items) for items in plan.bins]  # noqa: E731
    assert as_keys(a, keys) == as_keys(b, [keys[i] for i in perm])


def test_fill_is_high_at_production_scale():
    rng = np.random.default_rng(1)
    capacity = 1_048_575
    chunk = np.exp(rng.uniform(np.log(50_000), np.log(150_000), 1500)).astype(int)
    lengths, cuts = [], []
    for c in chunk:
        ends = c + np.cumsum(rng.integers(80, 600, rng.integers(10, 100)))
        lengths.append(int(ends[-1]))
        cuts.append(np.concatenate([np.arange(150, c, 150), ends[:-1]]))
    plan = plan_bins(lengths, cuts, capacity, seed=0, pad_tolerance=1048, max_slack=10_485)
    fill = np.array(plan.used_tokens(lengths)) / capacity
    assert fill.mean() >= 0.999 and fill.min() >= 0.99


def test_item_longer_than_capacity_is_refused():
    with pytest.raises(ValueError, match="longer than the capacity"):
        plan_bins([10, 20], [np.zeros(0), np.zeros(0)], 15)


def test_ks_matches_scipy_when_available():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(2)
    a, b = rng.lognormal(11, 0.5, 300), rng.lognormal(11.1, 0.5, 500)
    d, p = ks_2samp(a, b)
    ref = scipy_stats.ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue, rel=0.05)
    assert ks_2samp(a, a) == (0.0, 1.0) and ks_2samp([], a) == (0.0, 1.0)
