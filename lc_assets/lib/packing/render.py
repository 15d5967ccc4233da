"""Render sections as multi-turn chats in the target model's chat template, tracked through token ids.

Rendering (one section = one conversation):

    user:      <chunk text><question_separator><question 1>
    assistant: <answer 1>
    user:      <question 2>
    assistant: <answer 2>
    ...

A section without pairs is a single user message holding the chunk text.

How the ids are built: the template is rendered ONCE per number of pairs with sentinel
strings in place of the contents (a "skeleton"), which yields the template's structural
pieces (headers, end-of-turn markers) between contents. Each piece and each content is
tokenized on its own and the ids are concatenated, so the position of every answer is known
in tokens without searching. The ids are the truth; with `verify_tokenization` the joined
text is also rendered by the template itself and re-tokenized whole, and any difference is
counted (`seam_mismatches`), because a trainer that re-tokenizes the text must get the
same length. The template's BOS (if it emits one) is taken off every section and put once
at the start of a packed sample.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from lc_assets.lib.packing.config import PackingConfig
from lc_assets.lib.sections import QAPair, Section
from lc_assets.lib.tokenizer import TextTokenizer

_SENTINEL = "\u27e6LCPACK{}\u27e7"
_SENTINEL_RE = re.compile("\u27e6LCPACK(\\d+)\u27e7")
# Cut points inside the chunk text, coarsest first (as the chunker's): the end of a run of blank-line
# separated newlines (the prefix ends in "\n\n"), the end of a newline run before a non-space
# character, a sentence end before the space that follows it (the space starts the next token).
_PARAGRAPH_END_RE = re.compile(r"\n[^\S\n]*\n+")
_LINE_END_RE = re.compile(r"\n+(?=\S)")
_SENTENCE_END_RE = re.compile(r"[.!?][\"')\]]*(?=[ \t]+\S)")
# then (as the chunker) before a space between words, and last at a pre-token boundary of the encoding
# (text with no whitespace: minified code, long runs): so a pool of N tokens always gives a sample
_WHITESPACE_RE = re.compile(r"(?<=\S)(?=[ \t]+\S)")
#: sections tokenized per batch: bounds the memory of offset-carrying encodings (~100 B/token)
_RENDER_BATCH = 16

CUT_PARAGRAPH = 0
CUT_PAIR = 1
CUT_LINE = 2
CUT_SENTENCE = 3
CUT_WHITESPACE = 4
CUT_TOKEN = 5
CUT_KIND_NAMES = {
    CUT_PARAGRAPH: "paragraph", CUT_PAIR: "pair", CUT_LINE: "line", CUT_SENTENCE: "sentence",
    CUT_WHITESPACE: "whitespace", CUT_TOKEN: "token",
}  # fmt: skip
#: the planner's preference per kind (0 first): a finer kind is used only where no coarser one closes a gap
CUT_RANK = np.array([0, 0, 1, 2, 3, 4], dtype=np.int8)


class ChatTemplateError(ValueError):
    """The tokenizer has no chat template, or its template cannot be rendered piecewise."""


@dataclass(frozen=True)
class Rejection:
    """A section (or part) that was not packed, with the reason."""

    section_id: str
    reason: str
    tokens: int | None = None


@dataclass
class RenderedSection:
    """One section rendered as a conversation, without BOS, in token ids.

    All spans are half-open ``[start, end)`` and relative to this section.
    """

    section: Section
    ids: np.ndarray  # int32
    text: str
    #: tokens of each answer exactly (decode to the answer text)
    target_spans: np.ndarray  # (n_pairs, 2) int64
    #: what a trainer computes loss on: the answer, plus the end-of-turn marker if configured
    loss_spans: np.ndarray  # (n_pairs, 2)
    #: character spans of each answer in `text`
    target_char_spans: np.ndarray  # (n_pairs, 2)
    #: token offsets where the section may be cut (ascending, 0 < offset < length)
    cut_tokens: np.ndarray
    #: character offsets in `text` matching `cut_tokens`
    cut_chars: np.ndarray
    #: CUT_PAIR or CUT_PARAGRAPH for each cut
    cut_kinds: np.ndarray
    #: pairs complete before each cut
    cut_pairs: np.ndarray
    #: per pair: tokens from the first token of its answer back to the first token of its farthest evidence
    #: (-1: no evidence known); the same wherever the section is placed
    pair_distances: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    seam_mismatch: bool = False
    #: chunk char offset -> token of this section holding it, for the offsets the renderer was asked to anchor
    #: (cross pairs' evidence: its place in the sample is only known once the section is placed)
    anchor_tokens: dict[int, int] = field(default_factory=dict)

    @property
    def cut_ranks(self) -> np.ndarray:
        return CUT_RANK[self.cut_kinds]

    @property
    def section_id(self) -> str:
        return self.section.section_id

    @property
    def length(self) -> int:
        return int(self.ids.shape[0])


@dataclass
class RenderResult:
    """Rendered sections (in input order) and the sections that could not be rendered."""

    rendered: list[RenderedSection] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    seam_mismatches: int = 0


class SectionRenderer:
    """Renders sections with one tokenizer's chat template; built once per packing run."""

    def __init__(
        self,
        tokenizer: TextTokenizer,
        config: PackingConfig,
        evidence: Mapping[str, Sequence[tuple[int, int]]] | None = None,
        anchors: Mapping[str, Sequence[int]] | None = None,
    ) -> None:
        """evidence: pair id -> character spans of its evidence in its chunk's text (for dependency distances);
        anchors: chunk id -> chunk char offsets whose tokens each rendered section of the chunk records."""
        if not tokenizer.chat_template:
            where = f" (loaded from {tokenizer.source_dir})" if tokenizer.source_dir else ""
            raise ChatTemplateError(
                f"tokenizer {tokenizer.name!r}{where} has no chat template: packing renders sections as chats in "
                "the target model's template; use a tokenizer whose tokenizer_config.json has `chat_template`, "
                "or pass chat_template_path to load_tokenizer"
            )
        self.tok = tokenizer
        self.config = config
        self.evidence = evidence or {}
        self.anchors = anchors or {}
        #: chunk pieces ("<id>@k"): where their text starts in the chunk (evidence spans are chunk-relative)
        self.text_offsets: dict[str, int] = {}
        self._skeletons: dict[int, list[str]] = {}
        self._piece_ids: dict[str, np.ndarray] = {}
        first = self._render_skeleton(0)
        bos = tokenizer.bos_token
        # One BOS per sample: remember the template's BOS and strip it from every section.
        self.bos_text = bos if bos and first[0].startswith(bos) else ""
        self.bos_ids = self._ids_of_piece(self.bos_text)
        self.end_of_turn = self._assistant_end_of_turn()
        self._special_by_prefix = self._special_token_index()

    # -- template structure ---------------------------------------------------
    def _render_skeleton(self, n_pairs: int) -> list[str]:
        """Structural pieces of a conversation with n_pairs pairs (n_messages + 1 strings, BOS kept)."""
        n_messages = 1 if n_pairs == 0 else 2 * n_pairs
        messages = [
            {"role": "user" if i % 2 == 0 else "assistant", "content": _SENTINEL.format(i)} for i in range(n_messages)
        ]
        try:
            rendered = self.tok.apply_chat_template(messages, add_generation_prompt=False)
        except Exception as exc:  # noqa: BLE001 - a template error of any kind is a config problem
            raise ChatTemplateError(f"chat template of tokenizer {self.tok.name!r} failed to render: {exc}") from exc
        parts = _SENTINEL_RE.split(rendered)
        found = [int(p) for p in parts[1::2]]
        if found != list(range(n_messages)):
            raise ChatTemplateError(
                f"chat template of tokenizer {self.tok.name!r} does not render each message content once and in "
                f"order (saw contents {found}); it cannot be packed piecewise"
            )
        return parts[0::2]

    def skeleton(self, n_pairs: int) -> list[str]:
        """Structural pieces with the BOS removed from the first piece (cached per pair count)."""
        pieces = self._skeletons.get(n_pairs)
        if pieces is None:
            pieces = self._render_skeleton(n_pairs)
            if self.bos_text:
                if not pieces[0].startswith(self.bos_text):
                    raise ChatTemplateError(f"template of {self.tok.name!r} puts BOS inconsistently")
                pieces[0] = pieces[0][len(self.bos_text) :]
            self._skeletons[n_pairs] = pieces
        return pieces

    def _assistant_end_of_turn(self) -> str:
        """Text that closes an assistant turn (e.g. '<|eot_id|>'), or '' if the template shows none."""
        last = self.skeleton(1)[2]
        if not last:
            return ""
        # Middle turns must start with the same marker, or the marker is not a clean end of turn.
        middle = self.skeleton(2)[2]
        return last if middle.startswith(last) else ""

    def _special_token_index(self) -> dict[str, list[str]]:
        specials = [t.content for t in self.tok.backend.get_added_tokens_decoder().values() if t.content]
        index: dict[str, list[str]] = {}
        for s in specials:
            index.setdefault(s[:2], []).append(s)
        return index

    def _special_in(self, text: str) -> str | None:
        for prefix, tokens in self._special_by_prefix.items():
            if prefix in text:  # cheap check first: most texts hold no "<|" at all
                for t in tokens:
                    if t in text:
                        return t
        return None

    def _ids_of_piece(self, piece: str) -> np.ndarray:
        ids = self._piece_ids.get(piece)
        if ids is None:
            ids = np.asarray(self.tok.encode(piece), dtype=np.int32)
            self._piece_ids[piece] = ids
        return ids

    # -- rendering ------------------------------------------------------------
    def check(self, section: Section, need_text: bool = True) -> str | None:
        """Reason the section cannot be rendered, or None."""
        if need_text and not section.text.strip():
            return "empty chunk text"
        for p in section.pairs:
            if not p.question.strip() or not p.answer.strip():
                return f"pair {p.pair_id!r} has an empty question or answer"
        contents = [section.text, *(p.question for p in section.pairs), *(p.answer for p in section.pairs)]
        for c in contents:
            hit = self._special_in(c)
            if hit is not None:
                return f"content holds the special token text {hit!r} (it would become a control token)"
        return None

    def render(self, sections: Sequence[Section]) -> RenderResult:
        """Render many sections; unrenderable ones are rejected with a reason, never dropped."""
        result = RenderResult()
        ok: list[Section] = []
        for s in sections:
            reason = self.check(s)
            if reason is None:
                ok.append(s)
            else:
                result.rejected.append(Rejection(s.section_id, reason))
        for start in range(0, len(ok), _RENDER_BATCH):
            for r in self._render_batch(ok[start : start + _RENDER_BATCH]):
                result.rendered.append(r)
                result.seam_mismatches += int(r.seam_mismatch)
        return result

    def render_one(self, section: Section) -> RenderedSection:
        reason = self.check(section)
        if reason is not None:
            raise ValueError(f"section {section.section_id!r} cannot be rendered: {reason}")
        return self._render_batch([section])[0]

    def render_pairs(self, conversation_id: str, pairs: Sequence[QAPair]) -> RenderedSection:
        """Pairs only, as one conversation whose first user turn is the first question (cross pairs appended
        after a sample's last section); raises ValueError if a pair cannot be rendered."""
        conversation = Section(conversation_id, "", "", "", "", "", tuple(pairs))
        reason = self.check(conversation, need_text=False)
        if reason is not None or not pairs:
            raise ValueError(f"conversation {conversation_id!r} cannot be rendered: {reason or 'no pairs'}")
        return self._render_batch([conversation])[0]

    def _segments(self, section: Section) -> list[tuple[str, str]]:
        """(text, kind) pieces of one section; kinds: struct, chunk, user, answer, eot."""
        pairs = section.pairs
        pieces = self.skeleton(len(pairs))
        # The chunk and the first question are one segment: tokenizing them apart would split BPE
        # merges across the separator (".\n\n" is one Llama-3 token).
        first = _first_user_turn(section, self.config.question_separator)
        segs: list[tuple[str, str]] = [(pieces[0], "struct"), (first, "chunk")]
        n_messages = 1 if not pairs else 2 * len(pairs)
        for j in range(n_messages):
            if j > 0:
                pair = pairs[j // 2]
                segs.append((pair.answer.strip(), "answer") if j % 2 else (pair.question.strip(), "user"))
            after = pieces[j + 1]
            eot = self.end_of_turn
            if j % 2 == 1 and eot and after.startswith(eot):
                segs.append((eot, "eot"))
                after = after[len(eot) :]
            elif j % 2 == 1:
                segs.append(("", "eot"))  # no marker: the pair ends right after the answer
            segs.append((after, "struct"))
        return segs

    def _render_batch(self, sections: Sequence[Section]) -> list[RenderedSection]:
        all_segs = [self._segments(s) for s in sections]
        chunk_texts = [segs[1][0] for segs in all_segs]
        chunk_encs = self.tok.encodings(chunk_texts)
        content = [t for segs in all_segs for t, k in segs if k in ("user", "answer") and t]
        content_ids = iter(self.tok.encode_batch(content)) if content else iter(())
        out = [
            self._assemble(section, segs, enc, content_ids)
            for section, segs, enc in zip(sections, all_segs, chunk_encs, strict=True)
        ]
        if self.config.verify_tokenization:
            self._verify(out)
        return out

    def _assemble(self, section: Section, segs, chunk_enc, content_ids) -> RenderedSection:
        id_parts: list[np.ndarray] = []
        tok_pos = 0
        char_pos = 0
        targets, losses, target_chars = [], [], []
        cut_tokens, cut_chars, cut_kinds, cut_pairs = [], [], [], []
        text_kinds = _TEXT_CUT_KINDS[self.config.cut_boundaries]
        chunk_start, chunk_offsets = 0, None
        answer_span: tuple[int, int, int, int] | None = None
        n_done = 0
        for text, kind in segs:
            if kind == "struct" or kind == "eot":
                ids = self._ids_of_piece(text)
            elif kind == "chunk":
                ids = np.asarray(chunk_enc.ids, dtype=np.int32)
                chunk_start, chunk_offsets = tok_pos, chunk_enc.offsets
                if text_kinds:
                    # only inside the chunk text (+ separator), never inside the first question
                    limit = len(section.text.strip()) + len(self.config.question_separator) if section.pairs else None
                    t, c, k = _text_cuts(
                        text, chunk_enc.offsets, limit, text_kinds, self._cut_spacing, chunk_enc.word_ids
                    )
                    cut_tokens.extend(tok_pos + t)
                    cut_chars.extend(char_pos + c)
                    cut_kinds.extend(k)
                    cut_pairs.extend([0] * len(t))
            else:
                ids = np.asarray(next(content_ids), dtype=np.int32) if text else np.zeros(0, np.int32)
            start, cstart = tok_pos, char_pos
            tok_pos += len(ids)
            char_pos += len(text)
            id_parts.append(ids)
            if kind == "answer":
                answer_span = (start, tok_pos, cstart, char_pos)
            elif kind == "eot":
                assert answer_span is not None
                a0, a1, c0, c1 = answer_span
                targets.append((a0, a1))
                target_chars.append((c0, c1))
                losses.append((a0, tok_pos if self.config.train_on_end_of_turn else a1))
                n_done += 1
                cut_tokens.append(tok_pos)
                cut_chars.append(char_pos)
                cut_kinds.append(CUT_PAIR)
                cut_pairs.append(n_done)
        ids = np.concatenate(id_parts) if id_parts else np.zeros(0, np.int32)
        text = "".join(t for t, _ in segs)
        # A cut at the very end is no cut; a cut at 0 uses nothing. Chunk cuts come first, then pair ends.
        keep = sorted((i for i, t in enumerate(cut_tokens) if 0 < t < len(ids)), key=lambda i: cut_tokens[i])
        rendered = RenderedSection(
            section=section,
            ids=ids,
            text=text,
            target_spans=_spans(targets),
            loss_spans=_spans(losses),
            target_char_spans=_spans(target_chars),
            cut_tokens=np.asarray([cut_tokens[i] for i in keep], dtype=np.int64),
            cut_chars=np.asarray([cut_chars[i] for i in keep], dtype=np.int64),
            cut_kinds=np.asarray([cut_kinds[i] for i in keep], dtype=np.int8),
            cut_pairs=np.asarray([cut_pairs[i] for i in keep], dtype=np.int64),
            pair_distances=self._pair_distances(section, targets, chunk_start, chunk_offsets),
            anchor_tokens=self._anchor_tokens(section, chunk_start, chunk_offsets),
        )
        return rendered

    @property
    def _cut_spacing(self) -> int:
        """Line and sentence cuts closer than this to a kept cut are dropped (memory): any gap still has a cut
        within the pad tolerance."""
        return max(1, self.config.pad_tolerance_tokens // 4)

    def _pair_distances(
        self, section: Section, targets: list[tuple[int, int]], chunk_start: int, offsets
    ) -> np.ndarray:
        out = np.full(len(targets), -1, dtype=np.int64)
        if not self.evidence or offsets is None or not len(offsets):
            return out
        starts = np.fromiter((o[0] for o in offsets), dtype=np.int64, count=len(offsets))
        lead = (
            len(section.text)
            - len(section.text.lstrip())
            + self.text_offsets.get(re.split(r"[#/]", section.section_id, maxsplit=1)[0], 0)
        )
        n_chunk = len(section.text.strip())
        for j, (pair, (answer_start, _)) in enumerate(zip(section.pairs, targets, strict=False)):
            spans = [c0 - lead for c0, _ in self.evidence.get(pair.pair_id, ()) if 0 <= c0 - lead < n_chunk]
            if spans:
                first = int(np.searchsorted(starts, min(spans), side="right")) - 1
                out[j] = answer_start - (chunk_start + max(first, 0))
        return out

    def _anchor_tokens(self, section: Section, chunk_start: int, offsets) -> dict[int, int]:
        """Section token of each anchored chunk offset (whole chunks only: a piece "@k" holds part of the text)."""
        wanted = self.anchors.get(section.chunk_id)
        if not wanted or offsets is None or not len(offsets) or "@" in section.section_id:
            return {}
        starts = np.fromiter((o[0] for o in offsets), dtype=np.int64, count=len(offsets))
        lead = len(section.text) - len(section.text.lstrip())
        n_chunk = len(section.text.strip())
        out = {}
        for c in wanted:
            if 0 <= c - lead < n_chunk:
                out[int(c)] = chunk_start + max(0, int(np.searchsorted(starts, c - lead, side="right")) - 1)
        return out

    def _verify(self, batch: list[RenderedSection]) -> None:
        """The piecewise text must equal the template's own render; ids should equal its tokenization."""
        for r in batch:
            self._verify_render(r)
        whole = self.tok.encode_batch([r.text for r in batch])
        for r, ids in zip(batch, whole, strict=True):
            r.seam_mismatch = len(ids) != r.length or not np.array_equal(np.asarray(ids, dtype=np.int32), r.ids)

    def _verify_render(self, r: RenderedSection) -> None:
        s = r.section
        messages = [{"role": "user", "content": _first_user_turn(s, self.config.question_separator)}]
        if s.pairs:
            for i, p in enumerate(s.pairs):
                if i:
                    messages.append({"role": "user", "content": p.question.strip()})
                messages.append({"role": "assistant", "content": p.answer.strip()})
        full = self.tok.apply_chat_template(messages, add_generation_prompt=False)
        if full != self.bos_text + r.text:
            at = next((i for i, (a, b) in enumerate(zip(full, self.bos_text + r.text, strict=False)) if a != b), None)
            raise ChatTemplateError(
                f"chat template of {self.tok.name!r} renders section {s.section_id!r} differently from its "
                f"skeleton (first difference at char {at}); the template transforms message contents"
            )

    def with_pairs(self, section: Section, start: int, stop: int, new_id: str) -> Section:
        """A derived section: the same chunk with pairs[start:stop] (for splits and carried remainders)."""
        return replace(section, section_id=new_id, pairs=tuple(section.pairs[start:stop]))


def _first_user_turn(section: Section, separator: str) -> str:
    """The chunk text and the first question (just the question for a pairs-only conversation)."""
    first = section.text.strip()
    if not section.pairs:
        return first
    question = section.pairs[0].question.strip()
    return first + separator + question if first else question


def _spans(pairs: list[tuple[int, int]]) -> np.ndarray:
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


_TEXT_CUT_KINDS: dict[str, tuple[tuple[int, re.Pattern[str]], ...]] = {
    "pair_or_text": (
        (CUT_PARAGRAPH, _PARAGRAPH_END_RE),
        (CUT_LINE, _LINE_END_RE),
        (CUT_SENTENCE, _SENTENCE_END_RE),
        (CUT_WHITESPACE, _WHITESPACE_RE),
        (CUT_TOKEN, None),
    ),  # fmt: skip
    "pair_or_paragraph": ((CUT_PARAGRAPH, _PARAGRAPH_END_RE),),
    "pair": (),
}


def _aligned_cuts(chars: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(token, char) of the char offsets where a token starts exactly and the previous one ends at or before."""
    t = np.searchsorted(starts, chars)
    in_range = t < len(starts)
    t, chars = t[in_range], chars[in_range]
    aligned = (starts[t] == chars) & ((t == 0) | (ends[np.maximum(t - 1, 0)] <= chars))
    return t[aligned], chars[aligned]


def _text_cuts(
    text: str,
    offsets: Sequence[tuple[int, int]],
    limit: int | None,
    kinds: Sequence[tuple[int, re.Pattern[str] | None]],
    spacing: int,
    word_ids: Sequence[int | None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token offsets, char offsets and kinds of the cut points in `text[:limit]` that fall on token boundaries.

    Paragraph ends are all kept; finer kinds (line, sentence, whitespace, token) only where they are at
    least `spacing` tokens from every cut of a coarser or equal kind already kept (the planner needs one
    within the pad tolerance of any gap, not all of them). A kind without a pattern is the token kind:
    the starts of pre-tokens (`word_ids` changes), where re-tokenizing the prefix gives the same ids.
    """
    empty = np.zeros(0, np.int64)
    if not offsets or not kinds:
        return empty, empty, empty.astype(np.int8)
    offs = np.asarray(offsets, dtype=np.int64)
    starts, ends = offs[:, 0], offs[:, 1]
    end = limit or len(text)
    kept_t: np.ndarray = empty
    out_t, out_c, out_k = [], [], []
    for kind, pattern in kinds:
        if pattern is None:
            chars = _pre_token_starts(starts, word_ids, end)
        else:
            chars = np.fromiter((m.end() for m in pattern.finditer(text, 0, end)), dtype=np.int64)
        chars = chars[chars < len(text)]
        if not chars.size:
            continue
        t, c = _aligned_cuts(chars, starts, ends)
        if kind != CUT_PARAGRAPH and t.size:
            t, c = _thin(t, c, kept_t, spacing)
        out_t.append(t)
        out_c.append(c)
        out_k.append(np.full(len(t), kind, np.int8))
        kept_t = np.sort(np.concatenate([kept_t, t]))
    if not out_t:
        return empty, empty, empty.astype(np.int8)
    return np.concatenate(out_t), np.concatenate(out_c), np.concatenate(out_k)


def _pre_token_starts(starts: np.ndarray, word_ids: Sequence[int | None] | None, end: int) -> np.ndarray:
    """Char offsets (before `end`) where a pre-token of the encoding starts (empty without word ids)."""
    if word_ids is None or len(word_ids) < 2:
        return np.zeros(0, np.int64)
    words = np.asarray([-1 if w is None else w for w in word_ids], dtype=np.int64)
    first = np.flatnonzero(words[1:] != words[:-1]) + 1
    chars = starts[first]
    return chars[chars < end]


def _thin(t: np.ndarray, c: np.ndarray, kept: np.ndarray, spacing: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep the cuts at least `spacing` tokens from each kept cut and from each other (greedy, left to right)."""
    if spacing <= 1:
        fresh = ~np.isin(t, kept)
        return t[fresh], c[fresh]
    if len(kept):  # most candidates of a fine kind sit near a kept cut: drop them before the loop
        i = np.searchsorted(kept, t)
        before = np.where(i > 0, t - kept[np.maximum(i - 1, 0)], spacing)
        after = np.where(i < len(kept), kept[np.minimum(i, len(kept) - 1)] - t, spacing)
        far = (before >= spacing) & (after >= spacing)
        t, c = t[far], c[far]
    keep_t, keep_c = [], []
    last = -spacing
    j = 0
    for ti, ci in zip(t.tolist(), c.tolist(), strict=True):
        while j < len(kept) and kept[j] <= ti:
            last = max(last, int(kept[j]))
            j += 1
        nxt = int(kept[j]) if j < len(kept) else None
        if ti - last >= spacing and (nxt is None or nxt - ti >= spacing):
            keep_t.append(ti)
            keep_c.append(ci)
            last = ti
    return np.asarray(keep_t, np.int64), np.asarray(keep_c, np.int64)
