"""Every rejection reason with the real bad outputs seen on this project, grounding spans, kinds, duplicates."""

from __future__ import annotations

import json

import pytest

from lc_assets.lib.generation.masking import split_paragraphs, windows_of
from lc_assets.lib.generation.prompts import INSTRUCTION_TEXTS
from lc_assets.lib.generation.validate import (
    QUESTION_KINDS,
    REJECTION_REASONS,
    QuestionIndex,
    ValidationConfig,
    classify_question_kind,
    detect_language,
    quotable_pieces,
    rouge_l,
    validate_output,
)
from lc_assets.lib.sections import QAPair

PROSE = [
    "The lighthouse at Carrow Point was built in 1851 by the engineer Margaret Hale.",
    "Its lamp burned whale oil until 1903, when it was converted to kerosene.",
    "The keeper, Thomas Reed, kept the light for forty-one years and logged every storm.",
    "In 1932 a storm destroyed the northern pier, and the village rebuilt it with granite from Elm Quarry.",
    "The lighthouse was automated in 1978 and is now a museum open from May to September.",
    "Visitors can climb 112 steps to the lantern room, which holds the original Fresnel lens.",
]
CODE = [
    "def _check_closed(self):\n    # raise if the transport was closed, so writes fail early\n"
    "    if self._closed:\n        raise RuntimeError('transport is closed')",
    "async def drain(self):\n    # wait until the write buffer is below the low-water mark\n"
    "    await self._protocol._drain_helper()",
]
FILLER = [f"Filler paragraph {i} about unrelated harbour matters and tides." for i in range(20)]
CHUNK = "\n\n".join(PROSE + FILLER + CODE)


