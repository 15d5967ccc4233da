"""raw_corpus: documents of one corpus shard, deduplicated by content, with exact token counts."""

from collections import Counter
from collections.abc import Iterator

import dagster as dg
from pydantic import Field, ValidationError

from lc_assets.defs.partitions import corpus_shards
from lc_assets.defs.progress import StepProgress
from lc_assets.defs.resources import CorpusSourcesResource, LineageStoreResource, TokenizerResource
from lc_assets.defs.stepconfig import dagster_config
from lc_assets.lib.corpus.documents import RawDocument, SkippedInput, SourceNotFoundError, SourceReadError
from lc_assets.lib.corpus.lineage import forget_stale_members, record_ingest, shard_skips, shard_totals
from lc_assets.lib.corpus.sources import SourceSpec, iter_source
from lc_assets.lib.lineage import LineageStore, insert_rows

# The source itself comes from the shard's spec (corpus_sources); a run may only cap it. None keeps the
# spec's own cap.
RawCorpusConfig = dagster_config(
    SourceSpec,
    "RawCorpusConfig",
    "Run-time knobs of ingestion: a cap on the shard's documents, and text per transaction.",
    fields=["max_documents"],
    batch_bytes=(int, Field(64 * 1024 * 1024, description="text per transaction (memory bound)")),
)


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
    """Store a shard's new documents and skips; one transaction per batch. Returns counts.

    Every input ends as a document or a skip: an input whose text equals an earlier one of the
    shard is a `duplicate_content` skip naming the first; the run's accounting is one
    `shard_ingests` row, written last (a killed run leaves its batches, and no row).
    """
    tokenizer = tokenizer_res.load()
    config_hash = spec.config_hash()
    counts: Counter[str] = Counter()
    skips: Counter[str] = Counter()
    licenses: Counter[str] = Counter()
    first_source: dict[str, str] = {}  # document id -> the input that first had its text
    skip_sources: list[str] = []
    new_tokens = 0
    for batch in _batches(iter_source(spec), batch_bytes):
        docs: dict[str, RawDocument] = {}
        skipped: list[SkippedInput] = []
        for item in batch:
            if isinstance(item, SkippedInput):
                skipped.append(item)
            elif item.document_id in first_source:
                skipped.append(
                    SkippedInput(item.source, "duplicate_content", f"same text as {first_source[item.document_id]}")
                )
            else:
                first_source[item.document_id] = item.source
                docs[item.document_id] = item
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
                    dict(shard=shard, source=s.source, reason=s.reason, detail=s.detail, run_id=run_id,
                         config_hash=config_hash)
                    for s in skipped
                ],
            )  # fmt: skip
        counts["inputs"] += len(batch)
        counts["new_documents"] += len(new)
        counts["already_stored"] += len(docs) - len(new)
        new_tokens += sum(n_tokens)
        licenses.update(d.license for d in new)
        skips.update(s.reason for s in skipped)
        skip_sources += [s.source for s in skipped]
        if progress:
            progress.update(len(batch), documents=len(first_source), new_tokens=f"{new_tokens:,}")
    complete = spec.max_documents is None or len(first_source) < spec.max_documents
    with store.transaction() as con:
        if complete:  # the source as it is now: removed or fixed inputs leave the shard
            counts["left_shard"] = forget_stale_members(con, shard, list(first_source), skip_sources)
        record_ingest(
            con,
            dict(
                shard=shard, run_id=run_id, config_hash=config_hash, inputs=counts["inputs"],
                documents=len(first_source), new_documents=counts["new_documents"], skips=sum(skips.values()),
                skips_by_reason=dict(skips), complete=complete,
            ),
        )  # fmt: skip
    counts["documents"] = len(first_source)
    return {"counts": counts, "skips": skips, "licenses": licenses, "new_tokens": new_tokens}


