"""Packing leaves out pairs the model judge rejected; a person's verdict on a pair wins over the model's."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from lc_assets.lib.lineage import LineageStore
from lc_assets.lib.lineage.judge import record_judgements
from lc_assets.lib.lineage.review import PairReview
from lc_assets.lib.packing import PackingConfig
from lc_assets.lib.packing.run import pack_pool, stage_summary
from lc_assets.lib.packing.store import load_reviewed_pool
from lc_assets.lib.review import apply_verdicts
from lc_assets_tests.packing.conftest import make_pool, seed_lineage

T0 = datetime(2026, 12, 2, 10, 0)


def _verdict(pair_id: str, section_id: str, verdict: str, kept: bool, config: str = "judge-a", at=T0) -> dict:
    return dict(
        pair_id=pair_id, section_id=section_id, verdict=verdict, standalone=True, kept=kept, keep_policy="supported",
        check_text="c", error_code=None, error_detail=None, raw_text="{}", judge_model="m", backend="b",
        prompt_tokens=1, completion_tokens=1, seconds=0.1, config_hash=config, generation_config_hash="gen-a",
        run_id="judge-1", created_at=at,
    )  # fmt: skip


@pytest.fixture
def judged(tmp_path):
    store = LineageStore(tmp_path / "lineage.duckdb")
    sections = make_pool(40, seed=5, prefix="j", pairs=(2, 6))
    seed_lineage(store, sections)
    rejected = [sections[i].pairs[0] for i in range(4)]  # the model rejects four pairs
    kept = sections[4].pairs[0]
    rows = [_verdict(p.pair_id, sections[i].section_id, "unsupported", False) for i, p in enumerate(rejected)]
    rows.append(_verdict(kept.pair_id, sections[4].section_id, "supported", True))
    record_judgements(store, rows)
    # a person accepted the first rejected pair and rejected the kept one: people win
    apply_verdicts(
        store,
        [PairReview(rejected[0].pair_id, "ann", "accept", reviewed_at=T0),
         PairReview(kept.pair_id, "ann", "reject", reviewed_at=T0)],
        run_id="review-1", config_hash="c",
    )  # fmt: skip
    return store, sections, rejected, kept


def _pair_ids(pool) -> set[str]:
    return {p.pair_id for s in pool.sections for p in s.pairs}


def test_rejected_pairs_are_left_out_unless_a_person_reviewed_them(judged):
    store, sections, rejected, kept = judged
    pool = load_reviewed_pool(store, "k", "gen-a", "exclude_rejected", "exclude_rejected")
    ids = _pair_ids(pool)
    assert pool.judge_excluded_pairs == 3 and pool.excluded_pairs == 1
    assert rejected[0].pair_id in ids  # the model rejected it, a person accepted it
    assert not {p.pair_id for p in rejected[1:]} & ids
    assert kept.pair_id not in ids  # the model kept it, a person rejected it
    assert [s.section_id for s in pool.sections] == sorted(s.section_id for s in sections)  # no section lost
    ignored = load_reviewed_pool(store, "k", "gen-a", "exclude_rejected", "ignore")
    assert ignored.judge_excluded_pairs == 0 and {p.pair_id for p in rejected} <= _pair_ids(ignored)


def test_the_newest_model_verdict_decides(judged):
    store, sections, rejected, _ = judged
    later = _verdict(rejected[1].pair_id, sections[1].section_id, "supported", True, config="judge-b",
                     at=T0 + timedelta(hours=1))  # fmt: skip
    record_judgements(store, [later])
    pool = load_reviewed_pool(store, "k", "gen-a", "exclude_rejected", "exclude_rejected")
    assert pool.judge_excluded_pairs == 2 and rejected[1].pair_id in _pair_ids(pool)


def test_packing_excludes_judge_rejected_pairs_by_default_and_reports_them(judged, tok, tmp_path):
    store, _, rejected, _ = judged
    cfg = PackingConfig(sample_tokens=4096, allow_small_samples=True)
    assert cfg.model_judgements == "exclude_rejected"
    logs: list[str] = []
    run = pack_pool(store, tok, cfg, run_id="p1", root=tmp_path / "packed", log=logs.append)
    stage = run.stages[0]
    assert stage.judged_out == 3 and stage_summary(stage)["pairs_rejected_by_judge"] == 3
    assert any("model judge left out 3 rejected pair(s)" in m for m in logs)
    claims = {
        p
        for used, dropped in store.query(
            "SELECT used_pair_ids, dropped_pair_ids FROM packed_sample_sections WHERE pool_key = ?", [run.pool_key]
        )
        for p in [*used, *dropped]
    }
    assert not {p.pair_id for p in rejected[1:]} & claims


def test_ignore_packs_the_pairs_as_generated(judged, tok, tmp_path):
    store, _, rejected, _ = judged
    cfg = PackingConfig(sample_tokens=4096, allow_small_samples=True, model_judgements="ignore")
    run = pack_pool(store, tok, cfg, run_id="p2", root=tmp_path / "packed", log=lambda m: None)
    assert run.stages[0].judged_out == 0
    assert cfg.config_hash() != PackingConfig(sample_tokens=4096, allow_small_samples=True).config_hash()
