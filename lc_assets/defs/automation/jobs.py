"""The jobs that sensors, schedules and people launch: corpus ingestion, GPU generation, RULER evaluation.

Runs that hold the GPU carry the `lc_assets/gpu=true` tag, which dagster.yaml's
`concurrency.runs.tag_concurrency_limits` caps at one run at a time (docker/ and k8s configs alike).
"""

import dagster as dg

from lc_assets.defs.generation.assets import GPU_RUN_TAG

CORPUS_INGEST_ASSETS = ("raw_corpus", "filtered_corpus", "chunks")
GENERATION_ASSETS = ("masked_prompts", "qa_pairs", "judged_qa_pairs")
RULER_EVAL_ASSETS = ("ruler_tasks", "ruler_scores")

corpus_ingest_job = dg.define_asset_job(
    "corpus_ingest_job",
    selection=dg.AssetSelection.assets(*CORPUS_INGEST_ASSETS),
    description="raw_corpus -> filtered_corpus -> chunks for one corpus shard (CPU only). Launched by corpus_inbox_sensor.",
    tags={"lc_assets/stage": "corpus"},
)

generation_job = dg.define_asset_job(
    "generation_job",
    selection=dg.AssetSelection.assets(*GENERATION_ASSETS),
    description="masked_prompts + qa_pairs, then the model judge (judged_qa_pairs), for one corpus shard on the "
    "generator (GPU on production hosts). "
    "Never automated: launch it per shard or as a backfill.",
    tags={**GPU_RUN_TAG, "lc_assets/stage": "generation"},
)

ruler_eval_job = dg.define_asset_job(
    "ruler_eval_job",
    selection=dg.AssetSelection.assets(*RULER_EVAL_ASSETS),
    description="RULER tasks (built once per config, then reused) and a model's scores. Holds the GPU like "
    "generation does, so an eval never shares the GPU with a generation run.",
    tags={**GPU_RUN_TAG, "lc_assets/stage": "eval"},
)
