"""Packing that cannot fail silently or corrupt: cut fallback, named failures, concurrent runs, evidence spans."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from lc_assets.lib.lineage import LineageStore, insert_rows
from lc_assets.lib.packing import PackingConfig, pack_sections
from lc_assets.lib.packing.evidence import load_evidence, paragraph_spans
from lc_assets.lib.packing.render import SectionRenderer
from lc_assets.lib.sections import QAPair, Section
from lc_assets_tests.packing.conftest import make_pool, seed_lineage

WORDS = "and the lord said unto moses in that day there was light upon the waters of israel".split()


def _bible(n_sections: int, verses: int, seed: int = 0) -> list[Section]:
    """Sections whose text has no blank line at all: one verse per line (as the demo's bible)."""
    rng = random.Random(seed)
    out = []
    for i in range(n_sections):
        lines = [
            f"{i + 1}:{v + 1} " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30))) for v in range(verses)
        ]
        out.append(
            Section(f"bible-{i:02d}", f"bc{i}", "bible", "bible", "public-domain", "\n".join(lines), chunk_index=i)
        )
    return out


def test_text_without_blank_lines_is_cut_at_lines(tok):
    pool = _bible(11, 60)
    cfg = PackingConfig(sample_tokens=8192, allow_small_samples=True)
    result = pack_sections(pool, tok, cfg)
    assert sum(len(s.text) for s in pool) // 4 > 8192 and result.samples and not result.failure
    assert set(result.metrics.cuts_by_kind) <= {"line", "sentence"} and result.metrics.cuts_by_kind
    for s in result.samples:
        assert tok.encode(s.text) == s.input_ids[: s.num_real_tokens].tolist()
        if s.cut:
            assert s.text.endswith("\n")  # cut after a whole verse line


def test_a_pool_that_could_fill_a_sample_gives_one_or_names_the_reason(tok):
    pool = _bible(11, 60)
    old = PackingConfig(sample_tokens=8192, allow_small_samples=True, cut_boundaries="pair_or_paragraph")
    result = pack_sections(pool, tok, old)
    assert not result.samples and result.metrics.packable_tokens >= 8192
    assert (
        "no unplaced section has a cut point" in result.failure and "11 of 11 items have no cut point" in result.failure
    )
    with pytest.raises(ValueError, match="dissolved"):
        result.raise_for_failure()
    small = pack_sections(pool[:1], tok, old)
    assert not small.failure and "less than one sample" in small.message  # a real shortage is no failure


def test_a_pool_barely_over_one_sample_whose_cuts_miss_the_gap_is_carried_over(tok):
    # two sections of two long paragraphs each, ~1,150 tokens, cut only at paragraphs: one whole leaves a gap of ~900
    # that the other's only cut point (after its first paragraph) cannot close to min_fill; the data, not the
    # config: carried over, no failure
    rng = random.Random(5)

    def line(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    pool = [
        Section(
            f"two-lines-{i}",
            f"tl{i}",
            "two-lines",
            "two-lines",
            "public-domain",
            f"{line(520)}\n\n{line(530)}\n",
            chunk_index=i,
        )
        for i in range(2)
    ]
    cfg = PackingConfig(sample_tokens=2048, allow_small_samples=True, cut_boundaries="pair_or_paragraph")
    result = pack_sections(pool, tok, cfg)
    assert 2048 <= result.metrics.packable_tokens < 2 * 2048
    assert not result.samples and not result.failure, result.message
    assert result.message.startswith("no sample yet") and "carried over" in result.message
    assert {s.section_id for s in result.leftovers} == {"two-lines-0", "two-lines-1"}
    result.raise_for_failure()  # nothing to raise


def _materialize(tmp_path, monkeypatch, run_config):
    from lc_assets.defs.packing.assets import packed_documents
    from lc_assets.defs.resources import LineageStoreResource, TokenizerResource

    monkeypatch.setenv("LC_ASSETS_DATA_DIR", str(tmp_path / "data"))
    return dg.materialize(
        [packed_documents],
        resources={
            "lineage": LineageStoreResource(path=str(tmp_path / "lineage.duckdb")),
            "target_tokenizer": TokenizerResource(),
        },
        run_config={"ops": {"packed_documents": {"config": run_config}}},
        raise_on_error=False,
    )


def test_asset_fails_with_the_reason_and_a_failed_check(tmp_path, monkeypatch):
    seed_lineage(LineageStore(tmp_path / "lineage.duckdb"), _bible(11, 60))
    result = _materialize(
        tmp_path, monkeypatch, {"sample_tokens": 8192, "allow_small_samples": True, "cut_boundaries": "pair"}
    )
    assert not result.success
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not checks["packed_pool_used"].passed
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "could fill one" in str(failure.event_specific_data.error)


def test_asset_packs_the_bible_and_checks_pass(tmp_path, monkeypatch):
    seed_lineage(LineageStore(tmp_path / "lineage.duckdb"), _bible(11, 60))
    result = _materialize(
        tmp_path, monkeypatch, {"sample_tokens": 8192, "allow_small_samples": True, "min_mean_fill": 0.99}
    )
    assert result.success
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == dict.fromkeys(checks, True) and len(checks) == 5
    assert not list((tmp_path / "data" / "packed").glob("*/*/.tmp-*"))


@pytest.mark.parametrize("shared_lock", [True, False])
def test_two_concurrent_runs_never_pack_a_section_twice(tmp_path, shared_lock):
    db = tmp_path / "lineage.duckdb"
    seed_lineage(LineageStore(db), make_pool(120, seed=12, prefix="cc"))
    roots = [tmp_path / "packed"] * 2 if shared_lock else [tmp_path / "a", tmp_path / "b"]
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "lc_assets_tests.packing.pack_worker", str(db), str(root), f"run-{k}"],
            stdout=subprocess.PIPE, text=True, env=env,
        )
        for k, root in enumerate(roots)
    ]  # fmt: skip
    outs = [json.loads(p.communicate(timeout=600)[0].strip().splitlines()[-1]) for p in procs]
    store = LineageStore(db)
    made = [sid for o in outs for sid in o.get("samples", [])]
    assert made and len(made) == len(set(made))
    assert store.scalar("SELECT count(*) FROM packed_samples") == len(made)
    claims = []
    for sid, used, dropped in store.query(
        "SELECT base_section_id, used_pair_ids, dropped_pair_ids FROM packed_sample_sections"
    ):
        claims += [(sid, c) for c in [*used, *dropped]] or [(sid, "<chunk>")]
    assert len(claims) == len(set(claims))  # no section (pair) in two samples
    if shared_lock:  # the second run waited and packed what the first left
        assert all("error" not in o for o in outs)
    else:  # no shared lock: the lineage transaction refused the later run's overlapping claims
        errors = [o["error"] for o in outs if "error" in o]
        assert all("PackingConflictError" in e for e in errors)
        published = [p for r in roots for p in r.glob("*/*/*") if not p.name.startswith(".")]
        assert len(published) == sum(1 for o in outs if o.get("samples"))  # a refused run published nothing


