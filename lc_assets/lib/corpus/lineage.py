"""Corpus-side lineage queries: shard membership, ingest accounting, filter decisions, chunks of a shard.

Documents, filter decisions and chunks are per document (a document in two shards is stored,
judged and chunked once); shards reach them through `shard_documents` and `shard_chunks`.
All SQL of raw_corpus, filtered_corpus and chunks against the lineage tables is here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from lc_assets.lib.lineage import LineageStore, insert_rows

# -- ingest ------------------------------------------------------------------


def record_ingest(con: duckdb.DuckDBPyConnection, row: dict[str, Any]) -> None:
    """One row per raw_corpus run of a shard: inputs = documents + skips (by reason)."""
    insert_rows(con, "shard_ingests", [{**row, "skips_by_reason": json.dumps(row["skips_by_reason"])}])


def forget_stale_members(
    con: duckdb.DuckDBPyConnection, shard: str, document_ids: Sequence[str], skip_sources: Sequence[str]
) -> int:
    """After a complete ingest, the shard holds exactly this run's documents and skips.

    A file removed from the source (or fixed since it was skipped) leaves the shard; its document
    stays in the lineage for everything made from it. Returns the number of documents that left.
    """
    row = con.execute(
        "DELETE FROM shard_documents WHERE shard = ? AND document_id NOT IN (SELECT unnest(?::VARCHAR[]))",
        [shard, list(document_ids)],
    ).fetchone()
    con.execute(
        "DELETE FROM ingest_skips WHERE shard = ? AND source NOT IN (SELECT unnest(?::VARCHAR[]))",
        [shard, list(skip_sources)],
    )
    return int(row[0]) if row else 0


def shard_totals(store: LineageStore, shard: str) -> tuple[int, int, int]:
    """(documents, tokens, bytes) of a shard."""
    docs, tokens, size = store.query(
        """SELECT count(*), coalesce(sum(d.n_tokens), 0), coalesce(sum(d.byte_size), 0)
           FROM shard_documents s JOIN documents d USING (document_id) WHERE s.shard = ?""",
        [shard],
    )[0]
    return docs, tokens, size


def shard_skips(store: LineageStore, shard: str, config_hash: str, limit: int = 50) -> list[tuple[str, str, str]]:
    return store.query(
        "SELECT source, reason, detail FROM ingest_skips WHERE shard = ? AND config_hash = ? "
        "ORDER BY reason, source LIMIT ?",
        [shard, config_hash, limit],
    )


def document_texts(store: LineageStore, ids: Sequence[str]) -> dict[str, str]:
    with store.connect(read_only=True) as con:
        rows = con.execute(
            "SELECT document_id, text FROM documents WHERE document_id IN (SELECT unnest(?::VARCHAR[]))", [list(ids)]
        ).fetchall()
    return dict(rows)


def document_sizes(store: LineageStore, ids: Sequence[str]) -> dict[str, int]:
    rows = store.query(
        "SELECT document_id, length(text) FROM documents WHERE document_id IN (SELECT unnest(?::VARCHAR[]))",
        [list(ids)],
    )
    return dict(rows)


def document_source(store: LineageStore, document_id: str) -> str | None:
    """The input a stored document was first read from (None: no such document)."""
    return store.scalar("SELECT source FROM documents WHERE document_id = ?", [document_id])


# -- filters -----------------------------------------------------------------


def documents_to_judge(store: LineageStore, shard: str, filter_hash: str) -> list[str]:
    """The shard's documents without a decision under this filter config, in source order."""
    rows = store.query(
        """SELECT s.document_id FROM shard_documents s
           WHERE s.shard = ? AND NOT EXISTS (
               SELECT 1 FROM filter_decisions f WHERE f.document_id = s.document_id AND f.config_hash = ?)
           ORDER BY s.source, s.document_id""",
        [shard, filter_hash],
    )
    return [r[0] for r in rows]


