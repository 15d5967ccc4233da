"""The grounding checks on real outputs of the Python-docs run (Qwen2.5-Coder-1.5B), each with the windows its prompt
showed: every bad pair they refuse, and a good neighbour each keeps.

The fixture (``data/pydocs_attempts.jsonl``, built by ``benchmarks/data/build_pydocs_labels.py``) holds the run's 33
accepted pairs and the one refusal today's checks accept, each labelled from reading it next to the shown text.
"""

from __future__ import annotations

import json

import pytest

from lc_assets.lib.generation.grounding_checks import (
    copied_output_line,
    count_without_number,
    dotted_names,
    number_noun_mismatch,
    ordinal_reference,
    points_at_shown_code,
    unplaced_dotted_names,
    unsupported_negation,
    unsupported_superlative,
)
from lc_assets.lib.generation.masking import Paragraph, windows_of
from lc_assets.lib.generation.validate import EvidenceSpan, validate_output
from lc_assets_tests.generation.labelled_attempts import RUN_CONFIG, judge_attempt, load_attempts

ROWS = load_attempts("pydocs")
RUST = load_attempts("rust_book")
OS, ST, LC = "57a0578c1bcf8c16fc489e11739f2d56", "6b1b5378c83d18abbfd041a0935a2bcf", "e901bc95f6e3cacec6338a260005f421"


def judge(prompt_id: str):
    return judge_attempt(ROWS.get(prompt_id) or RUST[prompt_id])


def span(text: str, origin: str = "model") -> EvidenceSpan:
    return EvidenceSpan(0, text, text, 0, len(text), 0, 100.0, origin)


def test_the_fixture_labels_every_accepted_pair_of_the_run():
    labels = [r["label"] for r in ROWS.values()]
    assert sum(r["stored_code"] is None for r in ROWS.values()) == 33
    assert {lab: labels.count(lab) for lab in set(labels)} == {"good": 12, "weak": 11, "bad": 10, "wrong": 1}


def test_no_good_pair_of_the_run_is_refused_and_nine_of_ten_bad_ones_are():
    verdicts = {pid: judge(pid) for pid in ROWS}
    kept = {pid for pid, v in verdicts.items() if v.ok}
    assert {pid for pid, r in ROWS.items() if r["label"] in ("good", "wrong")} <= kept
    # one weak pair goes: "Why would the first approach be unwieldy?" (not standalone)
    assert {pid for pid, r in ROWS.items() if r["label"] == "weak"} - kept == {f"{LC}:13"}
    # left: #29, an invented purpose of a parent logger built from true sentences about getLogger (a wrong relation)
    assert {pid for pid, r in ROWS.items() if r["label"] == "bad"} & kept == {f"{LC}:45"}


@pytest.mark.parametrize(
    ("prompt_id", "name"),
    [
        (f"{OS}:13", "os.remove"),  # the quoted 3.8 change is os.readlink's; os.remove's heading follows the quote
        (f"{ST}:17", "str.format"),  # "format a tuple ... by using the `str.format()` method": the text is about %
    ],
)
def test_a_dotted_name_not_named_as_code_near_the_evidence_is_refused(prompt_id, name):
    verdict = judge(prompt_id)
    assert verdict.reason == "subject_not_in_evidence", verdict.failure
    assert name in verdict.detail


def test_dotted_names_placed_as_code_are_kept():
    for pid in (f"{OS}:14", f"{ST}:13", f"{ST}:16", f"{ST}:9"):  # fpathconf/fstat, reversed(), str.count, expandtabs
        assert judge(pid).ok, (pid, judge(pid).failure)
    assert dotted_names("Why does the bytearray.expandtabs() method differ, e.g. in chowntest.py or reversed()?") == {
        "bytearray.expandtabs",
        "reversed",
    }
    # the last part alone, as an English word, does not place a name; as code it does
    assert unplaced_dotted_names("What does os.remove() do?", "", "remove the file path.") == ["os.remove"]
    assert unplaced_dotted_names("What does os.remove() do?", "", "os.remove(path, *, dir_fd=none)¶") == []
    assert unplaced_dotted_names("What does x.remove do?", "", "... list.remove(x) ...") == []


@pytest.mark.parametrize(
    ("prompt_id", "added"),
    [
        (f"{OS}:21", "On Unix, waitstatus_to_exitcode()"),  # a UTF-8 mode question answered with close()'s exit status
        (f"{LC}:38", "LEVELS = [logging.DEBUG"),  # "DEBUG, WARNING and ERROR go to both": DEBUG goes to the file only
    ],
)
def test_evidence_completed_from_text_about_something_else_is_refused(prompt_id, added):
    verdict = judge(prompt_id)
    assert verdict.reason == "off_topic_evidence", verdict.failure
    assert added in verdict.detail


