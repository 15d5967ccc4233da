"""Packing honours human verdicts: rejected pairs stay out of the pool, fixed pairs are packed with the fixed text."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from lc_assets.lib.lineage import LineageStore
from lc_assets.lib.lineage.review import PairReview
from lc_assets.lib.packing import PackingConfig
from lc_assets.lib.packing.run import pack_pool
from lc_assets.lib.packing.store import load_pool, load_reviewed_pool, pool_key
from lc_assets.lib.review import apply_verdicts
from lc_assets_tests.packing.conftest import make_pool, seed_lineage

FIXED = "A reviewer's fixed answer, with the detail the generated one invented removed."


@pytest.fixture
def reviewed(tmp_path):
    store = LineageStore(tmp_path / "lineage.duckdb")
    sections = make_pool(40, seed=3, prefix="v", pairs=(2, 6))
    seed_lineage(store, sections)
    rejected, fixed = sections[0].pairs[0], sections[1].pairs[1]
    t0 = datetime(2026, 12, 1, 12, 0)
    apply_verdicts(
        store,
        [
            PairReview(rejected.pair_id, "ann", "reject", note="unsupported", reviewed_at=t0),
            PairReview(fixed.pair_id, "ann", "fix", fixed_answer=FIXED, reviewed_at=t0),
            PairReview(sections[2].pairs[0].pair_id, "ann", "accept", reviewed_at=t0),
        ],
        run_id="review-1",
        config_hash="c",
    )
    return store, sections, rejected, fixed


def test_pool_leaves_out_rejected_pairs_and_uses_fixed_text(reviewed):
    store, sections, rejected, fixed = reviewed
    pool = load_reviewed_pool(store, "k", "gen-a", "exclude_rejected")
    assert (pool.excluded_pairs, pool.fixed_pairs) == (1, 1)
    pairs = {p.pair_id: p for s in pool.sections for p in s.pairs}
    assert rejected.pair_id not in pairs
    assert pairs[fixed.pair_id].answer == FIXED and pairs[fixed.pair_id].question == fixed.question
    assert len(pairs) == sum(len(s.pairs) for s in sections) - 1
    assert [s.section_id for s in pool.sections] == sorted(s.section_id for s in sections)  # no section lost
    ignored = load_reviewed_pool(store, "k", "gen-a", "ignore")
    assert (ignored.excluded_pairs, ignored.fixed_pairs) == (0, 0)
    assert load_pool(store, "k", "gen-a") == ignored.sections
    assert {p.pair_id: p for s in ignored.sections for p in s.pairs}[fixed.pair_id].answer == fixed.answer


def test_the_newest_verdict_decides(reviewed):
    store, _, rejected, _ = reviewed
    later = datetime(2026, 12, 2, 9, 0)
    apply_verdicts(store, [PairReview(rejected.pair_id, "bob", "accept", reviewed_at=later)], run_id="r2",
                   config_hash="c")  # fmt: skip
    pool = load_reviewed_pool(store, "k", "gen-a", "exclude_rejected")
    assert pool.excluded_pairs == 0 and rejected.pair_id in {p.pair_id for s in pool.sections for p in s.pairs}
    apply_verdicts(store, [PairReview(rejected.pair_id, "ann", "reject", reviewed_at=later + timedelta(hours=1))],
                   run_id="r3", config_hash="c")  # fmt: skip
    assert load_reviewed_pool(store, "k", "gen-a", "exclude_rejected").excluded_pairs == 1


def test_packing_run_excludes_rejected_pairs_by_default(reviewed, tok, tmp_path):
    store, sections, rejected, fixed = reviewed
    cfg = PackingConfig(sample_tokens=4096, allow_small_samples=True)
    assert cfg.human_reviews == "exclude_rejected"
    run = pack_pool(store, tok, cfg, run_id="p1", root=tmp_path / "packed", log=lambda m: None)
    stage = run.stages[0]
    assert (stage.reviewed_out, stage.reviewed_fixed) == (1, 1)
    claims = {
        p
        for used, dropped in store.query(
            "SELECT used_pair_ids, dropped_pair_ids FROM packed_sample_sections WHERE pool_key = ?", [run.pool_key]
        )
        for p in [*used, *dropped]
    }
    assert rejected.pair_id not in claims and fixed.pair_id in claims
    text = "".join(s.text for s in stage.result.samples)
    assert FIXED in text and fixed.answer not in text
    # the rejected pair never comes back into this pool: every other pair of its section is placed
    rest = load_reviewed_pool(store, run.pool_key, "gen-a", "exclude_rejected").sections
    assert rejected.pair_id not in {p.pair_id for s in rest for p in s.pairs}
    # a pool that ignores reviews packs the rejected pair as generated
    ignoring = cfg.model_copy(update={"human_reviews": "ignore", "pool": "as-generated"})
    assert ignoring.config_hash() != cfg.config_hash()
    other = pack_pool(store, tok, ignoring, run_id="p2", root=tmp_path / "packed", log=lambda m: None)
    assert other.pool_key == pool_key("as-generated", "gen-a", tok.identity)
    text = "".join(s.text for s in other.stages[0].result.samples)
    placed = {p for s in other.stages[0].result.samples for x in s.placed for p in x.used_pair_ids}
    assert rejected.pair_id in placed and rejected.question in text and FIXED not in text
