"""Dependency distances of cross pairs in coherent 1,048,576-token samples (issue 13: contexts that need the
whole million).

Real long text: the embedded default corpus joined into a few books of >= 2M target tokens each (the corpus
has no single million-token document), chunked 50k-150k by the chunks step's own code and stored in a
lineage DuckDB as the corpus stages would. Per chunk, stand-in within-section pairs (one paragraph of
evidence each) grow the section to 1.3x its chunk like the production target ratio (generation is not what
is measured: distances depend on placement). The cross pairs are made by the product's code path
(`generation.cross.grow_cross_sections`: planning, CrossMasker, long-range prompts and validation, lineage
rows) with the grounded test double from lc_assets_tests (it answers with quotes picked from the windows the
prompt shows, one per window); then `pack_sections` packs the sections in coherent mode with the stored
cross pairs. Prints the distance distribution of the cross pairs (answer -> nearest / farthest evidence)
beside that of all pairs.

    python benchmarks/cross_distance.py [--books 3] [--book-tokens 2200000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lc_assets.lib.chunking import ChunkingConfig, chunk_documents  # noqa: E402
from lc_assets.lib.corpus.embedded import iter_embedded  # noqa: E402
from lc_assets.lib.generation.config import GenerationConfig  # noqa: E402
from lc_assets.lib.generation.cross import (  # noqa: E402
    CrossGenerationConfig,
    CrossPairConfig,
    grow_cross_sections,
    plan_cross_sections,
)
from lc_assets.lib.generation.masking import split_paragraphs  # noqa: E402
from lc_assets.lib.lineage import LineageStore, insert_rows  # noqa: E402
from lc_assets.lib.lineage.cross import load_cross_pairs, shard_chunk_refs  # noqa: E402
from lc_assets.lib.packing.config import PackingConfig  # noqa: E402
from lc_assets.lib.packing.metrics import distance_summary  # noqa: E402
from lc_assets.lib.packing.packer import pack_sections  # noqa: E402
from lc_assets.lib.sections import QAPair, Section  # noqa: E402
from lc_assets.lib.tokenizer import load_tokenizer  # noqa: E402
from lc_assets_tests.generation.doubles import ScriptedBackend  # noqa: E402

N = 1_048_576
RATIO = 1.3  # the production target ratio: sections grow to 1.3x their chunk


def books(tok, n_books: int, book_tokens: int) -> list[tuple[str, str]]:
    """(id, text) of books joined from the embedded corpus's documents, each >= book_tokens."""
    out, parts, tokens = [], [], 0
    for d in sorted((d for d in iter_embedded(None) if hasattr(d, "text")), key=lambda d: d.document_id):
        parts.append(d.text.strip())
        tokens += tok.count(d.text)
        if tokens >= book_tokens:
            out.append((f"book{len(out)}", "\n\n".join(parts)))
            parts, tokens = [], 0
            if len(out) == n_books:
                break
    return out


