"""chunks: contiguous token-bounded slices of each document of a shard, with checks on every run."""

import io
from collections import Counter

import dagster as dg

from lc_assets.defs.metadata import png_markdown
from lc_assets.defs.partitions import corpus_shards
from lc_assets.defs.progress import StepProgress
from lc_assets.defs.resources import LineageStoreResource, TokenizerResource
from lc_assets.lib.chunking import ChunkingConfig, chunk_documents, chunk_id
from lc_assets.lib.lineage import LineageStore, insert_rows

CHECK_BOUNDS = "chunk_token_bounds"
CHECK_RECONSTRUCTION = "chunks_reconstruct_documents"
CHECK_COUNTS = "chunk_counts_match_lineage"
CHECK_EXACT = "chunk_token_counts_exact"


class ChunksConfig(dg.Config):
    """Chunk bounds in target-tokenizer tokens (see ChunkingConfig)."""

    min_tokens: int = 50_000
    max_tokens: int = 150_000
    target_tokens: int | None = None
    batch_documents: int = 32
    exact_check_sample: int = 8  # chunks re-encoded whole by the exactness check

    def chunking(self) -> ChunkingConfig:
        return ChunkingConfig(
            min_tokens=self.min_tokens,
            max_tokens=self.max_tokens,
            target_tokens=self.target_tokens,
            batch_documents=self.batch_documents,
        )


def pending_documents(store: LineageStore, shard: str, config_hash: str) -> list[str]:
    rows = store.query(
        """SELECT s.document_id FROM shard_documents s
           WHERE s.shard = ? AND NOT EXISTS (
               SELECT 1 FROM chunked_documents c WHERE c.document_id = s.document_id AND c.config_hash = ?)
           ORDER BY s.document_id""",
        [shard, config_hash],
    )
    return [r[0] for r in rows]


