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


def seed_lineage(
    store, sections: list[Section], generation_hash: str = "gen-a", run_id: str = "seed", max_paragraph_tokens=10_000
) -> None:
    """Store documents, chunks, finished sections, their pairs and prompts as the upstream stages would.

    Pair j's prompt shows paragraph j (mod n) of its chunk, split as generation splits long ones.
    """
    import json

    from lc_assets.lib.generation.masking import split_paragraphs
    from lc_assets.lib.lineage import insert_rows

    docs, chunks, secs, pairs, prompts = {}, {}, [], [], []
    for s in sections:
        docs[s.document_id] = dict(
            document_id=s.document_id, source=s.source, title=s.document_id, license=s.license, byte_size=1,
            n_tokens=1, tokenizer="t", text="", run_id=run_id, config_hash="c",
        )  # fmt: skip
        chunks[s.chunk_id] = dict(
            chunk_id=s.chunk_id, document_id=s.document_id, config_hash="k", shard="test", chunk_index=s.chunk_index,
            char_start=0, char_end=len(s.text), token_start=0, token_end=1, n_tokens=1, cut_kind="end",
            tokenizer="t", text=s.text, run_id=run_id,
        )  # fmt: skip
        secs.append(
            dict(
                section_id=s.section_id, chunk_id=s.chunk_id, document_id=s.document_id, shard="test",
                config_hash=generation_hash, chunk_tokens=1, target_tokens=1, section_tokens=1,
                n_pairs=len(s.pairs), steps=len(s.pairs), failed_steps=0, finish_reason="max_steps", model="m",
                backend="b", run_id=run_id,
            )
        )  # fmt: skip
        paragraphs = split_paragraphs(s.text, lambda xs: [len(x) // 4 for x in xs], max_paragraph_tokens)
        for j, p in enumerate(s.pairs):
            shown = paragraphs[j % len(paragraphs)]
            prompt_id = f"{s.section_id}:{p.step}"
            record = {"messages": [{"role": "user", "content": f"Document excerpts:\n\n{shown.text}\n\nWrite one."}]}
            prompts.append(
                dict(
                    prompt_id=prompt_id, section_id=s.section_id, step=p.step, status="ok", prompt_hash="h",
                    paragraph_ids=[shown.paragraph_id], earlier_pair_ids=[], budget_tokens=1, context_tokens=1,
                    prompt_tokens=1, config_hash=generation_hash, record=json.dumps(record), run_id=run_id,
                )
            )  # fmt: skip
            pairs.append(
                dict(
                    pair_id=p.pair_id, section_id=s.section_id, step=p.step, prompt_id=prompt_id,
                    question=p.question, answer=p.answer, model="m", backend="b", prompt_tokens=1,
                    completion_tokens=1, attempts=1, seconds=0.0, config_hash=generation_hash, run_id=run_id,
                )
            )  # fmt: skip
    with store.transaction() as con:
        insert_rows(con, "documents", list(docs.values()))
        insert_rows(con, "chunks", list(chunks.values()))
        insert_rows(con, "sections", secs)
        insert_rows(con, "masked_prompts", prompts)
        insert_rows(con, "qa_pairs", pairs)


def make_book(document_id: str, n_chunks: int, seed: int = 0, pairs: tuple[int, int] = (2, 4)) -> list[Section]:
    """One long document as consecutive chunks (chunk_index 0..n-1), each a section with pairs."""
    rng = random.Random(seed)
    out = []
    for k in range(n_chunks):
        base = make_section(k, rng, paragraphs=(8, 14), pairs=pairs, prefix=f"{document_id}-")
        out.append(
            Section(
                section_id=f"{document_id}-{k:03d}", chunk_id=f"{document_id}-c{k}", document_id=document_id,
                source="books", license="cc-by-4.0", text=base.text,
                pairs=tuple(QAPair(f"{document_id}-{k:03d}-p{j}", j, p.question, p.answer) for j, p in enumerate(base.pairs)),
                chunk_index=k,
            )
        )  # fmt: skip
    return out
