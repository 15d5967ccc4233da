"""Prompts, the output schema and the context-overflow guard for one QA step.

The output schema puts ``evidence`` FIRST: JSON key order is generation order, and small models
write far better pairs when they copy their support before they ask and answer (measured on this
project, docs/qa_quality.md). The prompt asks for standalone questions of varied kinds and for
answers that state only what the quotes say. Parsing and every rejection check live in
:mod:`lc_assets.lib.generation.validate` (re-exported here for older callers).
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lc_assets.lib.generation.kind_cues import KIND_CUES, kind_for_text
from lc_assets.lib.generation.masking import (
    DEFAULT_SKIP_MARKER,
    Mask,
    MaskWindow,
    Paragraph,
    derive_rng,
    render_mask,
    windows_of,
)
from lc_assets.lib.generation.validate import (  # noqa: F401 - re-exported: the scheduler imports them from here
    MAX_REPEATED_NGRAM_SHARE,
    ParsedQA,
    ShownTextMemo,
    attribution_prefix,
    normalize_question,
    parse_qa_output,
    quotable_pieces,
    repeated_ngram_share,
)
from lc_assets.lib.sections import QAPair

#: Goes into the generation hash: a changed prompt or schema never resumes another prompt's sections.
#: v2: the evidence choices no longer break a sentence at a lone "." or ".." (validate.quotable_pieces)
#: v3: nor after "i.e." or "e.g."
#: v4: "why" is suggested only when the text the question must come from states a reason (kind_cues); the
#: sections of `attributed_sources` are asked to start their questions "In <document>, " (ATTRIBUTION_TASK)
PROMPT_VERSION = "qa-evidence-v4"

SYSTEM_PROMPT = (
    "You write reading-comprehension training data. You are shown excerpts of a long document; each "
    'starts with "Excerpt N:" and the marker {marker} stands where text was skipped. Reply with ONE JSON '
    "object whose keys come in this order:\n"
    '1. "evidence": one to {max_quotes} short quotes copied word for word from the excerpts\' text (a sentence '
    'or a line each; never the title or an "Excerpt N:" label): the facts your answer rests on.\n'
    '2. "question": one question that the quotes answer. It must stand alone: name its subject (the '
    "function, command, option, term or person) so that a reader who never saw the excerpts understands "
    'it. Never write "the excerpt", "the text", "the passage", "the snippet" or "the given code".\n'
    '3. "answer": a short, complete answer that states only what the quotes say. Add no other fact.\n'
    "Ask about something the earlier questions do not cover."
)

USER_TEMPLATE = """{title}Document excerpts:

{context}

