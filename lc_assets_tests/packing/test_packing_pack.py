"""Packing sections into samples of exactly N tokens, without replacement."""

from __future__ import annotations

import random

import numpy as np
import pytest

from lc_assets.lib.packing import EmptyPoolError, PackingConfig, pack_sections
from lc_assets.lib.sections import QAPair, Section

N = 8192


def _cfg(**kw) -> PackingConfig:
    return PackingConfig(sample_tokens=kw.pop("sample_tokens", N), allow_small_samples=True, **kw)


@pytest.fixture(scope="module")
def packed(tok, pool):
    return pack_sections(pool, tok, _cfg(seed=7))


def _all_ids(result) -> list[str]:
    return [sid for s in result.samples for sid in s.section_ids]


def test_every_sample_has_exactly_n_tokens_and_one_bos(packed, tok):
    assert packed.samples
    bos = tok.token_to_id(tok.bos_token)
    for s in packed.samples:
        assert s.num_tokens == N == len(s.input_ids)
        assert s.input_ids[0] == bos and int((s.input_ids == bos).sum()) == 1
        pad = s.input_ids[s.num_real_tokens :]
        assert (pad == s.pad_token_id).all() and s.pad_token_id == tok.token_to_id(tok.eos_token)
        assert not s.loss_mask()[s.num_real_tokens :].any()  # pad is never trained on
        assert tok.decode(s.input_ids[: s.num_real_tokens]) == s.text
    m = packed.metrics
    assert m.fill_min >= 0.99 and m.fill_mean >= 0.995
    assert m.real_tokens + m.pad_tokens == N * m.n_samples


def test_no_section_is_used_twice_and_nothing_vanishes(packed, pool):
    used = _all_ids(packed)
    assert len(used) == len(set(used)) and packed.metrics.section_reuse_count == 0
    leftover = {s.section_id for s in packed.leftovers}
    rejected = {r.section_id for r in packed.rejected}
    assert not set(used) & leftover
    assert set(used) | leftover | rejected == {s.section_id for s in pool}


def test_only_the_last_section_is_cut_at_a_boundary(packed, tok):
    by_id = {}
    for s in packed.samples:
        for sid, (a, b) in zip(s.section_ids[:-1], s.section_spans[:-1], strict=True):
            by_id[sid] = (a, b)
            assert tok.decode(s.input_ids[a:b]).endswith("<|eot_id|>")  # whole conversations
        if s.cut:
            assert s.cut.section_id == s.section_ids[-1]
            a, b = s.section_spans[-1]
            tail = tok.decode(s.input_ids[a:b])
            assert b - a == s.cut.used_tokens < s.cut.section_tokens
            if s.cut.kind in ("pair", "paragraph"):
                assert tail.endswith("<|eot_id|>" if s.cut.kind == "pair" else "\n\n")
            else:  # finer kinds close gaps no pair or paragraph end closes: never inside a word
                assert s.cut.kind in ("line", "sentence", "whitespace", "token") and not tail[-1].isspace()
    assert packed.metrics.n_cut_sections == sum(1 for s in packed.samples if s.cut)


def test_loss_spans_are_exactly_the_assistant_answers(packed, pool, tok):
    answers = {s.section_id: [p.answer for p in s.pairs] for s in pool}
    for s in packed.samples:
        expected = []
        for sid in s.section_ids:
            n = s.cut.pairs_used if s.cut and sid == s.cut.section_id else len(answers[sid])
            expected += answers[sid][:n]
        got = [tok.decode(s.input_ids[a:b]) for a, b in s.target_spans]
        assert got == expected
        assert [s.text[c:d] for c, d in s.target_char_spans] == expected
        assert [tok.decode(s.input_ids[a:b]) for a, b in s.loss_spans] == [e + "<|eot_id|>" for e in expected]
        labels = s.labels()
        assert (labels[~s.loss_mask()] == -100).all()


def test_deterministic_under_seed_and_input_order(tok, pool, packed):
    again = pack_sections(list(reversed(pool)), tok, _cfg(seed=7))
    assert [s.sample_id for s in again.samples] == [s.sample_id for s in packed.samples]
    assert all(np.array_equal(a.input_ids, b.input_ids) for a, b in zip(again.samples, packed.samples, strict=True))
    other = pack_sections(pool, tok, _cfg(seed=8))
    assert [s.section_ids for s in other.samples] != [s.section_ids for s in packed.samples]


def test_leftovers_carry_over_to_the_next_run(tok, pool_factory):
    first_pool = pool_factory(70, seed=1, prefix="a")
    run1 = pack_sections(first_pool, tok, _cfg())
    assert run1.leftovers, "the pool should not divide into whole samples"
    new = pool_factory(70, seed=2, prefix="b")
    run2 = pack_sections(new, tok, _cfg(), leftovers=run1.leftovers)
    used1, used2 = set(_all_ids(run1)), set(_all_ids(run2))
    assert not used1 & used2  # a section is packed once over both runs
    carried = {s.section_id for s in run1.leftovers}
    assert carried <= used2 | {s.section_id for s in run2.leftovers}
    assert carried & used2  # leftovers are actually used next time
    # leftovers of run 1 are not packed again if passed twice
    dup = pack_sections(new, tok, _cfg(), leftovers=[*run1.leftovers, *run1.leftovers[:2]])
    assert sum(r.reason.startswith("duplicate") for r in dup.rejected) == 2