def test_completed_evidence_under_a_definition_of_the_question_subject_is_kept():
    # math.floor(x) / "the greatest Integral <= x": the second shares "greatest" with the question, the first is its
    # neighbour; fpathconf/fstat: "Get the status of the file descriptor fd." under the os.fstat(fd) heading quoted
    for pid in (f"{ST}:32", f"{OS}:14"):
        verdict = judge(pid)
        assert verdict.ok, verdict.failure
        assert any(s.origin == "completed" for s in verdict.spans)
    # the Rust book's can_hold: the completed `self.width > other.width && ...` sits in `fn can_hold`'s code block
    verdict = judge("287c7e6b7564422d8d53387626f0bfc2:32")
    assert verdict.ok, verdict.failure


def test_a_number_counting_another_thing_than_in_the_evidence_is_refused():
    verdict = judge(f"{LC}:47")  # "sends eleven messages": the text says "eleven emails" (102 messages)
    assert verdict.reason == "number_mismatch", verdict.failure
    assert verdict.detail == "'eleven messages': the evidence has 'eleven emails'"
    evidence = [span("The first ten emails will each have ten log messages.")]
    assert number_noun_mismatch("How many?", "Each email has ten messages.", evidence) is None  # "ten log messages"
    assert number_noun_mismatch("How many messages does each email have?", "Ten.", evidence) is None
    assert number_noun_mismatch("How many lines does each email have?", "Ten.", evidence) is not None
    # a number standing alone in the evidence contradicts no noun (the Rust book's "1 sign-in count", weak, kept)
    assert number_noun_mismatch("", "The user has 1 sign-in count.", [span("sign_in_count gets a value of 1.")]) is None


def test_an_answer_that_is_a_quoted_output_line_is_refused_and_a_quoted_sentence_is_not():
    verdict = judge(f"{LC}:30")  # "What process is responsible for handling GET requests from app2?" -> a log line
    assert verdict.reason == "copied_line", verdict.failure
    assert judge(f"{ST}:9").ok  # #10: the answer is the quoted note, a sentence (weak, kept)
    line = "Thread-2 (process_request) app2 __main__  jim    192.168.2.20 GET  Request processing started"
    assert copied_output_line(line, [span(line)]) is not None
    assert copied_output_line("FreeBSD and macOS", [span("including FreeBSD and macOS, setting environ")]) is None


def test_a_superlative_the_evidence_does_not_say_is_refused():
    verdict = judge(f"{LC}:64")  # "the most common format string used in the Python logging library"
    assert verdict.reason == "unsupported_answer", verdict.failure
    assert "'most common' is not in the evidence" in verdict.detail
    evidence = [span("Rust's char type is the language's most primitive alphabetic type.")]
    assert unsupported_superlative("What is the most primitive alphabetic type?", "char", evidence) is None


@pytest.mark.parametrize(
    ("prompt_id", "pointer"),
    [
        (f"{LC}:60", "in the code"),  # "What is the logging format used in the code?" (a reworded copy of #21)
        (f"{LC}:19", "provided runnable script"),  # "the rotator in the Django documentation ... provided script"
    ],
)
def test_a_pair_pointing_at_the_shown_code_is_not_standalone(prompt_id, pointer):
    verdict = judge(prompt_id)
    assert verdict.reason == "not_standalone", verdict.failure
    assert pointer in verdict.detail


def test_the_code_as_a_subject_and_the_text_s_own_above_script_are_kept():
    assert judge(f"{LC}:46").ok  # "Why does the code use QThread instead of the threading module?" (good)
    assert judge(f"{LC}:25").ok  # "... adapting the above script ..." is the text's own wording (good)
    assert points_at_shown_code("the source code of the module") is None
    assert points_at_shown_code("What does the code block of the listing show?") is None


def test_a_question_naming_its_subject_by_its_place_in_the_text_is_not_standalone():
    verdict = judge(f"{LC}:13")  # "Why would the first approach be unwieldy?" (weak)
    assert verdict.reason == "not_standalone", verdict.failure
    assert "the first approach" in verdict.detail
    assert ordinal_reference("What is the first argument of os.open()?") is None
    assert ordinal_reference("Which approach does the second example of the logging cookbook take?") is None
    # the demo run of 2026-12-03 (Extending and Embedding Python), accepted then
    demo = "What does the name of the type used in the previous chapter typically appear in?"
    assert ordinal_reference(demo) == "the previous chapter"
    assert ordinal_reference("What does the following section of the libpq manual describe?") is None
    assert ordinal_reference("What is the last page size PostgreSQL allows?") is None  # an adjective, not a place