{earlier}{task}"""

TASK = "Write one new question of this kind: {kind}. If the excerpts cannot support that kind, ask another kind."
TASK_ANY = "Write one new question about a specific fact of these excerpts."
#: Focus steering (generation.focus): the step names the excerpt its evidence must come from
FOCUS_TASK = "Quote your evidence from Excerpt {n} and ask about it; the other excerpts are context."
LONG_RANGE_TASK = (
    "Excerpt 1 and Excerpt 2 are far apart in the document. Quote evidence from BOTH excerpts and ask a "
    "question whose answer needs the facts of both."
)

EARLIER_HEADER = "Questions already asked about this document (ask about something else):\n"

#: Attribution (`attributed_sources`): a document that speaks for its author — satire, fiction, opinion, a
#: humorous glossary — is not a source of facts, so its questions must name it ("In The Devil's Dictionary, how is
#: Redemption defined?"); unnamed, "How does the doctrine of Redemption play a role in salvation?" answered with
#: Bierce's joke reads as a fact (demo run, 2026-12-03). The schema also makes the question start so.
ATTRIBUTION_TASK = 'Begin the question with "{prefix}": this document speaks for its author, not for fact.'

#: What each kind asks for; the scheduler suggests one per step (:func:`suggest_kind`) so one
#: template cannot dominate a section ("What is the purpose of ..." again and again).
KIND_HINTS: dict[str, str] = {
    "what": "a what/which question about a specific fact",
    "why": "a why question about a reason or purpose that the excerpts state",
    "how": "a how question about a procedure, mechanism or behaviour",
    "compare": "a question that compares two things the excerpts describe",
    "list": "a question whose answer lists several items named in the excerpts",
    "numeric": "a question whose answer is a number, date, version, size or limit",
    "multi_hop": "a question that needs two facts from different places of the excerpts",
}

#: The prompt's fixed texts: an output copying them is an echo (see validate.validate_output).
INSTRUCTION_TEXTS: tuple[str, ...] = (
    SYSTEM_PROMPT,
    TASK,
    TASK_ANY,
    FOCUS_TASK,
    LONG_RANGE_TASK,
    EARLIER_HEADER,
    ATTRIBUTION_TASK,
    *KIND_HINTS.values(),
)


def kinds_in_turn(seed: int, section_id: str, step: int, kinds: Sequence[str] = tuple(KIND_HINTS)) -> tuple[str, ...]:
    """The kind the section's cycle gives ``step`` (a shuffled cycle over ``kinds`` per section, deterministic),
    then the rest of that cycle in order from it, wrapping: the kinds a step falls back to, first to last."""
    if not kinds:
        raise ValueError("kinds must not be empty")
    cycle, pos = divmod(step, len(kinds))
    order = list(kinds)
    derive_rng(seed, section_id, "kinds", cycle).shuffle(order)
    return (*order[pos:], *order[:pos])


def suggest_kind(
    seed: int, section_id: str, step: int, kinds: Sequence[str] = tuple(KIND_HINTS), text: str | None = None
) -> str | None:
    """The question kind suggested to ``step``: its kind in a shuffled cycle over ``kinds`` per section.

    ``text``: what the step's question must come from (:func:`question_text`). A kind it cannot support (``"why"``
    where no reason is stated, :data:`kind_cues.KIND_CUES`) gives way to the next kind of the cycle that it can;
    None when none can (any question). Other steps keep their kind. Deterministic per (seed, section, step, text).
    """
    turn = kinds_in_turn(seed, section_id, step, kinds)
    return turn[0] if text is None else kind_for_text(turn, text)


def question_text(windows: Sequence[MaskWindow], focus: int | None) -> str:
    """The text a step's question must come from: its focus window's, else every shown window's."""
    shown = windows if focus is None else windows[focus : focus + 1]
    return "\n\n".join(p.text for w in shown for p in w.paragraphs)


def evidence_choices(
    windows: Sequence[MaskWindow],
    max_quote_chars: int = 200,
    min_words: int = 3,
    min_chars: int = 20,
    memo: ShownTextMemo | None = None,
) -> list[str]:
    """The shown text cut into quotable pieces: sentences of prose, lines of code, in document order.

    Passed as the schema's ``enum`` of evidence items (:func:`qa_json_schema`), grammar-constrained
    decoding can then only copy real text: small models paraphrase quotes ("The excerpt states
    that ...") when they may write them freely. Each piece is a verbatim substring of a shown
    paragraph (:func:`validate.quotable_pieces`); ``memo`` (the section's) cuts each paragraph once.
    """
    memo = ShownTextMemo() if memo is None else memo
    # the shown paragraphs' pieces in window order (only the text is asked), each piece once
    return list(
        dict.fromkeys(
            piece
            for window in windows
            for para in window.paragraphs
            for _, _, piece in memo.pieces(para, max_quote_chars, min_words, min_chars)
        )
    )


