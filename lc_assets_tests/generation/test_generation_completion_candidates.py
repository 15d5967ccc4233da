"""Evidence completion's candidate pieces on real shown text (the Rust book run's windows): the memoised search
(probes looked for over the joined paragraphs, pieces stemmed only where a probe occurs) gives exactly the shown
pieces that hold a wanted word, in document order."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lc_assets.lib.generation.masking import MaskWindow, Paragraph, _paragraph_id, windows_of
from lc_assets.lib.generation.validate import (
    _BREAK,
    ShownTextMemo,
    ValidationConfig,
    answer_claims,
    completion_candidates,
    content_words,
    numbers,
    quotable_pieces,
)

FIXTURE = Path(__file__).parent / "data" / "rust_book_attempts.jsonl"
CONFIG = ValidationConfig(max_question_chars=200, max_answer_chars=300, max_quote_chars=200)
CUT = (CONFIG.max_quote_chars, CONFIG.min_quote_words, CONFIG.min_quote_chars)


def _shown(row: dict) -> tuple[MaskWindow, ...]:
    return tuple(
        w
        for shown in row["windows"]
        for w in windows_of([Paragraph(i, _paragraph_id(i, text), s, e, text, 0) for i, s, e, text in shown])
    )


def _reference(windows: tuple[MaskWindow, ...], wanted: set[str]) -> list[tuple[int, int, int, str, frozenset[str]]]:
    """Every shown piece, stemmed, kept when it holds a wanted word: what the candidates must be."""
    out = []
    for win_i, window in enumerate(windows):
        for para in window.paragraphs:
            offset = para.char_start - window.char_start
            for a, b, t in quotable_pieces(para.text, *CUT):
                words = frozenset(content_words(t, identifier_parts=True)) | numbers(t)
                if not wanted.isdisjoint(words):
                    out.append((win_i, offset + a, offset + b, t, words))
    return out


def _wanted_sets(row: dict, windows: tuple[MaskWindow, ...]) -> list[set[str]]:
    """The content words of each answer claim, and words of the shown text itself (short stems, numbers with
    thousands commas, the operator words of code): what a claim's misses can be."""
    answer = json.loads(row["raw_text"]).get("answer", "")
    sets = [set(content_words(claim)) | numbers(claim) for claim in answer_claims(answer)]
    text = " ".join(w.text for w in windows)
    shown_words = sorted(set(content_words(text, identifier_parts=True)) | numbers(text))
    sets += [set(shown_words[i::97][:6]) for i in range(0, 97, 24)]
    sets += [{"greater", "less"}, {"ok"}, {"1000"}, {"9999999"}]
    return [s for s in sets if s]


ROWS = [r for r in map(json.loads, FIXTURE.read_text().splitlines()) if r.get("windows")]


@pytest.mark.parametrize("row", ROWS[:: max(1, len(ROWS) // 20)], ids=lambda r: r["prompt_id"])
def test_candidates_are_the_pieces_holding_a_wanted_word(row: dict) -> None:
    windows = _shown(row)
    memo = ShownTextMemo()
    found = 0
    for wanted in _wanted_sets(row, windows):
        expected = _reference(windows, wanted)
        # twice through one memo: the second call reads what the first cut and stemmed
        assert list(completion_candidates(windows, wanted, CONFIG, memo)) == expected
        assert list(completion_candidates(windows, wanted, CONFIG, memo)) == expected
        found += len(expected)
    assert found > 0


def test_piece_breaks_are_those_of_the_look_behind_first_pattern() -> None:
    """``_BREAK`` checks the character before a sentence end after its first mark (faster): same matches as the
    pattern written with the look-behind first, on the shown text and on the cases it was written for."""
    reference = re.compile(r"(?<![\s.!?:;])[.!?:;]+(\s+)|\n[ \t\r\f\v]*\n\s*|\n")
    texts = [w.text for row in ROWS for w in _shown(row)]
    texts += ["a. b", ".. x", "x..  y", "\n\n a", ".\n", "a.\n\nb", " . x", "x:\ty", "end!", "?!? b", ". B", ".a. b"]
    for text in texts:
        got = [(m.span(), m.span(1)) for m in _BREAK.finditer(text)]
        assert got == [(m.span(), m.span(1)) for m in reference.finditer(text)]
