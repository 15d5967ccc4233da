"""filtered_corpus: quality and near-duplicate decisions for each document of a shard, before chunking."""

import json
from collections import Counter

import dagster as dg
import numpy as np

from lc_assets.defs.partitions import corpus_shards
from lc_assets.defs.progress import StepProgress
from lc_assets.defs.resources import LineageStoreResource
from lc_assets.defs.stepconfig import dagster_config, step_config
from lc_assets.lib.corpus.lineage import (
    document_sizes,
    document_source,
    document_texts,
    documents_to_judge,
    kept_signatures,
    set_shard_filter,
    shard_filter_summary,
    stored_signatures,
)
from lc_assets.lib.corpus.quality import FilterConfig, NearDuplicateIndex, Verdict, judge, minhash_signature
from lc_assets.lib.lineage import LineageStore, insert_rows

CHECK_DECIDED = "filter_decisions_cover_shard"

FilteredCorpusConfig = dagster_config(
    FilterConfig,
    "FilteredCorpusConfig",
    "Filter thresholds (see lc_assets.lib.corpus.quality.FilterConfig); None switches a rule off.",
    batch_chars=(int, 64 * 1024 * 1024),  # text judged per transaction (memory bound)
)


def _batches(store: LineageStore, ids: list[str], batch_chars: int) -> list[list[str]]:
    sizes = document_sizes(store, ids)
    batches: list[list[str]] = [[]]
    size = 0
    for doc_id in ids:
        if batches[-1] and size + sizes[doc_id] > batch_chars:
            batches.append([])
            size = 0
        batches[-1].append(doc_id)
        size += sizes[doc_id]
    return [b for b in batches if b]


def filter_shard(
    shard: str, store: LineageStore, cfg: FilterConfig, run_id: str, batch_chars: int = 64 << 20,
    progress: StepProgress | None = None,
) -> Counter[str]:  # fmt: skip
    """Judge the shard's documents not yet judged under this config; one transaction per batch.

    Near-duplicates are judged against every document kept before under the same config (any
    shard, earlier runs included) and the earlier documents of this run, in source order.
    """
    filter_hash, minhash_hash = cfg.config_hash(), cfg.minhash_hash()
    counts: Counter[str] = Counter()
    todo = documents_to_judge(store, shard, filter_hash)
    index = None
    if cfg.near_duplicate_threshold is not None:
        index = NearDuplicateIndex(cfg)
        index.add_many(
            (d, np.frombuffer(sig, np.uint64)) for d, sig in kept_signatures(store, filter_hash, minhash_hash)
        )
    for ids in _batches(store, todo, batch_chars):
        texts = document_texts(store, ids)
        known = stored_signatures(store, ids, minhash_hash)
        decisions, signatures = [], []
        for doc_id in ids:
            verdict = judge(texts[doc_id], cfg)
            if verdict.kept and index is not None and verdict.stats["words"] >= cfg.min_words:
                if doc_id in known:
                    signature = np.frombuffer(known[doc_id], np.uint64)
                else:
                    signature = minhash_signature(texts[doc_id], cfg)
                    signatures.append(
                        dict(document_id=doc_id, config_hash=minhash_hash, signature=signature.tobytes(), run_id=run_id)
                    )
                verdict = _near_duplicate(store, index, doc_id, signature, verdict)
            decisions.append(
                dict(
                    document_id=doc_id, config_hash=filter_hash, shard=shard, kept=verdict.kept, reason=verdict.reason,
                    detail=verdict.detail, duplicate_of=verdict.duplicate_of, stats=json.dumps(verdict.stats),
                    run_id=run_id,
                )
            )  # fmt: skip
            counts["kept" if verdict.kept else f"dropped_{verdict.reason}"] += 1
        with store.transaction() as con:
            insert_rows(con, "document_minhashes", signatures)
            counts["decided"] += insert_rows(con, "filter_decisions", decisions)
        if progress:
            progress.update(len(ids), kept=counts["kept"])
    with store.transaction() as con:
        set_shard_filter(con, shard, filter_hash, run_id)
    return counts


def _near_duplicate(
    store: LineageStore, index: NearDuplicateIndex, doc_id: str, signature: np.ndarray, verdict: Verdict
) -> Verdict:
    near = index.nearest(signature)
    if near is None:
        index.add(doc_id, signature)
        return verdict
    other, similarity = near
    source = document_source(store, other)
    threshold = index.cfg.near_duplicate_threshold
    return Verdict(
        False,
        "near_duplicate",
        f"estimated Jaccard similarity {similarity:.2f} >= {threshold} with {source} ({other[:12]})",
        {**verdict.stats, "near_duplicate_similarity": round(similarity, 4)},
        duplicate_of=other,
    )


@dg.asset(
    partitions_def=corpus_shards,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=["raw_corpus"],
    group_name="corpus",
    kinds={"python", "duckdb"},
    owners=["team:data-pipeline"],
    description="Quality and near-duplicate decisions per document: Gopher repetition rules (duplicate lines and "
    "paragraphs, top n-gram share, duplicate n-grams), distinct-word ratio, language (lingua), MinHash-LSH "
    "near-duplicates (datasketch). Each decision records every measured value and why a rule fired; chunks cuts "
    "only the kept documents.",
    check_specs=[
        dg.AssetCheckSpec(
            CHECK_DECIDED, asset="filtered_corpus", description="every document of the shard has a decision"
        )
    ],
)
def filtered_corpus(
    context: dg.AssetExecutionContext,
    config: FilteredCorpusConfig,  # type: ignore[valid-type]
    lineage: LineageStoreResource,
):
    store = lineage.store()
    cfg: FilterConfig = step_config(FilterConfig, config)
    filter_hash = cfg.config_hash()
    shards = list(context.partition_keys)
    totals: Counter[str] = Counter()
    summaries = {}
    for shard in shards:
        progress = StepProgress(context, f"filtered_corpus[{shard}]", None, "docs", every_s=5.0)
        totals.update(filter_shard(shard, store, cfg, context.run_id, config.batch_chars, progress))
        progress.close(kept=totals["kept"])
        summaries[shard] = shard_filter_summary(store, shard, filter_hash)
    dropped: Counter[str] = Counter()
    for s in summaries.values():
        dropped.update(s["dropped_by_reason"])
    examples = [e for s in summaries.values() for e in s["examples"]]
    table = "\n".join(
        ["| source | rule | why | duplicate of |", "|---|---|---|---|"]
        + [f"| {src} | {reason} | {detail[:200]} | {dup or ''} |" for src, reason, detail, dup in examples]
    )
    for reason, n in dropped.items():
        context.log.info(f"filtered_corpus: dropped {n} document(s): {reason}")
    yield dg.MaterializeResult(
        metadata={
            "shards": ", ".join(shards),
            "config_hash": filter_hash,
            "kept": sum(s["kept"] for s in summaries.values()),
            "dropped": sum(dropped.values()),
            "dropped_by_reason": dg.MetadataValue.json(dict(dropped)),
            "decided_this_run": totals["decided"],
            "dropped_documents": dg.MetadataValue.md(table if examples else "no document dropped"),
            "thresholds": dg.MetadataValue.json(cfg.model_dump(mode="json")),
        }
    )
    undecided = {s: len(documents_to_judge(store, s, filter_hash)) for s in shards}
    yield dg.AssetCheckResult(
        check_name=CHECK_DECIDED,
        passed=not any(undecided.values()),
        metadata={"undecided_documents": dg.MetadataValue.json(undecided)},
    )
