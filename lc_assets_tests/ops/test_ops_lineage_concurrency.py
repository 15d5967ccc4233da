"""Two materializations at once, in two processes, writing the same DuckDB lineage file.

DuckDB lets one process hold a database file read-write at a time; LineageStore opens short-lived
connections and retries on the file lock. Both runs must succeed, every row must be there once, and
a document present in both shards must be stored once and chunked once.
"""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml

from lc_assets.lib.lineage import LineageStore
from lc_assets_tests.foundation.conftest import make_text
from lc_assets_tests.ops.lineage_worker import materialize_shard

BOOKS_PER_SHARD = 8


def _shards(tmp_path: Path) -> Path:
    shared = make_text(999, 40)  # the same document in both shards: both processes race to store it
    spec = {}
    for s, shard in enumerate(("left", "right")):
        folder = tmp_path / shard
        folder.mkdir()
        for i in range(BOOKS_PER_SHARD):
            (folder / f"book{i}.txt").write_text(make_text(1000 * (s + 1) + i, 40))
        (folder / "shared.txt").write_text(shared)
        spec[shard] = {"kind": "local", "path": str(folder), "license": "CC0-1.0"}
    sources = tmp_path / "sources.yaml"
    sources.write_text(yaml.safe_dump(spec))
    return sources


def test_two_processes_write_one_lineage_file(tmp_path):
    sources = _shards(tmp_path)
    db = tmp_path / "lineage.duckdb"
    LineageStore(db)  # schema once; the race under test is the data writes
    spawn = multiprocessing.get_context("spawn")  # fresh interpreters, as two `dagster asset materialize` would be
    with spawn.Manager() as manager, ProcessPoolExecutor(2, mp_context=spawn) as pool:
        barrier = manager.Barrier(2)
        futures = [pool.submit(materialize_shard, s, str(sources), str(db), barrier) for s in ("left", "right")]
        results = [f.result(timeout=300) for f in futures]

    for r in results:
        assert r["success"], r["errors"]
        assert r["errors"] == []
    store = LineageStore(db)
    n_docs = 2 * BOOKS_PER_SHARD + 1
    assert store.scalar("SELECT count(*) FROM documents") == n_docs
    assert store.scalar("SELECT count(DISTINCT document_id) FROM documents") == n_docs
    assert dict(store.query("SELECT shard, count(*) FROM shard_documents GROUP BY 1")) == {
        "left": BOOKS_PER_SHARD + 1,
        "right": BOOKS_PER_SHARD + 1,
    }
    # every document chunked exactly once under the one chunking config, its chunks complete and unique
    assert store.scalar("SELECT count(*) FROM chunked_documents") == n_docs
    assert store.scalar("SELECT count(DISTINCT document_id) FROM chunked_documents") == n_docs
    assert store.scalar("SELECT count(*) - count(DISTINCT chunk_id) FROM chunks") == 0
    assert (
        store.scalar(
            """SELECT count(*) FROM chunked_documents d
           WHERE d.n_chunks <> (SELECT count(*) FROM chunks c WHERE c.document_id = d.document_id)"""
        )
        == 0
    )
    assert (
        store.scalar(
            """SELECT count(*) FROM (
             SELECT c.document_id, string_agg(c.text, '' ORDER BY c.chunk_index) AS text
             FROM chunks c GROUP BY 1) j JOIN documents d USING (document_id) WHERE j.text <> d.text"""
        )
        == 0
    )
    assert {r[0] for r in store.query("SELECT DISTINCT run_id FROM chunks")} == {r["run_id"] for r in results}
    # the runs were in flight at the same time (they took turns on the file per transaction)
    (start_a, end_a), (start_b, end_b) = (r["window"] for r in results)
    assert start_a < end_b and start_b < end_a
    # both runs chunk the shared document; the loser's rows are ignored by the primary key and it counts only
    # the rows it inserted, so every run's checks pass whatever the interleaving
    failed = {name for r in results for name, passed in r["checks"].items() if not passed}
    assert not failed, [(r["shard"], r["checks"]) for r in results]


def test_insert_rows_counts_only_rows_it_inserted(tmp_path):
    """What a run that lost a race learns from insert_rows: how many of its rows were new."""
    from lc_assets.lib.lineage import insert_rows

    store = LineageStore(tmp_path / "lineage.duckdb")
    row = dict(shard="s", source="a", reason="r", detail="", run_id="run-1", config_hash="h")
    with store.transaction() as con:
        assert insert_rows(con, "ingest_skips", [row, {**row, "source": "b"}]) == 2
    with store.transaction() as con:
        assert insert_rows(con, "ingest_skips", [{**row, "run_id": "run-2"}, {**row, "source": "c"}]) == 1
    assert store.scalar("SELECT count(*) FROM ingest_skips") == 3
