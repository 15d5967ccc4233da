"""Benchmark: our packer vs the random concat-and-cut sampler of Fu et al. 2024.

Two parts, on the same synthetic pools of sections (chunk + QA pairs):

A. Lengths only, at production scale (N = 1,048,576, a few hundred samples): fill, truncated
   sections, QA pairs separated from their chunk, length bias (KS statistic between the
   lengths of the sections used and the pool), dropped tokens, planning speed. Two pools:
   `production` (chunks 50k-150k tokens, the chunks asset's bounds) and `mixed` (a wide
   log-normal with short documents, as a corpus without a length filter has).
B. End to end with the real Llama-3 tokenizer and text (paragraphs of the CPython standard
   library sources, which install everywhere): the time of our whole packing run against
   the time of just tokenizing the same pool once.
C. Modes on real long documents (the embedded corpus, chunked 50k-150k by the chunks step's own
   code): mixed vs coherent packing at 1,048,576 and a three-stage curriculum
   (65,536 -> 262,144 -> 1,048,576): samples, fill, documents per sample, dependency distance
   (answer -> evidence). The QA pairs are stand-ins (a question about one paragraph drawn
   uniformly over the chunk, the paragraph's first sentence as the answer): generation is not
   what is measured here, the placement of text and pairs is.

The baseline is a reimplementation from the description in DESIGN.md of the sampler used
by Fu et al. 2024 ("Data Engineering for Scaling Language Models to 128K Context"):
length estimate chars/3.68; documents estimated under 4k tokens kept with p = 0.1; an
approximate shuffle (a streaming shuffle buffer); greedy concatenation with a BOS per
document, cut every N tokens (documents crossing a cut are truncated, their rest starts the
next sample); the last partial buffer dropped.

Run: python benchmarks/packing_bias.py [--samples 300] [--e2e-tokens 8000000] [--modes demo|default|none]
     [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import random
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lc_assets.lib.packing import PackingConfig, base_section_id, ks_2samp, pack_sections, plan_bins
from lc_assets.lib.sections import QAPair, Section
from lc_assets.lib.tokenizer import load_tokenizer

N = 1_048_576
FU_CHARS_PER_TOKEN = 3.68
FU_SHORT_TOKENS = 4096
FU_SHORT_KEEP = 0.1
FU_SHUFFLE_BUFFER = 64
#: the demo shard's documents (lc_assets/default_sources.yaml)
DEMO_ENTRIES = [
    "devils-dictionary", "postgresql-functions", "cpython-email", "postgresql-libpq-ecpg", "debian-policy",
    "cpython-asyncio", "postgresql-client-apps", "postgresql-procedural-languages", "debian-reference",
    "postgresql-release-notes", "python-extending-using", "cpython-multiprocessing",
]  # fmt: skip


# --------------------------------------------------------------------------- synthetic pools
@dataclass
class SynthSection:
    """A section as lengths: chunk tokens, pair tokens, paragraph cut offsets, characters."""

    chunk_tokens: int
    pair_tokens: np.ndarray
    paragraph_cuts: np.ndarray
    chars: int

    @property
    def length(self) -> int:
        return int(self.chunk_tokens + self.pair_tokens.sum())

    def cut_points(self) -> np.ndarray:
        ends = self.chunk_tokens + np.cumsum(self.pair_tokens)
        return np.concatenate([self.paragraph_cuts, ends[:-1]]).astype(np.int64)


def synth_pool(kind: str, total_tokens: int, rng: np.random.Generator) -> list[SynthSection]:
    """Sections until `total_tokens`: chunk lengths by pool kind, then 5-60% of QA on top."""
    out: list[SynthSection] = []
    total = 0
    while total < total_tokens:
        if kind == "production":
            chunk = int(np.exp(rng.uniform(np.log(50_000), np.log(150_000))))
        else:  # mixed: median 20k, many short documents, a long tail (capped below N)
            chunk = int(np.clip(rng.lognormal(np.log(20_000), 1.3), 300, 600_000))
        qa_tokens = chunk * rng.uniform(0.05, 0.6)
        n_pairs = max(1, int(qa_tokens / rng.uniform(150, 450)))
        pairs = rng.integers(80, 700, n_pairs)
        paragraphs = np.cumsum(rng.integers(40, 300, chunk // 40 + 1))
        s = SynthSection(chunk, pairs, paragraphs[paragraphs < chunk], 0)
        s.chars = int(s.length * rng.normal(3.63, 0.35))  # what a char-based estimate sees
        out.append(s)
        total += s.length
    return out


# --------------------------------------------------------------------------- Fu et al. sampler
def fu_concat_and_cut(pool: list[SynthSection], n: int, seed: int) -> dict:
    """Random length-biased rejection + approximate shuffle + greedy concat-and-cut (see module doc)."""
    rng = random.Random(seed)
    t0 = time.perf_counter()
    kept = [i for i, s in enumerate(pool) if s.chars / FU_CHARS_PER_TOKEN >= FU_SHORT_TOKENS or rng.random() < 0.1]
    # approximate shuffle: a streaming buffer, as in datasets' IterableDataset.shuffle
    order, buf = [], []
    for i in kept:
        buf.append(i)
        if len(buf) >= FU_SHUFFLE_BUFFER:
            order.append(buf.pop(rng.randrange(len(buf))))
    rng.shuffle(buf)
    order += buf
    samples: list[list[tuple[int, int, int]]] = []  # per sample: (section, start, end) token pieces
    current: list[tuple[int, int, int]] = []
    room = n
    for i in order:
        length = pool[i].length + 1  # one BOS per document
        start = 0
        while start < length:
            take = min(room, length - start)
            current.append((i, start, start + take))
            start += take
            room -= take
            if room == 0:
                samples.append(current)
                current, room = [], n
    dropped_last = sum(e - s for _, s, e in current)  # the last partial buffer is dropped
    seconds = time.perf_counter() - t0

    used = sorted({i for sample in samples for i, _, _ in sample})
    pieces: dict[int, int] = {}
    for sample in samples:
        for i, _, _ in sample:
            pieces[i] = pieces.get(i, 0) + 1
    truncated = sum(1 for c in pieces.values() if c > 1) + len({i for i, _, _ in current} & set(pieces))
    # QA pairs whose section is split across samples lose (part of) their chunk
    orphaned = 0
    for sample in samples:
        for i, s, e in sample:
            if pieces[i] > 1:
                ends = pool[i].chunk_tokens + 1 + np.cumsum(pool[i].pair_tokens)
                orphaned += int(((ends > s) & (ends <= e)).sum()) if s > 0 else 0
    rejected_tokens = sum(pool[i].length for i in set(range(len(pool))) - set(kept))
    pool_tokens = sum(s.length for s in pool)
    d, p = ks_2samp([pool[i].length for i in used], [s.length for s in pool])
    return {
        "samples": len(samples),
        "fill_mean": 1.0 if samples else 0.0,
        "sections_used": len(used),
        "truncated_sections": truncated,
        "qa_pairs_separated_from_chunk": orphaned,
        "per_passage_bos_tokens": sum(1 for sample in samples for i, s, _ in sample if s == 0),
        "dropped_tokens": rejected_tokens + dropped_last,
        "dropped_frac": (rejected_tokens + dropped_last) / pool_tokens,
        "ks_length_bias": d,
        "ks_pvalue": p,
        "plan_tokens_per_s": pool_tokens / seconds if seconds else float("inf"),
    }


# --------------------------------------------------------------------------- our packer (plan)
def ours_plan(pool: list[SynthSection], n: int, seed: int) -> dict:
    """Our bin-packing on the same lengths (capacity N - 1 for the single BOS)."""
    cfg = PackingConfig(sample_tokens=n, seed=seed)
    lengths = [s.length for s in pool]
    capacity = n - 1
    fits = [i for i, length in enumerate(lengths) if length <= capacity]  # oversize ones would be split
    t0 = time.perf_counter()
    plan = plan_bins(
        [lengths[i] for i in fits],
        [pool[i].cut_points() for i in fits],
        capacity,
        keys=[f"{i:08d}" for i in fits],
        seed=seed,
        bucket_ratio=cfg.length_bucket_ratio,
        pad_tolerance=cfg.pad_tolerance_tokens,
        max_slack=int(n * (1 - cfg.min_fill)),
    )
    seconds = time.perf_counter() - t0
    used_tokens = plan.used_tokens([lengths[i] for i in fits])
    fill = (np.asarray(used_tokens) + 1) / n
    used = [fits[i] for b in plan.bins for i in b] + [fits[f.item] for f in plan.fillers if f]
    dropped = sum(lengths[fits[f.item]] - f.used for f in plan.fillers if f)
    orphaned = 0
    for f in plan.fillers:
        if f:  # pairs after the cut are dropped with it (or carried, with carry_cut_remainder)
            s = pool[fits[f.item]]
            ends = s.chunk_tokens + np.cumsum(s.pair_tokens)
            orphaned += int((ends > f.used).sum())
    pool_tokens = sum(lengths)
    d, p = ks_2samp([lengths[i] for i in used], lengths)
    para_cuts = sum(1 for f in plan.fillers if f and f.used <= pool[fits[f.item]].chunk_tokens)
    return {
        "samples": len(plan.bins),
        "fill_mean": float(fill.mean()) if len(fill) else 0.0,
        "fill_min": float(fill.min()) if len(fill) else 0.0,
        "sections_used": len(used),
        "cut_sections": sum(1 for f in plan.fillers if f),
        "cuts_inside_chunk": para_cuts,
        "qa_pairs_cut_off": orphaned,
        "per_passage_bos_tokens": 0,
        "dropped_tokens": dropped,
        "dropped_frac": dropped / pool_tokens,
        "carried_over_tokens": sum(lengths[fits[i]] for i in plan.unplaced),
        "oversize_sections": len(lengths) - len(fits),
        "dissolved_samples": plan.dissolved_bins,
        "ks_length_bias": d,
        "ks_pvalue": p,
        "plan_tokens_per_s": pool_tokens / seconds,
    }


# --------------------------------------------------------------------------- end to end
def stdlib_paragraphs(limit_chars: int = 40_000_000) -> list[str]:
    """Paragraphs of the CPython standard library sources (PSF license, present on every machine)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    paras: list[str] = []
    total = 0
    for path in sorted(root.rglob("*.py")):
        if "test" in path.parts or "site-packages" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for p in text.split("\n\n"):
            p = p.strip()
            if 40 <= len(p) <= 4000 and "<|" not in p:
                paras.append(p)
                total += len(p)
        if total >= limit_chars:
            break
    return paras