def test_pool_smaller_than_a_sample_is_all_leftover(tok, pool_factory):
    small = pool_factory(3, seed=3, prefix="c")
    result = pack_sections(small, tok, _cfg())
    assert result.samples == [] and len(result.leftovers) == 3
    assert "less than one sample" in result.message


def test_empty_pool_is_an_error(tok):
    with pytest.raises(EmptyPoolError, match="nothing to pack"):
        pack_sections([], tok, _cfg(), leftovers=[])


def _long_section(sid: str, paragraphs: int, pairs: int) -> Section:
    rng = random.Random(sid)
    text = "\n\n".join(
        " ".join(rng.choice(["alpha", "beta", "gamma", "delta"]) for _ in range(60)) for _ in range(paragraphs)
    )
    qa = tuple(QAPair(f"{sid}-p{j}", j, f"Question {j} about the text?", "An answer " * 30) for j in range(pairs))
    return Section(sid, "c", "d", "books", "cc-by-4.0", text, qa)


def test_section_longer_than_n_is_split_at_pair_boundaries(tok, pool_factory):
    big = _long_section("big", paragraphs=30, pairs=40)  # ~1.9k-token chunk + 40 pairs of ~35 tokens
    cfg = _cfg(sample_tokens=2048)
    result = pack_sections([big, *pool_factory(12, seed=4, prefix="f", paragraphs=(1, 3))], tok, cfg)
    parts = result.split_parts["big"]
    assert len(parts) >= 2 and result.metrics.n_split_sections == 1
    placed = [sid for sid in _all_ids(result) + [s.section_id for s in result.leftovers] if sid.startswith("big/")]
    assert sorted(placed) == sorted(parts)
    rejected = pack_sections([big], tok, _cfg(sample_tokens=2048, oversize="reject"))
    assert "longer than a sample" in rejected.rejected[0].reason


def test_section_whose_chunk_alone_exceeds_n_is_rejected_with_reason(tok):
    huge = _long_section("huge", paragraphs=80, pairs=3)
    result = pack_sections([huge], tok, _cfg(sample_tokens=2048))
    assert [r.section_id for r in result.rejected] == ["huge"]
    assert "cannot be split at pair boundaries" in result.rejected[0].reason
    assert result.samples == [] and result.leftovers == []
    # what a user reads (asset metadata, log) says why nothing was packed, not only how many were rejected
    assert "1 rejected (chunk with one pair is longer than a sample 1)" in result.message


def test_cut_remainder_can_be_carried(tok, pool_factory):
    # short chunks with many pairs: pair boundaries come early, so gaps are closed by pair cuts
    qa_heavy = pool_factory(60, seed=5, prefix="q", paragraphs=(1, 1), pairs=(6, 14))
    cfg = _cfg(sample_tokens=4096, carry_cut_remainder=True, cut_boundaries="pair", pad_tolerance=0.0)
    result = pack_sections(qa_heavy, tok, cfg)
    carried = [c for c in result.cuts if c.carried_as]
    assert carried and all(c.kind == "pair" for c in result.cuts)
    left = {s.section_id: s for s in result.leftovers}
    for c in carried:
        rest = left[c.carried_as]
        assert tuple(p.pair_id for p in rest.pairs) == c.cut_pair_ids
    assert result.metrics.cut_dropped_tokens == sum(
        c.section_tokens - c.used_tokens for c in result.cuts if not c.carried_as
    )


def test_message_counts_what_a_text_cut_drops(tok, pool_factory):
    # long chunks, few pairs: gaps are closed inside the chunk text, which cuts off every pair of the section
    result = pack_sections(pool_factory(40, seed=6, prefix="t", paragraphs=(8, 16), pairs=(1, 3)), tok, _cfg())
    dropped = [c for c in result.cuts if not c.carried_as]
    assert any(c.kind != "pair" and c.pairs_total for c in dropped)
    pairs = sum(c.pairs_total - c.pairs_used for c in dropped)
    tokens = result.metrics.cut_dropped_tokens
    assert f"cut off and not packed: {tokens:,} tokens, {pairs} pairs" in result.message


def test_metrics_report_bias_and_source_mix(packed):
    m = packed.metrics
    assert 0.0 <= m.ks_length_bias < 0.2  # packing most of the pool barely biases lengths
    assert set(m.source_tokens) <= {"books", "code", "web"}
    assert sum(m.source_tokens.values()) == m.real_tokens - m.n_samples  # all but the BOS tokens
    md = m.as_metadata()
    assert md["section_reuse_count"] == 0 and md["n_samples"] == len(packed.samples)