def _count(texts):
    return [max(1, len(t) // 4) for t in texts]


PARAS = split_paragraphs(CHUNK, _count, 512)
PROSE_WINDOW = windows_of(PARAS[:6])[0]
CODE_WINDOW = windows_of(PARAS[-2:])[0]
WINDOWS = (PROSE_WINDOW, CODE_WINDOW)


def out(question, answer, evidence=("The lighthouse at Carrow Point was built in 1851",), **extra):
    return json.dumps({"evidence": list(evidence), "question": question, "answer": answer, **extra})


def check(text, **kw):
    return validate_output(text, WINDOWS, **kw)


def test_a_grounded_pair_is_accepted_with_exact_chunk_spans():
    res = check(
        out(
            "Who built the lighthouse at Carrow Point, and in which year?",
            "The engineer Margaret Hale built it in 1851.",
            evidence=["The lighthouse at Carrow Point was built in 1851 by the engineer Margaret Hale."],
        )
    )
    assert res.ok, res.failure
    (span,) = res.spans
    assert CHUNK[span.char_start : span.char_end] == span.source_text == PROSE[0]
    assert span.score == 100.0 and span.window_index == 0 and res.support == 1.0
    row = span.row("s:3", "s", "c", "run-1", "cfg")
    # the columns of lineage's qa_evidence (packing reads pair_id, quote_index, char_start, char_end)
    assert set(row) == {"pair_id", "section_id", "chunk_id", "quote_index", "char_start", "char_end", "quote"} | {
        "origin",
        "score",
        "window_index",
        "run_id",
        "config_hash",
    }
    assert row["origin"] == "model" and row["score"] == 100.0
    assert res.to_pair("s:3", 3).answer == "The engineer Margaret Hale built it in 1851."


def test_quote_over_a_paragraph_break_and_altered_punctuation_maps_to_the_chunk():
    # the model joined two paragraphs and dropped a comma: fuzzy match, exact span of the source
    quote = "converted to kerosene. The keeper Thomas Reed kept the light for forty-one years"
    res = check(
        out("How long did Thomas Reed keep the Carrow Point light?", "He kept it for forty-one years.", [quote])
    )
    assert res.ok, res.failure
    (span,) = res.spans
    assert 90 <= span.score < 100
    assert "kerosene.\n\nThe keeper, Thomas Reed" in CHUNK[span.char_start : span.char_end]
    labelled = check(  # the prompt's own "Excerpt 1:" label copied into the quote is not held against it
        out("Who kept the Carrow Point light?", "Thomas Reed.", ["Excerpt 1: The keeper, Thomas Reed, kept the light"])
    )
    assert labelled.ok, labelled.failure
    identifier = check(  # a long identifier is a quote; a short word is not
        out("Which asyncio method raises when the transport is closed?", "_check_closed.", ["def _check_closed(self)"])
    )
    assert identifier.ok, identifier.failure
    elided = check(
        out(
            "What did the village use to rebuild the northern pier?",
            "Granite from Elm Quarry.",
            ["In 1932 a storm destroyed the northern pier ... rebuilt it with granite from Elm Quarry"],
        )
    )
    assert elided.ok, elided.failure
    assert CHUNK[elided.spans[0].char_start : elided.spans[0].char_end] == PROSE[3].rstrip(".")


# the bad outputs read on this project (issue 10, FIELD_NOTES), as the model wrote them
@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"question": "What is', "invalid_json"),
        (json.dumps({"question": "Who built it?"}), "missing_field"),
        (out("Q: test1.php", "test1.php"), "qa_artefact"),
        (out("Q: Who built the lighthouse at Carrow Point?", "A: Margaret Hale"), "qa_artefact"),
        (out("Dennis, the previous example was", ","), "empty_answer"),
        (out("Who kept the light at Carrow Point?", "  "), "empty_answer"),
        (out("What does the lamp burn?", "Not mentioned in the text."), "empty_answer"),
        (out("Premise1", "The [insert detail] of the [insert detail]"), "placeholder"),
        (out("Premise1", "Margaret Hale built the lighthouse at Carrow Point in 1851."), "not_a_question"),
        (out("Minere ombre la fiella dei demoni", "Margaret Hale built it in 1851."), "not_a_question"),
        (
            # Qwen on Newton's Opticks (unseen-corpus run 2026-12-02): four questions, one half-wrong answer, accepted
            out(
                "What happened to the light of the stars when the Moon eclipsed them? Did it return to sight all at "
                "once? If not, how long did it take for the light to return? What was the reason for this?",
                "The lighthouse at Carrow Point was built in 1851.",
            ),
            "not_a_question",
        ),
        (out("Minere ombre la fiella dei demoni?", "la fiella dei demoni è nel faro"), "wrong_language"),
        (out("What did the keeper log?", "It is supposed to be able to access a database. " * 6), "degenerate"),
        (out("Who built the lighthouse?", "Who built the lighthouse"), "degenerate"),
        (
            # Qwen on Vim's options.txt (unseen-corpus run 2026-12-02): the list it announces never comes
            out(
                "What are the visual character corrections that are enabled when 'arabicshape' is turned on?",
                "Shaping, in essence, gets enabled; the term is a broad one which encompasses:",
            ),
            "degenerate",
        ),
        (
            # Qwen on Node.js's stream docs (2026-12-03): a shown piece cut at "i.e.", copied as the answer
            out(
                "What is the purpose of the callback function of the keeper's log?",
                "The callback must be called synchronously or asynchronously (i.e.",
            ),
            "degenerate",
        ),
        (out("Who kept the light?", "Thomas Reed (the keeper of Carrow Point"), "degenerate"),
        (
            out("What is the purpose of the `drain` method in the given code snippet?", "It waits.", [CODE[1][:40]]),
            "not_standalone",
        ),
        (
            # Qwen on debian-policy: the question leans on the prompt's excerpt labels
            out(
                "What is the difference between the keeper mentioned in Excerpt 1 and the pier in Excerpt 2?",
                "Thomas Reed kept the light; the pier was rebuilt with granite.",
                ["The keeper, Thomas Reed, kept the light"],
            ),
            "not_standalone",
        ),
        (
            # SmolLM2 on debian-policy
            out(
                "What is the version of that package that is the first stable update of that package?",
                "Thomas Reed kept the light.",
                ["The keeper, Thomas Reed, kept the light"],
            ),
            "not_standalone",
        ),
        (
            # Qwen on postgresql-libpq-ecpg (demo run 2026-12-02): accepted before; which host variable?
            out(
                "What are the two different types mentioned for the host variable?",
                "The host variable is of type int and the datum in the database is of a different type.",
                ["The keeper, Thomas Reed, kept the light"],
            ),
            "not_standalone",
        ),
        (
            out(
                "Who kept the light at Carrow Point?",
                "The excerpt states that Thomas Reed kept the light.",
                ["The keeper, Thomas Reed, kept the light"],
            ),
            "not_standalone",
        ),
        (
            # Qwen on a Debian manual (demo run 2026-12-02): accepted before; which text?
            out(
                "What does the text say about who kept the light at Carrow Point?",
                "Thomas Reed kept the light.",
                ["The keeper, Thomas Reed, kept the light"],
            ),
            "not_standalone",
        ),
        (
            out(
                "Who kept the light at Carrow Point?",
                "The text states that Thomas Reed kept the light.",
                ["The keeper, Thomas Reed, kept the light"],
            ),
            "not_standalone",
        ),
        (
            out("Who built the lighthouse at Carrow Point?", "Margaret Hale.", ["Carrow Point was built by Hale"]),
            "evidence_not_found",
        ),
        (out("Who built the lighthouse at Carrow Point?", "Margaret Hale.", ["in 1851"]), "evidence_not_found"),
        (out("Who built the lighthouse at Carrow Point?", "Margaret Hale.", []), "evidence_missing"),
        (
            # starts right, then adds an invented call relation (the Qwen failure in FIELD_NOTES)
            out(
                "What does the asyncio method `drain` wait for?",
                "It waits until the write buffer is below the low-water mark. "
                "It is called by the connect method of the Process class before every send.",
                ["# wait until the write buffer is below the low-water mark"],
            ),
            "unsupported_answer",
        ),
        (
            out(
                "In which year was the lighthouse at Carrow Point built?",
                "It was built in 1849.",
                ["The lighthouse at Carrow Point was built in 1851"],
            ),
            "unsupported_answer",
        ),
        (out("Who built the lighthouse at Carrow Point?", "x" * 700), "too_long"),
        (
            # exactly max_answer_chars (600): the grammar closed the string mid-word (Qwen on the Rust book)
            out(
                "Who built the lighthouse at Carrow Point?", ("Margaret Hale built the lighthouse in 1851. " * 14)[:600]
            ),
            "too_long",
        ),
    ],
)
def test_each_rejection_reason(text, reason):
    res = check(text)
    assert res.reason == reason, res.failure
    assert not res.ok and res.failure.startswith(f"{reason}: ")
    with pytest.raises(ValueError, match="never a pair"):
        res.to_pair("s:0", 0)


