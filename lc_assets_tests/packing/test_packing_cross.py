"""Cross pairs appended to coherent samples: inside the exact length, loss on their answers, distances."""

from __future__ import annotations

import random

import numpy as np

from lc_assets.lib.packing.config import PackingConfig
from lc_assets.lib.packing.packer import pack_sections
from lc_assets.lib.sections import CrossPair, Section

from .conftest import make_book

N = 8192


def _cfg(**kw) -> PackingConfig:
    return PackingConfig(sample_tokens=N, allow_small_samples=True, mode="coherent", **kw)


def _quote_span(section: Section, rng: random.Random) -> tuple[int, int]:
    paragraphs = [i for i in range(len(section.text)) if i == 0 or section.text[i - 2 : i] == "\n\n"]
    start = rng.choice(paragraphs)
    end = section.text.find(".", start) + 1
    return start, end


def cross_pairs_for(book: list[Section], gap: int, per_pair: int = 2, seed: int = 0) -> list[CrossPair]:
    """Pairs about chunk k and chunk k + gap, quoting one sentence of each (as generation stores them)."""
    rng = random.Random(seed)
    out = []
    for k in range(len(book) - gap):
        a, b = book[k], book[k + gap]
        for j in range(per_pair):
            ev = ((a.chunk_id, *_quote_span(a, rng)), (b.chunk_id, *_quote_span(b, rng)))
            out.append(
                CrossPair(
                    f"x{k}-{j}",
                    f"xs{k}",
                    a.document_id,
                    (a.chunk_id, b.chunk_id),
                    f"How do part {k} and part {k + gap} relate ({j})?",
                    f"Part {k} leads to part {k + gap}, {j}.",
                    ev,
                )  # fmt: skip
            )
    return out


def test_cross_pairs_are_appended_inside_the_exact_length_with_loss_on_their_answers(tok):
    book = make_book("book", 30, seed=5)
    pairs = cross_pairs_for(book, gap=3)
    rng = random.Random(2)
    evidence = {p.pair_id: [_quote_span(s, rng)] for s in book for p in s.pairs}  # within-section pairs
    result = pack_sections(book, tok, _cfg(), cross_pairs=pairs, evidence=evidence)
    with_cross = [s for s in result.samples if s.cross_pair_ids]
    assert with_cross, result.message
    placed_ids = [pid for s in result.samples for pid in s.cross_pair_ids]
    assert len(placed_ids) == len(set(placed_ids))  # each cross pair placed once
    by_id = {p.pair_id: p for p in pairs}
    for s in with_cross:
        assert s.num_tokens == N and s.num_real_tokens <= N
        chunks = {p.section.chunk_id for p in s.placed}
        k = len(s.cross_pair_ids)
        for pid in s.cross_pair_ids:
            assert set(by_id[pid].chunk_ids) <= chunks
        # the block is after the last section, and its answers are the last k targets, trained on
        last_section_end = int(s.section_spans[-1][1])
        tail = s.target_spans[-k:]
        assert (tail[:, 0] >= last_section_end).all() and int(s.loss_spans[-1][1]) <= s.num_real_tokens
        labels = s.labels()
        for (a, b), pid in zip(tail, s.cross_pair_ids, strict=True):
            assert tok.decode(s.input_ids[a:b].tolist()).strip() == by_id[pid].answer
            assert (labels[a:b] == s.input_ids[a:b]).all()
        assert (labels[last_section_end : int(tail[0][0])] == -100).all()  # the question is not trained on
        # distances: nearest <= farthest, both back into the sample, the farthest counted with all pairs
        d = s.cross_distances
        assert d.shape == (k, 2) and (d[:, 0] > 0).all() and (d[:, 0] <= d[:, 1]).all() and (d[:, 1] < N).all()
        assert set(d[:, 1].tolist()) <= set(s.dependency_distances.tolist())
        # the ids re-tokenize from the text (a trainer reading the text gets the same sample)
        assert tok.encode(s.text)[: s.num_real_tokens] == s.input_ids[: s.num_real_tokens].tolist()
    m = result.metrics
    # the target scaled to this sample length: median cross distance > 250k of 1,048,576 tokens
    assert m.cross_farthest["median"] > N * 250_000 / 1_048_576
    assert m.n_cross_pairs == len(placed_ids) and m.cross_pairs_offered == len(pairs)
    # cross pairs reach further back than the pairs about one section
    cross_set = {int(x) for s in result.samples for x in s.cross_distances[:, 1]}
    within = [int(x) for s in result.samples for x in s.dependency_distances if int(x) not in cross_set]
    assert len(within) > m.n_cross_pairs and m.cross_farthest["median"] > 2 * np.median(within)