def chunk_shard(
    shard: str, store: LineageStore, tokenizer_res: TokenizerResource, cfg: ChunkingConfig, run_id: str,
    progress: StepProgress | None = None,
) -> Counter[str]:  # fmt: skip
    """Chunk the shard's documents not yet chunked under this config; one transaction per batch."""
    tokenizer = tokenizer_res.load()
    config_hash = cfg.config_hash()
    counts: Counter[str] = Counter()
    todo = pending_documents(store, shard, config_hash)
    counts["already_chunked"] = store.scalar(
        "SELECT count(*) FROM shard_documents s JOIN chunked_documents c USING (document_id) "
        "WHERE s.shard = ? AND c.config_hash = ?",
        [shard, config_hash],
    )
    for start in range(0, len(todo), cfg.batch_documents):
        ids = todo[start : start + cfg.batch_documents]
        with store.connect(read_only=True) as con:
            docs = con.execute(
                "SELECT document_id, text FROM documents WHERE document_id IN (SELECT unnest(?::VARCHAR[]))", [ids]
            ).fetchall()
        texts = [t for _, t in docs]
        results = chunk_documents(texts, tokenizer, cfg)
        chunk_rows, done_rows = [], []
        for (doc_id, text), res in zip(docs, results, strict=True):
            for span in res.spans:
                chunk_rows.append(
                    dict(
                        chunk_id=chunk_id(f"{config_hash}:{doc_id}", span.char_start, span.char_end),
                        document_id=doc_id, config_hash=config_hash, shard=shard, chunk_index=span.index,
                        char_start=span.char_start, char_end=span.char_end, token_start=span.token_start,
                        token_end=span.token_end, n_tokens=span.n_tokens, cut_kind=span.cut,
                        tokenizer=tokenizer.fingerprint, text=text[span.char_start : span.char_end], run_id=run_id,
                    )
                )  # fmt: skip
                counts[f"cut_{span.cut}"] += 1
                counts["recounted_whole"] += span.recount_reason is not None
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
            new_chunks = insert_rows(con, "chunks", chunk_rows)
            insert_rows(con, "chunked_documents", done_rows)
        counts["new_chunks"] += new_chunks
        if progress:
            progress.update(sum(r.n_tokens for r in results), chunks=counts["new_chunks"])
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
    deps=["raw_corpus"],
    group_name="corpus",
    kinds={"python", "duckdb"},
    owners=["team:data-pipeline"],
    description="Contiguous 50k-150k-token slices (configurable) of each document, cut at paragraph, then line, "
    "then sentence boundaries, never mid-token; shorter documents are filtered out and counted.",
    check_specs=[
        dg.AssetCheckSpec(CHECK_BOUNDS, asset="chunks", description="every chunk lies within the token bounds"),
        dg.AssetCheckSpec(
            CHECK_RECONSTRUCTION, asset="chunks", description="a document's chunks joined give its exact text"
        ),
        dg.AssetCheckSpec(CHECK_COUNTS, asset="chunks", description="metadata counts equal the DuckDB rows"),
        dg.AssetCheckSpec(
            CHECK_EXACT, asset="chunks", description="a sample of chunks re-encoded whole has the stored count"
        ),
    ],
)
def chunks(
    context: dg.AssetExecutionContext,
    config: ChunksConfig,
    lineage: LineageStoreResource,
    target_tokenizer: TokenizerResource,
):
    store = lineage.store()
    cfg = config.chunking()
    config_hash = cfg.config_hash()
    shards = list(context.partition_keys)
    totals: Counter[str] = Counter()
    for shard in shards:
        progress = StepProgress(context, f"chunks[{shard}]", None, "tokens")
        totals.update(chunk_shard(shard, store, target_tokenizer, cfg, context.run_id, progress))
        progress.close(new_chunks=totals["new_chunks"])

    where = "c.shard IN (SELECT unnest(?::VARCHAR[])) AND c.config_hash = ?"
    params = [shards, config_hash]
    lengths = [r[0] for r in store.query(f"SELECT n_tokens FROM chunks c WHERE {where}", params)]
    filtered = dict(
        store.query(
            f"""SELECT filtered_reason, count(*) FROM chunked_documents c WHERE {where}
                AND filtered_reason IS NOT NULL GROUP BY 1""",
            params,
        )
    )
    n_docs = store.scalar(f"SELECT count(*) FROM chunked_documents c WHERE {where} AND n_chunks > 0", params)
    yield dg.MaterializeResult(
        metadata={
            "shards": ", ".join(shards),
            "config_hash": config_hash,
            "chunks": len(lengths),
            "chunked_documents": n_docs,
            "tokens_in_chunks": sum(lengths),
            "new_chunks": totals["new_chunks"],
            "documents_already_chunked": totals["already_chunked"],
            "filtered_by_reason": dg.MetadataValue.json(filtered),
            "cut_kinds_of_new_chunks": dg.MetadataValue.json(
                {k.removeprefix("cut_"): v for k, v in totals.items() if k.startswith("cut_")}
            ),
            "recounted_whole": totals["recounted_whole"],
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

    mismatched = store.query(
        f"""WITH joined AS (
              SELECT c.document_id, string_agg(c.text, '' ORDER BY c.chunk_index) AS text,
                     max(c.char_end) AS char_end, count(*) AS n
              FROM chunks c WHERE {where} GROUP BY c.document_id)
            SELECT j.document_id FROM joined j JOIN documents d USING (document_id)
            WHERE j.text <> d.text LIMIT 20""",
        params,
    )
    yield dg.AssetCheckResult(
        check_name=CHECK_RECONSTRUCTION,
        passed=not mismatched,
        metadata={"documents_checked": n_docs, "mismatched": len(mismatched), "examples": str(mismatched[:5])},
    )

    marker_chunks = store.scalar(f"SELECT coalesce(sum(n_chunks), 0) FROM chunked_documents c WHERE {where}", params)
    rows_this_run = store.scalar(
        f"SELECT count(*) FROM chunks c WHERE {where} AND run_id = ?", [*params, context.run_id]
    )
    yield dg.AssetCheckResult(
        check_name=CHECK_COUNTS,
        passed=marker_chunks == len(lengths) and rows_this_run == totals["new_chunks"],
        metadata={
            "metadata_new_chunks": totals["new_chunks"],
            "lineage_rows_of_this_run": rows_this_run,
            "lineage_chunk_rows": len(lengths),
            "done_marker_chunks": marker_chunks,
        },
    )

    sample = store.query(
        f"SELECT chunk_id, text, n_tokens FROM chunks c WHERE {where} ORDER BY hash(chunk_id) LIMIT ?",
        [*params, config.exact_check_sample],
    )
    recount = target_tokenizer.load().count_batch([t for _, t, _ in sample])
    wrong = [cid for (cid, _, n), m in zip(sample, recount, strict=True) if n != m]
    yield dg.AssetCheckResult(
        check_name=CHECK_EXACT,
        passed=not wrong,
        metadata={"sampled": len(sample), "wrong_counts": len(wrong), "examples": str(wrong[:5])},
    )
