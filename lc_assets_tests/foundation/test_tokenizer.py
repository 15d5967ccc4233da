from pathlib import Path

import pytest

from lc_assets.lib.tokenizer import TokenizerNotFoundError, load_tokenizer


def test_default_is_llama3_with_exact_counts(tokenizer):
    assert tokenizer.name == "llama3"
    assert tokenizer.encode("Hello world") == [9906, 1917]  # Llama-3 ids
    texts = ["Hello world", "", "Long-context models read a million tokens.\n\nSecond paragraph."]
    assert tokenizer.count_batch(texts) == [len(tokenizer.encode(t)) for t in texts]
    assert tokenizer.count_batch([]) == []


def test_chat_template_has_one_bos(tokenizer):
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    assert text.startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>")
    assert text.count("<|begin_of_text|>") == 1
    assert text.endswith("yo<|eot_id|>")


def test_local_dir_and_missing_paths(tmp_path: Path, tokenizer):
    tokenizer.backend.save(str(tmp_path / "tokenizer.json"))
    local = load_tokenizer(str(tmp_path))
    assert local.encode("Hello world") == tokenizer.encode("Hello world")
    with pytest.raises(ValueError, match="no chat template"):
        local.apply_chat_template([{"role": "user", "content": "x"}])
    with pytest.raises(TokenizerNotFoundError, match="does not exist"):
        load_tokenizer(str(tmp_path / "nope"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TokenizerNotFoundError, match="no tokenizer.json"):
        load_tokenizer(str(empty))
    with pytest.raises(TokenizerNotFoundError, match="local Hugging Face cache"):
        load_tokenizer("some-org/not-a-cached-model")


def test_a_pickled_tokenizer_leaves_its_transformers_wrapper_behind():
    # judge workers receive the target tokenizer pickled: the cached `transformers` wrapper would make
    # unpickling import transformers; it is rebuilt on first use instead
    import pickle

    tok = load_tokenizer()
    rendered = tok.apply_chat_template([{"role": "user", "content": "x"}])
    assert "hf" in tok.__dict__
    copy = pickle.loads(pickle.dumps(tok))
    assert "hf" not in copy.__dict__
    assert copy.count("hello world") == tok.count("hello world")
    assert copy.apply_chat_template([{"role": "user", "content": "x"}]) == rendered
