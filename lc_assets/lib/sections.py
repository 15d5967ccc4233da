"""The unit that generation grows and packing packs: a chunk plus its QA pairs."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class QAPair:
    """One generated user/assistant pair, appended to its section at `step`."""

    pair_id: str
    step: int
    question: str
    answer: str


@dataclass(frozen=True)
class Section:
    """A chunk (the long context) and the pairs generated about it, in step order."""

    section_id: str
    chunk_id: str
    document_id: str
    source: str
    license: str
    text: str
    pairs: tuple[QAPair, ...] = field(default_factory=tuple)
    #: the chunk's index in its document (reading order; packing's coherent mode keeps it)
    chunk_index: int = 0


@dataclass(frozen=True)
class CrossPair:
    """A pair about two chunks of one document far apart (a cross section's pair), as packing appends it.

    ``evidence`` holds (chunk id, char_start, char_end) of every quote in its own chunk's text.
    """

    pair_id: str
    section_id: str
    document_id: str
    chunk_ids: tuple[str, str]  # (earlier, later)
    question: str
    answer: str
    evidence: tuple[tuple[str, int, int], ...]