def test_every_reason_is_documented_and_tested():
    tested = {
        "invalid_json",
        "missing_field",
        "too_long",
        "qa_artefact",
        "empty_answer",
        "placeholder",
        "not_a_question",
        "degenerate",
        "echo",
        "duplicate_question",
        "not_standalone",
        "wrong_language",
        "evidence_missing",
        "evidence_not_found",
        "long_range_evidence",
        "evidence_off_focus",
        "unsupported_answer",
        "subject_not_in_evidence",
        # test_generation_grounding_checks.py, on real outputs of the Python-docs run
        "off_topic_evidence",
        "number_mismatch",
        "copied_line",
        # test_generation_attribution.py, on the demo run's Devil's Dictionary pair
        "unattributed_question",
    }
    assert set(REJECTION_REASONS) == tested


def test_a_quote_outside_the_focus_window_is_refused():
    """A backend that ignores the schema's evidence choices (free text) may quote another excerpt than the one
    the step asked about: refused, naming both. A quote from the focus window passes, and a sentence the
    validator adds from another window to support the answer is still allowed."""
    code_pair = out(
        "What does the asyncio method `drain` wait for?",
        "It waits until the write buffer is below the low-water mark.",
        ["# wait until the write buffer is below the low-water mark"],
    )
    refused = check(code_pair, focus_window=0)
    assert refused.reason == "evidence_off_focus"
    assert refused.failure == "evidence_off_focus: quote 0 is from excerpt 2, the step asked about excerpt 1"
    assert check(code_pair, focus_window=1).ok
    assert check(code_pair).ok  # no focus (the old behaviour): any shown window
    # a quote found only by the fuzzy match (the model altered its punctuation) keeps its own window's index
    fuzzy = check(
        out(
            "What does the asyncio method `drain` wait for?",
            "It waits until the write buffer is below the low-water mark.",
            ["# wait until the write buffer is below the low water mark!"],
        ),
        focus_window=1,
    )
    assert fuzzy.ok, fuzzy.failure
    assert [(s.window_index, s.score < 100) for s in fuzzy.spans] == [(1, True)]
    # a long-range step has no focus: one quote per window is its rule
    assert check(code_pair, focus_window=0, long_range=True).reason == "long_range_evidence"
    # completion may still add shown sentences of other windows (the model quoted window 0 only)
    completed = check(
        out(
            "When was the lighthouse at Carrow Point built, and what does the asyncio method `drain` wait for?",
            "It was built in 1851. `drain` waits until the write buffer is below the low-water mark.",
            ["The lighthouse at Carrow Point was built in 1851 by the engineer Margaret Hale."],
        ),
        focus_window=0,
    )
    assert completed.ok, completed.failure
    assert {s.window_index for s in completed.spans if s.origin == "completed"} == {1}


