"""Dagster's storage in a REAL PostgreSQL (Debian's server, started by the test) through the instance config
of docker/dagster.postgres.yaml: register a shard, materialize raw_corpus + chunks, read it all back."""

import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml

from lc_assets.defs.chunks.assets import chunks
from lc_assets.defs.corpus.assets import raw_corpus
from lc_assets.defs.filters.assets import filtered_corpus
from lc_assets.defs.partitions import CORPUS_SHARDS
from lc_assets.defs.resources import CorpusSourcesResource, LineageStoreResource, TokenizerResource
from lc_assets_tests.ops.conftest import write_books

REPO = Path(__file__).resolve().parents[2]
pytest.importorskip("dagster_postgres", reason="pip install dagster-postgres==0.29.27")


def test_materialize_with_postgres_storage(postgres_cluster, tmp_path, monkeypatch):
    for key, value in postgres_cluster.env().items():
        monkeypatch.setenv(key, value)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "docker" / "dagster.postgres.yaml", home / "dagster.yaml")
    books = tmp_path / "books"
    write_books(books, 3, seed=40)
    sources = tmp_path / "sources.yaml"
    sources.write_text(yaml.safe_dump({"pgshard": {"kind": "local", "path": str(books), "license": "CC0-1.0"}}))

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert instance.get_concurrency_config().run_queue_config.tag_concurrency_limits == [
            {"key": "lc_assets/gpu", "value": "true", "limit": 1}
        ]
        instance.add_dynamic_partitions(CORPUS_SHARDS, ["pgshard"])
        result = dg.materialize(
            [raw_corpus, filtered_corpus, chunks],
            instance=instance,
            partition_key="pgshard",
            resources={
                "lineage": LineageStoreResource(path=str(tmp_path / "lineage.duckdb")),
                "target_tokenizer": TokenizerResource(),
                "corpus_sources": CorpusSourcesResource(sources_file=str(sources)),
            },
            run_config={"ops": {"chunks": {"config": {"min_tokens": 200, "max_tokens": 600}}}},
        )
        assert result.success
        run_id = result.run_id

    # a second instance from the same config sees everything: it was stored in Postgres, not in memory
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_run_by_id(run_id).is_success
        assert "pgshard" in instance.get_dynamic_partitions(CORPUS_SHARDS)
        for key in ("raw_corpus", "chunks"):
            event = instance.get_latest_materialization_event(dg.AssetKey(key))
            assert event is not None and event.run_id == run_id
            assert event.asset_materialization.partition == "pgshard"

    import psycopg2

    with (
        psycopg2.connect(
            host=postgres_cluster.host,
            port=postgres_cluster.port,
            user=postgres_cluster.user,
            password=postgres_cluster.password,
            dbname=postgres_cluster.db_name,
        ) as con,
        con.cursor() as cur,
    ):
        cur.execute("SELECT status FROM runs WHERE run_id = %s", [run_id])
        assert cur.fetchone() == ("SUCCESS",)
