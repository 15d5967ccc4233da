"""Cross sections: pairs whose evidence lies in two chunks of one document far apart.

The method's pairs are about one chunk each, so a packed sample's longest dependency is one section.
A *cross section* pairs chunk a with a later chunk b of the same document (``min_distance_tokens`` ..
``max_distance_tokens`` from the start of a to the start of b) and grows ``steps_per_section`` steps of
the ordinary generation loop over it: its text is a's text, a separator paragraph, then b's text; a
:class:`CrossMasker` shows one window of a and one of b in every step (a long-range step: "Excerpt 1
and Excerpt 2 are far apart in the document", evidence required from both), and judging, retries,
lineage rows and resume are the scheduler's own. Its quotes are stored as spans of the chunk they lie
in (`qa_evidence.chunk_id`). Packing (coherent mode) appends a cross pair to a sample holding both
chunks, after the last section, so the answer needs text hundreds of thousands of tokens back.

Cross sections run under their own config (:class:`CrossGenerationConfig`: the base generation
config's knobs + :class:`CrossPairConfig`, its own hash), so they never change or mix with the base
config's sections; `cross_sections` rows name the base config their pairs are packed with.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pydantic import Field, model_validator

from lc_assets.lib.generation.admission import SectionTask
from lc_assets.lib.generation.backend import GenerationBackend
from lc_assets.lib.generation.config import GenerationConfig
from lc_assets.lib.generation.lineage_sink import LineageStepSink
from lc_assets.lib.generation.masking import Mask, Paragraph, SectionMasker, derive_rng
from lc_assets.lib.generation.records import ProgressEvent, StepRecord
from lc_assets.lib.generation.run import RunResult, grow_sections
from lc_assets.lib.lineage.cross import (
    CROSS_SEPARATOR,
    ChunkRef,
    finished_sections,
    record_cross_sections,
)
from lc_assets.lib.lineage.generation import committed_steps
from lc_assets.lib.lineage.store import LineageStore, chunk_lengths, chunk_texts
from lc_assets.lib.lineage.writer import LineageWriter
from lc_assets.lib.sections import Section
from lc_assets.lib.stepconfig import StepConfig
from lc_assets.lib.tokenizer import TextTokenizer

#: A cross section ends by its step count, never by tokens (it is packed as pairs only, not as text)
_UNREACHABLE_TARGET = 1 << 40


class CrossPairConfig(StepConfig):
    """Which chunk pairs get cross sections, and how many steps each grows."""

    sections_per_chunk: int = Field(
        0,
        ge=0,
        le=8,
        description="Cross sections per chunk (0: off): each pairs it with a later chunk of its document.",
    )
    steps_per_section: int = Field(4, ge=1, le=64, description="Generation steps per cross section (one pair each).")
    min_distance_tokens: int = Field(
        250_000, ge=1, description="Least chunk tokens from the start of the earlier chunk to the start of the later."
    )
    max_distance_tokens: int = Field(
        650_000,
        ge=1,
        description="Most such tokens: both chunks (grown by their pairs) must still fit one packed sample.",
    )

    @model_validator(mode="after")
    def _check(self) -> CrossPairConfig:
        if self.min_distance_tokens > self.max_distance_tokens:
            raise ValueError(
                f"min_distance_tokens={self.min_distance_tokens} > max_distance_tokens={self.max_distance_tokens}"
            )
        return self

    @property
    def enabled(self) -> bool:
        return self.sections_per_chunk > 0


class CrossGenerationConfig(GenerationConfig):
    """The base generation config as cross sections use it: every step long-range, a step count per section."""

    cross: CrossPairConfig = Field(default_factory=CrossPairConfig, description="Which chunk pairs, how many steps.")
    base_config_hash: str = Field(description="The generation config whose sections the cross pairs go with.")

    @classmethod
    def of(cls, base: GenerationConfig, cross: CrossPairConfig) -> CrossGenerationConfig:
        knobs = base.model_dump(exclude={"target_ratio", "target_tokens", "max_steps_per_section", "long_range_share"})
        return cls(
            **knobs,
            target_tokens=_UNREACHABLE_TARGET,
            max_steps_per_section=cross.steps_per_section,
            long_range_share=1.0,
            cross=cross,
            base_config_hash=base.config_hash(),
        )


@dataclass(frozen=True)
class CrossDescriptor:
    """A cross section to grow: the two chunks (no text) and where it is keyed."""

    section_id: str
    first: ChunkRef
    second: ChunkRef
    distance_tokens: int
    shard: str


def cross_section_id(first_chunk_id: str, second_chunk_id: str, cross_config_hash: str) -> str:
    blob = f"cross:{first_chunk_id}+{second_chunk_id}:{cross_config_hash}"
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def plan_cross_sections(
    chunks: Sequence[ChunkRef], config: CrossGenerationConfig, shard: str = ""
) -> list[CrossDescriptor]:
    """For each chunk, up to ``sections_per_chunk`` later chunks of its document in the distance range
    (a seeded choice per chunk: the same chunks and seed give the same plan)."""
    cross = config.cross
    if not cross.enabled:
        return []
    cross_hash = config.config_hash()
    by_doc: dict[str, list[ChunkRef]] = {}
    for c in chunks:
        by_doc.setdefault(c.document_id, []).append(c)
    out: list[CrossDescriptor] = []
    for doc in sorted(by_doc):
        ordered = sorted(by_doc[doc], key=lambda c: c.chunk_index)
        starts = [0]
        for c in ordered:
            starts.append(starts[-1] + c.n_tokens)
        for i, a in enumerate(ordered):
            far = [
                (j, starts[j] - starts[i])
                for j in range(i + 1, len(ordered))
                if cross.min_distance_tokens <= starts[j] - starts[i] <= cross.max_distance_tokens
            ]
            if not far:
                continue
            rng = derive_rng(config.seed, "cross", a.chunk_id)
            for j, distance in sorted(rng.sample(far, min(cross.sections_per_chunk, len(far)))):
                b = ordered[j]
                sid = cross_section_id(a.chunk_id, b.chunk_id, cross_hash)
                out.append(CrossDescriptor(sid, a, b, distance, shard))
    return out


def cross_section_rows(descriptors: Sequence[CrossDescriptor], config: CrossGenerationConfig, run_id: str,
                       chunk_chars: dict[str, int]) -> list[dict[str, Any]]:  # fmt: skip
    """`cross_sections` rows (the later chunk's text offset: the earlier chunk's characters + the separator)."""
    return [
        dict(
            section_id=d.section_id, document_id=d.first.document_id, chunk_id=d.first.chunk_id,
            cross_chunk_id=d.second.chunk_id, distance_tokens=d.distance_tokens,
            cross_char_offset=chunk_chars[d.first.chunk_id] + len(CROSS_SEPARATOR),
            base_config_hash=config.base_config_hash, config_hash=config.config_hash(), run_id=run_id,
        )
        for d in descriptors
    ]  # fmt: skip


class CrossMasker:
    """Masks of a cross section: one window in the first chunk and one in the second, every step.

    Two SectionMaskers (one per chunk, half the budget each, one window per step) keep each chunk's
    regions in shuffled epochs, so windows cover both chunks evenly; the separator paragraph between
    the chunks is never shown. Deterministic in (seed, section id, step), like every mask.
    """

    def __init__(self, section_id: str, paragraphs: Sequence[Paragraph], config: GenerationConfig) -> None:
        sep = next((p.index for p in paragraphs if p.text == CROSS_SEPARATOR.strip()), None)
        if sep is None or sep == 0 or sep == len(paragraphs) - 1:
            raise ValueError(f"cross section {section_id!r} has no separator between two non-empty chunks")
        self.paragraphs = tuple(paragraphs)
        self.offset = sep + 1
        second = [replace(p, index=p.index - self.offset) for p in paragraphs[self.offset :]]
        lo, hi = max(1, config.min_context_tokens // 2), max(1, config.max_context_tokens // 2)
        self.parts = (
            SectionMasker(f"{section_id}/a", paragraphs[:sep], config.seed, lo, hi, min_windows=1, max_windows=1),
            SectionMasker(f"{section_id}/b", second, config.seed, lo, hi, min_windows=1, max_windows=1),
        )

    def mask(self, step: int) -> Mask:
        a, b = (m.mask(step) for m in self.parts)
        selected = a.selected + tuple(self.paragraphs[p.index + self.offset] for p in b.selected)
        return Mask(step, a.budget_tokens + b.budget_tokens, selected, long_range=True)


def cross_masker(section_id: str, paragraphs: tuple[Paragraph, ...], config: GenerationConfig) -> CrossMasker:
    return CrossMasker(section_id, paragraphs, config)


def iter_cross_tasks(
    store: LineageStore, descriptors: Sequence[CrossDescriptor], page: int = 16
) -> Iterator[SectionTask]:
    """Tasks over the two chunks' joined text, with committed steps, loaded `page` sections at a time."""
    for start in range(0, len(descriptors), page):
        batch = descriptors[start : start + page]
        texts = chunk_texts(store, sorted({c.chunk_id for d in batch for c in (d.first, d.second)}))
        committed = committed_steps(store, [d.section_id for d in batch])
        for d in batch:
            a, b = d.first, d.second
            missing = [c.chunk_id for c in (a, b) if c.chunk_id not in texts]
            if missing:
                raise ValueError(f"chunks {missing} of cross section {d.section_id!r} are not in the lineage catalog")
            text = texts[a.chunk_id] + CROSS_SEPARATOR + texts[b.chunk_id]
            section = Section(d.section_id, a.chunk_id, a.document_id, a.source, a.license, text, (), a.chunk_index)
            yield SectionTask(section, 0, committed.get(d.section_id, ()), d.shard, a.title, masker=cross_masker)