def text_pool(total_tokens: int, seed: int) -> list[Section]:
    """Real-text sections: chunk 50k-150k tokens (estimated at 3.6 chars/token), 5-60% QA on top."""
    rng = random.Random(seed)
    paras = stdlib_paragraphs()
    sections, total, i = [], 0, 0
    while total < total_tokens:
        chunk_chars = int(np.exp(rng.uniform(np.log(50_000), np.log(150_000))) * 3.6)
        parts, n = [], 0
        while n < chunk_chars:
            p = rng.choice(paras)
            parts.append(p)
            n += len(p) + 2
        text = "\n\n".join(parts)
        qa_chars = chunk_chars * rng.uniform(0.05, 0.6)
        pairs, m, j = [], 0, 0
        while m < qa_chars:
            q = rng.choice(paras)[:300].strip() + "?"
            a = " ".join(rng.choice(paras) for _ in range(rng.randint(1, 3)))[:2500].strip()
            pairs.append(QAPair(f"s{i}-p{j}", j, q, a))
            m += len(q) + len(a)
            j += 1
        sections.append(
            Section(f"s{i:05d}", f"c{i}", f"d{i}", rng.choice(["pydoc", "code"]), "PSF-2.0", text, tuple(pairs))
        )
        total += int((len(text) + m) / 3.6)
        i += 1
    return sections


