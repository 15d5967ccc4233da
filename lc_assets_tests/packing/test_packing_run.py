"""A packing run against a real lineage file: pool read back, generation config, publish, checks, curriculum."""

from __future__ import annotations

import json
import random

import pytest

from lc_assets.lib.lineage import LineageStore
from lc_assets.lib.packing import PackingConfig, pack_sections
from lc_assets.lib.packing.config import CurriculumStage
from lc_assets.lib.packing.publish import TMP_PREFIX, recover, verify_written
from lc_assets.lib.packing.run import NoSectionsError, pack_pool
from lc_assets.lib.packing.store import PackingConflictError, load_pool, pool_key, record_stage
from lc_assets.lib.sections import QAPair, Section
from lc_assets_tests.packing.conftest import make_book, make_pool, seed_lineage


def _cfg(n: int = 4096, **kw) -> PackingConfig:
    return PackingConfig(sample_tokens=n, allow_small_samples=True, **kw)


@pytest.fixture
def store(tmp_path) -> LineageStore:
    return LineageStore(tmp_path / "lineage.duckdb")


def _placed_claims(store: LineageStore) -> list[tuple[str, str]]:
    """(base section, pair id or chunk marker) for every claim in the lineage: duplicates would be reuse."""
    out = []
    for sid, used, dropped in store.query(
        "SELECT base_section_id, used_pair_ids, dropped_pair_ids FROM packed_sample_sections"
    ):
        claims = list(used) + list(dropped)
        out += [(sid, c) for c in claims] or [(sid, "<chunk>")]
    return out


def test_run_publishes_after_commit_and_reads_back(store, tok, tmp_path):
    seed_lineage(store, make_pool(40, seed=3, prefix="r"))
    root = tmp_path / "packed"
    run = pack_pool(store, tok, _cfg(), run_id="run-1", root=root, log=lambda m: None)
    stage = run.stages[0]
    assert stage.result.samples and stage.output_dir == root / run.pool_key / "4096" / "run-1"
    assert not list(root.glob(f"*/*/{TMP_PREFIX}*"))  # nothing left unpublished
    assert stage.verify.ok and stage.verify.n_samples == len(stage.result.samples)
    assert run.config.generation_config_hash == "gen-a" and run.reused_sections == []
    manifest = json.loads((stage.output_dir / "manifest.json").read_text())
    assert manifest["config"]["generation_config_hash"] == "gen-a" and manifest["tokenizer"] == tok.identity
    n = store.scalar("SELECT count(*) FROM packed_samples WHERE run_id = 'run-1' AND pool_key = ?", [run.pool_key])
    assert n == len(stage.result.samples)
    claims = _placed_claims(store)
    assert len(claims) == len(set(claims))
    # the pool read back is what the run left: nothing placed comes back
    left = {s.section_id for s in load_pool(store, run.pool_key, "gen-a")}
    placed = {sid for x in stage.result.samples for sid in x.section_ids}
    assert not left & placed
    again = pack_pool(store, tok, _cfg(), run_id="run-2", root=root, log=lambda m: None)
    assert (
        not {sid for x in (again.stages[0].result.samples if again.stages[0].result else []) for sid in x.section_ids}
        & placed
    )


def test_split_sections_remaining_parts_stay_in_the_pool(store, tok, tmp_path):
    rng = random.Random(5)
    text = "\n\n".join(" ".join(rng.choice(["alpha", "beta", "gamma"]) for _ in range(50)) for _ in range(12))
    pairs = tuple(QAPair(f"big-p{j}", j, f"Question {j} about it?", "An answer that is long. " * 12) for j in range(60))
    big = Section("big", "cbig", "dbig", "books", "cc-by-4.0", text, pairs)
    seed_lineage(store, [big, *make_pool(6, seed=8, prefix="x", paragraphs=(1, 2), pairs=(0, 1))])
    # paragraph cuts only: with the finer fallbacks (whitespace) this small pool places every part at once
    cfg = _cfg(2048, cut_boundaries="pair_or_paragraph")
    run = pack_pool(store, tok, cfg, run_id="r1", root=tmp_path, log=lambda m: None)
    result = run.stages[0].result
    assert result.split_parts["big"] and result.samples
    used = {
        p for s in result.samples for x in s.placed if x.section.section_id.startswith("big") for p in x.used_pair_ids
    }
    dropped = {
        p
        for s in result.samples
        for x in s.placed
        if x.section.section_id.startswith("big")
        for p in x.dropped_pair_ids
    }
    rest = [s for s in load_pool(store, run.pool_key, "gen-a") if s.section_id.startswith("big")]
    assert len(rest) == 1 and rest[0].section_id.startswith("big#pairs-")
    remaining = {p.pair_id for p in rest[0].pairs}
    assert remaining and remaining == {p.pair_id for p in pairs} - used - dropped  # nothing lost, nothing twice
    run2 = pack_pool(store, tok, cfg, run_id="r2", root=tmp_path, log=lambda m: None)
    claims = _placed_claims(store)
    assert len(claims) == len(set(claims)) and run2.reused_sections == []