def kept_signatures(store: LineageStore, filter_hash: str, minhash_hash: str) -> list[tuple[str, bytes]]:
    """Signatures of every document kept under this filter config (any shard): the near-duplicate index."""
    return store.query(
        """SELECT m.document_id, m.signature FROM document_minhashes m
           JOIN filter_decisions f ON f.document_id = m.document_id AND f.config_hash = ? AND f.kept
           WHERE m.config_hash = ? ORDER BY f.created_at, m.document_id""",
        [filter_hash, minhash_hash],
    )


def stored_signatures(store: LineageStore, ids: Sequence[str], minhash_hash: str) -> dict[str, bytes]:
    rows = store.query(
        "SELECT document_id, signature FROM document_minhashes "
        "WHERE config_hash = ? AND document_id IN (SELECT unnest(?::VARCHAR[]))",
        [minhash_hash, list(ids)],
    )
    return dict(rows)


def set_shard_filter(con: duckdb.DuckDBPyConnection, shard: str, filter_hash: str, run_id: str) -> None:
    """The filter config chunks reads the shard's kept documents under (the last one applied)."""
    con.execute(
        "INSERT OR REPLACE INTO shard_filters (shard, config_hash, run_id, updated_at) "
        "VALUES (?, ?, ?, current_timestamp)",
        [shard, filter_hash, run_id],
    )


def shard_filter_hash(store: LineageStore, shard: str) -> str | None:
    return store.scalar("SELECT config_hash FROM shard_filters WHERE shard = ?", [shard])


def shard_filter_summary(store: LineageStore, shard: str, filter_hash: str) -> dict[str, Any]:
    """Kept and dropped documents of a shard under a filter config, drops by reason, examples."""
    rows = store.query(
        """SELECT f.kept, f.reason, count(*) FROM shard_documents s
           JOIN filter_decisions f ON f.document_id = s.document_id AND f.config_hash = ?
           WHERE s.shard = ? GROUP BY 1, 2""",
        [filter_hash, shard],
    )
    examples = store.query(
        """SELECT s.source, f.reason, f.detail, f.duplicate_of FROM shard_documents s
           JOIN filter_decisions f ON f.document_id = s.document_id AND f.config_hash = ?
           WHERE s.shard = ? AND NOT f.kept ORDER BY f.reason, s.source LIMIT 30""",
        [filter_hash, shard],
    )
    return {
        "kept": sum(n for kept, _, n in rows if kept),
        "dropped_by_reason": {reason: n for kept, reason, n in rows if not kept},
        "examples": examples,
    }


# -- chunks --------------------------------------------------------------------

_KEPT = """SELECT s.document_id FROM shard_documents s
           JOIN filter_decisions f ON f.document_id = s.document_id AND f.config_hash = ? AND f.kept
           WHERE s.shard = ?"""


def pending_documents(store: LineageStore, shard: str, chunk_hash: str, filter_hash: str) -> tuple[list[str], int]:
    """(kept documents of the shard not yet chunked under this config, kept documents already chunked)."""
    rows = store.query(
        f"""SELECT k.document_id, c.document_id IS NOT NULL FROM ({_KEPT}) k
            LEFT JOIN chunked_documents c ON c.document_id = k.document_id AND c.config_hash = ?
            ORDER BY k.document_id""",
        [filter_hash, shard, chunk_hash],
    )
    return [doc for doc, done in rows if not done], sum(1 for _, done in rows if done)


def map_shard_chunks(con: duckdb.DuckDBPyConnection, shard: str, chunk_hash: str, filter_hash: str, run_id: str) -> int:
    """Point the shard at the chunks of its kept documents (chunked by it or by another shard) and at no others.

    Returns the number of mappings added.
    """
    con.execute(
        f"""DELETE FROM shard_chunks WHERE shard = ? AND config_hash = ?
            AND document_id NOT IN ({_KEPT})""",
        [shard, chunk_hash, filter_hash, shard],
    )
    row = con.execute(
        f"""INSERT OR IGNORE INTO shard_chunks (shard, config_hash, chunk_id, document_id, run_id)
            SELECT ?, c.config_hash, c.chunk_id, c.document_id, ? FROM chunks c
            WHERE c.config_hash = ? AND c.document_id IN ({_KEPT})""",
        [shard, run_id, chunk_hash, filter_hash, shard],
    ).fetchone()
    return int(row[0]) if row else 0


