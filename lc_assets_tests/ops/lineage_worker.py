"""Child-process body for the concurrent-lineage test: one raw_corpus -> chunks run on one shard."""

from __future__ import annotations

import time
from typing import Any


def materialize_shard(shard: str, sources_file: str, lineage_path: str, barrier: Any) -> dict[str, object]:
    """Run raw_corpus + chunks for `shard` in a fresh process; returns success, counts and check results."""
    import dagster as dg

    from lc_assets.defs.chunks.assets import chunks
    from lc_assets.defs.corpus.assets import raw_corpus
    from lc_assets.defs.filters.assets import filtered_corpus
    from lc_assets.defs.partitions import CORPUS_SHARDS
    from lc_assets.defs.resources import CorpusSourcesResource, LineageStoreResource, TokenizerResource

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(CORPUS_SHARDS, [shard])
    resources = {
        "lineage": LineageStoreResource(path=lineage_path, lock_timeout_s=120),
        "target_tokenizer": TokenizerResource(),
        "corpus_sources": CorpusSourcesResource(sources_file=sources_file),
    }
    TokenizerResource().load()  # load before the barrier so both processes write at the same time
    barrier.wait(timeout=240)  # a multiprocessing.Manager().Barrier(2): both runs start writing together
    started = time.time()
    result = dg.materialize(
        [raw_corpus, filtered_corpus, chunks],
        resources=resources,
        instance=instance,
        partition_key=shard,
        run_config={
            "ops": {
                # one document per transaction: many small write transactions interleave between the processes
                "raw_corpus": {"config": {"batch_bytes": 1}},
                "chunks": {"config": {"min_tokens": 200, "max_tokens": 600, "batch_documents": 1}},
            }
        },
        raise_on_error=False,
    )
    errors = [str(e.event_specific_data.error) for e in result.all_events if e.is_step_failure]
    return {
        "shard": shard,
        "success": result.success,
        "errors": errors,
        "checks": {c.check_name: c.passed for c in result.get_asset_check_evaluations()},
        "run_id": result.run_id,
        "window": (started, time.time()),
    }
