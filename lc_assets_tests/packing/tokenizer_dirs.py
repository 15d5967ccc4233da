"""Local Hugging Face tokenizer dirs of two template families, built offline for the tests.

Each dir is what `save_pretrained` writes (tokenizer.json + tokenizer_config.json with the
family's chat template), over a small byte-level BPE trained here on text that is on every
machine (CPython's standard library sources) — small, so a model over it is small too. The
pre-tokenizer is Llama-3's split pattern (Qwen2's differs only in splitting digits one by one),
so a text tokenized in pieces gives the same ids as the text tokenized whole, as with the real
vocabularies.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

#: Meta-Llama-3-8B-Instruct's template, as in its tokenizer_config.json
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

#: Qwen2.5-Instruct's template without its tool-calling branches (this data has no tools): a default
#: system turn when the messages have none, ChatML turns, no BOS.
QWEN25_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) or "
    "(message.role == 'assistant') %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

#: Llama-3's pre-tokenizer split pattern (from its tokenizer.json)
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
    r"\s+(?!\S)|\s+"
)

FAMILIES = {
    "llama3": {
        "special": ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        "bos": "<|begin_of_text|>",
        "eos": "<|end_of_text|>",
        "template": LLAMA3_TEMPLATE,
        "end_of_turn": "<|eot_id|>",
    },
    "qwen2.5": {
        "special": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "bos": None,
        "eos": "<|im_end|>",
        "template": QWEN25_TEMPLATE,
        "end_of_turn": "<|im_end|>\n",
    },
}

_TRAINING_MODULES = ("textwrap.py", "string.py", "difflib.py", "json/decoder.py", "argparse.py")


def _training_text() -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = [(stdlib / rel).read_text(encoding="utf-8", errors="replace") for rel in _TRAINING_MODULES]
    texts.append("river stone house quickly green matter time café über naïve 東京 data model answer question " * 20)
    return texts


def build_tokenizer_dir(out_dir: Path, family: str, vocab_size: int = 1024) -> Path:
    """Write a tokenizer dir of `family` ("llama3" or "qwen2.5") to out_dir; returns out_dir."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    spec = FAMILIES[family]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=spec["special"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_training_text(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=spec["bos"], eos_token=spec["eos"])
    fast.chat_template = spec["template"]
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))
    return out_dir
