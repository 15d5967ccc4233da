"""Sensors fire exactly once per new entry, register inbox shards, and their run configs validate.

The inbox run is executed for real (raw_corpus -> chunks on the registered `inbox-*` shard), so the
shard resolution in CorpusSourcesResource is tested end to end, not just the sensor's output.
"""

import os
import time
from pathlib import Path

import dagster as dg
import pytest

from lc_assets.defs.automation.resources import OpsFoldersResource
from lc_assets.defs.automation.schedules import ruler_eval_weekly_schedule
from lc_assets.defs.automation.sensors import corpus_inbox_sensor, model_checkpoint_sensor
from lc_assets.defs.partitions import CORPUS_SHARDS
from lc_assets.lib.lineage import LineageStore
from lc_assets_tests.ops.conftest import write_books


def _tick(sensor, instance, cursor, folders: OpsFoldersResource) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"ops_folders": folders})
    return sensor(context)


def _skip(result: dg.SensorResult) -> str:
    return result.skip_reason.skip_message if result.skip_reason else ""


def _apply(instance: dg.DagsterInstance, result: dg.SensorResult) -> str | None:
    """What the daemon does with a sensor result that matters here: add partitions, keep the cursor."""
    for req in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
    return result.cursor


def test_inbox_sensor_fires_once_per_new_entry(data_dir, loaded_defs):
    inbox = data_dir / "inbox"
    write_books(inbox / "shelf", 2, seed=1)
    (inbox / "single.txt").write_text("one loose file\n" * 50)
    (inbox / "copying.txt.part").write_text("still being copied")
    (inbox / ".hidden").write_text("ignored")
    (inbox / "bad name with spaces.txt").write_text("not a safe partition key")
    folders = OpsFoldersResource(settle_seconds=0)
    instance = dg.DagsterInstance.ephemeral()
    job = loaded_defs.resolve_job_def("corpus_ingest_job")

    first = _tick(corpus_inbox_sensor, instance, None, folders)
    shards = sorted(r.partition_key for r in first.run_requests)
    assert shards == ["inbox-shelf", "inbox-single.txt"]
    assert [sorted(r.partition_keys) for r in first.dynamic_partitions_requests] == [shards]
    assert all(r.run_key.startswith(f"{r.partition_key}:") for r in first.run_requests)
    for req in first.run_requests:
        assert dg.validate_run_config(job, req.run_config)
    cursor = _apply(instance, first)
    assert set(instance.get_dynamic_partitions(CORPUS_SHARDS)) == set(shards)

    again = _tick(corpus_inbox_sensor, instance, cursor, folders)
    assert not again.run_requests and not again.dynamic_partitions_requests

    (inbox / "later.md").write_text("# a later file\n\nwith text\n")
    third = _tick(corpus_inbox_sensor, instance, cursor, folders)
    assert [r.partition_key for r in third.run_requests] == ["inbox-later.md"]
    cursor = _apply(instance, third)

    # changed content: a new fingerprint, so one new run with a new run key (ingestion dedups documents)
    old_key = next(r.run_key for r in first.run_requests if r.partition_key == "inbox-shelf")
    later = time.time() + 5
    (inbox / "shelf" / "book0.txt").write_text("rewritten\n" * 100)
    os.utime(inbox / "shelf" / "book0.txt", (later, later))
    fourth = _tick(corpus_inbox_sensor, instance, cursor, OpsFoldersResource(settle_seconds=-10))
    assert [r.partition_key for r in fourth.run_requests] == ["inbox-shelf"]
    assert fourth.run_requests[0].run_key != old_key
    assert not fourth.dynamic_partitions_requests  # already registered


def test_inbox_sensor_waits_for_a_copy_to_settle(data_dir):
    write_books(data_dir / "inbox" / "fresh", 1, seed=3)
    result = _tick(corpus_inbox_sensor, dg.DagsterInstance.ephemeral(), None, OpsFoldersResource(settle_seconds=3600))
    assert not result.run_requests
    assert "no settled entries" in _skip(result)


def test_inbox_sensor_without_inbox_skips(data_dir):
    result = _tick(corpus_inbox_sensor, dg.DagsterInstance.ephemeral(), None, OpsFoldersResource())
    assert not result.run_requests and "no settled entries" in _skip(result)