def test_a_line_shown_in_two_windows_is_the_focus_windows():
    """Code repeats lines: a quote the schema offered from the focus window that also occurs in an earlier window
    is located in the focus window (not refused as off-focus)."""
    line = "# wait until the write buffer is below the low-water mark"
    text = f"def flush(self):\n    {line}\n    pass\n\n" + "\n\n".join(FILLER[:3]) + "\n\n" + CODE[1]
    paras = split_paragraphs(text, _count, 512)
    first, last = windows_of(paras[:1])[0], windows_of(paras[-1:])[0]
    pair = out(
        "What does the asyncio method `drain` wait for?",
        "It waits until the write buffer is below the low-water mark.",
        [line],
    )
    res = validate_output(pair, (first, last), focus_window=1)
    assert res.ok, res.failure
    assert res.spans[0].window_index == 1 and res.spans[0].char_start >= last.char_start
    assert validate_output(pair, (first, last)).spans[0].window_index == 0  # without focus: the first window


EARLIER = (
    QAPair("s:0", 0, "What is the purpose of the `close` method?", "It closes the transport."),
    QAPair("s:1", 1, "Who kept the light at Carrow Point for forty-one years?", "Thomas Reed."),
)


def test_echoes_of_earlier_pairs_and_of_the_prompt():
    # a question that is an earlier answer, an answer that is an earlier question ("prefixed repeats")
    q_echo = out("Thomas Reed.", "Thomas Reed kept the light.")
    assert check(q_echo, earlier=EARLIER).reason in {"echo", "not_a_question"}
    a_echo = out(
        "Which keeper logged every storm at Carrow Point?", "Who kept the light at Carrow Point for forty-one years?"
    )
    assert check(a_echo, earlier=EARLIER).reason == "echo"
    prompt_echo = out(
        "What should a reader write about the lighthouse?",
        "A short, complete answer that states only what the quotes say.",
    )
    assert check(prompt_echo, instructions=INSTRUCTION_TEXTS).reason == "echo"


def test_near_duplicate_questions_by_rouge_l():
    # "What is the purpose of the `x` method ...?" 6 of 6 on asyncio: one template, different names
    dup = out(
        "What is the purpose of the `drain` method?",
        "It waits until the write buffer is below the low-water mark.",
        ["# wait until the write buffer is below the low-water mark"],
    )
    res = check(dup, earlier=EARLIER)
    assert res.reason == "duplicate_question" and "ROUGE-L 0.8" in res.detail
    fresh = check(dup, earlier=EARLIER[1:])
    assert fresh.ok, fresh.failure
    index = QuestionIndex(p.question for p in EARLIER)
    assert check(dup, question_index=index).reason == "duplicate_question"
    assert rouge_l("What is the default port?", "what is the DEFAULT port") == 1.0
    assert rouge_l("Who built it?", "Why did the pier fall?") < 0.3


