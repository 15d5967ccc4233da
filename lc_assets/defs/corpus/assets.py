"""raw_corpus: documents of one corpus shard, deduplicated by content, with exact token counts."""

from collections import Counter
from collections.abc import Iterator

import dagster as dg

from lc_assets.defs.partitions import corpus_shards
from lc_assets.defs.progress import StepProgress
from lc_assets.defs.resources import CorpusSourcesResource, LineageStoreResource, TokenizerResource
from lc_assets.lib.corpus.documents import RawDocument, SkippedInput, SourceNotFoundError
from lc_assets.lib.corpus.sources import SourceSpec, iter_source
from lc_assets.lib.lineage import LineageStore, insert_rows


class RawCorpusConfig(dg.Config):
    """Run-time knobs of ingestion; the source itself comes from the shard's spec."""

    max_documents: int | None = None  # cap per shard (None: the spec's own cap)
    batch_bytes: int = 64 * 1024 * 1024  # text per transaction


def _batches(
    items: Iterator[RawDocument | SkippedInput], batch_bytes: int
) -> Iterator[list[RawDocument | SkippedInput]]:
    batch: list[RawDocument | SkippedInput] = []
    size = 0
    for item in items:
        batch.append(item)
        if isinstance(item, RawDocument):
            size += item.byte_size
        if size >= batch_bytes or len(batch) >= 10_000:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def ingest_shard(
    shard: str,
    spec: SourceSpec,
    store: LineageStore,
    tokenizer_res: TokenizerResource,
    run_id: str,
    batch_bytes: int,
    progress: StepProgress | None = None,
) -> dict[str, object]:
    """Store a shard's new documents and skips; one transaction per batch. Returns counts."""
    tokenizer = tokenizer_res.load()
    config_hash = spec.config_hash()
    counts: Counter[str] = Counter()
    skips: Counter[str] = Counter()
    licenses: Counter[str] = Counter()
    new_tokens = 0
    for batch in _batches(iter_source(spec), batch_bytes):
        docs: dict[str, RawDocument] = {}
        for item in batch:
            if isinstance(item, RawDocument):
                if item.document_id in docs:
                    counts["duplicate_in_shard"] += 1
                docs.setdefault(item.document_id, item)
        stored = store.existing_ids("documents", "document_id", list(docs))
        new = [d for i, d in docs.items() if i not in stored]
        n_tokens = tokenizer.count_batch([d.text for d in new])
        with store.transaction() as con:
            insert_rows(
                con,
                "documents",
                [
                    dict(
                        document_id=d.document_id, source=d.source, title=d.title, license=d.license,
                        byte_size=d.byte_size, n_tokens=n, tokenizer=tokenizer.fingerprint, text=d.text,
                        run_id=run_id, config_hash=config_hash,
                    )
                    for d, n in zip(new, n_tokens, strict=True)
                ],
            )  # fmt: skip
            insert_rows(
                con,
                "shard_documents",
                [
                    dict(shard=shard, document_id=i, source=d.source, run_id=run_id, config_hash=config_hash)
                    for i, d in docs.items()
                ],
            )
            insert_rows(
                con,
                "ingest_skips",
                [
                    dict(
                        shard=shard,
                        source=s.source,
                        reason=s.reason,
                        detail=s.detail,
                        run_id=run_id,
                        config_hash=config_hash,
                    )
                    for s in batch
                    if isinstance(s, SkippedInput)
                ],
            )
        counts["new_documents"] += len(new)
        counts["already_stored"] += len(docs) - len(new)
        new_tokens += sum(n_tokens)
        for d in new:
            licenses[d.license] += 1
        for s in batch:
            if isinstance(s, SkippedInput):
                skips[s.reason] += 1
        if progress:
            progress.update(len(docs), new_tokens=f"{new_tokens:,}")
    return {"counts": counts, "skips": skips, "licenses": licenses, "new_tokens": new_tokens}


def _shard_summary(store: LineageStore, shard: str) -> tuple[int, int, int, list[tuple]]:
    docs, tokens, size = store.query(
        """SELECT count(*), coalesce(sum(d.n_tokens), 0), coalesce(sum(d.byte_size), 0)
           FROM shard_documents s JOIN documents d USING (document_id) WHERE s.shard = ?""",
        [shard],
    )[0]
    skips = store.query(
        "SELECT source, reason, detail FROM ingest_skips WHERE shard = ? ORDER BY reason, source LIMIT 50", [shard]
    )
    return docs, tokens, size, skips


@dg.asset(
    partitions_def=corpus_shards,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="corpus",
    kinds={"python", "duckdb"},
    owners=["team:data-pipeline"],
    description="Raw documents of one corpus shard: content-hash id, source, license, bytes, exact target-token count. "
    "Bad files are skipped with a recorded reason.",
)
def raw_corpus(
    context: dg.AssetExecutionContext,
    config: RawCorpusConfig,
    lineage: LineageStoreResource,
    target_tokenizer: TokenizerResource,
    corpus_sources: CorpusSourcesResource,
) -> dg.MaterializeResult:
    store = lineage.store()
    totals: Counter[str] = Counter()
    skips: Counter[str] = Counter()
    licenses: Counter[str] = Counter()
    for shard in context.partition_keys:
        spec = corpus_sources.spec(shard)
        if config.max_documents is not None:
            spec = spec.model_copy(update={"max_documents": config.max_documents})
        progress = StepProgress(context, f"raw_corpus[{shard}]", None, "docs")
        try:
            result = ingest_shard(shard, spec, store, target_tokenizer, context.run_id, config.batch_bytes, progress)
        except SourceNotFoundError as exc:
            raise dg.Failure(description=f"shard {shard!r}: {exc}") from exc
        progress.close()
        totals.update(result["counts"])  # type: ignore[arg-type]
        skips.update(result["skips"])  # type: ignore[arg-type]
        licenses.update(result["licenses"])  # type: ignore[arg-type]
        totals["new_tokens"] += result["new_tokens"]  # type: ignore[operator]
        for reason, n in result["skips"].items():  # type: ignore[union-attr]
            context.log.warning(f"shard {shard!r}: skipped {n} input(s): {reason}")
    shards = context.partition_keys
    summaries = [_shard_summary(store, s) for s in shards]
    skip_rows = [row for s in summaries for row in s[3]]
    skip_table = "\n".join(
        ["| source | reason | detail |", "|---|---|---|"]
        + [f"| {src} | {reason} | {(detail or '')[:120]} |" for src, reason, detail in skip_rows]
    )
    return dg.MaterializeResult(
        metadata={
            "shards": ", ".join(shards),
            "documents": sum(s[0] for s in summaries),
            "tokens": sum(s[1] for s in summaries),
            "bytes": sum(s[2] for s in summaries),
            "new_documents": totals["new_documents"],
            "already_stored": totals["already_stored"],
            "duplicates_in_shard": totals["duplicate_in_shard"],
            "new_tokens": totals["new_tokens"],
            "skipped": sum(skips.values()),
            "skipped_by_reason": dg.MetadataValue.json(dict(skips)),
            "licenses_of_new_documents": dg.MetadataValue.json(dict(licenses)),
            "skips_sample": dg.MetadataValue.md(skip_table if skip_rows else "no skipped inputs"),
            "lineage_db": dg.MetadataValue.path(str(store.path)),
        }
    )
