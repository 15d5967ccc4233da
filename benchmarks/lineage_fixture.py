"""A lineage catalog with real chunks for the generation benchmarks (built once, then copied per run).

Documents come from the embedded corpus (Debian docs and CPython sources installed with the
project), are ingested and chunked by the product's own steps, and the resulting chunks are then
repeated under new chunk ids until there are as many as the benchmark wants sections: the texts are
real, only their number is multiplied (the embedded demo shard has ~30 chunks).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from lc_assets.defs.chunks.assets import chunk_shard
from lc_assets.defs.corpus.assets import ingest_shard
from lc_assets.defs.filters.assets import filter_shard
from lc_assets.defs.resources import TokenizerResource
from lc_assets.lib.chunking import ChunkingConfig
from lc_assets.lib.corpus.quality import FilterConfig
from lc_assets.lib.corpus.sources import SourceSpec
from lc_assets.lib.lineage import LineageStore

SHARD = "bench"
#: a mix of prose, manuals and code from the embedded catalog
ENTRIES = ["devils-dictionary", "debian-policy", "cpython-email", "cpython-asyncio", "postgresql-functions"]
CHUNKING = ChunkingConfig(min_tokens=50_000, max_tokens=150_000)


def _template(cache_dir: Path) -> Path:
    path = cache_dir / f"template-v3-{CHUNKING.config_hash()}.duckdb"
    if path.is_file():
        return path
    tmp = path.with_suffix(".building")
    tmp.unlink(missing_ok=True)
    store = LineageStore(tmp)
    spec = SourceSpec(kind="embedded", entries=ENTRIES)
    ingest_shard(SHARD, spec, store, TokenizerResource(), "bench-ingest", 1 << 26)
    filter_shard(SHARD, store, FilterConfig(), "bench-filter")
    chunk_shard(SHARD, store, TokenizerResource(), CHUNKING, "bench-chunks")
    tmp.rename(path)
    return path


def template_chunks(cache_dir: Path) -> int:
    """How many chunks the embedded entries give (the template, before any copies)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    return int(LineageStore(_template(cache_dir)).scalar("SELECT count(*) FROM chunks"))


def seeded_catalog(path: Path, n_chunks: int, cache_dir: Path) -> LineageStore:
    """A fresh catalog at `path` holding exactly `n_chunks` chunks of shard `bench` (real texts, repeated)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    shutil.copyfile(_template(cache_dir), path)
    store = LineageStore(path)
    with store.transaction() as con:
        have = con.execute("SELECT count(*) FROM chunks").fetchone()[0]
        if have == 0:
            raise RuntimeError(f"the embedded entries {ENTRIES} gave no chunks: install the Debian docs (make install)")
        # benchmark fixture only: copies of real chunks under new ids, so there are enough sections
        con.execute(
            """INSERT INTO chunks
               SELECT c.* REPLACE (c.chunk_id || '-copy' || r.k AS chunk_id) FROM chunks c, range(1, ?) r(k)""",
            [-(-n_chunks // have)],
        )
        con.execute(
            """DELETE FROM chunks WHERE chunk_id NOT IN (
                   SELECT chunk_id FROM chunks ORDER BY chunk_id LIMIT ?)""",
            [n_chunks],
        )
        con.execute(  # the copies' paragraph counts (stored at chunking), as their chunk's
            """INSERT INTO chunk_paragraph_counts
               SELECT p.* REPLACE (c.chunk_id AS chunk_id) FROM chunks c
               JOIN chunk_paragraph_counts p ON p.chunk_id = split_part(c.chunk_id, '-copy', 1)
               WHERE c.chunk_id LIKE '%-copy%'"""
        )
        con.execute("DELETE FROM chunk_paragraph_counts WHERE chunk_id NOT IN (SELECT chunk_id FROM chunks)")
        con.execute("DELETE FROM shard_chunks")  # the shard uses exactly these chunks
        con.execute(
            """INSERT INTO shard_chunks (shard, config_hash, chunk_id, document_id, run_id)
               SELECT ?, config_hash, chunk_id, document_id, 'bench-copies' FROM chunks""",
            [SHARD],
        )
    return store