def test_long_range_steps_need_evidence_from_both_windows():
    one = out(
        "Who built the lighthouse at Carrow Point?",
        "Margaret Hale.",
        ["The lighthouse at Carrow Point was built in 1851 by the engineer Margaret Hale."],
    )
    assert check(one, long_range=True).reason == "long_range_evidence"
    both = out(
        "What did the Carrow Point lighthouse burn until 1903, and what does asyncio `drain` wait for?",
        "Whale oil until 1903. drain waits until the write buffer is below the low-water mark.",
        ["Its lamp burned whale oil until 1903", "wait until the write buffer is below the low-water mark"],
    )
    res = check(both, long_range=True)
    assert res.ok, res.failure
    assert {s.window_index for s in res.spans} == {0, 1} and res.kind == "multi_hop"
    decoration = out(  # Qwen: a second quote from the far window that the pair never uses
        "Who built the lighthouse at Carrow Point?",
        "The engineer Margaret Hale built it in 1851.",
        ["The lighthouse at Carrow Point was built in 1851 by the engineer Margaret Hale.", CODE[1].splitlines()[1]],
    )
    res = check(decoration, long_range=True)
    assert res.reason == "long_range_evidence" and "not used" in res.detail


def test_numbers_must_come_from_the_evidence_or_its_arithmetic():
    res = check(
        out(
            "How many years after it was built was the Carrow Point lamp converted to kerosene?",
            "52 years.",
            ["built in 1851", "Its lamp burned whale oil until 1903, when it was converted to kerosene."],
        )
    )
    assert res.ok, res.failure
    assert res.kind == "numeric"


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("How many steps lead to the lantern room?", "numeric"),
        ("Why was the northern pier rebuilt?", "why"),
        ("What is the purpose of `_check_closed`?", "why"),
        ("How does `drain` wait for the buffer?", "how"),
        ("What is the difference between whale oil and kerosene lamps?", "compare"),
        ("What are the months when the museum is open?", "list"),
        ("Who built the lighthouse at Carrow Point?", "what"),
        ("Is the lighthouse automated?", "yes_no"),
    ],
)
def test_question_kinds(question, kind):
    assert classify_question_kind(question) == kind
    assert kind in QUESTION_KINDS


def test_language_detection_is_silent_when_unsure():
    assert detect_language("Who built the lighthouse and what does it burn?") == "en"
    assert detect_language("la fiella dei demoni è nel faro") == "it"
    assert detect_language("Wer hat den Leuchtturm gebaut und wie ist das Licht?") == "de"
    assert detect_language("drain()") is None
    assert detect_language("Как называется маяк?") == "cyrillic"


def test_config_thresholds_change_verdicts():
    text = out(
        "How long did Thomas Reed keep the Carrow Point light?",
        "He kept it for forty-one years.",
        ["converted to kerosene. The keeper Thomas Reed kept the light for forty-one years"],
    )
    assert check(text).ok
    strict = ValidationConfig(fuzzy_threshold=100.0)
    assert check(text, config=strict).reason == "evidence_not_found"
    assert ValidationConfig().config_hash() != strict.config_hash()


def test_identifier_parts_and_word_forms_support_prose_answers():
    chunk = "pg_create_physical_replication_slot ( slot_name name ) → record\n\nOther text about slots here."
    paras = split_paragraphs(chunk, _count, 512)
    text = out(
        "What does the PostgreSQL function pg_create_physical_replication_slot create?",
        "It creates a physical replication slot.",
        ["pg_create_physical_replication_slot ( slot_name name ) → record"],
    )
    res = validate_output(text, windows_of(paras))
    assert res.ok, res.failure
    invented = out(
        "What does the PostgreSQL function pg_create_physical_replication_slot create?",
        "It creates a logical decoding plugin for streaming backups.",
        ["pg_create_physical_replication_slot ( slot_name name ) → record"],
    )
    assert validate_output(invented, windows_of(paras)).reason == "unsupported_answer"


def test_evidence_is_completed_with_the_shown_sentence_that_supports_the_answer():
    # Qwen with enum quotes: it quotes one sentence and answers from its neighbour
    text = out(
        "What did the village of Carrow Point rebuild the northern pier with?",
        "The village rebuilt the northern pier with granite from Elm Quarry.",
        ["The keeper, Thomas Reed, kept the light for forty-one years and logged every storm."],
    )
    res = check(text)
    assert res.ok, res.failure
    # the model's unrelated quote is not the pair's evidence (used_spans); the added sentence is
    (added,) = res.spans
    assert added.origin == "completed" and added.quote_index == 0
    assert CHUNK[added.char_start : added.char_end] == PROSE[3]
    strict = check(text, config=ValidationConfig(max_completed_quotes=0))
    assert strict.reason == "unsupported_answer"


