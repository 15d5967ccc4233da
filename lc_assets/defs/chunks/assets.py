"""chunks: contiguous token-bounded slices of each kept document of a shard, with checks on every run."""

import hashlib
import io
from collections import Counter

import dagster as dg
import pyarrow as pa

from lc_assets.defs.metadata import png_markdown
from lc_assets.defs.partitions import corpus_shards
from lc_assets.defs.progress import StepProgress
from lc_assets.defs.resources import LineageStoreResource, TokenizerResource
from lc_assets.defs.stepconfig import dagster_config, step_config
from lc_assets.lib.chunking import CUT_KINDS, RECOUNT_REASONS, ChunkingConfig, chunk_documents, chunk_id
from lc_assets.lib.corpus.lineage import (
    ShardAccount,
    account_table,
    document_sizes,
    document_texts,
    length_filtered,
    map_shard_chunks,
    pending_documents,
    reconstruction_mismatches,
    shard_account,
    shard_chunk_counts,
    shard_chunk_rows,
    shard_filter_hash,
)
from lc_assets.lib.lineage import LineageStore, insert_rows

CHECK_BOUNDS = "chunk_token_bounds"
CHECK_RECONSTRUCTION = "chunks_reconstruct_documents"
CHECK_COUNTS = "chunk_counts_match_lineage"
CHECK_EXACT = "chunk_token_counts_exact"
CHECK_USABLE = "shards_have_usable_chunks"

ChunksConfig = dagster_config(
    ChunkingConfig,
    "ChunksConfig",
    "Chunk bounds in target-tokenizer tokens (see lc_assets.lib.chunking.ChunkingConfig).",
    exact_check_sample=(int, 8),  # chunks re-encoded whole by the exactness check
)


class NotFilteredError(RuntimeError):
    """A shard has no filter decisions yet."""


def chunk_shard(
    shard: str, store: LineageStore, tokenizer_res: TokenizerResource, cfg: ChunkingConfig, run_id: str,
    progress: StepProgress | None = None,
) -> Counter[str]:  # fmt: skip
    """Chunk the shard's kept documents not yet chunked under this config, then map the shard to its chunks.

    One transaction per batch (chunks and their documents' done markers together). A document
    already chunked (by this shard or another that shares it) is not cut again: the shard is
    pointed at its chunks in `shard_chunks`.
    """
    filter_hash = shard_filter_hash(store, shard)
    if filter_hash is None:
        raise NotFilteredError(
            f"shard {shard!r} has no filter decisions: materialize filtered_corpus for it first "
            "(raw_corpus -> filtered_corpus -> chunks)"
        )
    tokenizer = tokenizer_res.load()
    counting = tokenizer.counting_fingerprint
    config_hash = cfg.config_hash()
    counts: Counter[str] = Counter()
    todo, counts["already_chunked"] = pending_documents(store, shard, config_hash, filter_hash)
    sizes = document_sizes(store, todo)
    docs_done = [0]

    def on_progress(tokens: int, docs: int) -> None:  # after each encoded batch: every few seconds on big documents
        docs_done[0] += docs
        if progress:
            progress.update(tokens, documents=f"{docs_done[0]}/{len(todo)}")

    start = 0
    while start < len(todo):
        ids, size = [], 0
        while start < len(todo) and len(ids) < cfg.batch_documents and (not ids or size < cfg.batch_chars):
            ids.append(todo[start])
            size += sizes[todo[start]]
            start += 1
        texts = document_texts(store, ids)
        results = chunk_documents([texts[i] for i in ids], tokenizer, cfg, on_progress)
        chunk_rows, done_rows, count_rows = [], [], []
        for doc_id, res in zip(ids, results, strict=True):
            text = texts[doc_id]
            for span in res.spans:
                chunk_rows.append(
                    dict(
                        chunk_id=chunk_id(f"{config_hash}:{doc_id}", span.char_start, span.char_end),
                        document_id=doc_id, config_hash=config_hash, shard=shard, chunk_index=span.index,
                        char_start=span.char_start, char_end=span.char_end, token_start=span.token_start,
                        token_end=span.token_end, n_tokens=span.n_tokens, cut_kind=span.cut,
                        recount_reason=span.recount_reason, tokenizer=tokenizer.fingerprint,
                        text=text[span.char_start : span.char_end], run_id=run_id,
                    )
                )  # fmt: skip
                count_rows.append(
                    dict(
                        chunk_id=chunk_rows[-1]["chunk_id"], document_id=doc_id, tokenizer=counting,
                        spans_digest=span.paragraph_spans_digest, counts=list(span.paragraph_tokens), run_id=run_id,
                        config_hash=config_hash,
                    )
                )  # fmt: skip
            done_rows.append(
                dict(
                    document_id=doc_id, config_hash=config_hash, shard=shard, n_tokens=res.n_tokens,
                    n_chunks=len(res.spans), filtered_reason=res.filtered_reason, run_id=run_id,
                )
            )  # fmt: skip
            counts[f"filtered_{res.filtered_reason}" if res.filtered_reason else "chunked_documents"] += 1
            counts["tokens"] += res.n_tokens
        # chunks and their documents' done markers commit together: a kill never leaves half a document
        with store.transaction() as con:
            # count what was inserted: a concurrent run may have chunked the same document first
            counts["new_chunks"] += insert_rows(con, "chunks", chunk_rows)
            # the paragraphs' target tokens: generation with the same tokenizer does not encode them again
            insert_rows(con, "chunk_paragraph_counts", count_rows, types={"counts": pa.list_(pa.int32())})
            insert_rows(con, "chunked_documents", done_rows)
    with store.transaction() as con:
        counts["mapped_chunks"] = map_shard_chunks(con, shard, config_hash, filter_hash, run_id)
    return counts


