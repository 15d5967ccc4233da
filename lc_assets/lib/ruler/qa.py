"""QA tasks (qa_1 = SQuAD v2 dev, qa_2 = HotpotQA dev-distractor): the gold paragraph(s) among distractors.

Datasets come from a local json file in the original shape (``dev-v2.0.json``,
``hotpot_dev_distractor_v1.json``) or a Hugging Face dataset name (``name`` or ``name:config``,
split ``validation``) already available offline. When neither works the task is "not run" with the
reason; nothing is ever made up.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import Any

from lc_assets.lib.ruler.base import CountCache, Rendered, UnitGenerator
from lc_assets.lib.ruler.templates import full_template

DOCUMENT = "Document {i}:\n{document}"


@dataclass(frozen=True)
class QaItem:
    query: str
    outputs: list[str]
    gold: list[int]  # doc ids holding the answer
    more: list[int] = field(default_factory=list)  # SQuAD: other paragraphs of the same article


@dataclass
class QaData:
    name: str
    source: str
    items: list[QaItem]
    docs: list[str]  # sorted set of all paragraphs


@dataclass(frozen=True)
class QaUnavailable:
    """A QA dataset that could not be loaded, and why."""

    name: str
    reason: str


def _squad(articles: list[dict[str, Any]]) -> tuple[list[QaItem], list[str]]:
    """RULER's ``read_squad``: answerable questions only, all gold texts (duplicates kept)."""
    docs = sorted({p["context"] for a in articles for p in a["paragraphs"]})
    doc_id = {d: i for i, d in enumerate(docs)}
    items = []
    for article in articles:
        article_docs = [doc_id[p["context"]] for p in article["paragraphs"]]
        for p in article["paragraphs"]:
            this = doc_id[p["context"]]
            for qa in p["qas"]:
                if not qa.get("is_impossible", False) and qa["answers"]:
                    items.append(
                        QaItem(
                            query=qa["question"],
                            outputs=[a["text"] for a in qa["answers"]],
                            gold=[this],
                            more=[d for d in article_docs if d != this],
                        )
                    )
    return items, docs


def _hotpot(rows: list[dict[str, Any]]) -> tuple[list[QaItem], list[str]]:
    """RULER's ``read_hotpotqa``: docs are ``f"{title}\\n{''.join(sentences)}"``; all 10 paragraphs are "gold"."""

    def as_doc(title: str, sentences: list[str]) -> str:
        return f"{title}\n{''.join(sentences)}"

    docs = sorted({as_doc(t, s) for row in rows for t, s in row["context"]})
    doc_id = {d: i for i, d in enumerate(docs)}
    items = [
        QaItem(query=row["question"], outputs=[row["answer"]], gold=[doc_id[as_doc(t, s)] for t, s in row["context"]])
        for row in rows
    ]
    return items, docs


def _from_hf(name: str, spec: str) -> tuple[list[QaItem], list[str]]:
    """Load a Hugging Face dataset (cached / offline) and convert its rows to the original json shapes."""
    import datasets

    repo, _, config = spec.partition(":")
    ds = datasets.load_dataset(repo, config or None, split="validation")
    if name == "squad":
        articles: dict[str, dict[str, Any]] = {}
        for row in ds:
            article = articles.setdefault(row["title"], {"title": row["title"], "paragraphs": []})
            if not article["paragraphs"] or article["paragraphs"][-1]["context"] != row["context"]:
                article["paragraphs"].append({"context": row["context"], "qas": []})
            texts = list(row["answers"]["text"])
            article["paragraphs"][-1]["qas"].append(
                {
                    "question": row["question"],
                    "answers": [{"text": t} for t in texts],
                    "is_impossible": not texts,
                }
            )
        return _squad(list(articles.values()))
    rows = [
        {
            "question": row["question"],
            "answer": row["answer"],
            "context": list(zip(row["context"]["title"], row["context"]["sentences"], strict=True)),
        }
        for row in ds
    ]
    return _hotpot(rows)