def _two_windows(first: str, second: str):
    return tuple(
        w
        for i, text in enumerate((first, second))
        for w in windows_of([Paragraph(2 * i, "", 5000 * i, 5000 * i + len(text), text, 0)])
    )


def test_an_answer_supported_only_by_a_quote_dropped_as_decoration_is_refused():
    # a demo pair of the judge benchmark (labelled bad: system() takes one argument): "two" came from an unrelated
    # quote, which the stored evidence drops because it shares < 2 words with the pair
    system = (
        "Otherwise the string value of the argument has been\ncopied to the local variable :c:data:`command`.  "
        "The next statement is a call to the Unix function :c:func:`system`, passing it\n"
        "the string we just got from :c:func:`PyArg_ParseTuple`::\n\n   sts = system(command);"
    )
    modules = "Suppose you are building two dynamic-load modules, B and C, which should share\nanother block of code A."
    raw = json.dumps(
        {
            "evidence": [system[system.index("The next") : system.index("::") + 2], modules],
            "question": "How many arguments does :c:func:`system` take?",
            "answer": "Two arguments",
        }
    )
    verdict = validate_output(raw, _two_windows(system, modules), config=RUN_CONFIG, source_language="en")
    assert verdict.reason == "unsupported_answer", verdict.failure
    assert "share < 2 words with the pair" in verdict.detail
    # labelled good: the second quote is decoration too, but the first one supports the answer on its own
    tau = "T, the twentieth letter of the English alphabet, was by the Greeks\nabsurdly called _tau_."
    corkscrew = "In the alphabet whence ours comes it had the\nform of the rude corkscrew of the period."
    raw = json.dumps(
        {
            "evidence": [tau, corkscrew],
            "question": "What did the Greeks call the letter T?",
            "answer": "The Greeks called the letter T _tau_.",
        }
    )
    verdict = validate_output(raw, _two_windows(tau, corkscrew), config=RUN_CONFIG, source_language="en")
    assert verdict.ok, verdict.failure
    assert [s.source_text for s in verdict.spans] == [tau]


def _one_window(*paragraphs: str):
    spans, pos = [], 0
    for i, text in enumerate(paragraphs):
        spans.append(Paragraph(i, "", pos, pos + len(text), text, 0))
        pos += len(text) + 2
    return windows_of(spans)


def test_an_option_line_before_the_added_sentence_puts_it_on_the_question_s_subject():
    # the demo run's good `-s` pair: Qwen quoted hash randomisation; the validator added the option's description,
    # which shares no word with the question, but the paragraph before it is the option's name
    raw = json.dumps(
        {
            "evidence": ["The option is no longer ignored."],
            "question": "What is the purpose of the `-s` option in the `python` command?",
            "answer": "The `-s` option does not add the user site-packages directory to the sys.path.",
        }
    )
    description = "Don't add the :data:`user site-packages directory <site.USER_SITE>` to\n   :data:`sys.path`."
    hashing = "Hash randomization is intended to provide protection against a denial-of-service."
    for option, kept in ((".. cmdoption:: -s", True), (".. cmdoption:: -E", False)):
        windows = _one_window(hashing, "The option is no longer ignored.", option, description)
        verdict = validate_output(
            raw, windows, config=RUN_CONFIG, source_language="en", title="Command line and environment of python"
        )
        assert verdict.ok is kept, verdict.failure
        if kept:
            completed = [s.source_text for s in verdict.spans if s.origin == "completed"]
            assert completed and all(t in description for t in completed)
        else:
            assert verdict.reason == "off_topic_evidence"
    assert dotted_names("Which options does the init.d scripts support?") == set()  # a directory, not code


# -- the held-out run: Node.js stream docs and the Jargon File, read after the checks above were written -----------

NODE_ALL = load_attempts("node_jargon")
JARGON = "7748ee2a626cd94bf3789752d23983cb"
# the run with two earlier questions listed (the held-out run), and the same chunks with none listed
HELD_OUT = ("251180c5f4abf44e5d35f46ad8caf72d", JARGON)
NODE = {pid: r for pid, r in NODE_ALL.items() if pid.split(":")[0] in HELD_OUT}
NO_EARLIER = {pid: r for pid, r in NODE_ALL.items() if pid not in NODE}