def _length_histogram_png(lengths: list[int], lo: int, hi: int) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.6), dpi=80)
    ax.hist(lengths, bins=30, color="#4f6bed")
    ax.axvline(lo, color="grey", ls="--")
    ax.axvline(hi, color="grey", ls="--")
    ax.set_xlabel("chunk length (target tokens)")
    ax.set_ylabel("chunks")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


@dg.asset(
    partitions_def=corpus_shards,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=["filtered_corpus"],
    group_name="corpus",
    kinds={"python", "duckdb"},
    owners=["team:data-pipeline"],
    description="Contiguous 50k-150k-token slices (configurable) of each kept document, cut at paragraph, then line, "
    "sentence, whitespace and token boundaries, never mid-token, in linear time; exact counts. Shorter documents are "
    "left out and counted. Chunks are per document: a shard that shares a document uses its chunks (shard_chunks).",
    check_specs=[
        dg.AssetCheckSpec(CHECK_BOUNDS, asset="chunks", description="every chunk lies within the token bounds"),
        dg.AssetCheckSpec(
            CHECK_RECONSTRUCTION, asset="chunks", description="a document's chunks joined give its exact text"
        ),
        dg.AssetCheckSpec(CHECK_COUNTS, asset="chunks", description="metadata counts equal the DuckDB rows"),
        dg.AssetCheckSpec(
            CHECK_EXACT, asset="chunks", description="a sample of chunks re-encoded whole has the stored count"
        ),
        dg.AssetCheckSpec(
            CHECK_USABLE, asset="chunks", description="every shard with documents has chunks to generate from"
        ),
    ],
)
def chunks(
    context: dg.AssetExecutionContext,
    config: ChunksConfig,  # type: ignore[valid-type]
    lineage: LineageStoreResource,
    target_tokenizer: TokenizerResource,
):
    store = lineage.store()
    cfg: ChunkingConfig = step_config(ChunkingConfig, config)
    config_hash = cfg.config_hash()
    shards = list(context.partition_keys)
    totals: Counter[str] = Counter()
    for shard in shards:
        progress = StepProgress(context, f"chunks[{shard}]", None, "tokens", every_s=5.0)
        try:
            counts = chunk_shard(shard, store, target_tokenizer, cfg, context.run_id, progress)
        except NotFilteredError as exc:
            raise dg.Failure(description=str(exc)) from exc
        totals.update(counts)
        progress.close(new_chunks=counts["new_chunks"], shared=counts["already_chunked"])
        if counts["already_chunked"]:
            context.log.info(
                f"chunks[{shard}]: {counts['already_chunked']} document(s) already chunked (by this or another shard)"
                " are used as they are"
            )

    rows = shard_chunk_rows(store, shards, config_hash, "c.n_tokens")
    lengths = [r[0] for r in rows]
    stats = shard_chunk_counts(store, shards, config_hash, context.run_id)
    accounts = [shard_account(store, s, config_hash, shard_filter_hash(store, s)) for s in shards]
    too_short = Counter[str]()
    for s in shards:
        too_short.update(length_filtered(store, [s], config_hash, shard_filter_hash(store, s)))
    n_docs = sum(a.chunked for a in accounts)
    yield dg.MaterializeResult(
        metadata={
            "shards": ", ".join(shards),
            "config_hash": config_hash,
            "chunks": len(lengths),
            "chunked_documents": n_docs,
            "tokens_in_chunks": sum(lengths),
            "new_chunks": totals["new_chunks"],
            "documents_already_chunked": totals["already_chunked"],
            "filtered_by_reason": dg.MetadataValue.json(dict(too_short)),
            "cut_kinds": dg.MetadataValue.json(stats["cut_kinds"]),
            "recounted_whole": sum(stats["recount_reasons"].values()),
            "recount_reasons": dg.MetadataValue.json(stats["recount_reasons"]),
            "shard_accounting": dg.MetadataValue.md(account_table(accounts)),
            "what_the_counts_mean": dg.MetadataValue.md(_legend(stats)),
            "min_chunk_tokens": min(lengths, default=0),
            "max_chunk_tokens": max(lengths, default=0),
            "length_histogram": png_markdown(
                _length_histogram_png(lengths, cfg.min_tokens, cfg.max_tokens), "chunk lengths"
            )
            if lengths
            else dg.MetadataValue.md("no chunks"),
        }
    )

    out_of_bounds = [n for n in lengths if not cfg.min_tokens <= n <= cfg.max_tokens]
    yield dg.AssetCheckResult(
        check_name=CHECK_BOUNDS,
        passed=not out_of_bounds,
        metadata={"chunks": len(lengths), "out_of_bounds": len(out_of_bounds), "examples": str(out_of_bounds[:10])},
    )

    mismatched = reconstruction_mismatches(store, shards, config_hash)
    yield dg.AssetCheckResult(
        check_name=CHECK_RECONSTRUCTION,
        passed=not mismatched,
        metadata={"documents_checked": n_docs, "mismatched": len(mismatched), "examples": str(mismatched[:5])},
    )

    yield dg.AssetCheckResult(
        check_name=CHECK_COUNTS,
        passed=stats["done_marker_chunks"] == len(lengths) and stats["rows_this_run"] == totals["new_chunks"],
        metadata={
            "metadata_new_chunks": totals["new_chunks"],
            "lineage_rows_of_this_run": stats["rows_this_run"],
            "lineage_chunk_rows": len(lengths),
            "done_marker_chunks": stats["done_marker_chunks"],
        },
    )

    sample = sorted(shard_chunk_rows(store, shards, config_hash, "c.chunk_id, c.text, c.n_tokens"), key=_sample_key)
    sample = sample[: config.exact_check_sample]
    recount = target_tokenizer.load().count_batch([t for _, t, _ in sample])
    wrong = [cid for (cid, _, n), m in zip(sample, recount, strict=True) if n != m]
    yield dg.AssetCheckResult(
        check_name=CHECK_EXACT,
        passed=not wrong,
        metadata={"sampled": len(sample), "wrong_counts": len(wrong), "examples": str(wrong[:5])},
    )

    unusable = {a.shard: _why_unusable(a) for a in accounts if a.documents and not a.chunks}
    yield dg.AssetCheckResult(
        check_name=CHECK_USABLE,
        passed=not unusable,
        metadata={"shards_without_chunks": dg.MetadataValue.json(unusable)},
    )


def _sample_key(row: tuple) -> str:
    # a fixed spread over the chunks, different for each config (chunk ids embed it)
    return hashlib.sha256(row[0].encode()).hexdigest()


def _why_unusable(account: ShardAccount) -> str:
    return (
        f"{account.documents} document(s): {sum(account.filtered.values())} filtered {account.filtered or ''}, "
        f"{account.too_short} below the chunk minimum, 0 chunked"
    )


def _legend(stats: dict) -> str:
    lines = ["**cut kinds** (the boundary that ends a chunk; each kind is used only when none before it fits)", ""]
    lines += [f"- `{k}` ({stats['cut_kinds'].get(k, 0)}): {v}" for k, v in CUT_KINDS.items()]
    lines += ["", "**recounted chunks** (counted by encoding the chunk alone; every other chunk's count is the "]
    lines += ["document's tokens it covers, with both cuts checked by encoding ~48 tokens on each side alone)", ""]
    lines += [f"- `{k}` ({stats['recount_reasons'].get(k, 0)}): {v}" for k, v in RECOUNT_REASONS.items()]
    return "\n".join(lines)
