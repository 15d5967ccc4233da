"""A chunking process killed with SIGKILL mid-run leaves whole batches only, and a re-run completes it."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from lc_assets.defs.chunks.assets import chunk_shard
from lc_assets.defs.corpus.assets import ingest_shard
from lc_assets.defs.filters.assets import filter_shard
from lc_assets.defs.resources import TokenizerResource
from lc_assets.lib.chunking import ChunkingConfig
from lc_assets.lib.corpus.quality import FilterConfig
from lc_assets.lib.corpus.sources import SourceSpec
from lc_assets.lib.lineage import LineageStore
from lc_assets_tests.foundation.conftest import make_text

CFG = dict(min_tokens=150, max_tokens=400, batch_documents=1)

CHILD = textwrap.dedent(
    f"""
    import sys, time
    from lc_assets.defs.chunks import assets
    from lc_assets.defs.chunks.assets import chunk_shard
    from lc_assets.defs.resources import TokenizerResource
    from lc_assets.lib.chunking import ChunkingConfig
    from lc_assets.lib.lineage import LineageStore

    real = assets.chunk_documents
    def slow(*a, **k):  # one batch per ~0.3 s, so the kill lands mid-run
        time.sleep(0.3)
        return real(*a, **k)
    assets.chunk_documents = slow
    chunk_shard("books", LineageStore(sys.argv[1]), TokenizerResource(), ChunkingConfig(**{CFG!r}), "killed-run")
    """
)


def test_sigkill_mid_run_then_resume(tmp_path: Path):
    books = tmp_path / "books"
    books.mkdir()
    for i in range(30):
        (books / f"b{i:02d}.txt").write_text(make_text(500 + i, 25))
    db = tmp_path / "lineage.duckdb"
    store = LineageStore(db)
    ingest_shard("books", SourceSpec(kind="local", path=str(books)), store, TokenizerResource(), "ingest", 1 << 20)
    filter_shard("books", store, FilterConfig(), "filter")
    n_docs = store.scalar("SELECT count(*) FROM documents")

    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(db)], env=dict(os.environ))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if store.scalar("SELECT count(*) FROM chunked_documents") >= 3:
                break
            assert proc.poll() is None, "child ended before it could be killed"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = store.scalar("SELECT count(*) FROM chunked_documents")
    assert 3 <= done < n_docs
    # no chunk rows of a document whose batch did not commit
    assert (
        store.scalar("SELECT count(*) FROM chunks WHERE document_id NOT IN (SELECT document_id FROM chunked_documents)")
        == 0
    )
    assert (
        store.scalar(
            "SELECT count(*) FROM chunked_documents c WHERE n_chunks <> (SELECT count(*) FROM chunks k WHERE k.document_id = c.document_id)"
        )
        == 0
    )

    counts = chunk_shard("books", store, TokenizerResource(), ChunkingConfig(**CFG), "resume-run")
    assert counts["already_chunked"] == done
    assert store.scalar("SELECT count(*) FROM chunked_documents") == n_docs
    assert store.scalar("SELECT count(*) FROM chunks") == store.scalar("SELECT count(DISTINCT chunk_id) FROM chunks")
    joined = store.query(
        "SELECT d.text = string_agg(c.text, '' ORDER BY c.chunk_index) FROM chunks c JOIN documents d USING (document_id) "
        "GROUP BY d.document_id, d.text"
    )
    assert all(ok for (ok,) in joined)
