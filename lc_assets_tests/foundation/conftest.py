"""Fixtures for the foundation tests: a real tokenizer, text that looks like books, temp stores."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from lc_assets.lib.lineage import LineageStore
from lc_assets.lib.tokenizer import TextTokenizer, load_tokenizer

WORDS = (
    "the of and to in a is that for it as was with be by on not he this are or his from at which but have an they "
    "you were her she there been one all we their has would when if so no will more can out up who said what about "
    "river engine harbour lantern quietly measured carriage northern silver window letter morning doctor captain"
).split()


def make_text(seed: int, paragraphs: int, words_per_paragraph: tuple[int, int] = (20, 80)) -> str:
    """Deterministic English-like prose with blank-line paragraphs, some indented lines and code."""
    rng = random.Random(seed)
    out = []
    for i in range(paragraphs):
        n = rng.randint(*words_per_paragraph)
        words = [rng.choice(WORDS) for _ in range(n)]
        sentences, cur = [], []
        for w in words:
            cur.append(w)
            if rng.random() < 0.12:
                sentences.append(" ".join(cur).capitalize() + rng.choice([".", "!", "?", "."]))
                cur = []
        if cur:
            sentences.append(" ".join(cur).capitalize() + ".")
        para = " ".join(sentences)
        if i % 7 == 3:
            para = "    def f(x):\n        return x + 1\n    " + para
        if i % 11 == 5:
            para = para.replace(". ", ".\n", 2)
        out.append(para)
    return "\n\n".join(out) + "\n"


def materialization_metadata(result, asset_key: str) -> dict:
    """The metadata values of `asset_key`'s materialization in a Dagster execution result."""
    mat = next(m for m in result.get_asset_materialization_events() if m.asset_key.to_user_string() == asset_key)
    return {k: v.value for k, v in mat.materialization.metadata.items()}


@pytest.fixture(scope="session")
def tokenizer() -> TextTokenizer:
    return load_tokenizer()


@pytest.fixture
def store(tmp_path: Path) -> LineageStore:
    return LineageStore(tmp_path / "lineage.duckdb")
