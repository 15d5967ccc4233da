"""Prompt building, schema validation, duplicate detection, context-overflow guard."""

from __future__ import annotations

import json

import pytest

from lc_assets.lib.generation.masking import SectionMasker, split_paragraphs
from lc_assets.lib.generation.prompts import (
    PromptOverflowError,
    build_messages,
    fit_prompt,
    normalize_question,
    parse_qa_output,
    prompt_hash,
    qa_json_schema,
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
    assert "[...]" in user and "What is w1?" in user and "do not repeat" in user
    assert prompt_hash(msgs) == prompt_hash(build_messages([paras[2], paras[7]], len(paras), pairs))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"question": "What is X here?", "answer": "Y"}', None),
        ('```json\n{"question": "What is X here?", "answer": "Y"}\n```', None),
        ('{"question": "What is X here?", "answer": "Y"', "invalid_json"),
        ("[1, 2]", "invalid_json"),
        ('{"question": "What is X here?"}', "missing_field"),
        ('{"question": "   ", "answer": "Y"}', "empty_field"),
        ('{"question": "What is X here?", "answer": "' + "y" * 500 + '"}', "too_long"),
        ('{"question": "Same thing?", "answer": "same thing"}', "degenerate"),
    ],
)
def test_parse_qa_output(text, reason):
    parsed = parse_qa_output(text, max_question_chars=100, max_answer_chars=200)
    assert (parsed.reason.split(":")[0] if parsed.reason else None) == reason
    assert parsed.ok == (reason is None)


def test_schema_bounds_lengths():
    schema = qa_json_schema(100, 300)
    assert schema["properties"]["answer"]["maxLength"] == 300
    assert schema["required"] == ["question", "answer"] and schema["additionalProperties"] is False
    json.dumps(schema)


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
