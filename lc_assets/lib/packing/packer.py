"""Pack rendered sections into samples of exactly `sample_tokens` tokens, without replacement.

Entry point: `pack_sections(sections, tokenizer, config, leftovers=...)`. One sample is

    [BOS] section_1 ... section_k [prefix of section_k+1] [pad ... pad]

where each section is its own conversation in the chat template (BOS only once, at the
start), only the last section may be cut (after a QA pair, or in its chunk text at a paragraph,
line or sentence end), and the pad token fills the slack after the last boundary, outside every
loss span. Pairs about several sections (a later step) go after the last section, before the pad,
as one more conversation: the layout keeps that place free of anything else.

Modes:
- mixed: every section is an item; items are bin-packed (see `binpack`), whole sections in a
  seeded random order, the cut one last.
- coherent: consecutive chunks of one document stay together in reading order. A document run
  of at least one sample becomes whole samples (sections in order, the next section cut to fill);
  shorter runs (short documents, tails of long ones) are items of the bin-packing, each kept in order.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from lc_assets.lib.packing.binpack import BinPlan, plan_bins
from lc_assets.lib.packing.config import PackingConfig
from lc_assets.lib.packing.cross import CrossBlock, CrossPlanner, anchors_of, cross_distances, whole_chunks
from lc_assets.lib.packing.metrics import PackingMetrics, distance_summary, ks_2samp, reason_kind, reuse_count
from lc_assets.lib.packing.render import CUT_KIND_NAMES, CUT_PAIR, Rejection, RenderedSection, SectionRenderer
from lc_assets.lib.sections import CrossPair, Section
from lc_assets.lib.tokenizer import TextTokenizer


class EmptyPoolError(ValueError):
    """Nothing to pack: no new sections and no leftovers."""


class PackingError(ValueError):
    """The pool holds at least one sample's worth of packable tokens, yet no sample was made (the reason is named)."""


@dataclass(frozen=True)
class CutRecord:
    """The last section of a sample was cut: what was used and what was cut off."""

    sample_id: str
    section_id: str
    kind: str  # "pair" | "paragraph" | "line" | "sentence"
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


