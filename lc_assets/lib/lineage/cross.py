"""Cross sections' queries: the chunks they pair, their rows, and the cross pairs packing appends.

A cross section pairs two chunks of one document far apart (`generation.cross`); its `sections` row has
the cross generation config's hash, so the sections of the base config (what packing packs) never
include it, and `cross_sections` says which base config its pairs go with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lc_assets.lib.lineage.store import LineageStore, insert_rows
from lc_assets.lib.sections import CrossPair

#: Between the two chunks of a cross section's text: a paragraph of its own that no window shows, so the
#: two windows never merge into one excerpt
CROSS_SEPARATOR = "\n\n\u2042\n\n"


@dataclass(frozen=True)
class ChunkRef:
    """A chunk as cross planning needs it (no text)."""

    chunk_id: str
    document_id: str
    chunk_index: int
    n_tokens: int
    source: str = ""
    license: str = ""
    title: str = ""


def shard_chunk_refs(store: LineageStore, shard: str, chunk_config_hash: str) -> list[ChunkRef]:
    """Every chunk the shard uses, in document and reading order."""
    rows = store.query(
        """SELECT c.chunk_id, c.document_id, c.chunk_index, c.n_tokens, d.source, d.license, coalesce(d.title, '')
           FROM shard_chunks m JOIN chunks c ON c.chunk_id = m.chunk_id
           JOIN documents d ON d.document_id = c.document_id
           WHERE m.shard = ? AND m.config_hash = ? ORDER BY c.document_id, c.chunk_index""",
        [shard, chunk_config_hash],
    )
    return [ChunkRef(cid, did, int(i), int(n), src, lic, title) for cid, did, i, n, src, lic, title in rows]


def finished_sections(store: LineageStore, config_hash: str) -> set[str]:
    """Section ids of this (cross) generation config that stopped growing."""
    rows = store.query(
        "SELECT section_id FROM sections WHERE config_hash = ? AND finish_reason IS NOT NULL", [config_hash]
    )
    return {r[0] for r in rows}


def record_cross_sections(store: LineageStore, rows: Sequence[dict[str, Any]]) -> int:
    """Store cross section rows (already stored ones are kept): written before their steps are grown."""
    with store.transaction() as con:
        return insert_rows(con, "cross_sections", list(rows))


def load_cross_pairs(store: LineageStore, base_config_hash: str, pool_key: str | None = None) -> list[CrossPair]:
    """Cross pairs that go with the base generation config's sections, minus those the pool already packed."""
    rows = store.query(
        """SELECT q.pair_id, x.section_id, x.document_id, x.chunk_id, x.cross_chunk_id, q.question, q.answer,
                  list(struct_pack(c := e.chunk_id, a := e.char_start, b := e.char_end) ORDER BY e.quote_index)
           FROM cross_sections x JOIN qa_pairs q ON q.section_id = x.section_id
           JOIN qa_evidence e ON e.pair_id = q.pair_id
           WHERE x.base_config_hash = ?
             AND q.pair_id NOT IN (SELECT pair_id FROM packed_sample_cross_pairs WHERE pool_key = ?)
           GROUP BY ALL ORDER BY x.document_id, q.pair_id""",
        [base_config_hash, pool_key or ""],
    )
    return [
        CrossPair(pid, sid, did, (a, b), q, ans, tuple((e["c"], int(e["a"]), int(e["b"])) for e in ev))
        for pid, sid, did, a, b, q, ans, ev in rows
    ]


def cross_config_hashes(store: LineageStore) -> set[str]:
    """Generation config hashes that grow cross sections (never packed as sections of their own)."""
    return {r[0] for r in store.query("SELECT DISTINCT config_hash FROM cross_sections")}
