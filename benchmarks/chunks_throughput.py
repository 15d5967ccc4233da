"""Throughput and peak memory of chunking (and filtering) against raw `tokenizers` encode_batch, same process.

    python benchmarks/chunks_throughput.py                        # all inputs, 2 repeats
    python benchmarks/chunks_throughput.py --inputs normal,single_line --repeats 3

Inputs (built from the embedded corpus, so nothing is downloaded):
  normal           12 embedded documents (manuals, code, a dictionary): paragraph cuts
  single_line      20 MB with no newline at all (OCR dumps, long JSON values): sentence cuts
  giant_paragraph  8 MB with line breaks but no blank line: line cuts
  minified         8 MB of JSON with no whitespace (minified code/data): token cuts

Each input runs in its own process (peak memory is per process). Per repeat, interleaved so
machine noise hits all alike:
  raw     Tokenizer.encode_batch(documents)  (the ceiling: one encode with offsets)
  algo    chunk_documents(...)               (encode in pieces + cut search + window checks + recounts)
  step    chunk_shard(...)                   (the whole asset step: read from DuckDB, chunk, write rows)
  filter  filter_shard(...)                  (filtered_corpus: repetition stats, language, MinHash)
Ratios are raw time / other time (>= 1 is faster than raw). Targets: step/raw >= 0.8 on normal
text, >= 0.5 on each pathological input. Peak RSS is sampled every 20 ms during each phase, after
freed memory of earlier phases is handed back (malloc_trim); the process holds the input texts
throughout (and, for step and filter, a DuckDB connection).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

INPUTS = ("normal", "single_line", "giant_paragraph", "minified")
TARGETS = {"normal": 0.8, "single_line": 0.5, "giant_paragraph": 0.5, "minified": 0.5}
NORMAL_ENTRIES = [
    "devils-dictionary", "postgresql-functions", "cpython-email", "postgresql-libpq-ecpg", "debian-policy",
    "cpython-asyncio", "postgresql-client-apps", "jargon-file", "abs-guide", "gnu-coreutils-manual",
    "cpython-idlelib", "python-howto",
]  # fmt: skip
ALL_TEXT_ENTRIES = [*NORMAL_ENTRIES, "python-library-reference", "debian-handbook", "cpython-unittest"]


def build_texts(name: str) -> list[str]:
    from lc_assets.lib.corpus.documents import RawDocument
    from lc_assets.lib.corpus.embedded import iter_embedded

    entries = NORMAL_ENTRIES if name == "normal" else ALL_TEXT_ENTRIES
    docs = [d.text for d in iter_embedded(entries) if isinstance(d, RawDocument)]
    if name == "normal":
        return docs
    joined = "\n\n".join(docs)
    if name == "single_line":
        line = re.sub(r"\s*\n\s*", " ", joined)
        return [(line * (20_000_000 // len(line) + 1))[:20_000_000]]
    if name == "giant_paragraph":
        return [re.sub(r"\n\s*\n+", "\n", joined)[:8_000_000]]
    words = re.findall(r"\w+", joined)
    records = [{"id": i, "v": words[i : i + 8]} for i in range(0, len(words), 8)]
    return [json.dumps(records, separators=(",", ":"))[:8_000_000]]


def _release_freed_memory() -> None:
    """Hand memory freed by earlier phases back to the OS, so a phase's peak is its own (glibc only)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


