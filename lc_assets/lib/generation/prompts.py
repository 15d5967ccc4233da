"""Prompts, the output schema, output validation and the context-overflow guard for one QA step."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lc_assets.lib.generation.masking import DEFAULT_SKIP_MARKER, Mask, Paragraph, render_mask
from lc_assets.lib.sections import QAPair

SYSTEM_PROMPT = (
    "You write training data for a reading-comprehension assistant. You are shown excerpts of a long "
    "document; the marker {marker} stands where text was skipped. Write exactly ONE new question that a "
    "reader of the whole document could ask, answerable from the excerpts, about information that the "
    "earlier questions do not cover, and its answer. The answer must be correct, self-contained and "
    'concise. Reply only with a JSON object with the keys "question" and "answer".'
)

USER_TEMPLATE = """Document excerpts:

{context}

{earlier}Write one new question about a specific detail of these excerpts and its answer, as JSON."""

EARLIER_HEADER = "Questions already asked about this document (do not repeat them; ask about something else):\n"


def qa_json_schema(max_question_chars: int, max_answer_chars: int) -> dict[str, Any]:
    """The strict output schema; ``maxLength`` bounds the answer so a small model cannot copy pages."""
    return {
        "type": "object",
        "properties": {
            "question": {"type": "string", "minLength": 8, "maxLength": max_question_chars},
            "answer": {"type": "string", "minLength": 1, "maxLength": max_answer_chars},
        },
        "required": ["question", "answer"],
        "additionalProperties": False,
    }


def render_earlier_pairs(pairs: Sequence[QAPair]) -> str:
    if not pairs:
        return ""
    lines = [f"- Q: {p.question}\n  A: {p.answer}" for p in pairs]
    return EARLIER_HEADER + "\n".join(lines) + "\n\n"


def build_messages(
    paragraphs: Sequence[Paragraph],
    n_paragraphs_total: int,
    earlier_pairs: Sequence[QAPair],
    marker: str = DEFAULT_SKIP_MARKER,
) -> tuple[dict[str, str], ...]:
    """The chat messages (system + user) of one step."""
    context = render_mask(paragraphs, n_paragraphs_total, marker)
    user = USER_TEMPLATE.format(context=context, earlier=render_earlier_pairs(earlier_pairs))
    return (
        {"role": "system", "content": SYSTEM_PROMPT.format(marker=marker)},
        {"role": "user", "content": user},
    )


def prompt_hash(messages: Sequence[dict[str, str]]) -> str:
    """Content hash of the exact messages sent (lineage key; equal on a deterministic resume)."""
    blob = json.dumps(list(messages), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


# -- output validation --------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedQA:
    """Outcome of validating one model output: either a question/answer or a reason it is invalid."""

    question: str | None
    answer: str | None
    reason: str | None = None  # None when valid

    @property
    def ok(self) -> bool:
        return self.reason is None


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def parse_qa_output(text: str, max_question_chars: int, max_answer_chars: int) -> ParsedQA:
    """Validate one raw output against the schema (also for servers that ignore the schema)."""
    raw = text.strip()
    fenced = _FENCE.match(raw)
    if fenced:
        raw = fenced.group(1)
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        return ParsedQA(None, None, f"invalid_json: {exc.msg} at char {exc.pos}")
    if not isinstance(obj, dict):
        return ParsedQA(None, None, f"invalid_json: expected an object, got {type(obj).__name__}")
    question, answer = obj.get("question"), obj.get("answer")
    if not isinstance(question, str) or not isinstance(answer, str):
        return ParsedQA(None, None, "missing_field: question and answer must both be strings")
    question, answer = question.strip(), answer.strip()
    if not question or not answer:
        return ParsedQA(None, None, "empty_field: question or answer is empty")
    if len(question) > max_question_chars:
        return ParsedQA(None, None, f"too_long: question has {len(question)} chars > {max_question_chars}")
    if len(answer) > max_answer_chars:
        return ParsedQA(None, None, f"too_long: answer has {len(answer)} chars > {max_answer_chars}")
    if normalize_question(question) == normalize_question(answer):
        return ParsedQA(None, None, "degenerate: answer repeats the question")
    looping = repeated_ngram_share(answer)
    if looping > MAX_REPEATED_NGRAM_SHARE:
        return ParsedQA(None, None, f"degenerate: answer loops ({looping:.0%} of its 4-grams are repeats)")
    return ParsedQA(question, answer)


#: share of repeated word 4-grams above which an answer is a generation loop, not content
MAX_REPEATED_NGRAM_SHARE = 0.35


def repeated_ngram_share(text: str, n: int = 4) -> float:
    """Fraction of the word n-grams of `text` that already occurred earlier in it (0 for short texts)."""
    words = normalize_question(text).split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if len(grams) < 8:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def normalize_question(text: str) -> str:
    """Case-, accent-, punctuation- and whitespace-insensitive form used for duplicate detection."""
    folded = unicodedata.normalize("NFKD", text).casefold()
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    folded = re.sub(r"[^\w\s]", " ", folded)
    return " ".join(folded.split())


# -- context-overflow guard ---------------------------------------------------------------------


class PromptOverflowError(ValueError):
    """Even the smallest prompt of this step does not fit the model's context window."""


@dataclass(frozen=True)
class FittedPrompt:
    """A prompt that fits: the messages, what they show, and what the guard had to drop."""

    messages: tuple[dict[str, str], ...]
    shown: tuple[Paragraph, ...]  # in selection order
    dropped: tuple[Paragraph, ...]
    earlier_pairs: tuple[QAPair, ...]
    dropped_pairs: tuple[QAPair, ...]
    prompt_tokens: int


def fit_prompt(
    mask: Mask,
    n_paragraphs_total: int,
    earlier_pairs: Sequence[QAPair],
    count_prompt_tokens: Callable[[Sequence[dict[str, str]]], int],
    context_window: int,
    max_tokens: int,
    marker: str = DEFAULT_SKIP_MARKER,
) -> FittedPrompt:
    """Build the step's prompt and make sure prompt + ``max_tokens`` fits ``context_window``.

    The prompt is counted exactly (the generator's own chat template). If it is too long, whole
    sampled paragraphs are dropped, last-selected first (never a cut inside text), then earlier
    pairs; if one paragraph alone still does not fit, :class:`PromptOverflowError` names the sizes.
    """
    limit = context_window - max_tokens
    if limit <= 0:
        raise PromptOverflowError(f"max_tokens={max_tokens} leaves no room in context_window={context_window}")
    selected = list(mask.selected)
    pairs = list(earlier_pairs)
    dropped: list[Paragraph] = []
    dropped_pairs: list[QAPair] = []
    while True:
        messages = build_messages(selected, n_paragraphs_total, pairs, marker)
        n = count_prompt_tokens(messages)
        if n <= limit:
            return FittedPrompt(messages, tuple(selected), tuple(dropped), tuple(pairs), tuple(dropped_pairs), n)
        excess = n - limit
        if len(selected) > 1:
            # drop enough paragraphs to cover the excess in one go (then recount exactly)
            freed = 0
            while len(selected) > 1 and freed < excess:
                para = selected.pop()
                dropped.insert(0, para)
                freed += para.n_tokens
        elif pairs:
            dropped_pairs.insert(0, pairs.pop(0))  # oldest first: the newest matters most for repeats
        else:
            raise PromptOverflowError(
                f"prompt of {n} tokens (one paragraph of {selected[0].n_tokens if selected else 0} tokens, "
                f"no earlier pairs) + max_tokens={max_tokens} > context_window={context_window}"
            )
