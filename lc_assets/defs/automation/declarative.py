"""Declarative automation: which assets follow their upstream on their own, and which never do.

Only `filtered_corpus` and `chunks` are automated (AutomationCondition.eager(), evaluated in the code
server): when raw_corpus of a shard changes outside a run that already chunks it (e.g. someone
re-ingests a shard from the UI), that shard's filter decisions and chunks follow. It is CPU work, idempotent per (document, config), and
minutes long.

Deliberately NOT automated:
- masked_prompts / qa_pairs: GPU hours per shard. A new chunk must never start generation by
  itself; launch `generation_job` per shard or as a backfill.
- packed_documents: unpartitioned over thousands of shard partitions; eager() would wait on any
  shard that has no qa_pairs yet, and packing consumes the section pool, so it is a decision, not a
  reaction.
- ruler_*: on a schedule and on new checkpoints (schedules.py, sensors.py).
The condition is set on this sensor (default_condition), not on the assets, so the asset modules
stay free of operations policy and a deployment can swap the policy in one place.
"""

import dagster as dg

AUTOMATED_ASSETS = ("filtered_corpus", "chunks")

corpus_automation_sensor = dg.AutomationConditionSensorDefinition(
    "corpus_automation_sensor",
    target=dg.AssetSelection.assets(*AUTOMATED_ASSETS),
    default_condition=dg.AutomationCondition.eager(),
    use_user_code_server=True,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="filtered_corpus and chunks of a shard follow its raw_corpus (eager). Generation and packing are never automated.",
)
