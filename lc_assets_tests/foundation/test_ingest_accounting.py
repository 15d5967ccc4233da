"""raw_corpus -> filtered_corpus -> chunks on dirty inputs: every input accounted for, shared documents, checks."""

import codecs
import gzip
import json
from pathlib import Path

import dagster as dg
import pytest
import yaml

from lc_assets.defs.chunks.assets import chunks
from lc_assets.defs.corpus.assets import raw_corpus
from lc_assets.defs.filters.assets import filtered_corpus
from lc_assets.defs.partitions import CORPUS_SHARDS
from lc_assets.defs.resources import CorpusSourcesResource, LineageStoreResource, TokenizerResource
from lc_assets.lib.chunking import ChunkingConfig
from lc_assets.lib.lineage import LineageStore
from lc_assets.lib.lineage.generation import sections_to_grow
from lc_assets_tests.foundation.conftest import make_text, materialization_metadata

CHUNK_CONFIG = {"min_tokens": 200, "max_tokens": 600}
CHUNK_HASH = ChunkingConfig(**CHUNK_CONFIG).config_hash()


@pytest.fixture
def env(tmp_path: Path):
    dirty = tmp_path / "dirty"
    (dirty / "sub").mkdir(parents=True)
    (dirty / "crlf.txt").write_bytes(make_text(1, 40).replace("\n", "\r\n").encode())
    (dirty / "bom.md").write_bytes(codecs.BOM_UTF8 + make_text(2, 40).encode())
    (dirty / "utf16.txt").write_bytes(codecs.BOM_UTF16_LE + make_text(3, 40).encode("utf-16-le"))
    (dirty / "packed.txt.gz").write_bytes(gzip.compress(make_text(4, 40).encode()))
    (dirty / "rows.jsonl").write_text(json.dumps({"text": make_text(5, 40)}) + "\n{not json\n")
    (dirty / "degenerate.txt").write_text("word " * 20_000)
    (dirty / "short.txt").write_text("too short to chunk\n")
    (dirty / ".hidden.txt").write_text(make_text(6, 5))
    (dirty / "sub" / "loop").symlink_to(dirty)
    (dirty / "gone.txt").symlink_to(tmp_path / "nowhere.txt")
    shared = tmp_path / "shared"
    (shared / "a").mkdir(parents=True)
    (shared / "b").mkdir()
    for name, seed in (("a/one.txt", 11), ("a/two.txt", 12), ("b/one-again.txt", 11), ("b/three.txt", 13)):
        (shared / name).write_text(make_text(seed, 40))
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "filler.txt").write_text(" ".join(f"This is filler sentence number {i}." for i in range(5000)))
    tiny = tmp_path / "tiny"
    for i in range(1500):
        (tiny / f"d{i % 15}").mkdir(parents=True, exist_ok=True)
        (tiny / f"d{i % 15}" / f"f{i:04d}.txt").write_text(f"tiny note number {i}\n")
    (tiny / "book.txt").write_text(make_text(30, 60))
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "part.jsonl").write_text(
        json.dumps({"text": make_text(20, 40)}) + "\n{broken line\n" + json.dumps({"text": make_text(21, 40)}) + "\n"
    )
    sources = {
        "dirty": {"kind": "local", "path": str(dirty)},
        "a": {"kind": "local", "path": str(shared / "a")},
        "b": {"kind": "local", "path": str(shared / "b")},
        "junk": {"kind": "local", "path": str(junk)},
        "tiny": {"kind": "local", "path": str(tiny)},
        "hf": {"kind": "hf", "dataset": "json", "data_files": [str(hf / "*.jsonl")], "streaming": True},
    }
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump(sources))
    resources = {
        "lineage": LineageStoreResource(path=str(tmp_path / "lineage.duckdb")),
        "target_tokenizer": TokenizerResource(),
        "corpus_sources": CorpusSourcesResource(sources_file=str(tmp_path / "sources.yaml")),
    }
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(CORPUS_SHARDS, list(sources))
    return resources, instance, LineageStore(tmp_path / "lineage.duckdb"), hf / "part.jsonl"


def _run(env, shard, assets=(raw_corpus, filtered_corpus, chunks), raise_on_error=True):
    resources, instance, _, _ = env
    return dg.materialize(
        list(assets),
        resources=resources,
        instance=instance,
        partition_key=shard,
        run_config={"ops": {"chunks": {"config": CHUNK_CONFIG}}},
        raise_on_error=raise_on_error,
    )


def _checks(result) -> dict[str, bool]:
    return {c.check_name: c.passed for c in result.get_asset_check_evaluations()}


def test_dirty_folder_every_input_accounted_for(env):
    store = env[2]
    result = _run(env, "dirty")
    raw = materialization_metadata(result, "raw_corpus")
    assert raw["skipped_by_reason"] == {
        "hidden": 1, "symlink_loop": 1, "broken_symlink": 1, "invalid_json": 1,
    }  # fmt: skip
    assert raw["inputs"] == raw["documents"] + raw["skipped"] == 11
    assert "11 inputs = 7 documents + 4 skipped" in raw["accounting"]
    assert store.query("SELECT inputs, documents, skips FROM shard_ingests WHERE shard = 'dirty'") == [(11, 7, 4)]
    # CRLF, BOM, UTF-16 and gzip text is stored as plain "\n" text
    assert (
        store.scalar("SELECT count(*) FROM documents WHERE contains(text, chr(13)) OR contains(text, chr(65279))") == 0
    )

    filt = materialization_metadata(result, "filtered_corpus")
    assert filt["dropped_by_reason"] == {"top_2gram_char_frac": 1} and filt["kept"] == 6
    assert (
        "degenerate.txt" in filt["dropped_documents"] and "top_2gram_char_frac 1.000 > 0.2" in filt["dropped_documents"]
    )
    detail = store.scalar("SELECT detail FROM filter_decisions WHERE NOT kept")
    assert "distinct_word_ratio" in detail  # every rule that fired, not only the first

    meta = materialization_metadata(result, "chunks")
    assert meta["filtered_by_reason"] == {"below_min_tokens": 1}
    assert meta["chunked_documents"] == 5 and meta["recounted_whole"] == 0
    assert (
        "| dirty | 11 | 7 | 4: " in meta["shard_accounting"]
        and "| 1: top_2gram_char_frac 1 | 1 | 5 |" in (meta["shard_accounting"])
    )
    assert "`paragraph`" in meta["what_the_counts_mean"] and "`cut_unverified`" in meta["what_the_counts_mean"]
    assert all(_checks(result).values()), _checks(result)