def store_chunks(store: LineageStore, tok, docs: list[tuple[str, str]]) -> list[Section]:
    """documents/chunks/shard_chunks rows, and per chunk a section with stand-in pairs up to 1.3x its tokens."""
    chunked = chunk_documents([t for _, t in docs], tok, ChunkingConfig())
    rng = random.Random(0)
    doc_rows, chunk_rows, members, sections = [], [], [], []
    for (doc_id, text), ch in zip(docs, chunked, strict=True):
        doc_rows.append(dict(document_id=doc_id, source="embedded", title=doc_id, license="mixed", byte_size=len(text),
                             n_tokens=sum(s.n_tokens for s in ch.spans), tokenizer="t", text="", run_id="b",
                             config_hash="c"))  # fmt: skip
        for span in ch.spans:
            cid = f"{doc_id}-c{span.index:03d}"
            chunk = text[span.char_start : span.char_end]
            chunk_rows.append(dict(chunk_id=cid, document_id=doc_id, config_hash="k", shard="bench",
                                   chunk_index=span.index, char_start=span.char_start, char_end=span.char_end,
                                   token_start=0, token_end=span.n_tokens, n_tokens=span.n_tokens, cut_kind="p",
                                   tokenizer="t", text=chunk, run_id="b"))  # fmt: skip
            members.append(dict(shard="bench", config_hash="k", chunk_id=cid, document_id=doc_id, run_id="b"))
            paras = [p for p in split_paragraphs(chunk, lambda xs: [0] * len(xs), 1) if len(p.text) > 80]
            pairs, budget, j = [], int(span.n_tokens * (RATIO - 1)), 0
            while paras and budget > 0:
                p = rng.choice(paras)
                q = f"What does the text say about: {p.text[:60].strip()}?"
                a = p.text.split(". ")[0][:300].strip() or p.text[:300]
                pairs.append(QAPair(f"{cid}-p{j}", j, q, a))
                budget -= (len(q) + len(a)) // 4 + 10
                j += 1
            sections.append(Section(f"s-{cid}", cid, doc_id, "embedded", "mixed", chunk, tuple(pairs), span.index))
            EVIDENCE.update({pp.pair_id: [_span_of(chunk, pp.answer)] for pp in pairs})
    with store.transaction() as con:
        insert_rows(con, "documents", doc_rows)
        insert_rows(con, "chunks", chunk_rows)
        insert_rows(con, "shard_chunks", members)
    return sections


EVIDENCE: dict[str, list[tuple[int, int]]] = {}


def _span_of(chunk: str, answer: str) -> tuple[int, int]:
    at = chunk.find(answer)
    return (at, at + len(answer)) if at >= 0 else (0, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--books", type=int, default=3)
    ap.add_argument("--book-tokens", type=int, default=2_200_000)
    ap.add_argument("--sections-per-chunk", type=int, default=1)
    ap.add_argument("--steps-per-section", type=int, default=4)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    tok = load_tokenizer()
    docs = books(tok, args.books, args.book_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        store = LineageStore(Path(tmp) / "lineage.duckdb")
        sections = store_chunks(store, tok, docs)
        base = GenerationConfig()
        cross_cfg = CrossGenerationConfig.of(
            base,
            CrossPairConfig(sections_per_chunk=args.sections_per_chunk, steps_per_section=args.steps_per_section),
        )
        plan = plan_cross_sections(shard_chunk_refs(store, "bench", "k"), cross_cfg, "bench")
        t1 = time.perf_counter()
        backend = ScriptedBackend(tokenizer=tok, window=8192, in_flight_cap=16)
        run = grow_cross_sections(store, plan, backend, cross_cfg, tok, "bench")
        gen_s = time.perf_counter() - t1
        cross = load_cross_pairs(store, cross_cfg.base_config_hash)
        t2 = time.perf_counter()
        result = pack_sections(sections, tok, PackingConfig(mode="coherent"), evidence=EVIDENCE, cross_pairs=cross)
        pack_s = time.perf_counter() - t2
    m = result.metrics
    full = [s for s in result.samples if len(set(s.document_ids)) == 1]
    within = np.concatenate([s.dependency_distances for s in result.samples])
    report = {
        "books": [(d, tok.count(t)) for d, t in docs],
        "chunks": len(sections),
        "cross_sections_planned": len(plan),
        "cross_steps_ok": run.summary.steps_ok if run else 0,
        "cross_steps_failed": run.summary.steps_failed if run else 0,
        "cross_pairs_stored": len(cross),
        "samples": m.n_samples,
        "samples_of_one_document": len(full),
        "fill_mean": m.fill_mean,
        "cross_pairs_placed": m.n_cross_pairs,
        "cross_farthest": m.cross_farthest,
        "cross_nearest": m.cross_nearest,
        "all_pairs_farthest": distance_summary(within),
        "pairs": m.n_pairs,
        "generation_seconds": round(gen_s, 1),
        "packing_seconds": round(pack_s, 1),
        "total_seconds": round(time.perf_counter() - t0, 1),
    }
    text = json.dumps(report, indent=1, default=float)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
