"""Folder-watching sensors: new corpus shards from an inbox, new model checkpoints to evaluate on RULER."""

import dagster as dg

from lc_assets.defs.automation.jobs import CORPUS_INGEST_ASSETS, RULER_EVAL_ASSETS, corpus_ingest_job, ruler_eval_job
from lc_assets.defs.automation.resources import OpsFoldersResource
from lc_assets.defs.automation.watched_folders import (
    dump_cursor,
    is_checkpoint,
    load_cursor,
    profile_run_config,
    settled_entries,
)
from lc_assets.defs.partitions import CORPUS_SHARDS
from lc_assets.defs.resources import INBOX_SHARD_PREFIX

INBOX_TAG = "lc_assets/inbox_entry"
CHECKPOINT_TAG = "lc_assets/checkpoint"


@dg.sensor(
    job=corpus_ingest_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,  # idle until something lands in the inbox
    description="Each new file or folder in the inbox ($LC_ASSETS_INBOX_DIR, default <data dir>/inbox) becomes "
    "the corpus shard `inbox-<name>`: registered as a partition, then raw_corpus -> chunks run for it. "
    "run_key = shard + fingerprint, so an entry runs once per content state.",
)
def corpus_inbox_sensor(context: dg.SensorEvaluationContext, ops_folders: OpsFoldersResource) -> dg.SensorResult:
    inbox = ops_folders.inbox_path()
    entries = settled_entries(inbox, ops_folders.settle_seconds)
    if not entries:
        return dg.SensorResult(skip_reason=f"no settled entries in {inbox}")
    seen = load_cursor(context.cursor)
    new = [e for e in entries if seen.get(e.name) != e.fingerprint]
    if not new:
        return dg.SensorResult(skip_reason=f"{len(entries)} inbox entries, none new or changed")

    run_config = profile_run_config(ops_folders.corpus_profile, CORPUS_INGEST_ASSETS)
    if ops_folders.inbox_dir:  # raw_corpus must resolve `inbox-*` against the same folder as this sensor
        run_config.setdefault("resources", {})["corpus_sources"] = {"config": {"inbox_dir": ops_folders.inbox_dir}}
    shards = [INBOX_SHARD_PREFIX + e.name for e in new]
    to_register = [s for s in shards if not context.instance.has_dynamic_partition(CORPUS_SHARDS, s)]
    runs = [
        dg.RunRequest(
            run_key=f"{shard}:{e.fingerprint}",
            partition_key=shard,
            run_config=run_config,
            tags={INBOX_TAG: e.name, "lc_assets/fingerprint": e.fingerprint},
        )
        for shard, e in zip(shards, new, strict=True)
    ]
    for e in new:
        seen[e.name] = e.fingerprint
    context.log.info(f"inbox {inbox}: {len(new)} new or changed entr(ies): {shards}")
    return dg.SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=[dg.AddDynamicPartitionsRequest(CORPUS_SHARDS, to_register)] if to_register else [],
        cursor=dump_cursor(seen),
    )


@dg.sensor(
    job=ruler_eval_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,  # skips until LC_ASSETS_CHECKPOINTS_DIR is set
    description="Each new model checkpoint (an HF folder with config.json + weights, or a .gguf file) in "
    "$LC_ASSETS_CHECKPOINTS_DIR gets a RULER eval: ruler_eval_job with ruler_scores.config.model = its path.",
)
def model_checkpoint_sensor(context: dg.SensorEvaluationContext, ops_folders: OpsFoldersResource) -> dg.SensorResult:
    folder = ops_folders.checkpoints_path()
    if folder is None:
        return dg.SensorResult(skip_reason="no checkpoints folder configured (LC_ASSETS_CHECKPOINTS_DIR)")
    checkpoints = [e for e in settled_entries(folder, ops_folders.settle_seconds) if is_checkpoint(e)]
    seen = load_cursor(context.cursor)
    new = [e for e in checkpoints if seen.get(e.name) != e.fingerprint]
    if not new:
        return dg.SensorResult(skip_reason=f"{len(checkpoints)} checkpoint(s) in {folder}, none new")
    base = profile_run_config(ops_folders.eval_profile, RULER_EVAL_ASSETS)
    runs = []
    for e in new:
        ops = dict(base.get("ops", {}))
        scores = dict(ops.get("ruler_scores") or {})
        scores["config"] = {**(scores.get("config") or {}), "model": str(e.path.resolve())}
        ops["ruler_scores"] = scores
        runs.append(
            dg.RunRequest(
                run_key=f"{e.name}:{e.fingerprint}",
                run_config={**base, "ops": ops},
                tags={CHECKPOINT_TAG: str(e.path.resolve()), "lc_assets/fingerprint": e.fingerprint},
            )
        )
        seen[e.name] = e.fingerprint
    context.log.info(f"{len(new)} new checkpoint(s): {[e.name for e in new]}")
    return dg.SensorResult(run_requests=runs, cursor=dump_cursor(seen))
