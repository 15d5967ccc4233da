"""Where each pair's evidence is in its chunk (character spans), for dependency distances.

Two sources, best first:
1. `qa_evidence` (when generation stores it): the chunk-relative span of every verbatim quote.
2. The paragraphs the pair's prompt showed (`masked_prompts.paragraph_ids`): ids are
   `p{index:05d}-{sha1(text)[:8]}` over `split_paragraphs` of the chunk. Blank-line paragraphs are
   found by their hash; a piece of a paragraph that generation split (its budget was smaller) is
   found in the prompt's own text (shown paragraphs are joined by blank lines) by the same hash, then
   located in the chunk. A pair whose paragraphs cannot be located has no distance (counted).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from lc_assets.lib.generation.masking import split_paragraphs
from lc_assets.lib.lineage import LineageStore
from lc_assets.lib.sections import Section

Spans = list[tuple[int, int]]


def _sha8(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]


def _no_count(texts: Sequence[str]) -> list[int]:
    return [0] * len(texts)  # every paragraph "fits": split_paragraphs then splits nothing


class ChunkParagraphs:
    """A chunk's blank-line paragraphs by text hash (built once per chunk, shared by its pairs)."""

    def __init__(self, chunk_text: str) -> None:
        self.text = chunk_text
        self.by_hash: dict[str, list[tuple[int, int]]] = {}
        for p in split_paragraphs(chunk_text, _no_count, 1):
            self.by_hash.setdefault(_sha8(p.text), []).append((p.char_start, p.char_end))

    def spans(self, paragraph_ids: Iterable[str], shown_text: str | None = None) -> Spans | None:
        """Spans of the ids in document order; None if some id needs the prompt text and none was given.

        Ids come in document order, so each is looked for after the previous one (repeated text
        resolves to the right occurrence). Ids still not found with the prompt text are left out.
        """
        pieces: dict[str, str] | None = None
        out: Spans = []
        cursor = 0
        for pid in paragraph_ids:
            h = pid.rsplit("-", 1)[-1]
            span = next((sp for sp in self.by_hash.get(h, ()) if sp[0] >= cursor), None)
            if span is None:
                if shown_text is None:
                    return None
                if pieces is None:
                    pieces = {_sha8(part.strip()): part.strip() for part in shown_text.split("\n\n") if part.strip()}
                piece = pieces.get(h)
                at = self.text.find(piece, cursor) if piece else -1
                span = (at, at + len(piece)) if piece and at >= 0 else None
            if span is not None:
                out.append(span)
                cursor = span[1]
        return out


def paragraph_spans(chunk_text: str, paragraph_ids: Iterable[str], shown_text: str = "") -> Spans:
    """Chunk char spans of the paragraphs with these ids, in document order (unlocatable ids left out)."""
    return ChunkParagraphs(chunk_text).spans(paragraph_ids, shown_text) or []


def load_evidence(store: LineageStore, sections: Sequence[Section]) -> tuple[dict[str, Spans], dict[str, int]]:
    """pair id -> evidence spans in its chunk, and how many pairs each source gave (and how many have none)."""
    pair_ids = [p.pair_id for s in sections for p in s.pairs]
    found: dict[str, Spans] = {}
    counts: Counter[str] = Counter()
    if not pair_ids:
        return found, {}
    for pid, a, b in store.query(
        "SELECT pair_id, char_start, char_end FROM qa_evidence WHERE pair_id IN (SELECT unnest(?::VARCHAR[])) "
        "AND char_start IS NOT NULL ORDER BY pair_id, quote_index",
        [pair_ids],
    ):
        found.setdefault(pid, []).append((int(a), int(b)))
    counts["qa_evidence"] = len(found)
    missing = [p for p in pair_ids if p not in found]
    if missing:
        section_of = {p.pair_id: s for s in sections for p in s.pairs}
        chunks: dict[str, ChunkParagraphs] = {}
        need_prompt: list[str] = []
        for pid, paragraph_ids in store.query(
            """SELECT q.pair_id, m.paragraph_ids FROM qa_pairs q JOIN masked_prompts m USING (prompt_id)
               WHERE q.pair_id IN (SELECT unnest(?::VARCHAR[]))""",
            [missing],
        ):
            section = section_of[pid]
            paragraphs = chunks.setdefault(section.chunk_id, ChunkParagraphs(section.text))
            spans = paragraphs.spans(paragraph_ids or [])
            if spans is None:
                need_prompt.append(pid)  # a piece of a split paragraph: its text is in the prompt only
            elif spans:
                found[pid] = spans
                counts["shown_paragraphs"] += 1
        for pid, paragraph_ids, record in (
            store.query(
                """SELECT q.pair_id, m.paragraph_ids, m.record FROM qa_pairs q JOIN masked_prompts m USING (prompt_id)
               WHERE q.pair_id IN (SELECT unnest(?::VARCHAR[]))""",
                [need_prompt],
            )
            if need_prompt
            else ()
        ):
            spans = chunks[section_of[pid].chunk_id].spans(paragraph_ids or [], _user_text(record))
            if spans:
                found[pid] = spans
                counts["shown_paragraphs"] += 1
    counts["none"] = len(pair_ids) - len(found)
    return found, dict(counts)


def _user_text(record: str | dict | None) -> str:
    if not record:
        return ""
    data = json.loads(record) if isinstance(record, str) else record
    return "\n\n".join(m.get("content", "") for m in data.get("messages", ()) if m.get("role") == "user")


def dependency_plot_png(
    per_sample: Mapping[str, np.ndarray], title: str, cross: np.ndarray | None = None
) -> bytes | None:
    """Per-sample box plots of dependency distances (log scale) beside the histogram of all pairs, with the
    cross pairs' farthest distances (`cross`) drawn over it; None if empty."""
    series = {k: np.asarray(v) for k, v in per_sample.items() if len(v)}
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    everything = np.concatenate(list(series.values())).astype(float)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), width_ratios=[3, 2])
    shown = list(series.items())[:40]
    left.boxplot([np.maximum(v, 1) for _, v in shown], showfliers=False)
    left.set_yscale("log")
    left.set_xticks(range(1, len(shown) + 1), [k[:6] for k, _ in shown], rotation=90, fontsize=6)
    left.set_ylabel("tokens: answer -> farthest evidence")
    left.set_title(f"per sample ({len(shown)} of {len(series)})", fontsize=9)
    bins = np.logspace(0, max(1.0, np.log10(max(everything.max(), 10))), 40)
    right.hist(np.maximum(everything, 1), bins=bins)
    right.set_xscale("log")
    right.axvline(float(np.median(everything)), color="k", ls="--", lw=1)
    label = f"all {len(everything):,} pairs (median {np.median(everything):,.0f})"
    if cross is not None and len(cross):
        right.hist(np.maximum(cross, 1), bins=bins, color="tab:red", alpha=0.7)
        right.axvline(float(np.median(cross)), color="tab:red", ls="--", lw=1)
        label += f"\ncross pairs in red: {len(cross):,} (median {np.median(cross):,.0f})"
    right.set_title(label, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()