def test_hf_json_with_a_bad_line_keeps_the_shard(env):
    store, data_file = env[2], env[3]
    result = _run(env, "hf")
    raw = materialization_metadata(result, "raw_corpus")
    assert raw["documents"] == 2 and raw["skipped_by_reason"] == {"invalid_json": 1}
    assert store.query("SELECT source, reason FROM ingest_skips") == [(f"hf:json:{data_file}#L2", "invalid_json")]
    assert all(_checks(result).values())


def test_a_document_in_two_shards_is_chunked_once_and_used_by_both(env):
    store = env[2]
    _run(env, "a")
    result = _run(env, "b")
    meta = materialization_metadata(result, "chunks")
    assert meta["documents_already_chunked"] == 1 and meta["chunks"] > meta["new_chunks"] > 0
    assert all(_checks(result).values())
    shared = store.query(
        """SELECT m.document_id, list(DISTINCT m.shard ORDER BY m.shard) FROM shard_chunks m
           GROUP BY 1 HAVING count(DISTINCT m.shard) = 2"""
    )
    assert len(shared) == 1 and shared[0][1] == ["a", "b"]
    assert store.scalar("SELECT count(*) FROM chunked_documents WHERE document_id = ?", [shared[0][0]]) == 1
    # generation of shard b sees its own chunks and the shared document's
    sections, done = sections_to_grow(store, "b", CHUNK_HASH, "generation-config")
    assert {s.document_id for s in sections} == set(
        r[0] for r in store.query("SELECT document_id FROM shard_documents WHERE shard = 'b'")
    )
    assert done == 0


def test_shard_with_documents_but_no_usable_chunks_fails_the_check(env):
    result = _run(env, "junk")
    assert result.success
    checks = _checks(result)
    assert checks["shards_have_usable_chunks"] is False
    evaluation = next(c for c in result.get_asset_check_evaluations() if c.check_name == "shards_have_usable_chunks")
    assert "junk" in evaluation.metadata["shards_without_chunks"].value


def test_chunks_before_filtering_is_a_clear_failure(env):
    result = _run(env, "a", assets=(raw_corpus, chunks), raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "materialize filtered_corpus" in str(failure.event_specific_data.error)


def test_a_run_cap_is_checked_like_the_specs_own(env):
    resources, instance, store, _ = env
    result = dg.materialize(
        [raw_corpus], resources=resources, instance=instance, partition_key="a", raise_on_error=False,
        run_config={"ops": {"raw_corpus": {"config": {"max_documents": 0}}}},
    )  # fmt: skip
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "shard 'a'" in str(failure.event_specific_data.error) and "max_documents must be >= 1, got 0" in str(
        failure.event_specific_data.error
    )
    assert store.scalar("SELECT count(*) FROM documents") == 0


def test_very_many_tiny_files(env):
    store = env[2]
    result = _run(env, "tiny")
    raw = materialization_metadata(result, "raw_corpus")
    assert raw["inputs"] == raw["documents"] == 1501 and raw["skipped"] == 0
    meta = materialization_metadata(result, "chunks")
    assert meta["filtered_by_reason"] == {"below_min_tokens": 1500} and meta["chunked_documents"] == 1
    assert "| tiny | 1501 | 1501 | 0: - | 0: - | 1500 | 1 |" in meta["shard_accounting"]
    assert store.scalar("SELECT count(*) FROM filter_decisions") == 1501
    assert all(_checks(result).values())
    # tiny documents are read and committed in few batches (each batch costs a DuckDB read of its texts and a
    # transaction: ~0.2 s, so 32-document batches made 2,000 tiny files take 25 s in chunks alone)
    assert store.scalar("SELECT count(DISTINCT created_at) FROM chunked_documents") <= 2


def test_a_changed_source_is_accounted_as_it_is_now(env, tmp_path: Path):
    # shard "a" loses a file and a bad file is fixed: documents and skips follow the source, the counts add up
    store = env[2]
    a = tmp_path / "shared" / "a"
    (a / "bad.txt").write_bytes("caf\xe9".encode("latin-1"))
    _run(env, "a")
    (a / "two.txt").unlink()
    (a / "bad.txt").write_text(make_text(14, 40))
    result = _run(env, "a")
    raw = materialization_metadata(result, "raw_corpus")
    assert "2 inputs = 2 documents + 0 skipped" in raw["accounting"] and raw["documents"] == 2
    assert raw["skips_sample"] == "no skipped inputs"
    assert store.query("SELECT source FROM shard_documents WHERE shard = 'a' ORDER BY 1") == [
        ("bad.txt",),
        ("one.txt",),
    ]
    meta = materialization_metadata(result, "chunks")
    assert "| a | 2 | 2 | 0: - |" in meta["shard_accounting"] and meta["chunked_documents"] == 2
    assert store.scalar("SELECT count(*) FROM documents") == 3  # the lineage keeps the removed file's document