def test_the_block_is_chosen_for_the_chunks_the_sample_holds(tok):
    book = make_book("book", 12, seed=1)
    # a gap longer than any sample: no pair can be placed, and nothing else changes
    far = cross_pairs_for(book, gap=11)
    with_far = pack_sections(book, tok, _cfg(), cross_pairs=far)
    plain = pack_sections(book, tok, _cfg())
    assert with_far.metrics.n_cross_pairs == 0
    assert [s.sample_id for s in with_far.samples] == [s.sample_id for s in plain.samples]
    # mixed mode never appends cross pairs
    mixed = pack_sections(book, tok, _cfg().model_copy(update={"mode": "mixed"}), cross_pairs=cross_pairs_for(book, 2))
    assert mixed.metrics.n_cross_pairs == 0


def seed_cross(store, pairs: list[CrossPair], base_hash: str = "gen-a", cross_hash: str = "gen-x") -> None:
    """cross_sections, qa_pairs and qa_evidence rows as generation's cross sections store them."""
    from lc_assets.lib.lineage import insert_rows

    sections = {p.section_id: p for p in pairs}
    rows = [
        dict(section_id=sid, document_id=p.document_id, chunk_id=p.chunk_ids[0], cross_chunk_id=p.chunk_ids[1],
             distance_tokens=1, cross_char_offset=1, base_config_hash=base_hash, config_hash=cross_hash, run_id="g")
        for sid, p in sections.items()
    ]  # fmt: skip
    qa = [
        dict(pair_id=p.pair_id, section_id=p.section_id, step=k, prompt_id=f"{p.section_id}:{k}", question=p.question,
             answer=p.answer, model="m", backend="b", prompt_tokens=1, completion_tokens=1, attempts=1, seconds=0.0,
             config_hash=cross_hash, run_id="g")
        for k, p in enumerate(pairs)
    ]  # fmt: skip
    ev = [
        dict(pair_id=p.pair_id, section_id=p.section_id, chunk_id=c, quote_index=i, char_start=a, char_end=b,
             quote="q", origin="model", score=100.0, window_index=i, run_id="g", config_hash=cross_hash)
        for p in pairs
        for i, (c, a, b) in enumerate(p.evidence)
    ]  # fmt: skip
    with store.transaction() as con:
        insert_rows(con, "cross_sections", rows)
        insert_rows(con, "qa_pairs", qa)
        insert_rows(con, "qa_evidence", ev)


def test_pack_pool_appends_stored_cross_pairs_once_and_records_them(tmp_path, tok):
    import pyarrow.parquet as pq

    from lc_assets.lib.lineage import LineageStore
    from lc_assets.lib.packing.run import pack_pool

    from .conftest import seed_lineage

    store = LineageStore(tmp_path / "lineage.duckdb")
    book = make_book("book", 30, seed=5)
    seed_lineage(store, book)
    pairs = cross_pairs_for(book, gap=3)
    seed_cross(store, pairs)
    run = pack_pool(store, tok, _cfg(), run_id="p1", root=tmp_path / "packed", log=lambda m: None)
    stage = run.stages[0]
    assert run.config.generation_config_hash == "gen-a"  # the cross config is never packed as sections
    placed = stage.result.metrics.n_cross_pairs
    assert placed > 0 and stage.verify is not None and stage.verify.ok
    rows = store.query("SELECT pair_id, nearest_tokens, farthest_tokens FROM packed_sample_cross_pairs")
    assert len(rows) == placed and all(0 < n <= f for _, n, f in rows)
    table = pq.read_table(next((stage.output_dir / "parquet").glob("*.parquet")))
    assert sum(len(x) for x in table.column("cross_pair_ids").to_pylist()) == placed
    # a second pool run never packs them again (nor the sections)
    from lc_assets.lib.lineage.cross import load_cross_pairs

    left = load_cross_pairs(store, "gen-a", run.pool_key)
    assert {p.pair_id for p in left}.isdisjoint(r[0] for r in rows)
    assert len(left) == len(pairs) - placed


def test_text_without_sentence_breaks_still_fills_samples(tok):
    """Cut points fall back to spaces between words and then to pre-token boundaries (minified data)."""
    rng = random.Random(4)
    words = " ".join(rng.choice(["alpha", "beta", "gamma", "delta", "epsilon"]) for _ in range(1500))
    minified = ",".join(f'{{"k{i}":[{i},{i * 7 % 13},"v{i % 5}"]}}' for i in range(120))
    for text, kind in ((words, "whitespace"), (minified, "token")):
        pool = [Section(f"{kind}{i}", f"c-{kind}{i}", f"d-{kind}{i}", "web", "cc0", text) for i in range(4)]
        cfg = PackingConfig(sample_tokens=2048, allow_small_samples=True)
        result = pack_sections(pool, tok, cfg)
        assert result.samples and not result.failure, result.message
        assert kind in result.metrics.cuts_by_kind
        for s in result.samples:
            assert s.num_tokens == 2048 and s.fill_ratio >= cfg.min_fill
            # a trainer re-tokenizing the text gets the same ids: the cut never splits a pre-token
            assert tok.encode(s.text) == s.input_ids[: s.num_real_tokens].tolist()
