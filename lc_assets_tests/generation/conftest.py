"""Fixtures for generation tests: tokenizer, sample chunks, the scripted backend."""

from __future__ import annotations

import pytest

from lc_assets.lib.generation.config import GenerationConfig
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


def small_config(**overrides) -> GenerationConfig:
    """A generation config sized for the test chunks (150-300-token masks, short pairs)."""
    base = dict(
        seed=11,
        min_context_tokens=150,
        max_context_tokens=300,
        max_paragraph_tokens=120,
        max_tokens=80,
        max_question_chars=100,
        max_answer_chars=100,
        earlier_pairs=2,
        target_ratio=1.05,
        max_retries_per_step=2,
    )
    return GenerationConfig(**(base | overrides))


@pytest.fixture
def scripted(target_tokenizer: TextTokenizer) -> ScriptedBackend:
    return ScriptedBackend(tokenizer=target_tokenizer)
