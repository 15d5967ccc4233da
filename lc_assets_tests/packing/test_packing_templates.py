"""Any target model: the tokenizer and chat template come from a local tokenizer dir; two template families."""

from __future__ import annotations

import numpy as np
import pytest

from lc_assets.lib.packing import PackingConfig, pack_sections
from lc_assets.lib.tokenizer import load_tokenizer
from lc_assets_tests.packing.tokenizer_dirs import FAMILIES, build_tokenizer_dir

CASES = {
    # the default: the packaged Llama-3 vocabulary with Meta-Llama-3-Instruct's own template
    "llama3-packaged": ("llama3", "<|eot_id|>", "<|begin_of_text|>"),
    "llama3-dir": ("llama3", FAMILIES["llama3"]["end_of_turn"], "<|begin_of_text|>"),
    "qwen2.5-dir": ("qwen2.5", FAMILIES["qwen2.5"]["end_of_turn"], None),
}
ASSISTANT_HEADER = {"llama3": "<|start_header_id|>assistant<|end_header_id|>\n\n", "qwen2.5": "<|im_start|>assistant\n"}


@pytest.fixture(scope="module", params=sorted(CASES))
def family(request, tmp_path_factory):
    name = request.param
    kind, eot, bos = CASES[name]
    if name == "llama3-packaged":
        tok = load_tokenizer()
    else:
        tok = load_tokenizer(str(build_tokenizer_dir(tmp_path_factory.mktemp(name), kind)))
    return name, tok, eot, bos, ASSISTANT_HEADER[kind]


def test_default_template_is_meta_llama3_instruct(tok):
    from lc_assets_tests.packing.tokenizer_dirs import LLAMA3_TEMPLATE

    assert tok.chat_template == LLAMA3_TEMPLATE
    # the template trims contents; the packer strips them, so nothing differs
    assert tok.apply_chat_template([{"role": "user", "content": " hi \n"}]).endswith(
        "user<|end_header_id|>\n\nhi<|eot_id|>"
    )


def test_loss_spans_are_exactly_assistant_turns_and_one_bos(family, pool_factory):
    name, tok, eot, bos, header = family
    sections = pool_factory(30, seed=11, prefix=name[:4])
    result = pack_sections(sections, tok, PackingConfig(sample_tokens=4096, allow_small_samples=True))
    assert result.samples and not result.failure and result.metrics.seam_mismatches == 0
    answers = {s.section_id: [p.answer for p in s.pairs] for s in sections}
    bos_id = tok.token_to_id(bos) if bos else None
    for s in result.samples:
        real = s.input_ids[: s.num_real_tokens]
        # the text re-tokenizes to the stored ids
        assert tok.encode(s.text) == real.tolist()
        if bos_id is None:  # Qwen: no BOS; each section is a conversation with the template's system turn
            assert s.text.startswith("<|im_start|>system\n")
            assert s.text.count("<|im_start|>system\n") == len(s.section_ids)
        else:
            assert real[0] == bos_id and int((real == bos_id).sum()) == 1
        expected = [a for p in s.placed for a in answers[p.section.section_id][: len(p.used_pair_ids)]]
        got = [tok.decode(s.input_ids[a:b]) for a, b in s.loss_spans]
        assert got == [a + eot for a in expected]  # each answer and its end-of-turn marker, nothing else
        labels = s.labels()
        mask = labels != -100
        assert int(mask.sum()) == sum(len(tok.encode(a + eot)) for a in expected)
        assert np.array_equal(labels[mask], s.input_ids[mask])
        # every target run starts right after an assistant header: no user, chunk or system text is a target
        for (a, _), (c, _) in zip(s.loss_spans, s.target_char_spans, strict=True):
            assert tok.decode(s.input_ids[:a]) == s.text[:c] and s.text[:c].endswith(header)
        assert s.text.count(header) == len(s.loss_spans)


def test_template_from_chat_template_file_and_override(tmp_path, tok):
    d = build_tokenizer_dir(tmp_path / "qwen", "qwen2.5")
    loaded = load_tokenizer(str(d))
    assert loaded.chat_template == FAMILIES["qwen2.5"]["template"]  # from chat_template.jinja beside the config
    other = tmp_path / "t.jinja"
    other.write_text(FAMILIES["llama3"]["template"])
    assert load_tokenizer(str(d), chat_template_path=str(other)).chat_template == FAMILIES["llama3"]["template"]
    assert loaded.identity != load_tokenizer(str(d), chat_template_path=str(other)).identity