# the ECPG manual's Informix functions as the demo run (2026-12-02) showed them to Qwen
ECPG_FUNCTIONS = "\n\n".join(
    [
        "The format mask can be composed of the following format specifying characters:",
        "- (minus) - the minus sign appears if the number is a negative value.",
        "( - this replaces the minus sign in front of the negative number. The minus sign will not appear.",
        ") - this character replaces the minus and is printed behind the negative value.",
        "rupshift",
        "Convert a string to upper case.",
        "void rupshift(char *str);",
        "The function receives a pointer to the string and transforms every lower case character to upper case.",
    ]
)


def test_a_completing_sentence_must_be_about_the_claim_not_share_one_word():
    windows = windows_of(split_paragraphs(ECPG_FUNCTIONS, _count, 512))
    text = out(
        "Why is the function `rupshift` used to convert a string to upper case?",
        "The function `rupshift` is used to convert a string to upper case because it replaces each lower case "
        "character with an upper case character in the string.",
        [
            "The format mask can be composed of the following format specifying characters:",
            "Convert a string to upper case.",
        ],
    )
    res = validate_output(text, windows)
    added = [s.source_text for s in res.spans if s.origin == "completed"]
    # before: "( - this replaces the minus sign ..." was added for the one word "replaces"
    assert not any("minus" in t for t in added), added
    assert res.ok, res.failure
    assert added == [
        "The function receives a pointer to the string and transforms every lower case character to upper case."
    ]


def test_answers_are_judged_on_what_they_add_to_the_question():
    # Qwen on asyncio: a real quote, then an invented reason; scattered words of unrelated lines
    # ("supported for transport", "error code") must not add up to support
    code = (
        'if not fallback:\n    raise RuntimeError(\n        f"fallback is disabled and native sendfile is not "\n'
        '        f"supported for transport {transport!r}")\n\n'
        "if ssl is None:\n    raise RuntimeError('Python ssl module is not available')\n\n"
        "# EBADF, but let's not rely on the exact error code)."
    )
    windows = windows_of(split_paragraphs(code, _count, 512))
    invented = out(
        "Why is the Python ssl module not available?",
        "The Python ssl module is not available because it is not supported on the platform where the code is running.",
        ["raise RuntimeError('Python ssl module is not available')"],
    )
    assert validate_output(invented, windows).reason == "unsupported_answer"
    # an answer whose words are neither in the evidence nor given by a question grounded in the shown text
    restating = out(
        "What are the titles given to the ceremony of investing a sovereign with the outward signs?",
        "The ceremony of investing a sovereign with the outward signs is known as the keeper's light.",
        ["The keeper, Thomas Reed, kept the light for forty-one years"],
    )
    assert check(restating).reason == "unsupported_answer"
    echo_only = out("Who logged every storm at Carrow Point?", "Every storm at Carrow Point was logged.")
    assert check(echo_only).reason == "degenerate"


CAPSULES = (
    "Python provides a special mechanism to pass C-level information (pointers) from\n"
    "one extension module to another one: Capsules. A Capsule is a Python data type\n"
    "which stores a pointer (:c:expr:`void \\*`).  Capsules can only be created and\n"
    "accessed via their C API, but they can be passed around like any other Python\n"
    "object."
)


def test_each_claim_of_a_contrast_needs_its_own_support():
    # seen in the demo run (Qwen2.5-Coder, a "compare" step): the first half is the manual's, the contrast
    # with reference counting is invented; over the whole sentence 75% of the content words were supported
    windows = windows_of(split_paragraphs(CAPSULES, _count, 512))
    evidence = [
        "Python provides a special mechanism to pass C-level information (pointers) from\n"
        "one extension module to another one:"
    ]
    invented = validate_output(
        out(
            "How do Capsules differ from traditional reference counting?",
            "Capsules allow C-level information to be passed between extension modules, while traditional "
            "reference counting does not.",
            evidence,
        ),
        windows,
    )
    assert invented.reason == "unsupported_answer" and "reference counting" in invented.detail
    both_stated = validate_output(
        out(
            "How are Capsules created compared with how they are passed around?",
            "Capsules can only be created and accessed via their C API, while they can be passed around like "
            "any other Python object.",
            ["Capsules can only be created and\naccessed via their C API, but they can be passed around like any "
             "other Python\nobject."],
        ),
        windows,
    )  # fmt: skip
    assert both_stated.ok, both_stated.failure