def test_evidence_spans_from_paragraph_ids_and_from_qa_evidence(tmp_path, tok):
    from lc_assets.lib.generation.masking import split_paragraphs

    text = "Intro line.\n\nFirst paragraph here.\nIt has two lines.\n\nA very long paragraph. " + "More words. " * 40
    count = lambda xs: [len(x) // 4 for x in xs]  # noqa: E731
    pieces = split_paragraphs(text, count, 20)  # the long paragraph is split into pieces
    assert len(pieces) > 3
    shown = "\n\n".join(p.text for p in pieces[2:4])
    spans = paragraph_spans(text, [p.paragraph_id for p in [pieces[1], *pieces[2:4]]], shown)
    assert spans == [(p.char_start, p.char_end) for p in [pieces[1], *pieces[2:4]]]
    store = LineageStore(tmp_path / "l.duckdb")
    pairs = tuple(QAPair(f"s1-p{j}", j, f"Q{j}?", f"A{j}.") for j in range(3))
    section = Section("s1", "c1", "d1", "src", "cc0", text, pairs)
    seed_lineage(store, [section], max_paragraph_tokens=20)  # pair 2's prompt showed a piece of a split paragraph
    found, sources = load_evidence(store, [section])
    assert sources == {"qa_evidence": 0, "shown_paragraphs": 3, "none": 0} and set(found) == {"s1-p0", "s1-p1", "s1-p2"}
    assert found["s1-p2"] == [(pieces[2].char_start, pieces[2].char_end)]
    with store.transaction() as con:
        insert_rows(con, "qa_evidence", [dict(pair_id="s1-p0", section_id="s1", chunk_id="c1", quote_index=0,
                                              char_start=13, char_end=35, quote=text[13:35], origin="model", score=100.0,
                                              window_index=0, run_id="r", config_hash="g")])  # fmt: skip
    found, sources = load_evidence(store, [section])
    assert found["s1-p0"] == [(13, 35)] and sources["qa_evidence"] == 1 and sources["shown_paragraphs"] == 2
    # the distance of a pair: from its answer back to its evidence, in tokens of the rendered section
    cfg = PackingConfig(sample_tokens=256, allow_small_samples=True)
    r = SectionRenderer(tok, cfg, evidence=found).render_one(section)
    header = len(tok.encode("<|start_header_id|>user<|end_header_id|>\n\n"))
    assert r.pair_distances[0] == int(r.target_spans[0][0]) - (header + len(tok.encode(text[:13])))
    assert r.pair_distances[1] > r.pair_distances[0] > 0 or r.pair_distances[1] > 0