def test_one_explicit_generation_config_default_newest(store, tok, tmp_path):
    seed_lineage(store, make_pool(20, seed=1, prefix="old"), generation_hash="gen-old")
    seed_lineage(store, make_pool(20, seed=2, prefix="new"), generation_hash="gen-new")
    store_con = store.transaction()
    with store_con as con:  # the newer config finished later
        con.execute("UPDATE sections SET updated_at = updated_at + INTERVAL 1 HOUR WHERE config_hash = 'gen-new'")
    run = pack_pool(store, tok, _cfg(), run_id="a", root=tmp_path, log=lambda m: None)
    assert run.config.generation_config_hash == "gen-new" and run.other_generation_configs == {"gen-old": 20}
    assert all(sid.startswith("new") for s in run.stages[0].result.samples for sid in s.section_ids)
    old = pack_pool(store, tok, _cfg(generation_config_hash="gen-old"), run_id="b", root=tmp_path, log=lambda m: None)
    assert all(sid.startswith("old") for s in old.stages[0].result.samples for sid in s.section_ids)
    assert old.pool_key != run.pool_key
    with pytest.raises(NoSectionsError, match="gen-none"):
        pack_pool(store, tok, _cfg(generation_config_hash="gen-none"), run_id="c", root=tmp_path)


def test_curriculum_stages_draw_without_replacement(store, tok, tmp_path):
    seed_lineage(store, make_pool(160, seed=4, prefix="c"))
    stages = (CurriculumStage(sample_tokens=2048, max_samples=3), CurriculumStage(sample_tokens=4096, max_samples=2),
              CurriculumStage(sample_tokens=8192))  # fmt: skip
    # toy sections are ~700 tokens: small samples need some slack (1M samples of 100k sections do not)
    cfg = _cfg(8192, curriculum=stages, pad_tolerance=0.01, min_fill=0.95)
    run = pack_pool(store, tok, cfg, run_id="cur", root=tmp_path, log=lambda m: None)
    got = [len(s.result.samples) for s in run.stages]
    assert got[0] == 3 and got[1] == 2 and got[2] >= 1
    for s in run.stages:
        assert s.output_dir.name == "cur" and s.output_dir.parent.name == str(s.sample_tokens)
        manifest = json.loads((s.output_dir / "manifest.json").read_text())
        assert manifest["config"]["sample_tokens"] == s.sample_tokens and s.verify.ok
        assert all(x.num_tokens == s.sample_tokens for x in s.result.samples)
    claims = _placed_claims(store)
    assert len(claims) == len(set(claims))  # no section in two stages
    # quotas count over runs: the capped stages are full, the last one takes the rest
    logged: list[str] = []
    more = pack_pool(store, tok, cfg, run_id="cur2", root=tmp_path, log=logged.append)
    assert more.stages[0].result is None and "already full" in more.stages[0].note
    assert more.stages[1].result is None
    assert more.stages[0].note in logged  # a stage that packs nothing says so in the run's log


def test_conflicting_claims_are_refused_in_the_transaction(store, tok, tmp_path):
    sections = make_pool(30, seed=6, prefix="k")
    seed_lineage(store, sections)
    cfg = _cfg(generation_config_hash="gen-a")
    key = pool_key(cfg.pool, "gen-a", tok.identity)
    result = pack_sections(load_pool(store, key, "gen-a"), tok, cfg)
    from lc_assets.lib.packing.store import StageRecord

    rec = StageRecord("one", "default", key, result.config_hash, "gen-a", tok.identity, "mixed", 4096, None, "", {})
    record_stage(store, rec, result.samples)
    with pytest.raises(PackingConflictError, match="already placed"):
        record_stage(store, StageRecord(**{**rec.__dict__, "run_id": "two"}), result.samples)
    assert store.scalar("SELECT count(*) FROM packing_runs") == 1