@dataclass(frozen=True)
class PlacedSection:
    """One section (or part) as placed in a sample: which of its pairs are in, which were dropped."""

    section: Section
    used_pair_ids: tuple[str, ...]
    dropped_pair_ids: tuple[str, ...]  # cut off and not carried: never packed from this pool


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
    placed: list[PlacedSection] = field(default_factory=list)
    #: per pair with known evidence: tokens from its answer back to its farthest evidence
    dependency_distances: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    n_pairs: int = 0
    #: cross pairs appended after the last section (coherent mode), and per pair the token distances from
    #: its answer back to its nearest and farthest evidence, (k, 2)
    cross_pair_ids: list[str] = field(default_factory=list)
    cross_section_ids: list[str] = field(default_factory=list)
    cross_distances: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))

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

    def seq_lens(self) -> np.ndarray:
        """Lengths of the attention segments, summing to num_tokens: BOS + section 1, each next section, the pad."""
        bounds = [0, *(int(b) for _, b in self.section_spans[:-1])] if len(self.section_spans) else [0]
        bounds.append(self.num_real_tokens)
        if self.num_real_tokens < self.num_tokens:
            bounds.append(self.num_tokens)
        return np.diff(np.asarray(bounds, dtype=np.int64)).astype(np.int32)

    def position_ids(self, per: str = "sample") -> np.ndarray:
        """0..N-1 over the sample ("sample"), or restarting at every segment of `seq_lens` ("section")."""
        if per == "sample":
            return np.arange(self.num_tokens, dtype=np.int32)
        lens = self.seq_lens()
        starts = np.repeat(np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
        return (np.arange(self.num_tokens) - starts).astype(np.int32)

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
    #: set when the pool could fill a sample but none was made: the reason
    failure: str = ""

    def raise_for_failure(self) -> None:
        if self.failure:
            raise PackingError(self.failure)


@dataclass
class PackItem:
    """What the planner places: one section, or (coherent mode) consecutive sections of one document in order.

    Cut points are item-relative; each names its member and the member's own cut index (-1: the
    member's end, i.e. the member placed whole and the members after it left out).
    """

    members: list[RenderedSection]
    cut_tokens: np.ndarray
    cut_ranks: np.ndarray
    cut_member: np.ndarray
    cut_local: np.ndarray

    @property
    def key(self) -> str:
        return self.members[0].section_id

    @property
    def length(self) -> int:
        return sum(m.length for m in self.members)

    @classmethod
    def of(cls, members: Sequence[RenderedSection]) -> PackItem:
        toks, ranks, member, local = [], [], [], []
        start = 0
        for k, m in enumerate(members):
            toks.append(start + m.cut_tokens)
            ranks.append(m.cut_ranks)
            member.append(np.full(len(m.cut_tokens), k, np.int32))
            local.append(np.arange(len(m.cut_tokens), dtype=np.int32))
            start += m.length
            if k < len(members) - 1:  # between two members: a section boundary, the best kind of cut
                toks.append(np.asarray([start], np.int64))
                ranks.append(np.zeros(1, np.int8))
                member.append(np.asarray([k], np.int32))
                local.append(np.asarray([-1], np.int32))
        cat = np.concatenate
        return cls(list(members), cat(toks).astype(np.int64), cat(ranks), cat(member), cat(local))

    def pieces_until(self, cut_index: int) -> tuple[list[tuple[RenderedSection, int | None]], list[RenderedSection]]:
        """(placed pieces, members left out) when the item is cut at its cut point `cut_index`."""
        k, local = int(self.cut_member[cut_index]), int(self.cut_local[cut_index])
        placed: list[tuple[RenderedSection, int | None]] = [(m, None) for m in self.members[:k]]
        placed.append((self.members[k], None if local < 0 else local))
        return placed, self.members[k + 1 :]


def pack_sections(
    sections: Sequence[Section],
    tokenizer: TextTokenizer,
    config: PackingConfig | None = None,
    *,
    leftovers: Sequence[Section] = (),
    renderer: SectionRenderer | None = None,
    evidence: Mapping[str, Sequence[tuple[int, int]]] | None = None,
    max_samples: int | None = None,
    cross_pairs: Sequence[CrossPair] = (),
) -> PackResult:
    """Pack `leftovers` (from the previous run) and `sections` into samples of exactly N tokens.

    Every section is placed at most once. Sections that do not complete a sample come back in
    `PackResult.leftovers`; sections that cannot be packed at all are in `rejected` with a
    reason. `evidence` (pair id -> evidence char spans in its chunk) gives the dependency
    distances. `max_samples` (a curriculum stage's remaining quota) draws a seeded random share of
    the pool — sections, or whole documents in coherent mode — large enough for that many samples,
    without regard to length, and leaves the rest in the leftovers. `cross_pairs` (coherent mode) are
    appended to the samples that hold both their chunks (`packing.cross`). Raises EmptyPoolError if both inputs are empty, ChatTemplateError if the tokenizer
    has no usable chat template. When the packable pool holds a sample's worth of tokens but no
    sample was made, `result.failure` names the reason (`raise_for_failure()` raises it).
    """
    config = config or PackingConfig()
    pool = [*leftovers, *sections]
    if not pool:
        raise EmptyPoolError("nothing to pack: no new sections and no leftovers from a previous run")
    renderer = renderer or SectionRenderer(tokenizer, config, evidence=evidence, anchors=anchors_of(cross_pairs))
    cross = CrossPlanner(cross_pairs, renderer) if cross_pairs and config.mode == "coherent" else None
    pad_id = _pad_id(tokenizer, config)
    capacity = config.sample_tokens - len(renderer.bos_ids)
    metrics = PackingMetrics(sample_tokens=config.sample_tokens, n_sections_in=len(pool), mode=config.mode)
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
    fitted, split_parts = _fit_to_capacity(rendered.rendered, capacity, renderer, config, rejected)
    metrics.render_seconds = time.perf_counter() - t0

    t1 = time.perf_counter()
    all_fitted = fitted
    held_back: list[RenderedSection] = []
    # a quota draws a random share of the pool, larger each time the drawn share packs too few samples
    for margin in (1.1, 1.5, 2.5, None) if max_samples is not None else (None,):
        if margin is not None:
            assert max_samples is not None
            fitted, held_back = _draw(all_fitted, int(max_samples * capacity * margin), config)
        else:
            fitted, held_back = all_fitted, []
        planned, items, plan, blocks = _plan(fitted, capacity, config, max_samples, cross)
        if max_samples is not None and len(planned) > max_samples:
            held_back += [r for pieces in planned[max_samples:] for r, _ in pieces]
            planned, blocks = planned[:max_samples], blocks[:max_samples]
        if max_samples is None or len(planned) + len(plan.bins) >= max_samples or not held_back:
            break
    metrics.plan_seconds = time.perf_counter() - t1

    t2 = time.perf_counter()
    config_hash = config.config_hash()
    rng = np.random.default_rng(config.seed)
    samples: list[PackedSample] = []
    cuts: list[CutRecord] = []
    carried: list[Section] = []
    left_out: list[RenderedSection] = []  # members after the cut of a cut coherent run: back to the pool
    bins: list[list[tuple[RenderedSection, int | None]]] = list(planned)
    for whole, filler in zip(plan.bins, plan.fillers, strict=True):
        # the whole items in a seeded random order (BFD placed them longest first); the cut one last
        pieces = [(m, None) for i in rng.permutation(np.asarray(whole, dtype=np.int64)) for m in items[i].members]
        if filler is not None:
            head, rest = items[filler.item].pieces_until(filler.cut_index)
            pieces += head
            left_out += rest
        bins.append(pieces)
    for k, pieces in enumerate(bins):
        block = blocks[k] if k < len(blocks) else None
        sample, record, remainder = _make_sample(pieces, renderer, config, pad_id, config_hash, tokenizer, block)
        samples.append(sample)
        if record is not None:
            cuts.append(record)
        if remainder is not None:
            carried.append(remainder)
    metrics.assemble_seconds = time.perf_counter() - t2

    leftover_sections = [m.section for i in plan.unplaced for m in items[i].members]
    leftover_sections += [m.section for m in left_out + held_back] + carried
    packable = sum(r.length for r in fitted)
    _fill_metrics(metrics, samples, fitted + held_back, cuts, rejected, leftover_sections, split_parts, plan)
    metrics.packable_tokens = packable
    metrics.cross_pairs_offered = len(cross_pairs)
    failure = ""
    near_miss = ""
    if not samples and packable >= capacity:
        # A pool of two samples' worth, or one whose items have no cut point at all, that gives no sample points at
        # the configuration (cut_boundaries, tolerances). Barely one sample's worth whose cut points all miss the
        # gap is the data: 2,096 tokens in 4 items for a 2,048-token sample, the gap 421 and no cut inside it
        # (a pipeline test's leftovers, 2026-12-03) — carried over to the next run, which brings more sections.
        if packable >= 2 * capacity or all(not len(it.cut_tokens) for it in items):
            failure = _why_no_sample(items, plan, capacity, config)
        else:
            near_miss = (
                f"no sample yet: the pool holds {packable:,} tokens in {len(items)} item(s), less than two samples of "
                f"{config.sample_tokens:,}, and no cut point closes the gap ({_gaps_text(plan)} tokens) to within "
                f"min_fill={config.min_fill}; all carried over as leftovers"
            )
    rejected_note = f"{len(rejected)} rejected" + (
        f" ({', '.join(f'{k} {n}' for k, n in sorted(metrics.rejected_by_reason.items()))})" if rejected else ""
    )
    cut_pairs = sum(c.pairs_total - c.pairs_used for c in cuts if not c.carried_as)
    message = (
        f"packed {len(samples)} samples of {config.sample_tokens:,} tokens from {metrics.n_sections_packed} "
        f"sections; {len(leftover_sections)} sections ({metrics.leftover_tokens:,} tokens) carried over; "
        f"{rejected_note}"
        # the tail of each sample's cut section (its pairs too, when cut in the text) is recorded, not packed
        + (f"; cut off and not packed: {metrics.cut_dropped_tokens:,} tokens, {cut_pairs} pairs" if cuts else "")
    )
    if failure:
        message = f"no sample: {failure}"
    elif near_miss:
        message = near_miss + (f"; {rejected_note}" if rejected else "")
    elif not samples:
        message = (
            f"no sample: the packable pool holds {packable:,} tokens in {len(fitted)} sections, less than one "
            f"sample of {config.sample_tokens:,} tokens; all carried over as leftovers"
            + (f"; {rejected_note}" if rejected else "")
        )
    return PackResult(
        samples=samples,
        leftovers=leftover_sections,
        rejected=rejected,
        cuts=cuts,
        metrics=metrics,
        config_hash=config_hash,
        tokenizer=tokenizer.identity,
        message=message,
        split_parts=split_parts,
        failure=failure,
    )


def base_section_id(item_id: str) -> str:
    """The section an item came from: split parts ("<id>/part-k"), pair remainders ("<id>#pairs-k") and chunk
    pieces ("<id>@k") name it first."""
    return re.split(r"[#/@]", item_id, maxsplit=1)[0]


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


def _best_cut(r: RenderedSection, gap: int, tol: int) -> int | None:
    """Index of r's cut that fills `gap`: the coarsest rank that closes it to within tol, else the largest that fits."""
    if not len(r.cut_tokens):
        return None
    ranks = r.cut_ranks
    for rank in range(int(ranks.max()) + 1):
        allowed = np.flatnonzero((ranks <= rank) & (r.cut_tokens <= gap))
        if allowed.size and gap - int(r.cut_tokens[allowed[-1]]) <= tol:
            return int(allowed[-1])
    fits = np.flatnonzero(r.cut_tokens <= gap)
    return int(fits[-1]) if fits.size else None


def _coherent(
    fitted: list[RenderedSection], capacity: int, tol: int, max_slack: int, cross: CrossPlanner | None = None
) -> tuple[list[list[tuple[RenderedSection, int | None]]], list[PackItem], list[CrossBlock | None]]:
    """Whole samples from document runs of at least one sample (with their cross pairs, if any); the rest as
    in-order items for bin-packing."""
    by_doc: dict[str, list[RenderedSection]] = {}
    for r in fitted:  # split parts of one section arrive in order and keep it (stable sort)
        by_doc.setdefault(r.section.document_id, []).append(r)
    full: list[list[tuple[RenderedSection, int | None]]] = []
    blocks: list[CrossBlock | None] = []
    items: list[PackItem] = []

    def fill(
        run: list[RenderedSection], i: int, room: int
    ) -> tuple[list[tuple[RenderedSection, int | None]], int, int]:
        pieces: list[tuple[RenderedSection, int | None]] = []
        used, j = 0, i
        while j < len(run) and used + run[j].length <= room:
            pieces.append((run[j], None))
            used += run[j].length
            j += 1
        if room - used > tol and j < len(run):
            cut = _best_cut(run[j], room - used, tol)
            if cut is not None:
                pieces.append((run[j], cut))
                used += int(run[j].cut_tokens[cut])
                j += 1
        return pieces, used, j

    if cross is not None:
        cross.used.clear()  # a new plan (a quota's draw plans more than once)
    for doc in sorted(by_doc):
        for run in _runs(sorted(by_doc[doc], key=lambda r: r.section.chunk_index)):
            i = 0
            while sum(r.length for r in run[i:]) >= capacity:
                if cross is not None:
                    pieces, used, j, block = cross.fill(run, i, capacity, fill)
                else:
                    (pieces, used, j), block = fill(run, i, capacity), None
                if capacity - used > max_slack:
                    break  # cannot fill from this run: its sections go to the bin-packing below
                full.append(pieces)
                blocks.append(block)
                i = j
            items += _in_order_items(run[i:], capacity)
    return full, items, blocks


def _plan(
    fitted: list[RenderedSection],
    capacity: int,
    config: PackingConfig,
    max_samples: int | None,
    cross: CrossPlanner | None = None,
) -> tuple[list[list[tuple[RenderedSection, int | None]]], list[PackItem], BinPlan, list[CrossBlock | None]]:
    """Coherent whole samples (if that mode, with their cross blocks) and the bin plan of the remaining items."""
    tol = config.pad_tolerance_tokens
    max_slack = int(config.sample_tokens * (1.0 - config.min_fill))
    planned: list[list[tuple[RenderedSection, int | None]]] = []
    blocks: list[CrossBlock | None] = []
    if config.mode == "coherent":
        planned, items, blocks = _coherent(fitted, capacity, tol, max_slack, cross)
    else:
        items = [PackItem.of([r]) for r in fitted]
    plan = plan_bins(
        [it.length for it in items],
        [it.cut_tokens for it in items],
        capacity,
        keys=[it.key for it in items],
        seed=config.seed,
        bucket_ratio=config.length_bucket_ratio,
        pad_tolerance=tol,
        max_slack=max_slack,
        cut_ranks=[it.cut_ranks for it in items],
        max_bins=None if max_samples is None else max_samples - len(planned),
    )
    return planned, items, plan, blocks


def _draw(
    fitted: list[RenderedSection], tokens: int, config: PackingConfig
) -> tuple[list[RenderedSection], list[RenderedSection]]:
    """A seeded random share of the pool holding `tokens` (+5% to close the gaps): (drawn, held back).

    The draw is by section id (mixed) or document id (coherent), through a hash of (seed, id): the
    same pool and seed draw the same share, independent of order and of length.
    """
    unit = (lambda r: r.section.document_id) if config.mode == "coherent" else (lambda r: r.section_id)
    groups: dict[str, list[RenderedSection]] = {}
    for r in fitted:
        groups.setdefault(unit(r), []).append(r)
    order = sorted(groups, key=lambda k: hashlib.sha256(f"{config.seed}\x1f{k}".encode()).hexdigest())
    drawn: list[RenderedSection] = []
    held: list[RenderedSection] = []
    total, want = 0, int(tokens * 1.05)
    for k in order:
        if total < want:
            drawn += groups[k]
            total += sum(r.length for r in groups[k])
        else:
            held += groups[k]
    return drawn, held


def _runs(ordered: list[RenderedSection]) -> Iterable[list[RenderedSection]]:
    """Consecutive chunks (no missing chunk index between them) of one document."""
    run: list[RenderedSection] = []
    for r in ordered:
        if run and r.section.chunk_index > run[-1].section.chunk_index + 1:
            yield run
            run = []
        run.append(r)
    if run:
        yield run


def _in_order_items(run: list[RenderedSection], capacity: int) -> list[PackItem]:
    """Consecutive groups of at most `capacity` tokens, each one item that keeps its order."""
    items, group, used = [], [], 0
    for r in run:
        if group and used + r.length > capacity:
            items.append(PackItem.of(group))
            group, used = [], 0
        group.append(r)
        used += r.length
    if group:
        items.append(PackItem.of(group))
    return items


def _gaps_text(plan: BinPlan) -> str:
    """The smallest gaps (tokens) of the samples the planner dissolved, for a message."""
    return ", ".join(f"{g:,}" for g in sorted(plan.dissolved_gaps)[:5]) or "none"


def _why_no_sample(items: list[PackItem], plan: BinPlan, capacity: int, config: PackingConfig) -> str:
    total = sum(it.length for it in items)
    no_cuts = sum(1 for it in items if not len(it.cut_tokens))
    gaps = _gaps_text(plan)
    return (
        f"the packable pool holds {total:,} tokens in {len(items)} item(s), enough for "
        f"{total // capacity} sample(s) of {config.sample_tokens:,}, but the planner dissolved "
        f"{plan.dissolved_bins} sample(s): their gaps ({gaps} tokens) could not be closed to within the pad "
        f"tolerance ({config.pad_tolerance_tokens:,} tokens) nor padded within min_fill={config.min_fill} — no "
        f"unplaced section has a cut point inside the gap (cut_boundaries={config.cut_boundaries!r}; "
        f"{no_cuts} of {len(items)} items have no cut point at all)"
    )


def _fit_to_capacity(
    rendered: list[RenderedSection],
    capacity: int,
    renderer: SectionRenderer,
    config: PackingConfig,
    rejected: list[Rejection],
) -> tuple[list[RenderedSection], dict[str, list[str]]]:
    """Sections longer than a sample are split (or rejected, with `oversize="reject"`).

    A section whose chunk leaves room for pairs is split at pair boundaries: parts = the chunk + a
    run of pairs. A chunk too long for that (a 100k-token chunk in a 65,536-token stage) is cut into
    pieces at paragraph (else line) ends, each piece carrying the pairs whose evidence lies inside it
    (known evidence only; the other pairs stay in the pool for longer samples).
    """
    items: list[RenderedSection] = []
    split_parts: dict[str, list[str]] = {}
    for r in rendered:
        if r.length <= capacity:
            items.append(r)
            continue
        if config.oversize == "reject":
            rejected.append(Rejection(r.section_id, f"longer than a sample ({r.length:,} > {capacity:,})", r.length))
            continue
        head = int(r.target_spans[0][0]) if len(r.target_spans) else r.length
        if head > capacity // 2 and renderer.evidence:
            pieces = _pieces_by_evidence(r, head, capacity, renderer)
            parts: list[RenderedSection] = []
            for piece in pieces:
                if piece.length <= capacity:
                    parts.append(piece)
                else:
                    more, _ = _split(piece, capacity, renderer)
                    parts += more
            if parts:
                items.extend(parts)
                split_parts[r.section_id] = [p.section_id for p in parts]
                continue
        parts, reason = _split(r, capacity, renderer)
        if reason:
            rejected.append(Rejection(r.section_id, reason, r.length))
            continue
        items.extend(parts)
        split_parts[r.section_id] = [p.section_id for p in parts]
    return items, split_parts


_PIECE_BREAK_RE = re.compile(r"\n[^\S\n]*\n+|\n+")


def _pieces_by_evidence(
    r: RenderedSection, head_tokens: int, capacity: int, renderer: SectionRenderer
) -> list[RenderedSection]:
    """Consecutive pieces of the chunk (about a third of a sample each), with the pairs whose evidence is inside."""
    s = r.section
    text = s.text
    chars_per_token = max(len(text) / max(head_tokens, 1), 0.5)
    target = int(capacity / 3 * chars_per_token)
    bounds = [0]
    for m in _PIECE_BREAK_RE.finditer(text):
        if m.end() - bounds[-1] >= target and m.end() < len(text):
            bounds.append(m.end())
    bounds.append(len(text))
    spans = [(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if text[a:b].strip()]
    assigned: dict[int, list] = {}
    for p in s.pairs:
        ev = renderer.evidence.get(p.pair_id)
        if not ev:
            continue
        lo, hi = min(a for a, _ in ev), max(b for _, b in ev)
        k = next((i for i, (a, b) in enumerate(spans) if a <= lo and hi <= b), None)
        if k is not None:
            assigned.setdefault(k, []).append(p)
    pieces = []
    for k, pairs in sorted(assigned.items()):
        a, b = spans[k]
        piece = replace(s, section_id=f"{s.section_id}@{k + 1}", text=text[a:b], pairs=tuple(pairs))
        renderer.text_offsets[piece.section_id] = a
        pieces.append(renderer.render_one(piece))
    return pieces


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
                "pair boundaries (not packed: it stays in the pool for longer samples)"
            )
        parts.append(part)
        start = stop
    return parts, ""


def _make_sample(
    pieces: list[tuple[RenderedSection, int | None]],
    renderer: SectionRenderer,
    config: PackingConfig,
    pad_id: int,
    config_hash: str,
    tokenizer: TextTokenizer,
    block: CrossBlock | None = None,
) -> tuple[PackedSample, CutRecord | None, Section | None]:
    sample = _assemble(pieces, renderer, config, pad_id, block)
    last, cut_index = pieces[-1]
    used = int(last.cut_tokens[cut_index]) if cut_index is not None else None
    sample.sample_id = sample_id(sample.section_ids, used, config_hash, tokenizer)
    if cut_index is None:
        return sample, None, None
    record, remainder = _cut_record(sample.sample_id, last, cut_index, renderer, config)
    sample.cut = record
    if record.carried_as:  # the cut-off pairs are not dropped: they stay in the pool
        p = sample.placed[-1]
        sample.placed[-1] = PlacedSection(p.section, p.used_pair_ids, ())
    return sample, record, remainder


def _assemble(
    pieces: list[tuple[RenderedSection, int | None]],
    renderer: SectionRenderer,
    config: PackingConfig,
    pad_id: int,
    block: CrossBlock | None = None,
) -> PackedSample:
    n_total = config.sample_tokens
    ids = np.full(n_total, pad_id, dtype=np.int32)
    bos = renderer.bos_ids
    ids[: len(bos)] = bos
    pos, char_pos = len(bos), len(renderer.bos_text)
    texts = [renderer.bos_text]
    spans, targets, losses, tchars, distances = [], [], [], [], []
    placed: list[PlacedSection] = []
    n_pairs = 0
    chunk_at: dict[str, tuple[int, RenderedSection]] = {}  # whole chunks: where their section starts
    for r, cut_index in pieces:
        if cut_index is None:
            n_tok, n_char, k = r.length, len(r.text), r.target_spans.shape[0]
        else:
            n_tok, n_char = int(r.cut_tokens[cut_index]), int(r.cut_chars[cut_index])
            k = int(r.cut_pairs[cut_index])
        assert pos + n_tok <= n_total, "plan exceeded the sample length"  # the planners guarantee this
        ids[pos : pos + n_tok] = r.ids[:n_tok]
        texts.append(r.text[:n_char])
        spans.append((pos, pos + n_tok))
        targets.append(r.target_spans[:k] + pos)
        losses.append(r.loss_spans[:k] + pos)
        tchars.append(r.target_char_spans[:k] + char_pos)
        d = r.pair_distances[:k]
        distances.append(d[d >= 0])
        n_pairs += k
        pair_ids = tuple(p.pair_id for p in r.section.pairs)
        placed.append(PlacedSection(r.section, pair_ids[:k], pair_ids[k:]))
        if r.section.chunk_id in whole_chunks([(r, cut_index)]):
            chunk_at.setdefault(r.section.chunk_id, (pos, r))
        pos += n_tok
        char_pos += n_char
    cross_d = np.zeros((0, 2), np.int64)
    if block is not None:  # after the last section: its answers need text far back in the sample
        c = block.conversation
        assert pos + c.length <= n_total, "cross block exceeded the sample length"  # the planner reserved it
        ids[pos : pos + c.length] = c.ids
        texts.append(c.text)
        targets.append(c.target_spans + pos)
        losses.append(c.loss_spans + pos)
        tchars.append(c.target_char_spans + char_pos)
        cross_d = cross_distances(block, chunk_at, c.target_spans[:, 0] + pos)
        distances.append(cross_d[:, 1])
        n_pairs += len(block.pairs)
        pos += c.length
    sections = [p.section for p in placed]
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
        placed=placed,
        dependency_distances=np.concatenate(distances).astype(np.int64) if distances else np.zeros(0, np.int64),
        n_pairs=n_pairs,
        cross_pair_ids=[p.pair_id for p in block.pairs] if block else [],
        cross_section_ids=[p.section_id for p in block.pairs] if block else [],
        cross_distances=cross_d,
    )