def end_to_end(total_tokens: int, seed: int) -> dict:
    tok = load_tokenizer()
    sections = text_pool(total_tokens, seed)
    texts = [s.text for s in sections] + [x for s in sections for p in s.pairs for x in (p.question, p.answer)]
    t0 = time.perf_counter()
    pool_tokens = sum(tok.count_batch(texts))
    tokenize_s = time.perf_counter() - t0
    out = {"sections": len(sections), "pool_tokens_raw": pool_tokens, "tokenize_once_s": tokenize_s}
    for verify in (False, True):
        cfg = PackingConfig(sample_tokens=N, seed=seed, verify_tokenization=verify)
        t0 = time.perf_counter()
        res = pack_sections(sections, tok, cfg)
        total_s = time.perf_counter() - t0
        m = res.metrics
        packed_tokens = m.n_samples * N
        tag = "verify" if verify else "no_verify"
        out[tag] = {
            "samples": m.n_samples,
            "fill_mean": m.fill_mean,
            "fill_min": m.fill_min,
            "cut_sections": m.n_cut_sections,
            "reuse": m.section_reuse_count,
            "seam_mismatches": m.seam_mismatches,
            "ks_length_bias": m.ks_length_bias,
            "leftover_sections": m.n_leftover_sections,
            "render_s (tokenize + template)": m.render_seconds,
            "plan_s": m.plan_seconds,
            "assemble_s": m.assemble_seconds,
            "total_s": total_s,
            "packing_tokens_per_s (plan + assemble)": packed_tokens / max(m.plan_seconds + m.assemble_seconds, 1e-9),
            "end_to_end_tokens_per_s": packed_tokens / total_s,
        }
    return out


