"""Declarative automation: filtered_corpus and chunks of a shard follow its raw_corpus; nothing GPU-bound is ever requested."""

import dagster as dg
import yaml

from lc_assets.defs.partitions import CORPUS_SHARDS
from lc_assets_tests.ops.conftest import write_books

CHUNKS = {"ops": {"chunks": {"config": {"min_tokens": 200, "max_tokens": 600}}}}


def _tick(loaded_defs, instance, cursor):
    sensor = next(s for s in loaded_defs.sensors if s.name == "corpus_automation_sensor")
    context = dg.build_sensor_context(instance=instance, cursor=cursor, repository_def=loaded_defs.get_repository_def())
    return sensor.evaluate_tick(context)


def _requested(result) -> set[tuple[str, str | None]]:
    return {
        (key.to_user_string(), req.partition_key) for req in result.run_requests for key in (req.asset_selection or [])
    }


def test_chunks_follow_raw_corpus_and_generation_never_starts(data_dir, tmp_path, monkeypatch, loaded_defs):
    sources = tmp_path / "sources.yaml"
    spec = {"kind": "local", "license": "CC0-1.0"}
    sources.write_text(
        yaml.safe_dump({"alone": {**spec, "path": str(tmp_path / "a")}, "both": {**spec, "path": str(tmp_path / "b")}})
    )
    monkeypatch.setenv("LC_ASSETS_SOURCES_FILE", str(sources))
    write_books(tmp_path / "a", 2, seed=5)
    write_books(tmp_path / "b", 2, seed=9)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(CORPUS_SHARDS, ["alone", "both"])

    first = _tick(loaded_defs, instance, None)  # nothing materialized: nothing to follow
    assert _requested(first) == set()

    corpus_job = loaded_defs.resolve_job_def("corpus_ingest_job")
    raw_only = loaded_defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={dg.AssetKey("raw_corpus")}
    )
    assert raw_only.execute_in_process(instance=instance, partition_key="alone").success
    assert corpus_job.execute_in_process(run_config=CHUNKS, instance=instance, partition_key="both").success

    second = _tick(loaded_defs, instance, first.cursor)
    # `alone` got new raw_corpus without chunks: its filtering and chunks follow; `both` was chunked in the same run
    assert _requested(second) == {("filtered_corpus", "alone"), ("chunks", "alone")}

    assert corpus_job.execute_in_process(run_config=CHUNKS, instance=instance, partition_key="alone").success
    third = _tick(loaded_defs, instance, second.cursor)
    assert _requested(third) == set()