def test_indented_wrapped_prose_is_one_quotable_piece_but_code_lines_are_not():
    docstring = (
        "    def get_params(self, failobj=None, header='content-type', unquote=True):\n"
        '        """Return the message\'s Content-Type parameters, as a list.\n\n'
        "        The elements of the returned list are 2-tuples of key/value pairs, as\n"
        "        split on the `=' sign.  The left hand side of the `=' is the key. The value is as\n"
        "        described in the get_param() method.\n"
        "        # a comment line that is long enough to look like prose text\n"
        "        return params\n"
    )
    pieces = [t for _, _, t in quotable_pieces(docstring)]
    # the sentence is whole (no "The value is as" fragment); the comment stays a line of its own
    assert "The value is as\n        described in the get_param() method." in pieces
    assert (
        "The elements of the returned list are 2-tuples of key/value pairs, as\n        split on the `=' sign."
        in pieces
    )
    assert "# a comment line that is long enough to look like prose text" in pieces


def test_a_sentence_quoted_twice_is_one_piece_of_evidence():
    # Qwen on postgresql-functions (demo run 2026-12-02) chose the same enum sentence twice
    quote = "The lighthouse at Carrow Point was built in 1851 by the engineer Margaret Hale."
    res = check(
        out("Who built the lighthouse at Carrow Point?", "The engineer Margaret Hale built it.", [quote, quote])
    )
    assert res.ok, res.failure
    assert [s.quote for s in res.spans] == [quote]


# PostgreSQL release notes as the demo run (2026-12-02) showed them to Qwen
RELEASE_NOTES = "\n\n".join(
    [
        "Harden selectivity estimators against being attached to operators that accept unexpected data types "
        "(Tom Lane) § § §",
        "contrib/intarray contained a selectivity estimation function that could be abused for arbitrary code "
        "execution, because it did not check that its input was of the expected data type. Third-party extensions "
        "should check for similar hazards and add defenses using the technique intarray now uses.",
        "The PostgreSQL Project thanks Daniel Firer, as part of zeroday.cloud, for reporting this problem. "
        "(CVE-2026-2004)",
        "Fix buffer overrun in contrib/pgcrypto's PGP decryption functions (Michael Paquier) §",
    ]
)


def test_quotes_the_pair_does_not_use_are_not_its_evidence():
    windows = windows_of(split_paragraphs(RELEASE_NOTES, _count, 512))
    text = out(
        "Why is it important to check for similar hazards in third-party extensions and add defenses using the "
        "technique intarray now uses?",
        "Third-party extensions should check for similar hazards and add defenses using the technique intarray now "
        "uses because it does not check that its input was of the expected data type, which could be abused for "
        "arbitrary code execution.",
        [
            "The PostgreSQL Project thanks Daniel Firer, as part of zeroday.cloud, for reporting this problem.",
            "Fix buffer overrun in contrib/pgcrypto's PGP decryption functions (Michael Paquier) §",
        ],
    )
    res = validate_output(text, windows)
    assert res.ok, res.failure
    # the model's two quotes (a credit line, another fix) were decoration: only the sentence that supports it stays
    assert [(s.quote_index, s.origin) for s in res.spans] == [(0, "completed")]
    assert res.spans[0].source_text.startswith("contrib/intarray contained a selectivity estimation function")
    # a used quote stays, and its index
    kept = check(out("Who built the lighthouse at Carrow Point?", "The engineer Margaret Hale built it in 1851."))
    assert [(s.quote_index, s.origin) for s in kept.spans][0] == (0, "model")