def test_the_held_out_fixture_labels_every_accepted_pair_of_its_runs():
    for rows, accepted, counts in (
        (NODE, 23, {"good": 6, "weak": 11, "bad": 6, "right": 1}),
        (NO_EARLIER, 16, {"good": 6, "weak": 7, "bad": 3}),
    ):
        labels = [r["label"] for r in rows.values()]
        assert sum(r["stored_code"] is None for r in rows.values()) == accepted
        assert {lab: labels.count(lab) for lab in set(labels)} == counts


def test_a_question_about_one_passage_answered_from_another_is_refused():
    # "# leader" asked of one Jargon File sentence, answered with the *barf* entry shown in another window
    verdict = judge_attempt(NODE[f"{JARGON}:25"])
    assert verdict.reason == "off_topic_evidence", verdict.failure
    assert "Valspeak" in verdict.detail and "# leader" in verdict.detail


def test_an_answer_copying_a_piece_cut_at_i_e_is_refused():
    verdict = judge_attempt(NO_EARLIER["74d170e6209948358dafdc054ac99f2c:5"])
    assert verdict.reason == "degenerate" and verdict.detail.endswith("asynchronously (i.e.'")
    kept = {pid for pid, row in NO_EARLIER.items() if judge_attempt(row).ok}
    assert {pid for pid, r in NO_EARLIER.items() if r["label"] in ("good", "weak")} <= kept


def test_no_good_or_weak_pair_of_the_held_out_run_is_refused():
    verdicts = {pid: judge_attempt(row) for pid, row in NODE.items()}
    kept = {pid for pid, v in verdicts.items() if v.ok}
    assert {pid for pid, r in NODE.items() if r["label"] in ("good", "weak")} <= kept
    assert not {pid for pid, r in NODE.items() if r["label"] == "right"} & kept
    # four bad pairs pass every check: invented framing, garbled questions, a wrong answer type (docs/qa_quality.md)
    assert len({pid for pid, r in NODE.items() if r["label"] == "bad"} & kept) == 4


def test_a_denial_of_something_the_evidence_never_mentions_is_refused():
    verdict = judge_attempt(NODE["251180c5f4abf44e5d35f46ad8caf72d:24"])
    assert verdict.reason == "unsupported_answer", verdict.failure
    assert "'no restrictions on the' denies 'restriction'" in verdict.detail
    # a denial the evidence states, or of the question's own subject, stands
    quote = [span("Don't add the user site-packages directory to sys.path.")]
    assert unsupported_negation("What does -s do?", "It does not add the user site-packages directory.", quote) is None
    assert (
        unsupported_negation("Can a lock be copied?", "No, a lock cannot be copied.", [span("Locks are kept.")]) is None
    )
    assert unsupported_negation("Is it fast?", "There are no limits on it.", quote) == (
        "'no limits on it' denies 'limit', which the evidence does not mention"
    )


def test_how_many_answered_without_a_count_is_refused():
    # the demo run of 2026-12-03 (the suggested kind was "numeric"): every word of the answer is in the evidence,
    # but the text says which pages count as free space, not how many
    raw = json.dumps(
        {
            "evidence": [
                "Count all-zero pages as free space, and ignore pages that are invalid according to a check of the "
                "page's special-space size."
            ],
            "question": "How many pages have been counted as free space in the PostgreSQL index?",
            "answer": "All-zero pages are counted as free space in the PostgreSQL index.",
        }
    )
    windows = _one_window(
        "Make contrib/pgstattuple more robust about empty or invalid index pages (Nitin Motiani)",
        "Count all-zero pages as free space, and ignore pages that are invalid according to a check of the page's "
        "special-space size.",
    )
    verdict = validate_output(raw, windows, config=RUN_CONFIG, source_language="en", title="PostgreSQL release notes")
    assert verdict.reason == "number_mismatch", verdict.failure
    assert "asks how many, the answer gives no count" in verdict.detail
    # a count in words or digits, or a quantity word, answers it; other questions are not concerned
    assert count_without_number("How many arguments does it take?", "It takes two arguments.") is None
    assert count_without_number("How many arguments does it take?", "3") is None
    assert count_without_number("How many workers may run?", "Any number of workers.") is None
    assert count_without_number("How many workers may run?", "None, once the pool is closed.") is None
    assert count_without_number("Which pages count as free space?", "All-zero pages.") is None
