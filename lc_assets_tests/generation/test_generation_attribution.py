"""Documents that speak for their author (`attributed_sources`): questions must name the document.

The real case: the demo run of 2026-12-03 kept "How does the doctrine of Redemption play a role in the concept of
salvation?" answered with Bierce's satirical definition from The Devil's Dictionary, which then reads as a fact.
"""

from __future__ import annotations

import json
import re

from lc_assets.lib.generation.admission import SectionPreparer, SectionTask
from lc_assets.lib.generation.config import GenerationConfig
from lc_assets.lib.generation.masking import split_paragraphs, windows_of
from lc_assets.lib.generation.prompting import PromptBuilder
from lc_assets.lib.generation.prompts import (
    ATTRIBUTION_TASK,
    attribution_name,
    attribution_prefix,
    build_messages,
    qa_json_schema,
    section_attribution,
)
from lc_assets.lib.generation.validate import QuestionIndex, validate_output
from lc_assets.lib.sections import QAPair

from .conftest import make_section, small_config
from .doubles import ScriptedBackend

# the Devil's Dictionary entry the demo pair quoted (as the embedded corpus reads it), with its neighbours
REDEMPTION = (
    "REDEMPTION, n.  Deliverance of sinners from the penalty of their sin,\n"
    "through their murder of the deity against whom they sinned.  The\n"
    "doctrine of Redemption is the fundamental mystery of our holy\n"
    "religion, and whoso believeth in it shall not perish, but have\n"
    "everlasting life in which to try to understand it."
)
REDRESS = "REDRESS, n.  Reparation without satisfaction."
CHUNK = "\n\n".join([REDRESS, REDEMPTION, "REFERENDUM, n.  A law for submission of a proposed legislation."])
TITLE = "The Devil's Dictionary (Bierce, 1911)"
QUOTE = (
    "The\ndoctrine of Redemption is the fundamental mystery of our holy\nreligion, and whoso believeth in it shall "
    "not perish, but have\neverlasting life in which to try to understand it."
)
ANSWER = (
    "The doctrine of Redemption is the fundamental mystery of our holy religion, and whoso believeth in it shall "
    "not perish, but have everlasting life in which to try to understand it."
)


def _windows():
    paragraphs = split_paragraphs(CHUNK, lambda texts: [max(1, len(t) // 4) for t in texts], 512)
    return windows_of(paragraphs)


def _judge(question: str, attribution: str | None):
    output = json.dumps({"evidence": [QUOTE], "question": question, "answer": ANSWER})
    return validate_output(output, _windows(), title=TITLE, attribution=attribution, source_language="en")


def test_the_name_drops_a_trailing_parenthesis_or_version():
    assert attribution_name(TITLE) == "The Devil's Dictionary"
    assert attribution_name("The Jargon File 4.4.7") == "The Jargon File"
    assert attribution_name("Opticks (Newton) v2.1") == "Opticks"
    assert attribution_name("(untitled)") == "(untitled)"  # nothing left: the title as it is


def test_sources_are_matched_by_pattern_and_need_a_title():
    defaults = GenerationConfig().attributed_sources
    assert section_attribution(defaults, "embedded:devils-dictionary", TITLE) == "The Devil's Dictionary"
    assert section_attribution(defaults, "embedded:postgresql-functions", "PostgreSQL Functions") is None
    assert section_attribution(["local:novels/*"], "local:novels/emma.txt", "Emma") == "Emma"
    assert section_attribution(["local:novels/*"], "local:novels/emma.txt", "  ") is None


def test_the_demo_pair_that_read_satire_as_fact_is_refused_unless_it_names_the_document():
    unnamed = "How does the doctrine of Redemption play a role in the concept of salvation?"
    refused = _judge(unnamed, "The Devil's Dictionary")
    assert refused.reason == "unattributed_question", refused.failure
    assert "In The Devil's Dictionary, " in refused.failure
    named = _judge("In The Devil's Dictionary, how is the doctrine of Redemption described?", "The Devil's Dictionary")
    assert named.ok, named.failure
    # case and punctuation aside ("in the Devil’s Dictionary,"), still the document's name
    assert _judge(
        "in the Devil’s Dictionary, how is the doctrine of Redemption described?", "The Devil's Dictionary"
    ).ok
    # a source not in attributed_sources keeps the old rule
    assert _judge(unnamed, None).ok


def test_the_shared_prefix_does_not_make_questions_duplicates():
    index = QuestionIndex(["In The Devil's Dictionary, how is Redemption defined?"])
    score, match = index.nearest("In The Devil's Dictionary, what is a referendum?", 0.7)
    assert match is None, score
    # the same question with and without the qualifier is one question
    score, match = index.nearest("How is Redemption defined?", 0.7)
    assert match is not None and score == 1.0


def test_the_prompt_asks_it_and_the_schema_enforces_it():
    name = "The Devil's Dictionary"
    paragraphs = split_paragraphs(CHUNK, lambda texts: [max(1, len(t) // 4) for t in texts], 512)
    plain = build_messages(paragraphs, len(paragraphs), (), title=TITLE)
    named = build_messages(paragraphs, len(paragraphs), (), title=TITLE, attribution=name)
    sentence = ATTRIBUTION_TASK.format(prefix=attribution_prefix(name))
    assert sentence in named[1]["content"] and sentence not in plain[1]["content"]
    schema = qa_json_schema(200, 300, question_prefix=attribution_prefix(name))
    pattern = re.compile(schema["properties"]["question"]["pattern"])  # ECMA-262 here is also Python syntax
    assert pattern.fullmatch("In The Devil's Dictionary, how is Redemption defined?")
    assert not pattern.fullmatch("How is Redemption defined?")
    assert not pattern.fullmatch("In The Devil's Dictionary, " + "x" * 200)  # within max_question_chars
    assert not pattern.fullmatch('In The Devil\'s Dictionary, what does "x" mean?')  # no raw quote in JSON text
    assert "pattern" not in qa_json_schema(200, 300)["properties"]["question"]


def test_a_step_of_an_attributed_section_is_asked_bounded_and_constrained(target_tokenizer):
    backend = ScriptedBackend(tokenizer=target_tokenizer, template_counts=True)
    cfg = small_config(attributed_sources=["test"], earlier_pairs=2)  # make_section's source is "test"
    builder = PromptBuilder(backend, cfg)
    state = SectionPreparer(cfg, backend.count_text_tokens, target_tokenizer)(
        SectionTask(make_section("dd"), title=TITLE)
    )
    for step in range(6):
        _mask, _earlier, fitted = builder.fit(state, step)
        assert fitted.attribution == "The Devil's Dictionary"
        assert 'Begin the question with "In The Devil\'s Dictionary, "' in fitted.messages[1]["content"]
        # the guard's bound holds the attribution sentence too
        exact = backend.count_prompt_tokens(fitted.messages)
        assert exact <= builder.upper_bound(state, fitted.shown, fitted.earlier_pairs)
        assert builder.schema(state, fitted)["properties"]["question"]["pattern"].startswith("^In The Devil's")
        question = f"In The Devil's Dictionary, what does paragraph {step} say about w{step}?"
        state.apply(step, QAPair(f"dd:{step}", step, question, f"It says w{step}."), 20)
    plain_cfg = cfg.model_copy(update={"attributed_sources": []})
    plain = SectionPreparer(plain_cfg, backend.count_text_tokens, target_tokenizer)(
        SectionTask(make_section("pg"), title=TITLE)
    )
    assert PromptBuilder(backend, plain_cfg).fit(plain, 0)[2].attribution is None
