import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from lc_assets.lib import chunking
from lc_assets.lib.chunking import ChunkingConfig, chunk_documents
from lc_assets.lib.generation.masking import paragraph_spans, spans_digest
from lc_assets.lib.tokenizer import TextTokenizer
from lc_assets_tests.foundation.conftest import make_text


def _check_exact(text, result, tokenizer, cfg):
    spans = result.spans
    assert "".join(text[s.char_start : s.char_end] for s in spans) == text
    counts = tokenizer.count_batch([text[s.char_start : s.char_end] for s in spans])
    assert [s.n_tokens for s in spans] == counts
    assert sum(s.token_end - s.token_start for s in spans) == result.n_tokens
    for a, b in zip(spans, spans[1:], strict=False):
        assert a.char_end == b.char_start and a.token_end == b.token_start
    # every paragraph's count, taken from the document's encoding, is its own count (as generation would take it)
    for s in spans:
        chunk = text[s.char_start : s.char_end]
        paragraphs = paragraph_spans(chunk)
        assert list(s.paragraph_tokens) == tokenizer.count_batch([chunk[a:b] for a, b in paragraphs])
        assert s.paragraph_spans_digest == spans_digest(paragraphs)


@pytest.mark.parametrize("seed", range(6))
def test_chunks_reconstruct_exactly_within_bounds(seed, tokenizer):
    cfg = ChunkingConfig(min_tokens=300, max_tokens=900)
    text = make_text(seed, paragraphs=120)
    (result,) = chunk_documents([text], tokenizer, cfg)
    assert result.filtered_reason is None
    assert len(result.spans) >= 2
    _check_exact(text, result, tokenizer, cfg)
    assert all(cfg.min_tokens <= s.n_tokens <= cfg.max_tokens for s in result.spans)
    # paragraph boundaries exist everywhere in this text, so every cut is at one
    assert {s.cut for s in result.spans[:-1]} == {"paragraph"}


def test_short_documents_are_filtered_and_counted(tokenizer):
    cfg = ChunkingConfig(min_tokens=5000, max_tokens=10000)
    short, long_ = make_text(1, 10), make_text(2, 400)
    res_short, res_long = chunk_documents([short, long_], tokenizer, cfg)
    assert res_short.filtered_reason == "below_min_tokens" and res_short.spans == ()
    assert res_short.n_tokens == tokenizer.count(short)
    assert res_long.filtered_reason is None


def test_giant_paragraph_falls_back_to_sentences(tokenizer):
    # one paragraph, no newlines: cuts must come at sentence (or whitespace) boundaries
    text = make_text(3, 1, words_per_paragraph=(3000, 3000)).replace("\n", " ").strip() + "\n"
    cfg = ChunkingConfig(min_tokens=400, max_tokens=1000)
    (result,) = chunk_documents([text], tokenizer, cfg)
    _check_exact(text, result, tokenizer, cfg)
    assert {s.cut for s in result.spans[:-1]} <= {"sentence", "whitespace"}
    assert "sentence" in {s.cut for s in result.spans}


