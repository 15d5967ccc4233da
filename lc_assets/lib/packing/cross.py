"""Cross pairs in coherent samples: pairs about two chunks far apart, appended after the last section.

A coherent sample holds consecutive chunks of one document in reading order. A cross pair
(`generation.cross`) whose two chunks are both in the sample, each with its whole text, is appended
after the sample's last section as one more conversation of the target template (question as user
turn, answer as assistant turn, loss on the answers), counted inside the exact sample length: the
sample is planned for the capacity left after the block, and the block is re-chosen for the chunks
that plan holds until both agree. A pair's distances run from the first token of its answer back to
the first token of its latest (nearest) and earliest (farthest) evidence quote.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lc_assets.lib.packing.render import RenderedSection, SectionRenderer
from lc_assets.lib.sections import CrossPair, QAPair

Pieces = list[tuple[RenderedSection, "int | None"]]
#: (run, start index, capacity) -> (pieces, tokens used, next index): how a coherent sample is filled
Fill = Callable[[list[RenderedSection], int, int], tuple[Pieces, int, int]]
#: plan-then-recheck rounds before a sample gives up its cross pairs (two suffice: the chunk set only shrinks)
_ROUNDS = 4


@dataclass(frozen=True)
class CrossBlock:
    """The cross pairs of one sample, rendered as one conversation."""

    conversation: RenderedSection
    pairs: tuple[CrossPair, ...]

    @property
    def length(self) -> int:
        return self.conversation.length


def anchors_of(pairs: Sequence[CrossPair]) -> dict[str, list[int]]:
    """chunk id -> evidence start offsets the renderer must locate in tokens."""
    out: dict[str, set[int]] = {}
    for p in pairs:
        for chunk, start, _ in p.evidence:
            out.setdefault(chunk, set()).add(start)
    return {c: sorted(v) for c, v in out.items()}


def whole_chunks(pieces: Pieces) -> dict[str, RenderedSection]:
    """Chunks whose whole text is in these pieces (placed whole, or cut after a pair), first occurrence."""
    out: dict[str, RenderedSection] = {}
    for r, cut in pieces:
        if r.anchor_tokens and (cut is None or int(r.cut_pairs[cut]) > 0):
            out.setdefault(r.section.chunk_id, r)
    return out


class CrossPlanner:
    """Chooses each coherent sample's cross pairs and reserves their tokens; each pair is placed once."""

    def __init__(self, pairs: Sequence[CrossPair], renderer: SectionRenderer) -> None:
        self.renderer = renderer
        self.by_document: dict[str, list[CrossPair]] = {}
        for p in pairs:
            self.by_document.setdefault(p.document_id, []).append(p)
        self.used: set[str] = set()
        self.offered = len(pairs)

    def _eligible(self, pieces: Pieces, candidates: Sequence[CrossPair]) -> list[CrossPair]:
        whole = whole_chunks(pieces)
        return [
            p
            for p in candidates
            if p.pair_id not in self.used
            and all(c in whole and s in whole[c].anchor_tokens for c, s, _ in p.evidence)
            and set(p.chunk_ids) <= set(whole)
        ]

    def _block(self, pairs: list[CrossPair]) -> CrossBlock:
        qa = [QAPair(p.pair_id, k, p.question, p.answer) for k, p in enumerate(pairs)]
        conversation = self.renderer.render_pairs(f"cross:{pairs[0].pair_id}", qa)
        return CrossBlock(conversation, tuple(pairs))

    def fill(
        self, run: list[RenderedSection], start: int, capacity: int, fill: Fill
    ) -> tuple[Pieces, int, int, CrossBlock | None]:
        """The sample from `run[start:]` with its cross block: (pieces, tokens used incl. the block, next, block)."""
        pieces, used, nxt = fill(run, start, capacity)
        document = run[start].section.document_id
        candidates = self._eligible(pieces, self.by_document.get(document, ()))
        for _ in range(_ROUNDS):
            if not candidates:
                break
            block = self._block(candidates)
            if block.length >= capacity // 2:  # never let the pairs crowd out their own evidence
                candidates = candidates[: max(0, len(candidates) // 2)]
                continue
            trial, trial_used, trial_next = fill(run, start, capacity - block.length)
            kept = self._eligible(trial, candidates)
            if len(kept) == len(candidates):
                self.used.update(p.pair_id for p in candidates)
                return trial, trial_used + block.length, trial_next, block
            candidates = kept  # the smaller capacity lost a chunk: fewer pairs, a smaller block
        return pieces, used, nxt, None


def cross_distances(block: CrossBlock, chunk_at: dict[str, tuple[int, RenderedSection]], answer_starts) -> np.ndarray:
    """(k, 2) token distances per pair: answer start -> nearest evidence start, -> farthest evidence start."""
    out = np.zeros((len(block.pairs), 2), dtype=np.int64)
    for k, (pair, answer) in enumerate(zip(block.pairs, answer_starts, strict=True)):
        at = [chunk_at[c][0] + chunk_at[c][1].anchor_tokens[s] for c, s, _ in pair.evidence]
        out[k] = (int(answer) - max(at), int(answer) - min(at))
    return out
