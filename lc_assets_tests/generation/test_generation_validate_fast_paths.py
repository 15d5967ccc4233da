"""The judge's fast paths give what the plain code gives: accent stripping by a precomputed class of combining
marks, stem probes found with str.find on the lowered text instead of a case-insensitive regex, and the cached
word functions."""

from __future__ import annotations

import random
import re
import sys
import unicodedata

from lc_assets.lib.generation.masking import Paragraph, _paragraph_id, windows_of
from lc_assets.lib.generation.validate import (
    _NON_ASCII,
    _QUOTE_CHARS,
    QuestionIndex,
    ShownTextMemo,
    ValidationConfig,
    _fold,
    _lowered_for_ascii_probes,
    _normalize_with_map,
    _occurrences,
    _stems_in_texts,
    completion_candidates,
    content_word_set,
    content_words,
    numbers,
    quotable_pieces,
    rouge_l,
    word_around,
    words,
)

#: every code point but the surrogates (which a str cannot encode to text)
ALL_CHARS = "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF)

TRICKY = [
    "naïve café — “quoted” résumé’s",
    "İstanbul ıi ſtraße Kelvin K Å Σίσυφος ΣΑΣ",
    "ｆｕｌｌｗｉｄｔｈ １２３ and ①②",
    "e\u0301 a\u0308\u0301 \U0001d165\U0001d166 x\U000101fd",  # combining marks in and above the BMP
    "CamelCase snake_case __dunder__ x86_64 Ünïcödé_name",
    "",
    "plain ASCII text, nothing else.",
]


def _fold_reference(text: str) -> str:
    """_fold as it was written first: a Python call per non-ASCII run."""
    if text.isascii():
        return text.lower()

    def drop(match: re.Match[str]) -> str:
        return "".join(ch for ch in match.group() if not unicodedata.combining(ch))

    return _NON_ASCII.sub(drop, unicodedata.normalize("NFKD", text).casefold())


def _stems_reference(stems: set[str], texts: list[str]) -> set[str]:
    """_stems_in_texts with the case-insensitive regex for every probe."""
    found = set()
    for stem in stems:
        probe = re.compile(re.escape(stem[:-1] if len(stem) > 2 else stem), re.IGNORECASE)
        for text in texts:
            for m in probe.finditer(text):
                if stem in content_word_set(word_around(text, m.start(), m.end()), identifier_parts=True):
                    found.add(stem)
    return found


def test_fold_strips_the_same_combining_marks_on_every_code_point():
    for text in TRICKY:
        assert _fold(text) == _fold_reference(text)
    assert _fold(ALL_CHARS) == _fold_reference(ALL_CHARS)
    for start in range(0, len(ALL_CHARS), 4099):  # pieces: with and without characters above the BMP
        piece = ALL_CHARS[start : start + 4099]
        assert _fold(piece) == _fold_reference(piece), hex(ord(piece[0]))


def test_fold_on_random_mixed_texts():
    rnd = random.Random(7)
    pools = [(0x20, 0x250), (0x300, 0x370), (0x1D165, 0x1D16F), (0x20, 0x30000)]
    for _ in range(5000):
        chars = []
        for _ in range(rnd.randrange(1, 24)):
            lo, hi = rnd.choice(pools)
            c = rnd.randrange(lo, hi)
            chars.append(chr(c) if not 0xD800 <= c <= 0xDFFF else "x")
        text = "".join(chars)
        assert _fold(text) == _fold_reference(text)


def test_ascii_literal_found_in_the_lowered_text_where_the_ignorecase_regex_finds_it():
    # every ASCII character against every code point with a case mapping (one without is matched only by itself)
    specials = "\u0130\u0131\u017f"
    cased = "".join(ch for ch in ALL_CHARS if (ch.isascii() or ch.lower() != ch or ch.upper() != ch))
    text = "".join(ch for ch in cased if ch not in specials)
    low = _lowered_for_ascii_probes(text)
    assert low is not None and len(low) == len(text)
    for p in map(chr, range(128)):
        regex = [m.span() for m in re.compile(re.escape(p), re.IGNORECASE).finditer(text)]
        assert list(_occurrences(low, p.lower())) == regex, repr(p)


def test_texts_with_the_regex_specials_take_the_regex_path():
    for special in ("\u0130", "\u0131", "\u017f"):
        assert _lowered_for_ascii_probes(f"plain {special} text") is None
    assert _lowered_for_ascii_probes("İ") is None and _lowered_for_ascii_probes("Kelvin K") == "kelvin k"


def test_occurrences_do_not_overlap_like_finditer():
    assert list(_occurrences("aaaa", "aa")) == [(0, 2), (2, 4)]
    assert list(_occurrences("abcabc", "bc")) == [(1, 3), (4, 6)]
    assert list(_occurrences("abc", "x")) == []


def test_stems_in_texts_equals_the_regex_search():
    texts = [
        "Creating a Replication SLOT with pg_create_physical_replication_slot() creates it.",
        "DISTINCT İstanbul ıstanbul ſtatus Status; the STATUSES of Kelvin K.",
        "naïve Café: CAFÉS résumé — “quoted” configuring Configured configures",
        "fooBar baz_quux X86_64 1,000 items",
    ]
    words_of_texts = {w for t in texts for w in content_words(t, identifier_parts=True)}
    stems = words_of_texts | {"istanbul", "status", "kelvin", "caf", "quot", "configur", "absent", "1000", "k"}
    for subset in (set(texts[:1]), set(texts[1:2]), set(texts)):
        chosen = [t for t in texts if t in subset]
        assert _stems_in_texts(stems, chosen) == _stems_reference(stems, chosen)


