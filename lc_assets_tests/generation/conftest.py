"""Fixtures for generation tests: tokenizer, sample chunks, the scripted backend."""

from __future__ import annotations

import pytest

from lc_assets.lib.sections import Section
from lc_assets.lib.tokenizer import TextTokenizer, load_tokenizer

from .doubles import ScriptedBackend


@pytest.fixture(scope="session")
def target_tokenizer() -> TextTokenizer:
    return load_tokenizer()


def make_chunk(n_paragraphs: int, words: int = 40, tag: str = "") -> str:
    """Distinct, countable paragraphs: paragraph i mentions its number so coverage is checkable."""
    paras = []
    for i in range(n_paragraphs):
        body = " ".join(f"w{(i * 7 + j) % 97}{tag}" for j in range(words))
        paras.append(f"Paragraph {i} says {body}.")
    return "\n\n".join(paras)


def make_section(section_id: str, n_paragraphs: int = 60, words: int = 40) -> Section:
    return Section(
        section_id, f"chunk-{section_id}", f"doc-{section_id}", "test", "CC0", make_chunk(n_paragraphs, words)
    )


@pytest.fixture
def scripted(target_tokenizer: TextTokenizer) -> ScriptedBackend:
    return ScriptedBackend(tokenizer=target_tokenizer)
