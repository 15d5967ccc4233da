"""raw_corpus and chunks through Dagster: metadata, checks, idempotent re-runs, resume after a kill."""

from pathlib import Path

import dagster as dg
import pytest
import yaml

from lc_assets.defs.chunks import assets as chunk_assets
from lc_assets.defs.chunks.assets import chunks
from lc_assets.defs.corpus.assets import raw_corpus
from lc_assets.defs.filters.assets import filtered_corpus
from lc_assets.defs.partitions import CORPUS_SHARDS
from lc_assets.defs.resources import CorpusSourcesResource, LineageStoreResource, TokenizerResource
from lc_assets.lib.lineage import LineageStore
from lc_assets_tests.foundation.conftest import make_text, materialization_metadata

CHUNK_CONFIG = {"min_tokens": 200, "max_tokens": 600, "batch_documents": 2}


@pytest.fixture
def shard_env(tmp_path: Path):
    books = tmp_path / "books"
    books.mkdir()
    for i in range(6):
        (books / f"book{i}.txt").write_text(make_text(100 + i, 60))
    (books / "tiny.txt").write_text("too short to chunk\n")
    (books / "copy.txt").write_text(make_text(100, 60))  # duplicate of book0
    (books / "bad.txt").write_bytes("na\xefve caf\xe9 text".encode("latin-1"))
    sources = tmp_path / "sources.yaml"
    sources.write_text(
        yaml.safe_dump(
            {
                "books": {"kind": "local", "path": str(books), "license": "CC-BY-4.0"},
                "gone": {"kind": "local", "path": str(tmp_path / "missing")},
            }
        )
    )
    resources = {
        "lineage": LineageStoreResource(path=str(tmp_path / "lineage.duckdb")),
        "target_tokenizer": TokenizerResource(),
        "corpus_sources": CorpusSourcesResource(sources_file=str(sources)),
    }
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(CORPUS_SHARDS, ["books", "gone"])
    return resources, instance, LineageStore(tmp_path / "lineage.duckdb")


def _run(resources, instance, shard="books", chunk_config=None, raise_on_error=True):
    return dg.materialize(
        [raw_corpus, filtered_corpus, chunks],
        resources=resources,
        instance=instance,
        partition_key=shard,
        run_config={"ops": {"chunks": {"config": chunk_config or CHUNK_CONFIG}}},
        raise_on_error=raise_on_error,
    )


def test_materialize_both_assets(shard_env):
    resources, instance, store = shard_env
    result = _run(resources, instance)
    assert result.success
    corpus = materialization_metadata(result, "raw_corpus")
    assert corpus["documents"] == 7 and corpus["new_documents"] == 7  # 6 books + tiny; copy deduplicated
    assert corpus["skipped_by_reason"] == {"undecodable": 1, "duplicate_content": 1}
    assert corpus["inputs"] == 9  # 6 books + tiny + copy + bad
    assert store.scalar("SELECT count(*) FROM documents") == 7
    assert store.scalar("SELECT count(*) FROM shard_documents") == 7
    assert store.query("SELECT source, reason FROM ingest_skips ORDER BY 1") == [
        ("bad.txt", "undecodable"),
        ("copy.txt", "duplicate_content"),
    ]
    assert store.scalar("SELECT count(DISTINCT license) FROM documents") == 1

    meta = materialization_metadata(result, "chunks")
    assert meta["chunks"] == store.scalar("SELECT count(*) FROM chunks") > 6
    assert meta["filtered_by_reason"] == {"below_min_tokens": 1}
    assert 200 <= meta["min_chunk_tokens"] and meta["max_chunk_tokens"] <= 600
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == dict.fromkeys(
        [
            "chunk_token_bounds",
            "chunks_reconstruct_documents",
            "chunk_counts_match_lineage",
            "chunk_token_counts_exact",
            "shards_have_usable_chunks",
            "filter_decisions_cover_shard",
        ],
        True,
    )
    # every chunk row points at its document, run and config
    orphans = store.scalar(
        "SELECT count(*) FROM chunks c LEFT JOIN documents d USING (document_id) WHERE d.text IS NULL"
    )
    assert orphans == 0
    assert store.scalar("SELECT count(DISTINCT run_id) FROM chunks") == 1


def test_rerun_same_config_is_idempotent_and_new_config_adds(shard_env):
    resources, instance, store = shard_env
    _run(resources, instance)
    before = store.query("SELECT chunk_id FROM chunks ORDER BY 1")
    again = _run(resources, instance)
    assert materialization_metadata(again, "raw_corpus")["new_documents"] == 0
    assert materialization_metadata(again, "chunks")["new_chunks"] == 0
    assert store.query("SELECT chunk_id FROM chunks ORDER BY 1") == before
    other = _run(resources, instance, chunk_config={"min_tokens": 300, "max_tokens": 900})
    assert materialization_metadata(other, "chunks")["new_chunks"] > 0
    assert store.scalar("SELECT count(DISTINCT config_hash) FROM chunks") == 2


def test_killed_run_resumes_without_duplicates_or_partial_batches(shard_env, monkeypatch):
    resources, instance, store = shard_env
    real = chunk_assets.chunk_documents
    calls = {"n": 0}

    def dies_on_second_batch(*args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise dg.DagsterExecutionInterruptedError("killed")  # what a run stop raises in the step
        return real(*args)

    monkeypatch.setattr(chunk_assets, "chunk_documents", dies_on_second_batch)
    with pytest.raises(BaseException):  # noqa: B017 - the interrupt propagates as a BaseException
        _run(resources, instance)
    # the first batch (2 documents) committed whole; nothing of the second
    assert store.scalar("SELECT count(*) FROM chunked_documents") == 2
    partial = store.scalar(
        "SELECT count(*) FROM chunks WHERE document_id NOT IN (SELECT document_id FROM chunked_documents)"
    )
    assert partial == 0
    monkeypatch.setattr(chunk_assets, "chunk_documents", real)
    resumed = _run(resources, instance)
    assert materialization_metadata(resumed, "chunks")["documents_already_chunked"] == 2
    assert store.scalar("SELECT count(*) FROM chunked_documents") == 7
    assert store.scalar("SELECT count(*) FROM chunks") == store.scalar("SELECT count(DISTINCT chunk_id) FROM chunks")
    assert all(c.passed for c in resumed.get_asset_check_evaluations())


def test_missing_source_path_fails_with_its_name(shard_env, tmp_path: Path):
    resources, instance, _ = shard_env
    result = _run(resources, instance, shard="gone", raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert str(tmp_path / "missing") in str(failure.event_specific_data.error)


def test_unknown_shard_is_a_clear_failure(shard_env):
    resources, instance, _ = shard_env
    instance.add_dynamic_partitions(CORPUS_SHARDS, ["nobody"])
    result = _run(resources, instance, shard="nobody", raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "not defined" in str(failure.event_specific_data.error) and "books" in str(failure.event_specific_data.error)