def _stack(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays).astype(np.int64) if arrays else np.zeros((0, 2), dtype=np.int64)


def _cut_record(
    sample: str, item: RenderedSection, cut_index: int, renderer: SectionRenderer, config: PackingConfig
) -> tuple[CutRecord, Section | None]:
    s = item.section
    n_used = int(item.cut_pairs[cut_index])
    kind = CUT_KIND_NAMES[int(item.cut_kinds[cut_index])]
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
    fitted: list[RenderedSection],
    cuts: list[CutRecord],
    rejected: list[Rejection],
    leftovers: list[Section],
    split_parts: dict[str, list[str]],
    plan: BinPlan,
) -> None:
    m.n_samples = len(samples)
    fills = [s.fill_ratio for s in samples]
    m.fill_mean = float(np.mean(fills)) if fills else 0.0
    m.fill_min = float(np.min(fills)) if fills else 0.0
    m.real_tokens = sum(s.num_real_tokens for s in samples)
    m.pad_tokens = sum(s.num_tokens - s.num_real_tokens for s in samples)
    m.n_items_in = len(fitted)
    m.n_sections_packed = sum(len(s.section_ids) for s in samples)
    m.n_split_sections = len(split_parts)
    m.n_cut_sections = len(cuts)
    m.cuts_by_kind = dict(Counter(c.kind for c in cuts))
    m.cut_dropped_tokens = sum(c.dropped_tokens for c in cuts)
    m.n_carried_remainders = sum(1 for c in cuts if c.carried_as)
    m.section_reuse_count = reuse_count([s.section_ids for s in samples])
    by_id = {r.section_id: r.length for r in fitted}
    used_lengths = [by_id[sid] for s in samples for sid in s.section_ids]
    m.ks_length_bias, m.ks_pvalue = ks_2samp(used_lengths, list(by_id.values()))
    m.n_leftover_sections = len(leftovers)
    m.leftover_tokens = sum(by_id.get(s.section_id, 0) for s in leftovers)  # carried remainders are not rendered yet
    m.n_rejected = len(rejected)
    m.rejected_by_reason = dict(Counter(reason_kind(r.reason) for r in rejected))
    m.dissolved_samples = plan.dissolved_bins
    mix: Counter[str] = Counter()
    for s in samples:
        mix.update(s.source_mix())
    m.source_tokens = dict(mix)
    m.n_pairs = sum(s.n_pairs for s in samples)
    m.dependency = distance_summary(np.concatenate([s.dependency_distances for s in samples]) if samples else [])
    cross = np.concatenate([s.cross_distances for s in samples]) if samples else np.zeros((0, 2), np.int64)
    m.n_cross_pairs = int(len(cross))
    m.cross_nearest = distance_summary(cross[:, 0])
    m.cross_farthest = distance_summary(cross[:, 1])
    m.documents_per_sample = float(np.mean([len(set(s.document_ids)) for s in samples])) if samples else 0.0
    m.main_document_share = float(np.mean([_main_share(s) for s in samples])) if samples else 0.0


def _main_share(sample: PackedSample) -> float:
    tokens: Counter[str] = Counter()
    for doc, (a, b) in zip(sample.document_ids, sample.section_spans, strict=True):
        tokens[doc] += int(b - a)
    return max(tokens.values()) / max(sample.num_real_tokens, 1)