_SHARD_CHUNKS = """chunks c JOIN shard_chunks m ON m.chunk_id = c.chunk_id AND m.config_hash = c.config_hash
                   WHERE m.shard IN (SELECT unnest(?::VARCHAR[])) AND c.config_hash = ?"""


def shard_chunk_rows(store: LineageStore, shards: Sequence[str], chunk_hash: str, columns: str) -> list[tuple]:
    """`columns` of the chunks the shards use (each chunk once)."""
    return store.query(
        f"SELECT DISTINCT ON (c.chunk_id) {columns} FROM {_SHARD_CHUNKS} ORDER BY c.chunk_id",
        [list(shards), chunk_hash],
    )


def shard_chunk_counts(store: LineageStore, shards: Sequence[str], chunk_hash: str, run_id: str) -> dict[str, Any]:
    """What the chunks checks and metadata compare: rows, done markers, this run's rows, cut kinds, recounts."""
    params = [list(shards), chunk_hash]
    markers = store.scalar(
        """SELECT coalesce(sum(n_chunks), 0) FROM chunked_documents WHERE config_hash = ? AND document_id IN (
               SELECT DISTINCT m.document_id FROM shard_chunks m
               WHERE m.shard IN (SELECT unnest(?::VARCHAR[])) AND m.config_hash = ?)""",
        [chunk_hash, list(shards), chunk_hash],
    )
    by = store.query(
        f"""SELECT c.cut_kind, coalesce(c.recount_reason, ''), count(DISTINCT c.chunk_id),
                   count(DISTINCT c.chunk_id) FILTER (WHERE c.run_id = ?)
            FROM {_SHARD_CHUNKS} GROUP BY 1, 2""",
        [run_id, *params],
    )
    cut_kinds: dict[str, int] = {}
    recounts: dict[str, int] = {}
    for kind, reason, n, _ in by:
        cut_kinds[kind] = cut_kinds.get(kind, 0) + n
        if reason:
            recounts[reason] = recounts.get(reason, 0) + n
    return {
        "done_marker_chunks": markers,
        "rows_this_run": sum(r[3] for r in by),
        "cut_kinds": cut_kinds,
        "recount_reasons": recounts,
    }


def reconstruction_mismatches(store: LineageStore, shards: Sequence[str], chunk_hash: str) -> list[str]:
    """Documents whose chunks joined are not exactly their text."""
    rows = store.query(
        f"""WITH used AS (SELECT DISTINCT c.document_id FROM {_SHARD_CHUNKS}),
            joined AS (
              SELECT c.document_id, string_agg(c.text, '' ORDER BY c.chunk_index) AS text FROM chunks c
              WHERE c.config_hash = ? AND c.document_id IN (SELECT document_id FROM used) GROUP BY c.document_id)
            SELECT j.document_id FROM joined j JOIN documents d USING (document_id) WHERE j.text <> d.text LIMIT 20""",
        [list(shards), chunk_hash, chunk_hash],
    )
    return [r[0] for r in rows]


def length_filtered(store: LineageStore, shards: Sequence[str], chunk_hash: str, filter_hash: str | None) -> dict:
    """Kept documents of the shards that chunking left out, by reason (below_min_tokens)."""
    rows = store.query(
        """SELECT c.filtered_reason, count(DISTINCT c.document_id) FROM chunked_documents c
           JOIN shard_documents s USING (document_id)
           JOIN filter_decisions f ON f.document_id = s.document_id AND f.config_hash = ? AND f.kept
           WHERE s.shard IN (SELECT unnest(?::VARCHAR[])) AND c.config_hash = ? AND c.filtered_reason IS NOT NULL
           GROUP BY 1""",
        [filter_hash, list(shards), chunk_hash],
    )
    return dict(rows)


