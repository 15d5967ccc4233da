"""Cross sections: pairs about two chunks of one document far apart, grown by the ordinary loop."""

from __future__ import annotations

import pytest

from lc_assets.lib.generation.cross import (
    CROSS_SEPARATOR,
    CrossGenerationConfig,
    CrossMasker,
    CrossPairConfig,
    grow_cross_sections,
    plan_cross_sections,
)
from lc_assets.lib.generation.masking import split_paragraphs
from lc_assets.lib.lineage import LineageStore, insert_rows
from lc_assets.lib.lineage.cross import ChunkRef, load_cross_pairs, shard_chunk_refs

from .conftest import make_chunk, small_config
from .doubles import ScriptedBackend

N_CHUNKS = 6


def _store_book(store: LineageStore, tok, n_chunks: int = N_CHUNKS) -> list[ChunkRef]:
    """One document of `n_chunks` distinct chunks (documents, chunks, shard_chunks rows as the chunks step stores)."""
    texts = [make_chunk(30, 30, tag=f"c{i}") for i in range(n_chunks)]
    counts = tok.count_batch(texts)
    doc = dict(document_id="book", source="test", title="The Book", license="CC0", byte_size=1, n_tokens=sum(counts),
               tokenizer="t", text="\n\n".join(texts), run_id="seed", config_hash="corpus")  # fmt: skip
    chunks, members = [], []
    for i, (text, n) in enumerate(zip(texts, counts, strict=True)):
        chunks.append(dict(chunk_id=f"book-{i}", document_id="book", config_hash="ck", shard="s", chunk_index=i,
                           char_start=0, char_end=len(text), token_start=0, token_end=n, n_tokens=n, cut_kind="paragraph",
                           tokenizer="t", text=text, run_id="seed"))  # fmt: skip
        members.append(dict(shard="s", config_hash="ck", chunk_id=f"book-{i}", document_id="book", run_id="seed"))
    with store.transaction() as con:
        insert_rows(con, "documents", [doc])
        insert_rows(con, "chunks", chunks)
        insert_rows(con, "shard_chunks", members)
    return shard_chunk_refs(store, "s", "ck")


def _cross_config(chunk_tokens: int, **kw) -> CrossGenerationConfig:
    # the distance range admits partners 2..3 chunks later
    cross = CrossPairConfig(sections_per_chunk=1, steps_per_section=3, min_distance_tokens=2 * chunk_tokens - 5,
                            max_distance_tokens=3 * chunk_tokens + 5, **kw)  # fmt: skip
    return CrossGenerationConfig.of(small_config(), cross)


def test_plan_pairs_each_chunk_with_a_later_one_in_range():
    refs = [ChunkRef(f"c{i}", "d", i, 100) for i in range(8)] + [ChunkRef("x0", "e", 0, 100)]
    cfg = CrossGenerationConfig.of(small_config(), CrossPairConfig(sections_per_chunk=2, min_distance_tokens=300,
                                                                   max_distance_tokens=500))  # fmt: skip
    plan = plan_cross_sections(refs, cfg)
    assert plan and all(d.first.document_id == d.second.document_id == "d" for d in plan)
    assert all(
        300 <= d.distance_tokens <= 500 and d.second.chunk_index - d.first.chunk_index in (3, 4, 5) for d in plan
    )
    assert len({d.section_id for d in plan}) == len(plan) == sum(min(2, len([j for j in (i + 3, i + 4, i + 5) if j < 8]))
                                                                 for i in range(8))  # fmt: skip
    assert plan == plan_cross_sections(refs, cfg)  # seeded
    off = CrossGenerationConfig.of(small_config(), CrossPairConfig())
    assert plan_cross_sections(refs, off) == []
    # its own hash: the base config's sections are untouched by turning cross pairs on
    assert cfg.config_hash() != small_config().config_hash() and cfg.base_config_hash == small_config().config_hash()
    with pytest.raises(ValueError, match="min_distance_tokens"):
        CrossPairConfig(min_distance_tokens=10, max_distance_tokens=5)


def test_cross_masker_shows_one_window_in_each_chunk(target_tokenizer):
    a, b = make_chunk(40, 30, tag="a"), make_chunk(40, 30, tag="b")
    text = a + CROSS_SEPARATOR + b
    paragraphs = split_paragraphs(text, target_tokenizer.count_batch, 120)
    masker = CrossMasker("x", paragraphs, small_config())
    boundary = len(a)
    for step in range(12):
        mask = masker.mask(step)
        windows = mask.windows
        assert mask.long_range and len(windows) == 2
        assert windows[0].char_end <= boundary < windows[1].char_start
        assert CROSS_SEPARATOR.strip() not in windows[0].text + windows[1].text
    assert masker.mask(5) == CrossMasker("x", paragraphs, small_config()).mask(5)  # deterministic


def test_cross_sections_grow_with_evidence_from_both_chunks_and_resume(tmp_path, target_tokenizer):
    store = LineageStore(tmp_path / "lineage.duckdb")
    refs = _store_book(store, target_tokenizer)
    cfg = _cross_config(refs[0].n_tokens)
    plan = plan_cross_sections(refs, cfg, shard="s")
    assert len(plan) >= 3
    backend = ScriptedBackend(tokenizer=target_tokenizer, window=4096)
    first = grow_cross_sections(store, plan[:2], backend, cfg, target_tokenizer, "run-1")
    assert first is not None and first.summary.steps_ok >= 4
    # every accepted pair quotes both chunks, each span in its own chunk's text
    texts = dict(store.query("SELECT chunk_id, text FROM chunks"))
    pairs = load_cross_pairs(store, cfg.base_config_hash)
    assert len(pairs) == first.summary.steps_ok
    for p in pairs:
        chunks_quoted = {c for c, _, _ in p.evidence}
        assert chunks_quoted == set(p.chunk_ids)
        for c, s, e in p.evidence:
            assert 0 <= s < e <= len(texts[c]) and texts[c][s:e].strip()
    rows = store.query("SELECT chunk_id, cross_chunk_id, base_config_hash, config_hash FROM cross_sections")
    assert len(rows) == 2 and all(r[2] == cfg.base_config_hash and r[3] == cfg.config_hash() for r in rows)
    # a rerun grows only what is new; nothing is made twice
    again = grow_cross_sections(store, plan, backend, cfg, target_tokenizer, "run-2")
    assert again is not None and len(again.summary.sections) == len(plan) - 2
    assert grow_cross_sections(store, plan, backend, cfg, target_tokenizer, "run-3") is None
    n_pairs, n_distinct = store.query("SELECT count(*), count(DISTINCT pair_id) FROM qa_pairs")[0]
    assert n_pairs == n_distinct == len(load_cross_pairs(store, cfg.base_config_hash))
    steps = store.query("SELECT section_id, count(*) FROM masked_prompts GROUP BY 1")
    assert len(steps) == len(plan) and all(n == 3 for _, n in steps)
    # `lc-assets lineage prompt` rebuilds a cross step's exact messages (both chunks' windows)
    from lc_assets.lib.lineage.generation import rebuild_prompt

    prompt_id = store.query("SELECT prompt_id FROM masked_prompts WHERE prompt_hash <> '' LIMIT 1")[0][0]
    rebuilt = rebuild_prompt(store, prompt_id)
    assert "Excerpt 2:" in rebuilt.messages[-1]["content"]
    # packing never takes cross sections for sections of their own
    from lc_assets.lib.packing.store import generation_configs

    assert cfg.config_hash() not in {h for h, _, _ in generation_configs(store)}
