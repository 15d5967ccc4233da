"""Fixtures for the RULER tests: a small tokenizer, an essay haystack, SQuAD/HotpotQA files."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from lc_assets.lib.ruler.words import wonderwords_list


class RegexCounter:
    """A tiny stand-in tokenizer: one token per word, number run, punctuation char or newline."""

    pattern = re.compile(r"[A-Za-z]+|\d{1,3}|[^\sA-Za-z\d]|\n")

    def count(self, text: str) -> int:
        return len(self.pattern.findall(text))

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        return [self.count(t) for t in texts]


@pytest.fixture(scope="session")
def small_tokenizer() -> RegexCounter:
    return RegexCounter()


@pytest.fixture(scope="session")
def llama3():
    from lc_assets.lib.tokenizer import load_tokenizer

    return load_tokenizer()


@pytest.fixture(scope="session")
def essay_text() -> str:
    """English-like prose (real nouns/adjectives/verbs in sentences), deterministic."""
    rng = random.Random(7)
    nouns, adjs, verbs = (wonderwords_list(f) for f in ("nounlist.txt", "adjectivelist.txt", "verblist.txt"))
    sentences = []
    for _ in range(3000):
        words = [rng.choice(adjs), rng.choice(nouns), rng.choice(verbs), "the", rng.choice(nouns)]
        words += [rng.choice(nouns) for _ in range(rng.randint(0, 8))]
        end = rng.choice([".", ".", ".", "?", "!"])
        sentences.append(" ".join(words).capitalize() + end)
        if rng.random() < 0.1:
            sentences.append("\n\n")
    return " ".join(sentences)


SQUAD = {
    "version": "v2.0",
    "data": [
        {
            "title": f"Article{a}",
            "paragraphs": [
                {
                    "context": f"Paragraph {a}-{p}. The river Zorbel{a}{p} flows north past the city of Quenta{a}{p}. "
                    + "It was mapped in the year 1{a}{p}4 by surveyors. " * 3,
                    "qas": [
                        {
                            "question": f"Which city does the river Zorbel{a}{p} flow past?",
                            "id": f"q{a}{p}",
                            "answers": [{"text": f"Quenta{a}{p}", "answer_start": 0}]
                            + [{"text": f"Quenta{a}{p}", "answer_start": 0}],  # duplicate golds are kept
                            "is_impossible": False,
                        },
                        {
                            "question": "Who painted the river?",
                            "id": f"u{a}{p}",
                            "answers": [],
                            "plausible_answers": [{"text": "nobody", "answer_start": 0}],
                            "is_impossible": True,
                        },
                    ],
                }
                for p in range(4)
            ],
        }
        for a in range(6)
    ],
}

HOTPOT = [
    {
        "_id": f"h{i}",
        "question": f"What is the capital of the country of Blarg{i}?",
        "answer": f"Fennix{i}",
        "type": "bridge",
        "level": "hard",
        "supporting_facts": [[f"Blarg{i}", 0]],
        "context": [[f"Blarg{i}", [f"Blarg{i} is a country. ", f"Its capital is Fennix{i}."]]]
        + [[f"Filler{i}-{j}", [f"Filler {i} {j} is a town. ", "It has a market. " * 3]] for j in range(9)],
    }
    for i in range(12)
]


@pytest.fixture(scope="session")
def qa_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("qa")
    squad, hotpot = root / "dev-v2.0.json", root / "hotpot_dev_distractor_v1.json"
    squad.write_text(json.dumps(SQUAD), encoding="utf-8")
    hotpot.write_text(json.dumps(HOTPOT), encoding="utf-8")
    return {"squad": squad, "hotpotqa": hotpot}