def qa_json_schema(
    max_question_chars: int,
    max_answer_chars: int,
    *,
    max_quote_chars: int = 200,
    min_quotes: int = 1,
    max_quotes: int = 2,
    kinds: Sequence[str] | None = None,
    quote_choices: Sequence[str] | None = None,
    quote_choices_per_window: Sequence[Sequence[str]] | None = None,
    question_prefix: str | None = None,
) -> dict[str, Any]:
    """The strict output schema: evidence first, then (optionally) kind, question, answer.

    ``maxLength`` bounds every string so a small model cannot copy pages; property order is the
    order grammar-constrained decoding writes them in. ``quote_choices`` (see
    :func:`evidence_choices`) makes every evidence item one of the shown sentences/lines verbatim;
    ``quote_choices_per_window`` (long-range steps) makes item i one of window i's pieces, so the
    evidence comes from every window (JSON Schema ``prefixItems``). ``question_prefix``: the question starts so
    (a ``pattern``, anchored at both ends as llama.cpp's grammar converter requires; no double quote or backslash
    after the prefix, which the pattern would otherwise let through unescaped).
    """
    if not 1 <= min_quotes <= max_quotes:
        raise ValueError(f"need 1 <= min_quotes <= max_quotes, got {min_quotes}..{max_quotes}")
    item: dict[str, Any] = {"type": "string", "minLength": 8, "maxLength": max_quote_chars}
    if quote_choices:
        item = {"type": "string", "enum": list(quote_choices)}
    evidence: dict[str, Any] = {"type": "array", "items": item, "minItems": min_quotes, "maxItems": max_quotes}
    if quote_choices_per_window and all(quote_choices_per_window):
        n = len(quote_choices_per_window)
        evidence = {
            "type": "array",
            "prefixItems": [{"type": "string", "enum": list(c)} for c in quote_choices_per_window],
            "minItems": n,
            "maxItems": n,
        }
    props: dict[str, Any] = {"evidence": evidence}
    if kinds:
        props["kind"] = {"type": "string", "enum": list(kinds)}
    props["question"] = {"type": "string", "minLength": 8, "maxLength": max_question_chars}
    if question_prefix:
        rest = max(1, max_question_chars - len(question_prefix))
        props["question"]["pattern"] = f'^{_schema_regex_literal(question_prefix)}[^"\\\\\\n]{{1,{rest}}}$'
    props["answer"] = {"type": "string", "minLength": 1, "maxLength": max_answer_chars}
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


_TITLE_TAIL = re.compile(r"\s*(?:\([^()]*\)|v?\d+(?:\.\d+)+)\s*$")


def attribution_name(title: str) -> str:
    """The name a question gives its document: the title without a trailing parenthesis or version number
    ("The Devil's Dictionary (Bierce, 1911)" -> "The Devil's Dictionary", "The Jargon File 4.4.7" -> "The Jargon
    File")."""
    name = title.strip()
    while True:
        shorter = _TITLE_TAIL.sub("", name)
        if shorter == name or not shorter:
            return name
        name = shorter


def section_attribution(patterns: Sequence[str], source: str, title: str) -> str | None:
    """The name a section's questions must start with, when its document's source matches one of ``patterns``
    (fnmatch, case-sensitive; ``attributed_sources``) and it has a title to name; else None."""
    if not title.strip() or not any(fnmatch.fnmatchcase(source, p) for p in patterns):
        return None
    return attribution_name(title)


def _schema_regex_literal(text: str) -> str:
    """``text`` as a literal in a JSON-schema ``pattern`` (ECMA-262 syntax: only the metacharacters escaped)."""
    return "".join(f"\\{c}" if c in "\\^$.|?*+()[]{}/" else c for c in text)


def title_line(title: str | None) -> str:
    """The sentence naming the document (empty without a title), so questions can name their subject."""
    return f"The excerpts come from the document titled {title!r}.\n\n" if title else ""


def render_earlier_pairs(pairs: Sequence[QAPair]) -> str:
    """Earlier questions as a plain list: no "Q:"/"A:" labels for a small model to copy, no answers to echo."""
    if not pairs:
        return ""
    return EARLIER_HEADER + "\n".join(f"- {p.question}" for p in pairs) + "\n\n"


def build_messages(
    paragraphs: Sequence[Paragraph],
    n_paragraphs_total: int,
    earlier_pairs: Sequence[QAPair],
    marker: str = DEFAULT_SKIP_MARKER,
    *,
    kind: str | None = None,
    long_range: bool = False,
    title: str | None = None,
    max_quotes: int = 2,
    focus: int | None = None,
    attribution: str | None = None,
) -> tuple[dict[str, str], ...]:
    """The chat messages (system + user) of one step.

    ``kind``: a key of :data:`KIND_HINTS` to suggest (None: any). ``long_range``: the two windows are
    far apart and the question must need both. ``title``: the document's title, so questions can
    name their subject ("In PostgreSQL, ..."). ``focus``: the window (0-based, document order) the
    evidence must come from (not on a long-range step). ``attribution``: the document's name
    (:func:`attribution_name`) when its questions must name it (``attributed_sources``).
    """
    context = render_mask(paragraphs, n_paragraphs_total, marker, numbered=True)
    if long_range:
        task = LONG_RANGE_TASK
    elif kind is not None:
        if kind not in KIND_HINTS:
            raise ValueError(f"unknown question kind {kind!r}; known: {sorted(KIND_HINTS)}")
        task = TASK.format(kind=KIND_HINTS[kind])
    else:
        task = TASK_ANY
    if focus is not None and not long_range:
        task = f"{FOCUS_TASK.format(n=focus + 1)} {task}"
    if attribution:
        task = f"{task} {ATTRIBUTION_TASK.format(prefix=attribution_prefix(attribution))}"
    user = USER_TEMPLATE.format(
        title=title_line(title),
        context=context,
        earlier=render_earlier_pairs(earlier_pairs),
        task=task,
    )
    return (
        {
            "role": "system",
            "content": SYSTEM_PROMPT.format(marker=marker, max_quotes=max(max_quotes, 2 if long_range else 1)),
        },
        {"role": "user", "content": user},
    )


