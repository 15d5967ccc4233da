"""Prompt building, schema validation, duplicate detection, context-overflow guard."""

from __future__ import annotations

import json

import pytest

from lc_assets.lib.generation.masking import SectionMasker, split_paragraphs, windows_of
from lc_assets.lib.generation.prompts import (
    KIND_HINTS,
    PROMPT_VERSION,
    PromptOverflowError,
    build_messages,
    evidence_choices,
    fit_prompt,
    normalize_question,
    parse_qa_output,
    prompt_hash,
    qa_json_schema,
    suggest_kind,
)
from lc_assets.lib.sections import QAPair

from .conftest import make_chunk


def test_messages_show_excerpts_and_earlier_questions(target_tokenizer):
    paras = split_paragraphs(make_chunk(10), target_tokenizer.count_batch, 512)
    pairs = [QAPair("s:0", 0, "What is w1?", "A word.")]
    msgs = build_messages([paras[7], paras[2]], len(paras), pairs)
    assert [m["role"] for m in msgs] == ["system", "user"]
    user = msgs[1]["content"]
    assert user.index("Paragraph 2 ") < user.index("Paragraph 7 ")
    assert "[...]" in user and "- What is w1?" in user and "ask about something else" in user
    assert "Excerpt 1:" in user and "Excerpt 2:" in user
    assert "Q:" not in user and "A word." not in user  # earlier answers and Q:/A: labels invite copying
    assert prompt_hash(msgs) == prompt_hash(build_messages([paras[2], paras[7]], len(paras), pairs))
    system = msgs[0]["content"]
    assert "evidence" in system and system.index('"evidence"') < system.index('"question"') < system.index('"answer"')
    assert "stand alone" in system and "the given code" in system  # the phrasing it forbids is named


def test_kind_long_range_and_title_shape_the_task(target_tokenizer):
    paras = split_paragraphs(make_chunk(10), target_tokenizer.count_batch, 512)
    numeric = build_messages([paras[1]], len(paras), [], kind="numeric", title="PostgreSQL Functions")[1]["content"]
    assert numeric.startswith("The excerpts come from the document titled 'PostgreSQL Functions'")
    assert KIND_HINTS["numeric"] in numeric
    long = build_messages([paras[1], paras[8]], len(paras), [], long_range=True)[1]["content"]
    assert "BOTH" in long and "far apart" in long
    with pytest.raises(ValueError, match="unknown question kind"):
        build_messages([paras[1]], len(paras), [], kind="poem")


def test_suggested_kinds_cycle_through_every_kind():
    kinds = [suggest_kind(3, "s", step) for step in range(len(KIND_HINTS) * 3)]
    for cycle in range(3):  # each cycle of len(kinds) steps suggests every kind once, in a drawn order
        block = kinds[cycle * len(KIND_HINTS) : (cycle + 1) * len(KIND_HINTS)]
        assert sorted(block) == sorted(KIND_HINTS)
    assert kinds == [suggest_kind(3, "s", step) for step in range(len(kinds))]
    assert kinds != [suggest_kind(3, "other", step) for step in range(len(kinds))]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"question": "What is X here?", "answer": "Y"}', None),
        ('```json\n{"question": "What is X here?", "answer": "Y"}\n```', None),
        ('{"question": "What is X here?", "answer": "Y"', "invalid_json"),
        ("[1, 2]", "invalid_json"),
        ('{"question": "What is X here?"}', "missing_field"),
        ('{"question": "   ", "answer": "Y"}', "not_a_question"),
        ('{"question": "What is X here?", "answer": ""}', "empty_answer"),
        ('{"question": "What is X here?", "answer": "' + "y" * 500 + '"}', "too_long"),
        ('{"question": "Same thing?", "answer": "same thing"}', "degenerate"),
    ],
)
def test_parse_qa_output(text, reason):
    parsed = parse_qa_output(text, max_question_chars=100, max_answer_chars=200)
    assert (parsed.reason.split(":")[0] if parsed.reason else None) == reason
    assert parsed.ok == (reason is None)


def test_schema_puts_evidence_first_and_bounds_lengths():
    schema = qa_json_schema(100, 300)
    assert list(schema["properties"]) == ["evidence", "question", "answer"]  # key order = generation order
    assert schema["properties"]["answer"]["maxLength"] == 300
    assert schema["properties"]["evidence"]["items"]["maxLength"] == 200
    assert schema["required"] == ["evidence", "question", "answer"] and schema["additionalProperties"] is False
    with_kind = qa_json_schema(100, 300, kinds=["what", "why"], min_quotes=2, max_quotes=3)
    assert list(with_kind["properties"]) == ["evidence", "kind", "question", "answer"]
    assert with_kind["properties"]["evidence"]["minItems"] == 2
    json.dumps(with_kind)
    assert PROMPT_VERSION  # goes into the generation hash


def test_normalized_duplicates():
    assert normalize_question("What is  the Café?") == normalize_question("what is the cafe")
    assert normalize_question("What is A?") != normalize_question("What is B?")


