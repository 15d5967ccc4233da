"""Rendering sections as chats: exact ids, answer spans, cut points, template errors."""

from __future__ import annotations

import numpy as np
import pytest
from tokenizers import Tokenizer

from lc_assets.lib.packing import ChatTemplateError, PackingConfig, SectionRenderer, pack_sections
from lc_assets.lib.packing.render import CUT_PAIR, CUT_PARAGRAPH
from lc_assets.lib.sections import QAPair, Section
from lc_assets.lib.tokenizer import TextTokenizer

CFG = PackingConfig(sample_tokens=4096, allow_small_samples=True)

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _section(text: str, *qa: tuple[str, str]) -> Section:
    pairs = tuple(QAPair(f"p{i}", i, q, a) for i, (q, a) in enumerate(qa))
    return Section("sec", "chunk", "doc", "src", "cc-by-4.0", text, pairs)


def test_ids_equal_template_render_and_answers_decode_exactly(tok, pool):
    renderer = SectionRenderer(tok, CFG)
    result = renderer.render(pool[:40])
    assert not result.rejected and result.seam_mismatches == 0
    for r in result.rendered:
        messages = [{"role": "user", "content": r.section.text}]
        if r.section.pairs:
            messages[0]["content"] += "\n\n" + r.section.pairs[0].question
            for i, p in enumerate(r.section.pairs):
                messages += ([{"role": "user", "content": p.question}] if i else []) + [
                    {"role": "assistant", "content": p.answer}
                ]
        full = tok.apply_chat_template(messages)
        assert full == tok.bos_token + r.text  # one render, BOS taken off the section
        assert tok.encode(r.text) == r.ids.tolist()  # counted on the text as fed
        assert tok.bos_token not in r.text
        for p, (a, b), (c, d), (la, lb) in zip(
            r.section.pairs, r.target_spans, r.target_char_spans, r.loss_spans, strict=True
        ):
            assert tok.decode(r.ids[a:b]) == p.answer == r.text[c:d]
            assert tok.decode(r.ids[la:lb]) == p.answer + "<|eot_id|>"


def test_cut_points_are_pair_ends_or_paragraph_ends(tok):
    s = _section("First para.\n\nSecond para, ünïcode 東京.\n\n  Third.", ("Q one?", "A one."), ("Q two?", "A two."))
    r = SectionRenderer(tok, CFG).render_one(s)
    kinds = r.cut_kinds.tolist()
    assert kinds.count(CUT_PAIR) == 1  # the end of the last pair is the section's end, not a cut
    for t, c, k in zip(r.cut_tokens, r.cut_chars, r.cut_kinds, strict=True):
        prefix = tok.decode(r.ids[:t])
        assert prefix == r.text[:c]
        if k == CUT_PARAGRAPH:
            assert prefix.endswith("\n\n")
        elif k == CUT_PAIR:
            assert prefix.endswith("A one.<|eot_id|>")
        else:  # finer fallbacks (line, sentence, whitespace, pre-token) stay inside the chunk text
            assert c <= r.text.index("Q one?")
    pair_only = SectionRenderer(tok, PackingConfig(sample_tokens=4096, allow_small_samples=True, cut_boundaries="pair"))
    assert set(pair_only.render_one(s).cut_kinds.tolist()) == {CUT_PAIR}


def test_first_question_is_tokenized_with_the_chunk(tok):
    # ".\n\n" is one Llama-3 token: chunk and question tokenized apart would not match the text
    r = SectionRenderer(tok, CFG).render_one(_section("Ends with a period.", ("Why?", "Because.")))
    assert not r.seam_mismatch


def test_no_chat_template_is_a_clear_error(tok):
    bare = TextTokenizer(name="bare-vocab", backend=tok.backend, bos_token=tok.bos_token, eos_token=tok.eos_token)
    with pytest.raises(ChatTemplateError, match="bare-vocab.*no chat template"):
        SectionRenderer(bare, CFG)
    with pytest.raises(ChatTemplateError, match="bare-vocab"):
        pack_sections([_section("text")], bare, CFG)


def test_other_template_without_bos(tok, pool):
    backend = Tokenizer.from_str(tok.backend.to_str())
    backend.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    chatml = TextTokenizer(name="chatml", backend=backend, eos_token=tok.eos_token, chat_template=CHATML)
    renderer = SectionRenderer(chatml, CFG)
    assert renderer.bos_text == "" and renderer.end_of_turn == "<|im_end|>\n"
    result = renderer.render(pool[:10])
    assert result.seam_mismatches == 0
    for r in result.rendered:
        for p, (a, b), (la, lb) in zip(r.section.pairs, r.target_spans, r.loss_spans, strict=True):
            assert chatml.decode(r.ids[a:b]) == p.answer
            assert chatml.decode(r.ids[la:lb]) == p.answer + "<|im_end|>\n"


def test_bad_sections_are_rejected_with_reasons(tok):
    renderer = SectionRenderer(tok, CFG)
    result = renderer.render(
        [
            _section("   "),
            _section("ok text", ("", "answer")),
            _section("smuggled <|eot_id|> token", ("q?", "a.")),
            _section("fine text", ("q?", "a.")),
        ]
    )
    assert len(result.rendered) == 1
    reasons = [r.reason for r in result.rejected]
    assert "empty chunk text" in reasons[0]
    assert "empty question or answer" in reasons[1]
    assert "<|eot_id|>" in reasons[2]


def test_loss_spans_without_end_of_turn(tok):
    cfg = PackingConfig(sample_tokens=4096, allow_small_samples=True, train_on_end_of_turn=False)
    r = SectionRenderer(tok, cfg).render_one(_section("Text.", ("Q?", "Answer here.")))
    assert np.array_equal(r.loss_spans, r.target_spans)


def test_seam_mismatch_is_detected(tok, pool):
    # ChatML markers that are NOT special tokens in this vocabulary merge with the contents
    plain = TextTokenizer(name="chatml-plain", backend=tok.backend, eos_token=tok.eos_token, chat_template=CHATML)
    assert SectionRenderer(plain, CFG).render(pool[:5]).seam_mismatches > 0
