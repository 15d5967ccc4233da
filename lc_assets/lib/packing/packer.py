"""Pack rendered sections into samples of exactly `sample_tokens` tokens, without replacement.

Entry point: `pack_sections(sections, tokenizer, config, leftovers=...)`. One sample is

    [BOS] section_1 ... section_k [prefix of section_k+1] [pad ... pad]

where each section is its own conversation in the chat template (BOS only once, at the
start), only the last section may be cut (after a QA pair or at a paragraph end of its chunk),
and the pad token fills the slack after the last boundary, outside every loss span.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from lc_assets.lib.packing.binpack import BinPlan, plan_bins
from lc_assets.lib.packing.config import PackingConfig
from lc_assets.lib.packing.metrics import PackingMetrics, ks_2samp, reason_kind, reuse_count
from lc_assets.lib.packing.render import CUT_PAIR, Rejection, RenderedSection, SectionRenderer
from lc_assets.lib.sections import Section
from lc_assets.lib.tokenizer import TextTokenizer


class EmptyPoolError(ValueError):
    """Nothing to pack: no new sections and no leftovers."""


@dataclass(frozen=True)
class CutRecord:
    """The last section of a sample was cut: what was used and what was cut off."""

    sample_id: str
    section_id: str
    kind: str  # "pair" | "paragraph"
    used_tokens: int
    section_tokens: int
    pairs_used: int
    pairs_total: int
    cut_pair_ids: tuple[str, ...]
    carried_as: str | None = None

    @property
    def dropped_tokens(self) -> int:
        """Tokens of the section not in any sample (0 counted here if the remainder was carried)."""
        return 0 if self.carried_as else self.section_tokens - self.used_tokens


@dataclass
class PackedSample:
    """One training sample of exactly `num_tokens` tokens. Spans are token ``[start, end)``."""

    sample_id: str
    input_ids: np.ndarray  # int32, length num_tokens
    num_real_tokens: int
    text: str  # the real tokens' text (BOS included, pad excluded)
    section_ids: list[str]
    chunk_ids: list[str]
    document_ids: list[str]
    sources: list[str]
    licenses: list[str]
    section_spans: np.ndarray  # (k, 2): each section's tokens, for per-document attention masks
    target_spans: np.ndarray  # (m, 2): exactly the assistant answers
    loss_spans: np.ndarray  # (m, 2): answers (+ end-of-turn marker if configured): train on these
    target_char_spans: np.ndarray  # (m, 2): the answers in `text`
    pad_token_id: int
    cut: CutRecord | None = None

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def fill_ratio(self) -> float:
        return self.num_real_tokens / self.num_tokens

    def loss_mask(self) -> np.ndarray:
        """Boolean mask, True on tokens to train on (the loss spans)."""
        mask = np.zeros(self.num_tokens, dtype=bool)
        for a, b in self.loss_spans:
            mask[a:b] = True
        return mask

    def labels(self, ignore_index: int = -100) -> np.ndarray:
        """`input_ids` with everything outside the loss spans set to ignore_index."""
        return np.where(self.loss_mask(), self.input_ids, ignore_index).astype(np.int64)

    def source_mix(self) -> dict[str, int]:
        """Real tokens per source in this sample."""
        mix: Counter[str] = Counter()
        for src, (a, b) in zip(self.sources, self.section_spans, strict=True):
            mix[src] += int(b - a)
        return dict(mix)


@dataclass
class PackResult:
    """Everything a packing run produced; leftovers go into the next run."""

    samples: list[PackedSample]
    leftovers: list[Section]
    rejected: list[Rejection]
    cuts: list[CutRecord]
    metrics: PackingMetrics
    config_hash: str
    tokenizer: str
    message: str = ""
    split_parts: dict[str, list[str]] = field(default_factory=dict)  # section id -> part ids


def pack_sections(
    sections: Sequence[Section],
    tokenizer: TextTokenizer,
    config: PackingConfig | None = None,
    *,
    leftovers: Sequence[Section] = (),
    renderer: SectionRenderer | None = None,
) -> PackResult:
    """Pack `leftovers` (from the previous run) and `sections` into samples of exactly N tokens.

    Every section is placed at most once. Sections that do not complete a sample come back in
    `PackResult.leftovers`; sections that cannot be packed at all are in `rejected` with a
    reason. Raises EmptyPoolError if both inputs are empty, ChatTemplateError if the tokenizer
    has no usable chat template.
    """
    config = config or PackingConfig()
    pool = [*leftovers, *sections]
    if not pool:
        raise EmptyPoolError("nothing to pack: no new sections and no leftovers from a previous run")
    renderer = renderer or SectionRenderer(tokenizer, config)
    pad_id = _pad_id(tokenizer, config)
    capacity = config.sample_tokens - len(renderer.bos_ids)
    metrics = PackingMetrics(sample_tokens=config.sample_tokens, n_sections_in=len(pool))
    rejected: list[Rejection] = []

    # -- dedupe: a section id appears once per epoch -------------------------------------------
    seen: set[str] = set()
    unique: list[Section] = []
    for s in pool:
        if s.section_id in seen:
            rejected.append(Rejection(s.section_id, "duplicate section_id (already in this pool)"))
            continue
        seen.add(s.section_id)
        unique.append(s)

    t0 = time.perf_counter()
    rendered = renderer.render(unique)
    rejected += rendered.rejected
    metrics.seam_mismatches = rendered.seam_mismatches
    items, split_parts = _fit_to_capacity(rendered.rendered, capacity, renderer, config, rejected)
    metrics.render_seconds = time.perf_counter() - t0

    t1 = time.perf_counter()
    plan = plan_bins(
        [it.length for it in items],
        [_allowed_cuts(it) for it in items],
        capacity,
        keys=[it.section_id for it in items],
        seed=config.seed,
        bucket_ratio=config.length_bucket_ratio,
        pad_tolerance=config.pad_tolerance_tokens,
        max_slack=int(config.sample_tokens * (1.0 - config.min_fill)),
    )
    metrics.plan_seconds = time.perf_counter() - t1

    t2 = time.perf_counter()
    config_hash = config.config_hash()
    rng = np.random.default_rng(config.seed)
    samples: list[PackedSample] = []
    cuts: list[CutRecord] = []
    carried: list[Section] = []
    for whole, filler in zip(plan.bins, plan.fillers, strict=True):
        # the whole sections in a seeded random order (BFD placed them longest first); the cut one last
        parts = [items[i] for i in rng.permutation(np.asarray(whole, dtype=np.int64))]
        cut_item = items[filler.item] if filler else None
        sample = _assemble(parts, cut_item, filler.cut_index if filler else None, renderer, config, pad_id, capacity)
        sample.sample_id = sample_id(sample.section_ids, filler.used if filler else None, config_hash, tokenizer)
        if cut_item is not None and filler is not None:
            record, remainder = _cut_record(sample.sample_id, cut_item, filler.cut_index, renderer, config)
            sample.cut = record
            cuts.append(record)
            if remainder is not None:
                carried.append(remainder)
        samples.append(sample)
    metrics.assemble_seconds = time.perf_counter() - t2

    leftover_sections = [items[i].section for i in plan.unplaced] + carried
    _fill_metrics(metrics, samples, items, plan, cuts, rejected, leftover_sections, split_parts)
    message = (
        f"packed {len(samples)} samples of {config.sample_tokens:,} tokens from {metrics.n_sections_packed} "
        f"sections; {len(leftover_sections)} sections ({metrics.leftover_tokens:,} tokens) carried over; "
        f"{len(rejected)} rejected"
    )
    if not samples:
        message = (
            f"no sample: the pool holds {sum(it.length for it in items):,} tokens in {len(items)} sections, "
            f"less than one sample of {config.sample_tokens:,} tokens; all carried over as leftovers"
            + (f"; {len(rejected)} rejected" if rejected else "")
        )
    return PackResult(
        samples=samples,
        leftovers=leftover_sections,
        rejected=rejected,
        cuts=cuts,
        metrics=metrics,
        config_hash=config_hash,
        tokenizer=tokenizer.fingerprint,
        message=message,
        split_parts=split_parts,
    )


def base_section_id(item_id: str) -> str:
    """The section an item came from: split parts ("<id>/part-k") and pair remainders ("<id>#pairs-k") name it first."""
    return item_id.split("#", 1)[0].split("/", 1)[0]


def sample_id(section_ids: Sequence[str], cut_tokens: int | None, config_hash: str, tokenizer: TextTokenizer) -> str:
    """Deterministic id: the ordered section ids, where the last one was cut, config and vocabulary."""
    payload = "\x1f".join([config_hash, tokenizer.fingerprint, str(cut_tokens), *section_ids])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:20]


def _pad_id(tokenizer: TextTokenizer, config: PackingConfig) -> int:
    name = config.pad_token or tokenizer.eos_token
    if not name:
        raise ValueError(
            f"tokenizer {tokenizer.name!r} has no eos_token to pad with; set PackingConfig.pad_token to a token "
            "of its vocabulary"
        )
    pad = tokenizer.token_to_id(name)
    if pad is None:
        raise ValueError(f"pad token {name!r} is not in the vocabulary of tokenizer {tokenizer.name!r}")
    return pad


def _allowed_cuts(item: RenderedSection) -> np.ndarray:
    return item.cut_tokens  # the renderer only emits the kinds the config allows


def _fit_to_capacity(
    rendered: list[RenderedSection],
    capacity: int,
    renderer: SectionRenderer,
    config: PackingConfig,
    rejected: list[Rejection],
) -> tuple[list[RenderedSection], dict[str, list[str]]]:
    """Sections longer than a sample are split at pair boundaries (each part repeats the chunk) or rejected."""
    items: list[RenderedSection] = []
    split_parts: dict[str, list[str]] = {}
    for r in rendered:
        if r.length <= capacity:
            items.append(r)
            continue
        if config.oversize == "reject":
            rejected.append(Rejection(r.section_id, f"longer than a sample ({r.length:,} > {capacity:,})", r.length))
            continue
        parts, reason = _split(r, capacity, renderer)
        if reason:
            rejected.append(Rejection(r.section_id, reason, r.length))
            continue
        items.extend(parts)
        split_parts[r.section_id] = [p.section_id for p in parts]
    return items, split_parts


def _split(r: RenderedSection, capacity: int, renderer: SectionRenderer) -> tuple[list[RenderedSection], str]:
    """Split an oversize section into parts = chunk + a run of pairs, each within capacity."""
    s = r.section
    n = len(s.pairs)
    if n == 0:
        return [], f"longer than a sample ({r.length:,} > {capacity:,}) and has no pairs to split at"
    # token cost of each pair in the full render estimates the parts; each part is then rendered for real
    pair_ends = (r.cut_tokens[r.cut_kinds == CUT_PAIR].tolist() + [r.length])[:n]
    head = int(r.target_spans[0][0])  # chunk + first question (approximately the head of every part)
    costs = np.diff([head, *pair_ends])
    parts: list[RenderedSection] = []
    start = 0
    while start < n:
        stop, total = start, head
        while stop < n and total + costs[stop] <= capacity:
            total += costs[stop]
            stop += 1
        stop = max(stop, start + 1)
        while True:
            part = renderer.render_one(renderer.with_pairs(s, start, stop, f"{s.section_id}/part-{len(parts) + 1}"))
            if part.length <= capacity or stop == start + 1:
                break
            stop -= 1
        if part.length > capacity:
            return [], (
                f"chunk with one pair is longer than a sample ({part.length:,} > {capacity:,}): cannot be split at "
                "pair boundaries"
            )
        parts.append(part)
        start = stop
    return parts, ""


def _assemble(
    whole: list[RenderedSection],
    cut_item: RenderedSection | None,
    cut_index: int | None,
    renderer: SectionRenderer,
    config: PackingConfig,
    pad_id: int,
    capacity: int,
) -> PackedSample:
    n_total = config.sample_tokens
    ids = np.full(n_total, pad_id, dtype=np.int32)
    bos = renderer.bos_ids
    ids[: len(bos)] = bos
    pos, char_pos = len(bos), len(renderer.bos_text)
    texts = [renderer.bos_text]
    spans, targets, losses, tchars = [], [], [], []
    pieces: list[tuple[RenderedSection, int, int, int]] = [
        (r, r.length, len(r.text), r.target_spans.shape[0]) for r in whole
    ]
    if cut_item is not None and cut_index is not None:
        used = int(cut_item.cut_tokens[cut_index])
        pieces.append((cut_item, used, int(cut_item.cut_chars[cut_index]), int(cut_item.cut_pairs[cut_index])))
    for r, n_tok, n_char, n_pairs in pieces:
        ids[pos : pos + n_tok] = r.ids[:n_tok]
        texts.append(r.text[:n_char])
        spans.append((pos, pos + n_tok))
        targets.append(r.target_spans[:n_pairs] + pos)
        losses.append(r.loss_spans[:n_pairs] + pos)
        tchars.append(r.target_char_spans[:n_pairs] + char_pos)
        pos += n_tok
        char_pos += n_char
    assert pos <= n_total, "plan exceeded the sample length"  # plan_bins guarantees this
    sections = [p[0].section for p in pieces]
    return PackedSample(
        sample_id="",
        input_ids=ids,
        num_real_tokens=pos,
        text="".join(texts) if config.store_text else "",
        section_ids=[s.section_id for s in sections],
        chunk_ids=[s.chunk_id for s in sections],
        document_ids=[s.document_id for s in sections],
        sources=[s.source for s in sections],
        licenses=[s.license for s in sections],
        section_spans=np.asarray(spans, dtype=np.int64).reshape(-1, 2),
        target_spans=_stack(targets),
        loss_spans=_stack(losses),
        target_char_spans=_stack(tchars),
        pad_token_id=pad_id,
    )


def _stack(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays).astype(np.int64) if arrays else np.zeros((0, 2), dtype=np.int64)


def _cut_record(
    sample: str, item: RenderedSection, cut_index: int, renderer: SectionRenderer, config: PackingConfig
) -> tuple[CutRecord, Section | None]:
    s = item.section
    n_used = int(item.cut_pairs[cut_index])
    kind = "pair" if int(item.cut_kinds[cut_index]) == CUT_PAIR else "paragraph"
    remainder = None
    if config.carry_cut_remainder and kind == "pair" and n_used < len(s.pairs):
        remainder = renderer.with_pairs(s, n_used, len(s.pairs), f"{s.section_id}#pairs-{n_used + 1}")
    record = CutRecord(
        sample_id=sample,
        section_id=s.section_id,
        kind=kind,
        used_tokens=int(item.cut_tokens[cut_index]),
        section_tokens=item.length,
        pairs_used=n_used,
        pairs_total=len(s.pairs),
        cut_pair_ids=tuple(p.pair_id for p in s.pairs[n_used:]),
        carried_as=remainder.section_id if remainder else None,
    )
    return record, remainder


def _fill_metrics(
    m: PackingMetrics,
    samples: list[PackedSample],
    items: list[RenderedSection],
    plan: BinPlan,
    cuts: list[CutRecord],
    rejected: list[Rejection],
    leftovers: list[Section],
    split_parts: dict[str, list[str]],
) -> None:
    m.n_samples = len(samples)
    fills = [s.fill_ratio for s in samples]
    m.fill_mean = float(np.mean(fills)) if fills else 0.0
    m.fill_min = float(np.min(fills)) if fills else 0.0
    m.real_tokens = sum(s.num_real_tokens for s in samples)
    m.pad_tokens = sum(s.num_tokens - s.num_real_tokens for s in samples)
    m.n_items_in = len(items)
    m.n_sections_packed = sum(len(s.section_ids) for s in samples)
    m.n_split_sections = len(split_parts)
    m.n_cut_sections = len(cuts)
    m.cut_dropped_tokens = sum(c.dropped_tokens for c in cuts)
    m.n_carried_remainders = sum(1 for c in cuts if c.carried_as)
    m.section_reuse_count = reuse_count([s.section_ids for s in samples])
    by_id = {it.section_id: it.length for it in items}
    used_lengths = [by_id[sid] for s in samples for sid in s.section_ids]
    m.ks_length_bias, m.ks_pvalue = ks_2samp(used_lengths, [it.length for it in items])
    m.n_leftover_sections = len(leftovers)
    m.leftover_tokens = sum(items[i].length for i in plan.unplaced)  # carried remainders are not rendered yet
    m.n_rejected = len(rejected)
    m.rejected_by_reason = dict(Counter(reason_kind(r.reason) for r in rejected))
    m.dissolved_samples = plan.dissolved_bins
    mix: Counter[str] = Counter()
    for s in samples:
        mix.update(s.source_mix())
    m.source_tokens = dict(mix)