def load_qa_dataset(name: str, source: str | None) -> QaData | QaUnavailable:
    """Load ``squad`` or ``hotpotqa`` from a local json file or an offline-available HF dataset."""
    if not source:
        return QaUnavailable(name, f"no source configured for the {name} dataset")
    path = Path(source).expanduser()
    looks_local = path.suffix == ".json" or path.is_absolute() or source.startswith(".") or path.exists()
    try:
        if looks_local:
            if not path.is_file():
                return QaUnavailable(name, f"{name} file not found: {source}")
            data = json.loads(path.read_text(encoding="utf-8"))
            items, docs = _squad(data["data"]) if name == "squad" else _hotpot(data)
        else:
            items, docs = _from_hf(name, source)
    except Exception as exc:  # noqa: BLE001 - offline hub errors, bad files: all mean "cannot run"
        return QaUnavailable(name, f"could not load {name} from {source!r}: {type(exc).__name__}: {exc}")
    if not items or not docs:
        return QaUnavailable(name, f"{name} from {source!r} has no usable questions")
    return QaData(name=name, source=source, items=items, docs=docs)


@dataclass
class QaMaterial:
    item: QaItem
    ordered: list[int]  # gold, then same-article docs (shuffled), then random others
    prefix: list[int]  # token prefix sums over `ordered`
    fixed_tokens: int


class QaGenerator(UnitGenerator[QaMaterial]):
    """RULER's ``qa.py``: sample i uses question i (file order); units are documents (inc 10)."""

    family = "qa"

    def __init__(
        self, data: QaData, max_seq_length: int, tokens_to_generate: int, model_template_type: str, cache: CountCache
    ) -> None:
        self.data = data
        self._set_budget(max_seq_length, tokens_to_generate, cache)
        self.inc = 10
        self.max_samples = len(data.items)
        self.template = full_template("qa", model_template_type)
        self._headers: list[int] = [0]

    def _header_tokens(self, n: int) -> int:
        have = len(self._headers) - 1
        if n > have:
            labels = [DOCUMENT.format(i=i, document="") + "\n\n" for i in range(have + 1, n + 1)]
            self._headers.extend(accumulate(self.cache.counts(labels), initial=self._headers[-1]))
            del self._headers[have + 1]
        return self._headers[n]

    def upper_bound(self, rng: random.Random) -> int:
        tokens_per_doc = self.estimate(self.draw(rng, self.inc, index=0), self.inc) / self.inc
        return int(self.max_seq_length / tokens_per_doc * 3)

    def draw(self, rng: random.Random, max_units: int, index: int = 0) -> QaMaterial:
        item = self.data.items[index]
        n_docs = len(self.data.docs)
        more = list(item.more)
        rng.shuffle(more)
        excluded = set(item.gold) | set(item.more)
        wanted = max(0, min(max_units, n_docs - 1) - len(item.gold) - len(more))
        others: list[int] = []
        if wanted:
            pool = rng.sample(range(n_docs), min(n_docs, wanted + len(excluded)))
            others = [d for d in pool if d not in excluded][:wanted]
        ordered = list(item.gold) + more + others
        counts = self.cache.counts([self.data.docs[d] for d in ordered])
        shell = self.template.format(context="", query=item.query)
        return QaMaterial(item, ordered, list(accumulate(counts, initial=0)), self.cache.count(shell))

    def _docs(self, m: QaMaterial, n: int) -> list[int]:
        n_docs = len(self.data.docs)
        if n < n_docs:
            return m.ordered[: max(n, len(m.item.gold))]
        return (list(range(n_docs)) * (n // n_docs + 1))[:n]  # RULER repeats the whole (sorted) pool

    def estimate(self, m: QaMaterial, n: int) -> float:
        if n < len(self.data.docs):
            doc_tokens = m.prefix[max(n, len(m.item.gold))]
        else:
            doc_tokens = sum(self.cache.counts([self.data.docs[d] for d in self._docs(m, n)]))
        return m.fixed_tokens + doc_tokens + self._header_tokens(n)

    def render(self, m: QaMaterial, n: int) -> Rendered:
        docs = [self.data.docs[d] for d in self._docs(m, n)]
        random.Random(42).shuffle(docs)  # RULER: a fixed permutation per document count
        context = "\n\n".join(DOCUMENT.format(i=i + 1, document=d) for i, d in enumerate(docs))
        return Rendered(text=self.template.format(context=context, query=m.item.query), outputs=list(m.item.outputs))
