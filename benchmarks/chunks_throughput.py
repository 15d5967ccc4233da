"""Throughput of the chunks step against raw `tokenizers` encode_batch on the same text, same process.

    python benchmarks/chunks_throughput.py                 # default: 12 embedded documents
    python benchmarks/chunks_throughput.py --entries all --repeats 3

Three timings per repeat, interleaved so machine noise hits all alike:
  raw    Tokenizer.encode_batch(documents)  (the ceiling: the same parallel encode)
  algo   chunk_documents(...)               (encode + boundary search + window verification)
  step   chunk_shard(...)                   (the whole asset step: read from DuckDB, chunk, write rows)
Reported as tokens/s and as ratios algo/raw and step/raw (target >= 0.8).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from lc_assets.defs.chunks.assets import chunk_shard
from lc_assets.defs.corpus.assets import ingest_shard
from lc_assets.defs.resources import TokenizerResource
from lc_assets.lib.chunking import ChunkingConfig, chunk_documents
from lc_assets.lib.corpus.sources import SourceSpec
from lc_assets.lib.lineage import LineageStore

DEFAULT_ENTRIES = [
    "devils-dictionary", "postgresql-functions", "cpython-email", "postgresql-libpq-ecpg", "debian-policy",
    "cpython-asyncio", "postgresql-client-apps", "jargon-file", "abs-guide", "gnu-coreutils-manual",
    "cpython-idlelib", "python-howto",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--entries", default=",".join(DEFAULT_ENTRIES), help="embedded entries, comma-separated, or 'all'"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--min-tokens", type=int, default=50_000)
    parser.add_argument("--max-tokens", type=int, default=150_000)
    args = parser.parse_args()

    tok_res = TokenizerResource()
    tokenizer = tok_res.load()
    entries = None if args.entries == "all" else args.entries.split(",")
    cfg = ChunkingConfig(min_tokens=args.min_tokens, max_tokens=args.max_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        store = LineageStore(Path(tmp) / "bench.duckdb")
        ingest_shard("bench", SourceSpec(kind="embedded", entries=entries), store, tok_res, "bench", 1 << 30)
        texts = [r[0] for r in store.query("SELECT text FROM documents ORDER BY document_id")]
        n_tokens = store.scalar("SELECT sum(n_tokens) FROM documents")
        print(f"{len(texts)} documents, {n_tokens:,} tokens, {sum(map(len, texts)):,} chars")
        raw_s, algo_s, step_s = [], [], []
        for rep in range(args.repeats):
            t = time.perf_counter()
            tokenizer.backend.encode_batch(texts, add_special_tokens=False)
            raw_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            chunk_documents(texts, tokenizer, cfg)
            algo_s.append(time.perf_counter() - t)
            with store.transaction() as con:  # fresh state so the step chunks everything again
                con.execute("DELETE FROM chunks; DELETE FROM chunked_documents;")
            t = time.perf_counter()
            counts = chunk_shard("bench", store, tok_res, cfg, f"run{rep}")
            step_s.append(time.perf_counter() - t)
            print(
                f"repeat {rep}: raw {raw_s[-1]:.2f}s  algo {algo_s[-1]:.2f}s  step {step_s[-1]:.2f}s  "
                f"chunks {counts['new_chunks']}  recounted {counts['recounted_whole']}"
            )
    raw, algo, step = (statistics.median(x) for x in (raw_s, algo_s, step_s))
    print(f"raw  encode_batch : {n_tokens / raw:>12,.0f} tok/s")
    print(f"chunk_documents   : {n_tokens / algo:>12,.0f} tok/s  ratio {raw / algo:.3f}")
    print(f"chunks step (DB)  : {n_tokens / step:>12,.0f} tok/s  ratio {raw / step:.3f}  (target >= 0.8)")


if __name__ == "__main__":
    main()