def test_the_documents_title_may_name_the_answers_subject():
    # Qwen on postgresql-functions (demo run 2026-12-02): refused for "PostgreSQL" alone, the prompt named the title
    bytea = "\n\n".join(
        [
            "For these functions, an argument or result of type text is expressed in the database's default encoding, "
            "while arguments or results of type bytea are in an encoding named by another argument.",
            "Extracts the substring of bytes starting at the start'th byte, and extending for count bytes if that is "
            "specified.",
            "convert ( bytes bytea, src_encoding name, dest_encoding name ) → bytea",
            "Converts a binary string representing text in encoding src_encoding to a binary string in encoding "
            "dest_encoding (see Section 23.3.4 for available conversions).",
        ]
    )
    windows = windows_of(split_paragraphs(bytea, _count, 512))
    text = out(
        "What function converts a binary string from one encoding to another?",
        "The function 'convert' in PostgreSQL is used to convert a binary string from one encoding to another.",
        [
            "Extracts the substring of bytes starting at the start'th byte, and extending for count bytes if that is "
            "specified.",
            "convert ( bytes bytea, src_encoding name, dest_encoding name ) → bytea",
        ],
    )
    assert validate_output(text, windows).reason == "unsupported_answer"
    res = validate_output(text, windows, title="PostgreSQL Functions and Operators")
    assert res.ok, res.failure
    # a title word supports naming the subject, never a claim: "MySQL" is still unsupported
    other = text.replace("in PostgreSQL", "in MySQL")
    assert validate_output(other, windows, title="PostgreSQL Functions and Operators").reason == "unsupported_answer"


# cpython's email/charset.py as the demo run (2026-12-02) showed it to Qwen (blank lines between methods)
CHARSET_PY = "\n\n".join(
    [
        "    def __repr__(self):\n        return self.input_charset.lower()",
        "    def __eq__(self, other):\n        return str(self) == str(other).lower()",
        '    def get_body_encoding(self):\n        """Return the content-transfer-encoding used for body encoding.',
        "        This is either the string `quoted-printable' or `base64' depending on\n        the encoding used.",
        '    def get_output_charset(self):\n        """Return the output character set.',
        "        This is self.output_charset if that is not None, otherwise it is\n        self.input_charset.",
        '    def header_encode(self, string):\n        """Header-encode a string by converting it first to bytes.',
        "        The type of encoding (base64 or quoted-printable) will be based on\n"
        "        this charset's `header_encoding`.",
    ]
)


def test_the_named_function_must_be_where_the_evidence_is():
    windows = windows_of(split_paragraphs(CHARSET_PY, _count, 512))
    quote = (
        "The type of encoding (base64 or quoted-printable) will be based on\n        this charset's `header_encoding`."
    )
    wrong = out(
        "What type of encoding is used for the header encoding in the `__repr__` function?",
        "The type of encoding used for the header encoding in the `__repr__` function is either the string "
        "'quoted-printable' or 'base64'.",
        [quote],
    )
    res = validate_output(wrong, windows)
    assert res.reason == "subject_not_in_evidence", res.failure
    assert "__repr__" in res.failure
    # the method whose docstring it is, named in the paragraph just before the quote: accepted
    right = out(
        "What decides the type of encoding that `Charset.header_encode` uses?",
        "The type of encoding (base64 or quoted-printable) is based on the charset's `header_encoding`.",
        [quote],
    )
    assert validate_output(right, windows).ok, validate_output(right, windows).failure
    # snake_case names count without backticks
    bare = wrong.replace("`__repr__`", "get_output_charset")
    assert validate_output(bare, windows).reason == "subject_not_in_evidence"


def test_one_question_mark_inside_a_name_is_still_one_question():
    res = check(
        out("Who built the lighthouse at Carrow Point, the 'Who Goes There?' light?", "Margaret Hale built it.")
    )
    assert res.reason != "not_a_question", res.failure


def test_in_the_context_of_a_named_subject_stands_alone():
    # Qwen on postgresql-procedural-languages (demo run 2026-12-02), refused as "in the context" before
    res = check(out("Who built the lighthouse in the context of Carrow Point?", "The engineer Margaret Hale."))
    assert res.reason != "not_standalone", res.failure
    assert (
        check(out("Who built the lighthouse in the context?", "The engineer Margaret Hale.")).reason == "not_standalone"
    )