def test_cached_word_functions_hand_out_fresh_lists():
    first = words("The Same text")
    first.append("mutated")
    assert words("The Same text") == ["the", "same", "text"]
    cw = content_words("creates replication_slot", identifier_parts=True)
    cw.clear()
    assert content_words("creates replication_slot", identifier_parts=True) == [
        "creat",
        "replication_slot",
        "replication",
        "slot",
    ]


NON_ASCII_PARAGRAPHS = [
    "The café’s “naïve” résumé parser handles Ünïcödé_names and créeCamelCase identifiers — see below.",
    "Il y a ｆｕｌｌｗｉｄｔｈ digits: １２３ items, 1,000 rows and 9.3.2 versions; ΣΑΣ and straße.",
    "if x ≥ 2 && width > other.width { return Résultat::Ok; } // compares widths",
    "Plain ASCII sentence about configuring replication slots, 4,096 of them.",
    "İstanbul’s ıi ſtatus: the STATUSES of every Kelvin K reading were logged.",
]


def test_completion_candidates_on_non_ascii_pieces_are_those_holding_a_wanted_word():
    config = ValidationConfig()
    cut = (config.max_quote_chars, config.min_quote_words, config.min_quote_chars)
    paragraphs, pos = [], 0
    for i, text in enumerate(NON_ASCII_PARAGRAPHS):
        paragraphs.append(Paragraph(i, _paragraph_id(i, text), pos, pos + len(text), text, 0))
        pos += len(text) + 2
    windows = windows_of(paragraphs)
    shown = " ".join(NON_ASCII_PARAGRAPHS)
    every = sorted(set(content_words(shown, identifier_parts=True)) | numbers(shown))
    # a paragraph is read when its folded text holds a probe: "１２３" alone (folded "123") reads none, but a piece
    # holding it is found in a paragraph read for another word ("fullwidth")
    wanted_sets = [{w} for w in every if _fold(w) == w]
    wanted_sets += [{"１２３", "fullwidth"}, {"1000"}, {"greater"}, {"cafe", "straße"}, {"absent"}]
    memo = ShownTextMemo()
    for wanted in wanted_sets:
        expected = [
            (win_i, para.char_start - window.char_start + a, para.char_start - window.char_start + b, t, words)
            for win_i, window in enumerate(windows)
            for para in window.paragraphs
            for a, b, t in quotable_pieces(para.text, *cut)
            for words in [frozenset(content_words(t, identifier_parts=True)) | numbers(t)]
            if not wanted.isdisjoint(words)
        ]
        assert list(completion_candidates(windows, wanted, config, memo)) == expected, wanted
        assert list(completion_candidates(windows, wanted, config, memo)) == expected, wanted


def test_question_index_finds_the_nearest_question_of_a_long_section_as_a_scan_does():
    rnd = random.Random(3)
    vocab = "what how why does the a slot replication function return value when is of in to create".split()
    questions = [" ".join(rnd.choices(vocab, k=rnd.randrange(3, 12))) + "?" for _ in range(300)]
    index = QuestionIndex()
    for n, question in enumerate(questions):
        for threshold in (0.5, 0.7, 0.9):
            best, match = 0.0, None
            for earlier in questions[:n]:  # the plain scan: every earlier question's ROUGE-L
                score = rouge_l(question, earlier)
                if score >= threshold and score > best:
                    best, match = score, earlier
            assert index.nearest(question, threshold) == (best, match)
        index.add(question)


def _normalize_reference(text: str) -> tuple[str, list[int]]:
    """_normalize_with_map as it was written first: every character on its own."""
    out: list[str] = []
    pos: list[int] = []
    prev_space = True
    for i, ch in enumerate(text):
        if ch.isspace():
            if not prev_space:
                out.append(" ")
                pos.append(i)
            prev_space = True
            continue
        prev_space = False
        for c in unicodedata.normalize("NFKC", ch).translate(_QUOTE_CHARS).casefold():
            out.append(c)
            pos.append(i)
    if out and out[-1] == " ":
        out.pop()
        pos.pop()
    return "".join(out), pos


def test_normalize_with_map_token_by_token_equals_char_by_char():
    for text in [*TRICKY, " lead and trail \u00a0", "ends in a spacing diaeresis \u00a8", "\u00a8 \n", "\u3000\u2474x"]:
        assert _normalize_with_map(text) == _normalize_reference(text), repr(text)
    # every code point, each at the end of a text and before whitespace, ASCII words around it
    for start in range(0, len(ALL_CHARS), 2003):
        chars = ALL_CHARS[start : start + 2003]
        for text in (" w ".join(chars), "y\t".join(chars) + " "):
            assert _normalize_with_map(text) == _normalize_reference(text), hex(ord(chars[0]))
    rnd = random.Random(5)
    pool = [" ", "\n", "\u00a0", "\u3000", "a", "B", "’", "“", "—", "é", "ﬁ", "İ", "ß", "Σ", "\u00a8", "\u02d8", "1"]
    for _ in range(20000):
        text = "".join(rnd.choices(pool, k=rnd.randrange(0, 12)))
        assert _normalize_with_map(text) == _normalize_reference(text), repr(text)
