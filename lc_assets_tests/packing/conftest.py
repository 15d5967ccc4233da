"""Fixtures for the packing tests: the packaged Llama-3 tokenizer and small synthetic sections."""

from __future__ import annotations

import random

import pytest

from lc_assets.lib.sections import QAPair, Section
from lc_assets.lib.tokenizer import TextTokenizer, load_tokenizer

_WORDS = (
    "river stone house quickly green matter time the a and to is was over under light night café "
    "über naïve 東京 data model answer question long context window paragraph"
).split()


@pytest.fixture(scope="session")
def tok() -> TextTokenizer:
    return load_tokenizer()


def _sentence(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(lo, hi))).capitalize() + "."


def make_section(
    i: int,
    rng: random.Random,
    paragraphs: tuple[int, int] = (3, 20),
    pairs: tuple[int, int] = (0, 8),
    source: str | None = None,
    prefix: str = "s",
) -> Section:
    """A deterministic small section: paragraphs of random words plus QA pairs."""
    text = "\n\n".join(_sentence(rng, 15, 70) for _ in range(rng.randint(*paragraphs)))
    qa = tuple(
        QAPair(f"{prefix}{i:05d}-p{j}", j, _sentence(rng, 4, 12)[:-1] + "?", _sentence(rng, 3, 35))
        for j in range(rng.randint(*pairs))
    )
    return Section(
        section_id=f"{prefix}{i:05d}",
        chunk_id=f"c{i}",
        document_id=f"d{i // 2}",
        source=source or rng.choice(["books", "code", "web"]),
        license=rng.choice(["cc-by-4.0", "public-domain"]),
        text=text,
        pairs=qa,
    )


def make_pool(n: int, seed: int = 0, prefix: str = "s", **kw) -> list[Section]:
    rng = random.Random(seed)
    return [make_section(i, rng, prefix=prefix, **kw) for i in range(n)]


@pytest.fixture(scope="session")
def pool() -> list[Section]:
    return make_pool(160)


@pytest.fixture(scope="session")
def pool_factory():
    """`pool_factory(n, seed=0, prefix="s", paragraphs=(lo, hi), pairs=(lo, hi), source=None)`."""
    return make_pool