@dataclass(frozen=True)
class ShardAccount:
    """One row of the per-shard table: where every input of a shard went."""

    shard: str
    inputs: int | None  # of the last raw_corpus run (None: ingested before inputs were counted)
    documents: int
    skips: dict[str, int]
    filtered: dict[str, int]  # quality / near-duplicate drops by reason
    too_short: int  # kept, but below the chunk minimum
    chunked: int  # documents with chunks the shard uses
    chunks: int
    chunk_tokens: int


def shard_account(store: LineageStore, shard: str, chunk_hash: str | None, filter_hash: str | None) -> ShardAccount:
    last = store.query(
        "SELECT inputs, skips_by_reason FROM shard_ingests WHERE shard = ? ORDER BY created_at DESC LIMIT 1", [shard]
    )
    inputs, skips = (last[0][0], json.loads(last[0][1])) if last else (None, {})
    documents = store.scalar("SELECT count(*) FROM shard_documents WHERE shard = ?", [shard])
    filtered = shard_filter_summary(store, shard, filter_hash)["dropped_by_reason"] if filter_hash else {}
    chunked = chunks = tokens = too_short = 0
    if chunk_hash:
        chunked, chunks, tokens = store.query(
            f"""SELECT count(DISTINCT c.document_id), count(DISTINCT c.chunk_id), coalesce(sum(c.n_tokens), 0)
                FROM {_SHARD_CHUNKS}""",
            [[shard], chunk_hash],
        )[0]
        too_short = sum(length_filtered(store, [shard], chunk_hash, filter_hash).values())
    return ShardAccount(shard, inputs, documents, skips, filtered, too_short, chunked, chunks, tokens)


def account_table(accounts: Sequence[ShardAccount]) -> str:
    """The per-shard table as markdown: inputs = documents + skips; documents = filtered + too short + chunked."""

    def by_reason(counts: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-"

    lines = [
        "| shard | inputs | documents | skipped (by reason) | filtered (by reason) | too short | chunked | chunks | tokens |",
        "|---|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for a in accounts:
        skipped = sum(a.skips.values())
        lines.append(
            f"| {a.shard} | {a.inputs if a.inputs is not None else '?'} | {a.documents} | {skipped}: "
            f"{by_reason(a.skips)} | {sum(a.filtered.values())}: {by_reason(a.filtered)} | {a.too_short} | "
            f"{a.chunked} | {a.chunks} | {a.chunk_tokens:,} |"
        )
    return "\n".join(lines)


# -- downstream: the chunks a shard uses ------------------------------------------


@dataclass(frozen=True)
class ShardChunk:
    chunk_id: str
    document_id: str
    source: str
    license: str
    text: str
    n_tokens: int


def chunks_of_shard(store: LineageStore, shard: str, chunk_hash: str) -> list[ShardChunk]:
    """The chunks a shard uses under a chunking config (its own and those of documents it shares), in order."""
    rows = store.query(
        """SELECT c.chunk_id, c.document_id, d.source, d.license, c.text, c.n_tokens
           FROM shard_chunks m JOIN chunks c ON c.chunk_id = m.chunk_id JOIN documents d ON d.document_id = c.document_id
           WHERE m.shard = ? AND m.config_hash = ? ORDER BY c.document_id, c.chunk_index""",
        [shard, chunk_hash],
    )
    return [ShardChunk(*r) for r in rows]


def latest_chunk_config(store: LineageStore, shard: str) -> str | None:
    """The chunking config whose chunks were most recently mapped to the shard."""
    return store.scalar(
        "SELECT config_hash FROM shard_chunks WHERE shard = ? GROUP BY config_hash ORDER BY max(created_at) DESC LIMIT 1",
        [shard],
    )
