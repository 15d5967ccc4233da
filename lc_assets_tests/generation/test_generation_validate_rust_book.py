"""Validation on real outputs of the Rust book run (Qwen2.5-Coder-1.5B), each with the windows its prompt showed.

The fixture (``data/rust_book_attempts.jsonl``, built by ``benchmarks/data/build_rust_book_labels.py``) holds every
attempt of the run with a label from reading it next to the shown text: refusals ``right`` / ``wrong``, accepted
pairs ``good`` / ``weak`` / ``bad``. The examples with stored windows are validated here without the lineage file.
"""

from __future__ import annotations

import pytest

from lc_assets.lib.generation.validate import claim_words, content_words, quotable_pieces, validate_output
from lc_assets_tests.generation.labelled_attempts import RUN_CONFIG, judge_attempt, load_attempts

ROWS = load_attempts("rust_book")
A, B, C = "287c7e6b7564422d8d53387626f0bfc2", "3ad04af0ab4367d9619ae051bbbb0214", "dcc3223573f31685a8321f3a88208a5c"


def judge(prompt_id: str):
    return judge_attempt(ROWS[prompt_id])


def test_the_fixture_labels_every_attempt_of_the_run():
    labels = [r["label"] for r in ROWS.values()]
    assert len(ROWS) == 79  # 22 pairs + 57 refused attempts
    assert sum(r["stored_code"] is None for r in ROWS.values()) == 22
    assert {lab: labels.count(lab) for lab in set(labels)} == {"right": 54, "wrong": 3, "good": 10, "weak": 6, "bad": 6}


def test_a_claim_two_neighbouring_shown_sentences_support_together_is_accepted():
    # "... to avoid having `common` appear in the test output by creating a separate file for common code that can be
    # shared with the other integration test files": each shown sentence holds 4 of the 9 missing words
    verdict = judge(f"{B}:14")
    assert verdict.ok, verdict.failure
    completed = [s.source_text for s in verdict.spans if s.origin == "completed"]
    assert any(t.startswith("To avoid having common appear in the test output") for t in completed)
    assert "We just wanted to share some code with the other integration test files." in completed


def test_a_comparison_operator_in_code_supports_greater():
    verdict = judge(f"{A}:32")  # can_hold: "width must be greater than `rect2`'s width and ... height"
    assert verdict.ok, verdict.failure
    assert [s.source_text for s in verdict.spans if s.origin == "completed"] == [
        "self.width > other.width && self.height > other.height"
    ]
    assert "greater" in content_words("self.width > other.width", identifier_parts=True)
    # not arrows, match arms or generics
    assert not {"greater", "less"} & set(content_words("fn f() -> Vec<T> { x => y }", identifier_parts=True))


def test_a_shared_digit_does_not_make_a_sentence_complete_a_claim():
    # accepted in the run: "three threads, Worker 0, Worker 2, and Worker 3" completed with `let (x, y) = (1, 2, 3);`
    verdict = judge(f"{C}:0")
    assert verdict.reason == "unsupported_answer"
    assert all("let (x, y)" not in s.source_text for s in verdict.spans)


def test_numbers_count_for_completion_only_in_a_claim_that_is_mostly_a_number():
    assert claim_words("The thread pool created three threads, Worker 0, Worker 2, and Worker 3.") == {
        "thread", "pool", "creat", "thre", "worker"
    }  # fmt: skip
    assert claim_words("Section 9.3.2.") >= {"9.3.2", "9", "3", "2"}


@pytest.mark.parametrize(
    ("prompt_id", "missing"),
    [
        (f"{A}:7", "fil"),  # 'Two use statements in the `src/lib.rs` file': one listing's content, not standalone
        (f"{B}:9", "simultaneous"),  # 'One person can watch the TV simultaneously': wrong, others come in
        (f"{B}:0", "specific"),  # a confused question: all four parameters are generic
        (f"{A}:13", "24"),  # '24 bytes' for "Hola": the text says 4
    ],
)
def test_one_missing_word_refusals_read_right_stay_refused(prompt_id, missing):
    """The refusals for one generic missing word were each right on reading, for another reason the word stood in
    for: no generic-word allowance was added."""
    verdict = judge(prompt_id)
    assert ROWS[prompt_id]["label"] == "right"
    assert verdict.reason == "unsupported_answer"
    assert missing in verdict.detail


def test_focus_and_focused_stem_alike_and_an_invented_contrast_stays_refused():
    assert content_words("keep you focused") == content_words("keep the focus") == ["keep", "focus"]
    assert content_words("statuses") == content_words("status") == ["status"]
    verdict = judge(f"{C}:19")  # "..., whereas the original APIs remain unchanged": invented
    assert verdict.reason == "unsupported_answer"
    assert "missing ['aim', 'specific']" in verdict.detail  # "focused" in the quote supports "focus" now


def test_a_lone_dot_or_range_operator_does_not_end_a_quotable_sentence():
    text = (
        "With Rust’s .. range syntax, if you want to start at index 0, you can drop the value before the two "
        "periods. In POSIX mode this affects . and bracket expressions in the pattern. It waits... Then it ends."
    )
    assert [t for _, _, t in quotable_pieces(text)] == [
        "With Rust’s .. range syntax, if you want to start at index 0, you can drop the value before the two periods.",
        "In POSIX mode this affects . and bracket expressions in the pattern.",
        "Then it ends.",  # an ellipsis after a word still ends a sentence ("It waits..." is too short to quote)
    ]


def test_an_answer_that_stops_on_this_is_unfinished():
    # accepted in the run, one character short of the answer's bound, so too_long did not see it
    verdict = validate_output(ROWS[f"{C}:21"]["raw_text"], (), config=RUN_CONFIG, source_language="en")
    assert verdict.reason == "degenerate"
    assert "We’ve chosen this" in verdict.detail


def test_i_e_and_e_g_do_not_end_a_quotable_sentence():
    # Node.js's stream docs: the piece before "(i.e." was offered on its own and copied as an answer (2026-12-03)
    text = (
        "The callback function must be called synchronously inside of writable._write() or asynchronously (i.e. "
        "different tick) to signal either that the write completed. Strip with tools, e.g. dh_strip, before. "
        "Use a list of things, i.e., the keys."
    )
    assert [t for _, _, t in quotable_pieces(text)] == [
        "The callback function must be called synchronously inside of writable._write() or asynchronously (i.e. "
        "different tick) to signal either that the write completed.",
        "Strip with tools, e.g. dh_strip, before.",
        "Use a list of things, i.e., the keys.",
    ]
