"""Paragraph counts stored at chunking (`chunk_paragraph_counts`) and used by generation in place of counting."""

from __future__ import annotations

import dataclasses
import shutil

from lc_assets.defs.resources import TokenizerResource
from lc_assets.lib.corpus.lineage import latest_chunk_config
from lc_assets.lib.generation.admission import SectionPreparer
from lc_assets.lib.generation.masking import paragraph_spans, spans_digest, split_paragraphs
from lc_assets.lib.generation.run import grow_sections
from lc_assets.lib.lineage import LineageStore
from lc_assets.lib.lineage.generation import iter_section_tasks, sections_to_grow
from lc_assets_tests.generation.doubles import ScriptedBackend
from lc_assets_tests.lineage.run_worker import CHUNKING, config, seed_shard


def test_chunking_stores_every_chunks_paragraph_counts_equal_to_counting_each_alone(tmp_path):
    catalog = LineageStore(tmp_path / "lineage.duckdb")
    n_chunks = seed_shard(catalog, "north", tmp_path / "north", n_books=2, seed=3)
    tok = TokenizerResource().load()
    rows = catalog.query(
        """SELECT c.chunk_id, c.text, p.document_id = c.document_id, p.tokenizer, p.spans_digest, p.counts,
                  p.run_id, p.config_hash
           FROM chunks c JOIN chunk_paragraph_counts p USING (chunk_id) ORDER BY c.chunk_id"""
    )
    assert len(rows) == n_chunks > 1
    for _, text, same_document, tokenizer, digest, counts, run_id, config_hash in rows:
        spans = paragraph_spans(text)
        assert same_document and run_id == "chunks-north" and config_hash == CHUNKING.config_hash()
        assert tokenizer == tok.counting_fingerprint and digest == spans_digest(spans)
        assert counts == tok.count_batch([text[s:e] for s, e in spans])


def _grow(catalog: LineageStore, shares_counts: bool) -> tuple[ScriptedBackend, int, list[tuple], list[tuple]]:
    tok = TokenizerResource().load()
    cfg = config()
    todo, _ = sections_to_grow(catalog, "north", latest_chunk_config(catalog, "north"), cfg.config_hash())
    backend = ScriptedBackend(tokenizer=tok, in_flight_cap=4, shares_counts=shares_counts)
    result = grow_sections(catalog, todo, backend, cfg, tok, f"run-{shares_counts}")
    prompts = catalog.query(
        """SELECT prompt_id, status, prompt_hash, paragraph_ids, shown_spans, budget_tokens, context_tokens,
                  prompt_tokens, earlier_pair_ids
           FROM masked_prompts ORDER BY prompt_id"""
    )
    pairs = catalog.query("SELECT pair_id, question, answer FROM qa_pairs ORDER BY pair_id")
    return backend, result.summary.sections_stored_counts, prompts, pairs


def test_a_run_with_stored_counts_makes_the_same_prompts_and_pairs_as_one_that_counts(tmp_path):
    counted = LineageStore(tmp_path / "counted.duckdb")
    seed_shard(counted, "north", tmp_path / "north", n_books=2, seed=7)
    shutil.copyfile(counted.path, tmp_path / "stored.duckdb")
    stored = LineageStore(tmp_path / "stored.duckdb")

    counting_backend, used_counting, prompts_counting, pairs_counting = _grow(counted, shares_counts=False)
    sharing_backend, used_sharing, prompts_sharing, pairs_sharing = _grow(stored, shares_counts=True)

    n_sections = stored.scalar("SELECT count(*) FROM sections")
    assert used_counting == 0 and used_sharing == n_sections > 1
    assert prompts_sharing == prompts_counting and len(prompts_sharing) > n_sections
    assert pairs_sharing == pairs_counting and pairs_sharing
    # the run with stored counts counted no chunk's paragraphs (only pairs, titles and calibration texts)
    paragraphs = sum(len(paragraph_spans(t)) for (t,) in stored.query("SELECT text FROM chunks"))
    assert counting_backend.counted_texts - sharing_backend.counted_texts >= paragraphs


def test_stored_counts_are_ignored_for_another_tokenizer_other_spans_or_older_lineage(tmp_path):
    catalog = LineageStore(tmp_path / "lineage.duckdb")
    seed_shard(catalog, "north", tmp_path / "north", n_books=1, seed=11)
    tok = TokenizerResource().load()
    cfg = config()
    todo, _ = sections_to_grow(catalog, "north", latest_chunk_config(catalog, "north"), cfg.config_hash())
    task = next(iter_section_tasks(catalog, todo))
    ((fingerprint, digest, counts),) = task.paragraph_counts
    assert fingerprint == tok.counting_fingerprint
    fresh = split_paragraphs(task.section.text, tok.count_batch, cfg.paragraph_cap)

    def prepared(counting_fingerprint: str | None, paragraph_counts) -> tuple[int, tuple]:
        counted: list[int] = []

        def count(texts):
            counted.append(len(texts))
            return tok.count_batch(texts)

        preparer = SectionPreparer(cfg, count, tok, counting_fingerprint)
        state = preparer(dataclasses.replace(task, paragraph_counts=paragraph_counts))
        assert list(state.paragraphs) == fresh  # the same paragraphs, ids and counts either way
        return preparer.stored_counts_used, tuple(counted)

    used, _ = prepared(tok.counting_fingerprint, task.paragraph_counts)
    assert used == 1
    wrong = [c + 1 for c in counts]  # counts of other spans (a changed paragraph split): never used
    for fp, stored in [
        ("count-another-vocabulary", task.paragraph_counts),  # a generator that counts differently (Qwen)
        (None, task.paragraph_counts),  # a generator whose tokenizer is unknown (a server's /tokenize)
        (tok.counting_fingerprint, [(fingerprint, "0" * 16, wrong)]),
        (tok.counting_fingerprint, ()),  # a chunk from before the counts were stored
    ]:
        used, counted = prepared(fp, stored)
        assert used == 0 and len(paragraph_spans(task.section.text)) in counted


def test_counting_fingerprint_ignores_the_name_and_tells_vocabularies_apart(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    from lc_assets.lib.tokenizer import load_tokenizer

    llama = TokenizerResource().load()
    copy = tmp_path / "my-llama"
    shutil.copytree(llama.source_dir, copy)
    assert load_tokenizer(str(copy)).counting_fingerprint == llama.counting_fingerprint
    other = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    other.pre_tokenizer = pre_tokenizers.Whitespace()
    other.save(str(tmp_path / "other.json"))
    assert load_tokenizer(str(tmp_path / "other.json")).counting_fingerprint != llama.counting_fingerprint