class PeakRss:
    """Peak resident memory of this process while the block runs (sampled), and what it held at the start."""

    def __enter__(self) -> PeakRss:
        _release_freed_memory()
        self.proc, self._stop = psutil.Process(), threading.Event()
        self.start = self.peak = self.proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def run_one(name: str, repeats: int) -> dict:
    from lc_assets.defs.chunks.assets import chunk_shard
    from lc_assets.defs.corpus.assets import ingest_shard
    from lc_assets.defs.filters.assets import filter_shard
    from lc_assets.defs.resources import TokenizerResource
    from lc_assets.lib.chunking import ChunkingConfig, chunk_documents
    from lc_assets.lib.corpus.quality import FilterConfig
    from lc_assets.lib.corpus.sources import SourceSpec
    from lc_assets.lib.lineage import LineageStore

    tok_res = TokenizerResource()
    tokenizer = tok_res.load()
    texts = build_texts(name)
    cfg = ChunkingConfig()
    timings: dict[str, list[float]] = {"raw": [], "algo": [], "step": [], "filter": []}
    peaks: dict[str, int] = dict.fromkeys(timings, 0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "docs"
        folder.mkdir()
        for i, text in enumerate(texts):
            (folder / f"doc{i:03d}.txt").write_text(text)
        store = LineageStore(Path(tmp) / "bench.duckdb")
        ingest_shard("bench", SourceSpec(kind="local", path=str(folder)), store, tok_res, "bench", 1 << 30)
        n_tokens = store.scalar("SELECT sum(n_tokens) FROM documents")
        base_rss = psutil.Process().memory_info().rss
        for rep in range(repeats):
            with PeakRss() as peak:
                t = time.perf_counter()
                tokenizer.backend.encode_batch(texts, add_special_tokens=False)
                timings["raw"].append(time.perf_counter() - t)
            peaks["raw"] = max(peaks["raw"], peak.peak)
            with PeakRss() as peak:
                t = time.perf_counter()
                results = chunk_documents(texts, tokenizer, cfg)
                timings["algo"].append(time.perf_counter() - t)
            peaks["algo"] = max(peaks["algo"], peak.peak)
            with store.transaction() as con:  # fresh state so the steps do everything again
                con.execute("DELETE FROM chunks; DELETE FROM chunked_documents; DELETE FROM shard_chunks;")
                con.execute("DELETE FROM filter_decisions; DELETE FROM document_minhashes;")
            with PeakRss() as peak:
                t = time.perf_counter()
                filter_shard("bench", store, FilterConfig(), f"filter{rep}")
                timings["filter"].append(time.perf_counter() - t)
            peaks["filter"] = max(peaks["filter"], peak.peak)
            with PeakRss() as peak:
                t = time.perf_counter()
                counts = chunk_shard("bench", store, tok_res, cfg, f"run{rep}")
                timings["step"].append(time.perf_counter() - t)
            peaks["step"] = max(peaks["step"], peak.peak)
            print(
                f"  [{name}] repeat {rep}: " + "  ".join(f"{k} {v[-1]:.2f}s" for k, v in timings.items())
                + f"  chunks {counts['new_chunks']}",
                file=sys.stderr,
            )  # fmt: skip
    cuts: dict[str, int] = {}
    recounts = 0
    for res in results:
        for span in res.spans:
            cuts[span.cut] = cuts.get(span.cut, 0) + 1
            recounts += span.recount_reason is not None
    med = {k: statistics.median(v) for k, v in timings.items()}
    return {
        "input": name,
        "documents": len(texts),
        "chars": sum(map(len, texts)),
        "tokens": n_tokens,
        "seconds": med,
        "raw_tok_s": n_tokens / med["raw"],
        "ratio_algo": med["raw"] / med["algo"],
        "ratio_step": med["raw"] / med["step"],
        "ratio_filter_vs_step": med["step"] / med["filter"],
        "peak_rss_mb": {k: round(v / 2**20) for k, v in peaks.items()},
        "base_rss_mb": round(base_rss / 2**20),
        "cuts": cuts,
        "recounted": recounts,
        "target": TARGETS[name],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", default=",".join(INPUTS), help=f"comma-separated, of {INPUTS}")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.repeats)))
        return
    print(f"load average at start: {psutil.getloadavg()}")
    rows = []
    for name in args.inputs.split(","):
        out = subprocess.run(
            [sys.executable, __file__, "--child", name, "--repeats", str(args.repeats)],
            check=True, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"load average at end: {psutil.getloadavg()}")
    print(
        f"{'input':16} {'MB':>5} {'tokens':>10} {'raw tok/s':>10} {'algo/raw':>8} {'step/raw':>8} {'target':>6} "
        f"{'filter':>7} {'RSS MB raw/algo/step/filter':>28}  cuts"
    )
    for r in rows:
        p = r["peak_rss_mb"]
        ok = "ok" if r["ratio_step"] >= r["target"] else "MISS"
        print(
            f"{r['input']:16} {r['chars'] / 1e6:5.1f} {r['tokens']:>10,} {r['raw_tok_s']:>10,.0f} "
            f"{r['ratio_algo']:>8.2f} {r['ratio_step']:>8.2f} {r['target']:>4} {ok:>2} {r['ratio_filter_vs_step']:>6.2f}x "
            f"{p['raw']:>7}/{p['algo']}/{p['step']}/{p['filter']:<8}  {r['cuts']} recounted {r['recounted']}"
        )
    print("filter column: filter step throughput as a multiple of the chunks step's on the same documents")


if __name__ == "__main__":
    main()