def test_unicode_and_code_text(tokenizer):
    text = ("Ünïcödé — 漢字 テスト 🙂 emoji.\n\n    indented = [1, 2, 3]\n\n" * 200) + "end\n"
    cfg = ChunkingConfig(min_tokens=200, max_tokens=600)
    (result,) = chunk_documents([text], tokenizer, cfg)
    _check_exact(text, result, tokenizer, cfg)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 10_000),
    paragraphs=st.integers(1, 120),
    min_tokens=st.integers(20, 200),
    spread=st.integers(0, 400),
    sep=st.sampled_from(["\n\n", "\n", "\n\n\n", "\n  \n", " ", "", "\r\n"]),
    piece_chars=st.sampled_from([None, 3000]),  # 3000: long-document pieces and their seams on small texts
)
def test_property_exact_reconstruction_and_counts(tokenizer, seed, paragraphs, min_tokens, spread, sep, piece_chars):
    text = make_text(seed, paragraphs).replace("\n\n", sep)
    cfg = ChunkingConfig(min_tokens=min_tokens, max_tokens=min_tokens + spread)
    default = chunking.SEGMENT_CHARS
    chunking.SEGMENT_CHARS = piece_chars or default
    try:
        (result,) = chunk_documents([text], tokenizer, cfg)
    finally:
        chunking.SEGMENT_CHARS = default
    if result.filtered_reason:
        assert result.n_tokens < cfg.min_tokens
        return
    _check_exact(text, result, tokenizer, cfg)
    assert all(s.n_tokens >= 1 for s in result.spans)
    if spread >= min_tokens:  # bounds can always be met when max >= 2 * min
        assert all(s.n_tokens <= cfg.max_tokens for s in result.spans)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"min_tokens": 0}, "min_tokens must be >= 1"),
        ({"min_tokens": 100, "max_tokens": 50}, "max_tokens \\(50\\) must be >= min_tokens \\(100\\)"),
        ({"min_tokens": 10, "max_tokens": 20, "target_tokens": 30}, "target_tokens \\(30\\) must lie within"),
        ({"batch_documents": 0}, "batch_documents must be >= 1"),
    ],
)
def test_bad_config_is_rejected_with_the_values(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        ChunkingConfig(**kwargs)


def test_config_hash_ignores_batch_size_only():
    a = ChunkingConfig(min_tokens=10, max_tokens=20)
    assert a.config_hash() == ChunkingConfig(min_tokens=10, max_tokens=20, batch_documents=7).config_hash()
    assert a.config_hash() != ChunkingConfig(min_tokens=10, max_tokens=21).config_hash()


class CountingTokenizer(TextTokenizer):
    """The real tokenizer, counting the characters it is asked to encode."""

    encoded_chars: int = 0

    def encodings(self, texts):
        self.encoded_chars += sum(map(len, texts))
        return super().encodings(texts)

    def encode_batch(self, texts, add_special_tokens=False):
        self.encoded_chars += sum(map(len, texts))
        return super().encode_batch(texts, add_special_tokens)

    def count_batch(self, texts):
        self.encoded_chars += sum(map(len, texts))
        return super().count_batch(texts)


def _counting(tokenizer) -> CountingTokenizer:
    return CountingTokenizer(tokenizer.name, tokenizer.backend)


def _prose_one_line(seed: int, words: int) -> str:
    return make_text(seed, 1, words_per_paragraph=(words, words)).replace("\n", " ").strip()


@pytest.fixture
def small_pieces(monkeypatch):
    """Long-document pieces of ~3k characters, so small texts exercise the seams."""
    monkeypatch.setattr(chunking, "SEGMENT_CHARS", 3000)


@pytest.mark.parametrize(
    "name, text",
    [
        ("single line", _prose_one_line(7, 12000) + "\n"),
        ("giant paragraph", make_text(8, 200).replace("\n\n", "\n")),
        (
            "minified json",
            json.dumps([{"k": i, "v": ["alpha", "beta", f"x{i}"]} for i in range(4000)], separators=(",", ":")),
        ),
        ("crlf and tabs", make_text(9, 150).replace("\n", "\r\n").replace("    ", "\t")),
    ],
)
def test_pathological_inputs_are_exact_and_linear(name, text, tokenizer, small_pieces):
    counting = _counting(tokenizer)
    cfg = ChunkingConfig(min_tokens=400, max_tokens=1200)
    (result,) = chunk_documents([text], counting, cfg)
    assert result.pieces > 3, name
    _check_exact(text, result, tokenizer, cfg)
    assert all(cfg.min_tokens <= s.n_tokens <= cfg.max_tokens for s in result.spans)
    # one encoding of the document, plus small windows per cut and seam: never a re-encode per cut
    assert counting.encoded_chars < 1.6 * len(text), counting.encoded_chars / len(text)
    expected = {"single line": {"sentence"}, "giant paragraph": {"line"}, "minified json": {"token"}}
    if name in expected:
        assert {s.cut for s in result.spans[:-1]} == expected[name]
    assert all(s.recount_reason is None for s in result.spans)


def test_a_run_without_boundaries_is_recounted_with_its_reason(tokenizer, small_pieces):
    # one 60k-letter "word": no pre-token boundary to cut at, nor one near enough to anchor a check on
    text = "Intro sentence here. " + "".join(random.Random(3).choice("acgt") for _ in range(60000)) + " end.\n"
    cfg = ChunkingConfig(min_tokens=3000, max_tokens=9000)
    (result,) = chunk_documents([text], tokenizer, cfg)
    _check_exact(text, result, tokenizer, cfg)
    assert "token" in {s.cut for s in result.spans}
    reasons = {s.recount_reason for s in result.spans}
    assert reasons & {"cut_unverified", "seam_unverified"}
    assert reasons <= {None, *chunking.RECOUNT_REASONS}


def test_lines_ending_in_a_period_need_no_recount(tokenizer):
    # Llama-3 merges ".\n" into one token: cuts after the newline keep it whole and verify
    text = "".join(f"Verse {i} of the book, and the words went on.\n" for i in range(3000))
    assert tokenizer.encode(".\n") == [627]
    cfg = ChunkingConfig(min_tokens=2000, max_tokens=6000)
    (result,) = chunk_documents([text], tokenizer, cfg)
    _check_exact(text, result, tokenizer, cfg)
    assert {s.cut for s in result.spans[:-1]} == {"line"}
    assert [s.recount_reason for s in result.spans] == [None] * len(result.spans)


def test_progress_is_reported_per_encoded_batch(tokenizer, small_pieces):
    text = _prose_one_line(11, 20000)
    calls: list[tuple[int, int]] = []
    (result,) = chunk_documents(
        [text], tokenizer, ChunkingConfig(min_tokens=500, max_tokens=1500), lambda *a: calls.append(a)
    )
    assert len(calls) >= 3
    assert sum(n for n, _ in calls) == result.n_tokens and sum(d for _, d in calls) == 1
