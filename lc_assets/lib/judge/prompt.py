"""The judge prompt: one accepted pair, its evidence quotes and the shown text around them, and the output schema.

The schema puts a short `check` (the judge's comparison of answer and quotes) BEFORE the verdict: JSON key
order is generation order, so a small model reasons before it decides instead of justifying a verdict it
already wrote. The quotes are shown twice: listed, then marked ``[[n ...]]`` inside the text around them, so
the judge can see what a quote is about (a field's old name, the option a default belongs to, a "not" in the
neighbouring clause) — the errors the lexical checks of generation cannot see.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lc_assets.lib.excerpts import Excerpt, trim_excerpt

if TYPE_CHECKING:
    from lc_assets.lib.lineage.review import ReviewItem

#: bump when the wording below changes meaning (the fingerprint changes with any edit of the text anyway)
JUDGE_PROMPT_VERSION = 2

SYSTEM = (
    "You check question-answer pairs written from a document for a training set. You are strict: an answer is "
    "supported only when the quoted text states it."
)

TASK = """Find what is wrong with this pair, if anything. Compare the answer with the quotes:
- Is each fact of the answer written in the quotes themselves? A fact found only in the question, only near \
the quotes, or nowhere, is a problem.
- Are the quotes about the thing the question names, or about a neighbouring field, option, function, example \
or person?
- Does a "not", "never", "only" or a condition in the quotes get lost or added in the answer?
- Is the text a joke or satire that the pair presents as fact? Does the answer answer the question asked?
In "check", name the first problem you find in a few words, or write "no problem". Then "verdict": \
"supported" only when there is no problem, "partly" when the answer is right but adds or drops something, \
"unsupported" otherwise. "standalone": false when the question relies on "the excerpt", "the code", "the \
release" or a person or thing it does not introduce, else true."""

#: marks a stretch of shown text left out of the judge prompt (far from every quote, or not shown to the generator)
GAP = "[…]"


@dataclass(frozen=True)
class JudgeInput:
    """What the judge reads about one pair (built from lineage, or from a labelled fixture)."""

    pair_id: str
    title: str
    question: str
    answer: str
    quotes: tuple[str, ...]
    context: str  # the shown text around the quotes, each marked [[n ...]]


def render_context(excerpt: Excerpt, context_chars: int) -> str:
    """The shown text within `context_chars` of every quote, quotes marked ``[[n ...]]``, gaps as one GAP each."""
    out: list[str] = []
    open_: tuple[int, ...] = ()
    for seg in trim_excerpt(excerpt, context_chars).segments:
        if seg.quotes != open_:
            if open_:
                out.append("]]")
            if seg.quotes:
                out.append(f"[[{','.join(map(str, seg.quotes))} ")
            open_ = seg.quotes
        if seg.kind == "text":
            out.append(seg.text)
        elif not out or out[-1] != f" {GAP} ":  # a skip next to an elision is one gap
            out.append(f" {GAP} ")
    if open_:
        out.append("]]")
    text = "".join(out).strip()
    text = text[len(GAP) :].lstrip() if text.startswith(GAP) else text  # gaps at the ends say nothing
    return text[: -len(GAP)].rstrip() if text.endswith(GAP) else text


def build_messages(item: JudgeInput) -> list[dict[str, str]]:
    """The chat messages of one judge call."""
    quotes = "\n".join(f"{n}. {q.strip()}" for n, q in enumerate(item.quotes, start=1)) or "(none)"
    context = (
        f"The quotes in their context ([[n ...]] marks quote n; {GAP} marks text left out):\n{item.context}\n\n"
        if item.context
        else ""  # a prompt that did not fit the judge's window with the context: quotes only
    )
    user = (
        f"Document: {item.title}\n\nQuotes from the document:\n{quotes}\n\n{context}"
        f"Question: {item.question}\nAnswer: {item.answer}\n\n{TASK}"
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def judge_json_schema(max_check_chars: int) -> dict[str, Any]:
    """check (reasoning, bounded) -> verdict -> standalone; no other keys."""
    return {
        "type": "object",
        "properties": {
            "check": {"type": "string", "minLength": 1, "maxLength": max_check_chars},
            "verdict": {"type": "string", "enum": ["supported", "partly", "unsupported"]},
            "standalone": {"type": "boolean"},
        },
        "required": ["check", "verdict", "standalone"],
        "additionalProperties": False,
    }


@functools.cache
def judge_prompt_version() -> str:
    """Fingerprint of the judge's messages and schema, rendered on a fixed pair (any change of wording changes it)."""
    sample = JudgeInput("x", "A title", "What is stated?", "It is stated.", ("It is stated.",), "[[1 It is stated.]]")
    blob = json.dumps(
        {"version": JUDGE_PROMPT_VERSION, "messages": build_messages(sample), "schema": judge_json_schema(100)},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


def judge_input(item: ReviewItem, context_chars: int) -> JudgeInput:
    """A stored pair (`lineage.review.load_pairs`) as the judge reads it."""
    return JudgeInput(
        pair_id=item.item_id,
        title=item.document,
        question=item.question or "",
        answer=item.answer or "",
        quotes=tuple(q.text for q in item.quotes),
        context=render_context(item.excerpt, context_chars),
    )