# --------------------------------------------------------------------------- modes on real documents
def book_sections(entries: list[str] | None, seed: int, pairs_per_10k: float = 3.0):
    """Chunk embedded-corpus documents with the chunks step's code; stand-in pairs with evidence spans."""
    from lc_assets.lib.chunking import ChunkingConfig, chunk_documents
    from lc_assets.lib.corpus.embedded import iter_embedded
    from lc_assets.lib.generation.masking import split_paragraphs

    tok = load_tokenizer()
    docs = [d for d in iter_embedded(entries) if hasattr(d, "text")]
    chunked = chunk_documents([d.text for d in docs], tok, ChunkingConfig())
    rng = random.Random(seed)
    sections, evidence = [], {}
    for d, ch in zip(docs, chunked, strict=True):
        for span in ch.spans:
            text = d.text[span.char_start : span.char_end]
            paras = [p for p in split_paragraphs(text, lambda xs: [0] * len(xs), 1) if len(p.text) > 80]
            k = max(1, round(span.n_tokens / 10_000 * pairs_per_10k))
            pairs = []
            for j in range(k if paras else 0):
                p = rng.choice(paras)
                sid = f"{d.document_id[:12]}-{span.index:03d}"
                pid = f"{sid}-p{j}"
                answer = p.text.split(". ")[0][:300].strip() or p.text[:300]
                pairs.append(QAPair(pid, j, f"What does the text say about: {p.text[:60].strip()}?", answer))
                evidence[pid] = [(p.char_start, p.char_end)]
            sections.append(
                Section(
                    f"{d.document_id[:12]}-{span.index:03d}",
                    f"c-{d.document_id[:12]}-{span.index}",
                    d.document_id,
                    d.source,
                    d.license,
                    text,
                    tuple(pairs),
                    span.index,
                )  # fmt: skip
            )
    return tok, sections, evidence


def modes(entries: list[str] | None, seed: int) -> dict:
    tok, sections, evidence = book_sections(entries, seed)
    out: dict = {"documents": len({s.document_id for s in sections}), "sections": len(sections)}
    for mode in ("mixed", "coherent"):
        t0 = time.perf_counter()
        res = pack_sections(sections, tok, PackingConfig(sample_tokens=N, seed=seed, mode=mode), evidence=evidence)
        out[mode] = _mode_row(res, time.perf_counter() - t0)
    # a three-stage curriculum from one pool, each stage drawing from what the earlier ones left
    stages = [(65_536, 8), (262_144, 4), (N, None)]
    pool, curriculum = list(sections), []
    for n, quota in stages:
        cfg = PackingConfig(sample_tokens=n, seed=seed, curriculum=())
        res = pack_sections(pool, tok, cfg, evidence=evidence, max_samples=quota)
        row = _mode_row(res, 0.0)
        row.update(
            sample_tokens=n,
            quota=quota,
            chunk_pieces=sum(1 for v in res.split_parts.values() for p in v if "@" in p),
            not_packed=sum(res.metrics.rejected_by_reason.values()),
        )
        curriculum.append(row)
        used = {base_section_id(p.section.section_id) for smp in res.samples for p in smp.placed}
        pool = [s for s in pool if s.section_id not in used]  # (the product keeps split remainders; not needed here)
    out["curriculum"] = curriculum
    return out


def _mode_row(res, seconds: float) -> dict:
    m = res.metrics
    return {
        "samples": m.n_samples,
        "fill_mean": round(m.fill_mean, 6),
        "fill_min": round(m.fill_min, 6),
        "documents_per_sample": round(m.documents_per_sample, 2),
        "main_document_share": round(m.main_document_share, 3),
        "cuts_by_kind": m.cuts_by_kind,
        "pairs": m.n_pairs,
        "dependency_tokens": {k: round(v) for k, v in m.dependency.items()},
        "seconds": round(seconds, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=300, help="pool size in samples of N tokens (part A)")
    ap.add_argument("--e2e-tokens", type=int, default=8_000_000, help="pool tokens for part B (0 skips it)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", default="demo", help="part C on the demo shard's documents, 'default' (all), 'none'")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = ap.parse_args()
    report: dict = {"N": N}
    for kind in ("production", "mixed"):
        pool = synth_pool(kind, args.samples * N, np.random.default_rng(args.seed))
        lengths = np.array([s.length for s in pool])
        report[kind] = {
            "pool": {
                "sections": len(pool),
                "tokens": int(lengths.sum()),
                "median_section_tokens": int(np.median(lengths)),
                "under_4k_estimated": int(sum(s.chars / FU_CHARS_PER_TOKEN < FU_SHORT_TOKENS for s in pool)),
            },
            "ours": ours_plan(pool, N, args.seed),
            "fu2024": fu_concat_and_cut(pool, N, args.seed),
        }
    if args.e2e_tokens:
        report["end_to_end"] = end_to_end(args.e2e_tokens, args.seed)
    if args.modes != "none":
        report["modes"] = modes(DEMO_ENTRIES if args.modes == "demo" else None, args.seed)
    text = json.dumps(report, indent=1, default=float)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