def test_recover_publishes_committed_and_removes_the_rest(tmp_path):
    for run in ("done", "dead"):
        d = tmp_path / "key" / "4096" / f"{TMP_PREFIX}{run}"
        d.mkdir(parents=True)
        (d / "manifest.json").write_text("{}")
    got = recover(tmp_path, committed={"done"})
    assert (tmp_path / "key" / "4096" / "done" / "manifest.json").exists()
    assert not (tmp_path / "key" / "4096" / f"{TMP_PREFIX}dead").exists() and len(got["removed"]) == 1


def test_verify_catches_a_corrupted_dataset(store, tok, tmp_path):
    from datasets import load_from_disk

    seed_lineage(store, make_pool(40, seed=9, prefix="v"))
    run = pack_pool(store, tok, _cfg(), run_id="v1", root=tmp_path, log=lambda m: None)
    path = run.stages[0].output_dir / "hf_dataset"
    ds = load_from_disk(str(path))
    broken = ds.map(lambda r: {"text": r["text"].replace("the", "teh", 1), "input_ids": r["input_ids"][:-1]})
    broken.save_to_disk(str(tmp_path / "broken"))
    report = verify_written(tmp_path / "broken", tok, 4096, 0.99)
    assert not report.ok and report.wrong_length and report.tokenization_mismatch


def test_coherent_mode_keeps_a_book_in_reading_order(store, tok, tmp_path):
    book = make_book("book", 14, seed=2)
    seed_lineage(store, [*book, *make_pool(30, seed=7, prefix="m")])
    run = pack_pool(store, tok, _cfg(8192, mode="coherent"), run_id="coh", root=tmp_path, log=lambda m: None)
    result = run.stages[0].result
    whole_book = [s for s in result.samples if set(s.document_ids) == {"book"}]
    assert whole_book, "a book longer than a sample fills whole samples by itself"
    for s in whole_book:
        order = [x.section.chunk_index for x in s.placed]
        assert order == sorted(order) and order == list(range(order[0], order[0] + len(order)))
    # dependency distances come from the prompts' paragraphs (no qa_evidence table here)
    assert run.stages[0].evidence_sources["shown_paragraphs"] > 0
    assert result.metrics.dependency["median"] > 0
    mixed = pack_sections(load_pool(store, "other-pool", "gen-a"), tok, _cfg(8192))
    assert result.metrics.documents_per_sample < mixed.metrics.documents_per_sample


def test_a_chunk_longer_than_a_short_stage_is_cut_into_pieces_with_their_own_pairs(store, tok, tmp_path):
    rng = random.Random(3)
    paragraphs = [" ".join(rng.choice(["alpha", "beta", "gamma", "delta"]) for _ in range(60)) + "." for _ in range(40)]
    pairs = tuple(QAPair(f"long-p{j}", j, f"What about part {j}?", f"Answer {j}. " * 6) for j in range(24))
    long = Section("long", "clong", "dlong", "books", "cc-by-4.0", "\n\n".join(paragraphs), pairs)
    seed_lineage(store, [long, *make_pool(30, seed=4, prefix="sm", paragraphs=(1, 3))])
    cfg = _cfg(2048, pad_tolerance=0.01, min_fill=0.95)
    run = pack_pool(store, tok, cfg, run_id="short", root=tmp_path, log=lambda m: None)
    result = run.stages[0].result
    pieces = result.split_parts["long"]
    assert pieces and all(p.startswith("long@") for p in pieces)  # the chunk (~3k tokens) alone exceeds 2,048
    placed = [x for s in result.samples for x in s.placed if x.section.section_id.startswith("long@")]
    assert placed, "pieces of the long chunk are packed at the short stage"
    for x in placed:  # every pair placed with a piece has its evidence inside that piece's text
        for pid in x.used_pair_ids:
            j = int(pid.rsplit("p", 1)[1])
            shown = paragraphs[j % len(paragraphs)]
            assert shown in x.section.text
    rest = [s for s in load_pool(store, run.pool_key, "gen-a") if s.section_id.startswith("long")]
    used = {p for x in placed for p in (*x.used_pair_ids, *x.dropped_pair_ids)}
    assert {p.pair_id for s in rest for p in s.pairs} == {p.pair_id for p in pairs} - used
    assert result.metrics.dependency["median"] > 0
