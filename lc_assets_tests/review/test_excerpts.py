"""The shown excerpt rebuilt from chunk spans, with quotes marked: windows, skip markers, overlaps, trimming."""

from __future__ import annotations

from lc_assets.lib.excerpts import Quote, build_excerpt, locate_quote, shown_ranges, trim_excerpt
from lc_assets.lib.review import render_excerpt

CHUNK = "Alpha one.\n\nBeta two here.\n\nGamma three.\n\nDelta four.\n\nEpsilon five."


def _span(word: str, text: str = CHUNK) -> tuple[int, int]:
    start = text.index(word)
    return start, text.index(".", start) + 1


def test_windows_join_over_whitespace_and_skip_markers_stand_for_the_rest():
    spans = [_span("Beta"), _span("Gamma"), _span("Epsilon")]
    assert shown_ranges(CHUNK, spans) == [(spans[0][0], spans[1][1]), spans[2]]
    ex = build_excerpt(CHUNK, spans, skip_marker="<skip>")
    kinds = [s.kind for s in ex.segments]
    assert kinds == ["skip", "text", "skip", "text"]  # Alpha before, Delta between; nothing after Epsilon
    assert ex.text == "<skip>Beta two here.\n\nGamma three.<skip>Epsilon five."


def test_quotes_split_segments_and_overlaps_carry_both_numbers():
    beta = _span("Beta")
    q1 = Quote(1, "Beta two", beta[0], beta[0] + 8)
    q2 = Quote(2, "two here.", beta[0] + 5, beta[1])
    ex = build_excerpt(CHUNK, [beta], [q1, q2])
    marked = [(s.text, s.quotes) for s in ex.segments if s.kind == "text"]
    assert marked == [("Beta ", (1,)), ("two", (1, 2)), (" here.", (2,))]
    assert ex.highlighted == {1: "Beta two", 2: "two here."}
    assert render_excerpt(ex) == "\n[...]\n[[1 Beta ]][[1,2 two]][[2  here.]]\n[...]\n"


def test_quotes_outside_the_shown_text_and_unlocated_quotes_are_reported_not_marked():
    beta, delta = _span("Beta"), _span("Delta")
    ex = build_excerpt(CHUNK, [beta], [Quote(1, "Delta four.", *delta), Quote(2, "nowhere")])
    assert ex.outside == (1,)  # located in the chunk but never shown
    assert all(not s.quotes for s in ex.segments)


def test_locate_quote_ignores_case_and_whitespace_and_stays_inside_the_shown_ranges():
    text = "Some  Words\nhere. Later some words here again."
    ranges = [(0, 17)]
    assert locate_quote(text, ranges, "some words HERE") == (0, 16)
    later = text.index("some words here")
    assert locate_quote(text, [(17, len(text))], "some words here") == (later, later + 15)
    assert locate_quote(text, ranges, "again") is None
    assert locate_quote(text, ranges, "   ") is None


def test_trim_keeps_context_around_quotes_and_whole_excerpts_without_quotes():
    words = " ".join(f"w{i}" for i in range(400))
    start = words.index("w200")
    ex = build_excerpt(words, [(0, len(words))], [Quote(1, "w200", start, start + 4)])
    trimmed = trim_excerpt(ex, 50)
    kinds = [s.kind for s in trimmed.segments]
    assert kinds == ["elided", "text", "text", "text", "elided"]
    assert trimmed.highlighted == {1: "w200"}
    assert len(trimmed.text) < 200 and "chars …]" in trimmed.text
    assert trimmed.segments[1].text.startswith("w")  # cut at a word boundary
    plain = build_excerpt(words, [(0, len(words))])
    assert trim_excerpt(plain, 50) == plain
    assert trim_excerpt(ex, 0) == ex