def _mask(tok, n=40):
    paras = split_paragraphs(make_chunk(n), tok.count_batch, 512)
    return paras, SectionMasker("s", paras, seed=0, min_tokens=600, max_tokens=800).mask(0)


def test_overflow_guard_drops_whole_paragraphs(target_tokenizer):
    paras, mask = _mask(target_tokenizer)

    def count(msgs):
        return sum(target_tokenizer.count(m["content"]) for m in msgs) + 10

    full = fit_prompt(mask, len(paras), [], count, context_window=10_000, max_tokens=100)
    assert full.dropped == () and full.prompt_tokens + 100 <= 10_000
    window = full.prompt_tokens + 100 - 250  # force ~250 tokens of drops
    fitted = fit_prompt(mask, len(paras), [], count, context_window=window, max_tokens=100)
    assert fitted.prompt_tokens + 100 <= window
    assert fitted.dropped and fitted.shown + fitted.dropped == mask.selected  # dropped last-selected first
    for p in fitted.shown:  # never a cut inside a paragraph
        assert p.text in fitted.messages[1]["content"]
    for p in fitted.dropped:
        assert p.text not in fitted.messages[1]["content"]


def test_overflow_guard_fails_with_reason(target_tokenizer):
    paras, mask = _mask(target_tokenizer)
    pairs = [QAPair("s:0", 0, "q" * 50, "a" * 50)]

    def count(msgs):
        return sum(target_tokenizer.count(m["content"]) for m in msgs)

    with pytest.raises(PromptOverflowError, match="context_window=150"):
        fit_prompt(mask, len(paras), pairs, count, context_window=150, max_tokens=100)
    with pytest.raises(PromptOverflowError, match="no room"):
        fit_prompt(mask, len(paras), pairs, count, context_window=100, max_tokens=100)


def test_looping_answers_are_rejected_and_normal_ones_kept():
    from lc_assets.lib.generation.prompts import parse_qa_output

    loop = "It is supposed to be able to access a database. " * 6
    bad = parse_qa_output(json.dumps({"question": "What may the section do?", "answer": loop}), 300, 2000)
    assert not bad.ok and bad.reason.startswith("degenerate: answer loops")
    fine = (
        "PostgreSQL 15 adds the MERGE command, which inserts, updates or deletes rows of a target table "
        "based on a join with a source; earlier releases needed INSERT ... ON CONFLICT for upserts."
    )
    ok = parse_qa_output(json.dumps({"question": "What does MERGE do?", "answer": fine}), 300, 2000)
    assert ok.ok and ok.answer == fine


def test_guard_keeps_long_range_only_while_both_windows_are_shown(target_tokenizer):
    paras = split_paragraphs(make_chunk(200, 30), target_tokenizer.count_batch, 512)
    masker = SectionMasker("lr", paras, seed=2, min_tokens=300, max_tokens=500, long_range_share=1.0)
    mask = masker.mask(0)
    assert mask.long_range and len(mask.windows) == 2

    def count(msgs):
        return sum(target_tokenizer.count(m["content"]) for m in msgs)

    full = fit_prompt(mask, len(paras), [], count, context_window=10_000, max_tokens=100, kind="why")
    assert full.long_range and full.kind == "why" and "BOTH" in full.messages[1]["content"]
    assert [w.first_index for w in full.windows] == [w.first_index for w in mask.windows]
    second = mask.windows[1].n_tokens
    tight = fit_prompt(mask, len(paras), [], count, context_window=full.prompt_tokens + 100 - second, max_tokens=100)
    assert not tight.long_range and "BOTH" not in tight.messages[1]["content"]


def test_evidence_choices_are_verbatim_pieces_of_the_shown_windows(target_tokenizer):
    text = (
        "The lamp burned whale oil until 1903. It was then converted to kerosene!\n\n"
        "def drain(self):\n    # wait until the buffer is below the low-water mark\n    return x\n\n"
        "Ok.\n\n" + "A very long sentence " * 30 + "ends here."
    )
    paras = split_paragraphs(text, target_tokenizer.count_batch, 512)
    windows = windows_of(paras)
    choices = evidence_choices(windows, max_quote_chars=80)
    assert choices[:2] == ["The lamp burned whale oil until 1903.", "It was then converted to kerosene!"]
    assert "# wait until the buffer is below the low-water mark" in choices
    assert "Ok." not in choices and "return x" not in choices  # too short to ground anything
    assert all(len(c) <= 80 and c in text for c in choices)  # cut at a word boundary: still verbatim
    schema = qa_json_schema(100, 200, quote_choices=choices)
    assert schema["properties"]["evidence"]["items"] == {"type": "string", "enum": choices}
    per_window = qa_json_schema(100, 200, quote_choices_per_window=[choices[:2], choices[2:]])["properties"]
    assert per_window["evidence"]["prefixItems"][1] == {"type": "string", "enum": choices[2:]}
    assert per_window["evidence"]["minItems"] == per_window["evidence"]["maxItems"] == 2
