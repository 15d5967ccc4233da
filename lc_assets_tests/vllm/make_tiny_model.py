"""Build a tiny random-weight Qwen2-style model directory in Hugging Face format, entirely offline.

The vLLM backend is tested on CPU with this model: it exercises the real engine (loading, continuous
batching, structured outputs, chat template, tokenizer) in seconds, where a real 0.5B model would
cost minutes and a hub download. The text it writes is garbage; only its shape matters.

- tokenizer: a byte-level BPE trained here on a few CPython standard-library sources (present on every
  machine) plus JSON-ish text, ChatML special tokens and a ChatML chat template, saved with transformers.
- model: `Qwen2ForCausalLM` with head_dim 64 (vLLM's CPU attention kernels need head_dim >= 64),
  2 layers, random weights from a fixed seed, saved as safetensors.

Usage: python lc_assets_tests/vllm/make_tiny_model.py OUT_DIR
"""

from __future__ import annotations

import argparse
import json
import sys
import sysconfig
from pathlib import Path

#: ChatML, as Qwen2 instruct models use it.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

#: stdlib modules whose source is the BPE training text (any real text works; this is always on disk)
_TRAINING_MODULES = ("json/__init__.py", "json/decoder.py", "textwrap.py", "string.py", "difflib.py")


def _training_text() -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for rel in _TRAINING_MODULES:
        path = stdlib / rel
        if path.is_file():
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
    # JSON punctuation and digits so structured output has short tokens to choose from.
    texts.append(json.dumps({"question": "What is it?", "answer": "It is 42.", "score": 1.5, "ok": True}) * 50)
    return texts


def build_tokenizer(out_dir: Path, vocab_size: int = 1024) -> int:
    """Train and save the tokenizer; returns its vocabulary size (special tokens included)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodable: no unknown tokens
        show_progress=False,
    )
    tok.train_from_iterator(_training_text(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=4096,
    )
    fast.chat_template = CHATML_TEMPLATE
    fast.save_pretrained(str(out_dir))
    return tok.get_vocab_size()


def build_model(out_dir: Path, vocab_size: int, eos_id: int, pad_id: int, seed: int = 0) -> None:
    """Save a random-weight 2-layer Qwen2 (hidden 128, 2 heads of 64) next to the tokenizer."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,  # head_dim = 128 / 2 = 64, the smallest vLLM's CPU backend takes
        num_key_value_heads=1,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        dtype="bfloat16",
    )
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    GenerationConfig(eos_token_id=eos_id, pad_token_id=pad_id).save_pretrained(str(out_dir))


def make_tiny_model(out_dir: str | Path) -> Path:
    """Write tokenizer + config + weights to `out_dir` (created); returns the directory."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab_size = build_tokenizer(out)
    # Pad the embedding matrix to a multiple of 64 as real models do; extra rows are never produced by the tokenizer.
    padded_vocab = (vocab_size + 63) // 64 * 64
    eos_id = SPECIAL_TOKENS.index("<|im_end|>")
    pad_id = SPECIAL_TOKENS.index("<|endoftext|>")
    build_model(out, padded_vocab, eos_id=eos_id, pad_id=pad_id)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    print(make_tiny_model(args.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