def prompt_hash(messages: Sequence[dict[str, str]]) -> str:
    """Content hash of the exact messages sent (lineage key; equal on a deterministic resume)."""
    blob = json.dumps(list(messages), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


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
    long_range: bool = False  # the step still shows both far-apart windows (the guard may have dropped one)
    kind: str | None = None  # the question kind the prompt suggested
    focus: int | None = None  # the window (index into `windows`) the prompt asked about; None: any
    attribution: str | None = None  # the document's name, which the question must start with; None: no such rule

    @functools.cached_property
    def windows(self) -> tuple[MaskWindow, ...]:
        """The shown windows in document order: what :func:`validate.validate_output` checks quotes against."""
        return windows_of(self.shown)


def fit_prompt(
    mask: Mask,
    n_paragraphs_total: int,
    earlier_pairs: Sequence[QAPair],
    count_prompt_tokens: Callable[[Sequence[dict[str, str]]], int],
    context_window: int,
    max_tokens: int,
    marker: str = DEFAULT_SKIP_MARKER,
    *,
    kind: str | None = None,
    title: str | None = None,
    max_quotes: int = 2,
    choose_focus: Callable[[tuple[MaskWindow, ...]], int | None] | None = None,
    attribution: str | None = None,
    kind_fallbacks: Sequence[str] | None = None,
) -> FittedPrompt:
    """Build the step's prompt and make sure prompt + ``max_tokens`` fits ``context_window``.

    The prompt is counted exactly (the generator's own chat template). If it is too long, whole
    sampled paragraphs are dropped, last-selected first (never a cut inside text), then earlier
    pairs; if one paragraph alone still does not fit, :class:`PromptOverflowError` names the sizes.
    ``choose_focus``: the focus window of the windows still shown (chosen again after a drop), or None.
    ``kind_fallbacks`` (the rest of the section's kind cycle, :func:`kinds_in_turn`): when ``kind`` needs something
    the question's text (:func:`question_text` of the windows still shown) lacks, the first of them that fits is
    suggested instead (None: ``kind`` as given). A long-range step names no kind and keeps ``kind``.
    """
    limit = context_window - max_tokens
    if limit <= 0:
        raise PromptOverflowError(f"max_tokens={max_tokens} leaves no room in context_window={context_window}")
    selected = list(mask.selected)
    pairs = list(earlier_pairs)
    dropped: list[Paragraph] = []
    dropped_pairs: list[QAPair] = []
    while True:
        windows = windows_of(selected)
        long_range = mask.long_range and len(windows) >= 2
        focus = choose_focus(windows) if choose_focus is not None and not long_range else None
        step_kind = kind
        if kind in KIND_CUES and kind_fallbacks is not None and not long_range:
            step_kind = kind_for_text((kind, *kind_fallbacks), question_text(windows, focus))
        messages = build_messages(
            selected,
            n_paragraphs_total,
            pairs,
            marker,
            kind=step_kind,
            long_range=long_range,
            title=title,
            max_quotes=max_quotes,
            focus=focus,
            attribution=attribution,
        )
        n = count_prompt_tokens(messages)
        if n <= limit:
            fitted = FittedPrompt(
                messages, tuple(selected), tuple(dropped), tuple(pairs), tuple(dropped_pairs), n, long_range,
                step_kind, focus, attribution,
            )  # fmt: skip
            fitted.__dict__["windows"] = windows  # the cached property, already built from the same paragraphs
            return fitted
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