def test_inbox_run_ingests_the_new_shard(data_dir, loaded_defs, tmp_path, monkeypatch):
    """The sensor's run request, executed: the `inbox-*` shard resolves to the inbox folder."""
    inbox = tmp_path / "elsewhere" / "inbox"  # a configured (non-default) inbox travels in the run config
    write_books(inbox / "shelf", 3, seed=20)
    folders = OpsFoldersResource(inbox_dir=str(inbox), settle_seconds=0)
    instance = dg.DagsterInstance.ephemeral()
    result = _tick(corpus_inbox_sensor, instance, None, folders)
    _apply(instance, result)
    (request,) = result.run_requests
    run_config = dict(request.run_config)
    run_config["ops"] = {"chunks": {"config": {"min_tokens": 200, "max_tokens": 600}}}
    job = loaded_defs.resolve_job_def("corpus_ingest_job")
    run = job.execute_in_process(
        run_config=run_config, instance=instance, partition_key=request.partition_key, tags=request.tags
    )
    assert run.success
    store = LineageStore(data_dir / "lineage.duckdb")
    assert store.scalar("SELECT count(*) FROM shard_documents WHERE shard = 'inbox-shelf'") == 3
    assert store.scalar("SELECT count(*) FROM chunks WHERE shard = 'inbox-shelf'") >= 3


def _checkpoint(folder: Path, name: str) -> Path:
    path = folder / name
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    (path / "model.safetensors").write_bytes(b"\0" * 64)
    return path


def test_checkpoint_sensor_requests_one_eval_per_checkpoint(data_dir, loaded_defs, monkeypatch):
    instance = dg.DagsterInstance.ephemeral()
    folders = OpsFoldersResource(settle_seconds=0)
    skipped = _tick(model_checkpoint_sensor, instance, None, folders)
    assert not skipped.run_requests and "LC_ASSETS_CHECKPOINTS_DIR" in _skip(skipped)

    ckpts = data_dir / "checkpoints"
    first_ckpt = _checkpoint(ckpts, "step-1000")
    (ckpts / "optimizer-only").mkdir()
    (ckpts / "optimizer-only" / "optimizer.pt").write_bytes(b"\0")
    (ckpts / "small.gguf").write_bytes(b"GGUF")
    monkeypatch.setenv("LC_ASSETS_CHECKPOINTS_DIR", str(ckpts))
    job = loaded_defs.resolve_job_def("ruler_eval_job")

    first = _tick(model_checkpoint_sensor, instance, None, folders)
    models = sorted(r.run_config["ops"]["ruler_scores"]["config"]["model"] for r in first.run_requests)
    assert models == sorted([str(first_ckpt.resolve()), str((ckpts / "small.gguf").resolve())])
    for req in first.run_requests:
        assert dg.validate_run_config(job, req.run_config)
        assert req.tags["lc_assets/checkpoint"] == req.run_config["ops"]["ruler_scores"]["config"]["model"]

    again = _tick(model_checkpoint_sensor, instance, first.cursor, folders)
    assert not again.run_requests

    second_ckpt = _checkpoint(ckpts, "step-2000")
    third = _tick(model_checkpoint_sensor, instance, first.cursor, folders)
    assert [r.run_config["ops"]["ruler_scores"]["config"]["model"] for r in third.run_requests] == [
        str(second_ckpt.resolve())
    ]


@pytest.mark.parametrize("profile", ["", "demo", "production"])
def test_checkpoint_request_with_eval_profile_validates(data_dir, loaded_defs, monkeypatch, profile):
    ckpts = data_dir / "checkpoints"
    _checkpoint(ckpts, "step-1")
    monkeypatch.setenv("LC_ASSETS_CHECKPOINTS_DIR", str(ckpts))
    folders = OpsFoldersResource(settle_seconds=0, eval_profile=profile)
    (req,) = _tick(model_checkpoint_sensor, dg.DagsterInstance.ephemeral(), None, folders).run_requests
    assert dg.validate_run_config(loaded_defs.resolve_job_def("ruler_eval_job"), req.run_config)


@pytest.mark.parametrize("profile", ["", "demo", "production"])
def test_weekly_eval_schedule_validates(loaded_defs, profile):
    context = dg.build_schedule_context(resources={"ops_folders": OpsFoldersResource(eval_profile=profile)})
    request = ruler_eval_weekly_schedule(context)
    assert dg.validate_run_config(loaded_defs.resolve_job_def("ruler_eval_job"), request.run_config)
    assert ruler_eval_weekly_schedule.default_status == dg.DefaultScheduleStatus.STOPPED