@dg.asset(
    partitions_def=corpus_shards,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="corpus",
    kinds={"python", "duckdb"},
    owners=["team:data-pipeline"],
    description="Raw documents of one corpus shard: content-hash id, source, license, bytes, exact target-token count. "
    "Every input (file, record, catalog entry) ends as a document or a skip with its reason: bad files and records, "
    "symlink loops, hidden files, duplicate content. Metadata: inputs = documents + skips by reason.",
)
def raw_corpus(
    context: dg.AssetExecutionContext,
    config: RawCorpusConfig,  # type: ignore[valid-type]
    lineage: LineageStoreResource,
    target_tokenizer: TokenizerResource,
    corpus_sources: CorpusSourcesResource,
) -> dg.MaterializeResult:
    store = lineage.store()
    totals: Counter[str] = Counter()
    skips: Counter[str] = Counter()
    licenses: Counter[str] = Counter()
    spec_hashes: dict[str, str] = {}
    for shard in context.partition_keys:
        spec = corpus_sources.spec(shard)
        if config.max_documents is not None:  # validated like the spec's own cap (model_copy would not check it)
            try:
                spec = SourceSpec(**{**spec.model_dump(), "max_documents": config.max_documents})
            except ValidationError as exc:
                raise dg.Failure(description=f"shard {shard!r}: {exc}") from exc
        spec_hashes[shard] = spec.config_hash()
        progress = StepProgress(context, f"raw_corpus[{shard}]", None, "docs")
        try:
            result = ingest_shard(shard, spec, store, target_tokenizer, context.run_id, config.batch_bytes, progress)
        except (SourceNotFoundError, SourceReadError) as exc:
            raise dg.Failure(description=f"shard {shard!r}: {exc}") from exc
        progress.close()
        totals.update(result["counts"])  # type: ignore[arg-type]
        skips.update(result["skips"])  # type: ignore[arg-type]
        licenses.update(result["licenses"])  # type: ignore[arg-type]
        totals["new_tokens"] += result["new_tokens"]  # type: ignore[operator]
        if result["counts"]["left_shard"]:  # type: ignore[index]
            context.log.warning(
                f"shard {shard!r}: {result['counts']['left_shard']} document(s) no longer in the source left the shard"  # type: ignore[index]
            )
        for reason, n in result["skips"].items():  # type: ignore[union-attr]
            context.log.warning(f"shard {shard!r}: skipped {n} input(s): {reason}")
    shards = context.partition_keys
    totals_by_shard = [shard_totals(store, s) for s in shards]
    skip_rows = [row for s in shards for row in shard_skips(store, s, spec_hashes[s], limit=50)]
    skip_table = "\n".join(
        ["| source | reason | detail |", "|---|---|---|"]
        + [f"| {src} | {reason} | {(detail or '')[:120]} |" for src, reason, detail in skip_rows]
    )
    return dg.MaterializeResult(
        metadata={
            "shards": ", ".join(shards),
            "inputs": totals["inputs"],
            "accounting": dg.MetadataValue.md(
                f"{totals['inputs']:,} inputs = {totals['documents']:,} documents + {sum(skips.values()):,} skipped "
                f"({', '.join(f'{k} {v}' for k, v in sorted(skips.items())) or 'none'})"
            ),
            "documents": sum(t[0] for t in totals_by_shard),
            "tokens": sum(t[1] for t in totals_by_shard),
            "bytes": sum(t[2] for t in totals_by_shard),
            "new_documents": totals["new_documents"],
            "already_stored": totals["already_stored"],
            "left_the_shard": totals["left_shard"],  # no longer in the source (their documents stay in the lineage)
            "new_tokens": totals["new_tokens"],
            "skipped": sum(skips.values()),
            "skipped_by_reason": dg.MetadataValue.json(dict(skips)),
            "licenses_of_new_documents": dg.MetadataValue.json(dict(licenses)),
            "skips_sample": dg.MetadataValue.md(skip_table if skip_rows else "no skipped inputs"),
            "lineage_db": dg.MetadataValue.path(str(store.path)),
        }
    )