@dataclass(frozen=True)
class CrossLayout:
    """Where the second chunk starts in a cross section's text."""

    first_chunk_id: str
    second_chunk_id: str
    second_offset: int


class CrossStepSink(LineageStepSink):
    """The lineage sink for cross sections: each evidence span is stored in the chunk it lies in."""

    def __init__(self, writer: LineageWriter, run_id: str, config_hash: str, layouts: dict[str, CrossLayout]):
        super().__init__(writer, run_id, config_hash)
        self.layouts = layouts

    def commit(self, record: StepRecord) -> None:
        layout = self.layouts.get(record.section_id)
        if layout is not None and record.evidence:
            record = replace(record, evidence=tuple(_in_chunk(e, layout) for e in record.evidence))
        super().commit(record)


def _in_chunk(span, layout: CrossLayout):
    if span.char_start >= layout.second_offset:
        off = layout.second_offset
        return replace(span, char_start=span.char_start - off, char_end=span.char_end - off,
                       chunk_id=layout.second_chunk_id)  # fmt: skip
    return replace(span, chunk_id=layout.first_chunk_id)


def grow_cross_sections(
    catalog: LineageStore,
    descriptors: Sequence[CrossDescriptor],
    backend: GenerationBackend,
    config: CrossGenerationConfig,
    target_tokenizer: TextTokenizer,
    run_id: str,
    stop: threading.Event | None = None,
    progress: Callable[[ProgressEvent], None] | None = None,
) -> RunResult | None:
    """Grow the unfinished ones of `descriptors` through the generation loop (`run.grow_sections`); None if
    every one is finished. Their `cross_sections` rows are stored first (a resumed run finds them)."""
    done = finished_sections(catalog, config.config_hash())
    todo = [d for d in descriptors if d.section_id not in done]
    if not todo:
        return None
    rows = cross_section_rows(todo, config, run_id, chunk_lengths(catalog, sorted({d.first.chunk_id for d in todo})))
    record_cross_sections(catalog, rows)
    layouts = {r["section_id"]: CrossLayout(r["chunk_id"], r["cross_chunk_id"], r["cross_char_offset"]) for r in rows}
    return grow_sections(
        catalog,
        todo,  # type: ignore[arg-type] - only counted: the tasks come from iter_cross_tasks
        backend,
        config,
        target_tokenizer,
        run_id,
        stop=stop,
        progress=progress,
        tasks=iter_cross_tasks(catalog, todo),
        sink=functools.partial(CrossStepSink, layouts=layouts),
    )
