"""Validation of one generated QA output: parse it, ground it in the shown text, or reject it with a reason.

A pair is accepted only when every check passes; otherwise :func:`validate_output` returns the
first failing check as a stable *code* (see :data:`REJECTION_REASONS`) plus a human-readable
detail. Rejected outputs are never stored as pairs (the caller retries, then records the step as
failed with ``"<code>: <detail>"``).

Grounding: the output carries ``evidence``, short quotes the model copied from the excerpts. Each
quote must be found in one shown window (whitespace/case/quote-style normalised; a fuzzy match
above a threshold where the model altered punctuation), and is mapped to its exact chunk-relative
character span (:class:`EvidenceSpan`), so the depth of every answer in its chunk is known. The
answer must then be *supported* by its evidence sentence by sentence: word overlap over a whole
answer overstates quality 3-5x (an answer that starts right and adds an invented fact still
overlaps well), so each answer sentence must have its content words, and all of its numbers, in
the evidence (plus the question's words that occur in the shown text).
"""

from __future__ import annotations

import array
import bisect
import functools
import itertools
import json
import re
import sys
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from pydantic import Field
from rapidfuzz import fuzz

from lc_assets.lib.generation.masking import MaskWindow, Paragraph
from lc_assets.lib.sections import QAPair
from lc_assets.lib.stepconfig import StepConfig

#: Every rejection code, in the order the checks run (the first failing check names the output).
REJECTION_REASONS: dict[str, str] = {
    "invalid_json": "output is not a JSON object",
    "missing_field": "question, answer or evidence missing or of the wrong type",
    "too_long": "question, answer or a quote longer than its bound, or as long (cut there by the output grammar)",
    "qa_artefact": 'a "Q:"/"A:"/"Question:"/"Answer:" prefix copied from the prompt format',
    "empty_answer": "the answer has no content (empty, lone punctuation, a refusal such as 'not mentioned')",
    "placeholder": "a template placeholder such as '[insert detail]' or the skip marker in the answer",
    "not_a_question": "the question is not one question (no question mark, fewer than 3 words, or several questions)",
    "degenerate": "looping output (repeated 4-grams), an answer that repeats the question or stops mid-sentence",
    "echo": "a copy of the prompt's instructions or of an earlier pair of the section",
    "duplicate_question": "near-duplicate of an earlier question of the section (ROUGE-L over the threshold)",
    "not_standalone": "question or answer points at 'the given code/excerpt/text' instead of naming its subject",
    "unattributed_question": "the document speaks for its author (satire, fiction, opinion: `attributed_sources`) "
    "and the question does not name it ('In The Devil's Dictionary, ...'): its answer would read as a fact",
    "wrong_language": "question or answer in another language than the source text",
    "evidence_missing": "no evidence quote",
    "evidence_not_found": "a quote is not in the shown text (or too short to ground anything)",
    "long_range_evidence": "a long-range step whose quotes do not come from both far-apart windows",
    "evidence_off_focus": "a quote from another window than the one the step asked about (a backend that did not "
    "enforce the evidence choices)",
    "unsupported_answer": "an answer sentence whose content words or numbers are not in the evidence",
    "subject_not_in_evidence": "an identifier the question or answer names (`name`, snake_case, a dotted or called "
    "name such as os.remove()) is not in or just before the evidence: the facts are pinned on another function",
    "off_topic_evidence": "the answer rests on text about something else than the question: evidence the validator "
    "added shares no word with the question, nor does the evidence next to it; or the answer's words come only from "
    "quotes that share no word with the question, apart from the quotes the question is about",
    "number_mismatch": "a number of the answer counts another thing than the same number in the evidence "
    "('eleven messages' where the text says 'eleven emails')",
    "copied_line": "the answer is a quoted line of program output or code, word for word, not an answer",
}

QUESTION_KINDS = ("what", "why", "how", "compare", "list", "numeric", "multi_hop", "yes_no", "other")


class ValidationConfig(StepConfig):
    """Bounds and thresholds of the checks. Part of the generation hash (they decide what is kept)."""

    max_question_chars: int = Field(250, ge=16, le=4000, description="Longest question kept.")
    max_answer_chars: int = Field(600, ge=16, le=20000, description="Longest answer kept.")
    max_quote_chars: int = Field(300, ge=20, le=4000, description="Longest evidence quote kept.")
    min_quote_words: int = Field(
        3, ge=1, le=20, description="A quote needs this many words or min_quote_chars ('the', 'None' ground nothing)."
    )
    min_quote_chars: int = Field(20, ge=1, le=200, description="...or this many characters (a long identifier).")
    fuzzy_threshold: float = Field(
        90.0, ge=50.0, le=100.0, description="rapidfuzz partial_ratio a quote needs when not found exactly."
    )
    duplicate_rouge_l: float = Field(
        0.7, gt=0.0, le=1.0, description="ROUGE-L F1 to an earlier question at which a question is a duplicate."
    )
    echo_rouge_l: float = Field(
        0.9, gt=0.0, le=1.0, description="ROUGE-L F1 to an earlier answer at which an answer is an echo."
    )
    min_sentence_support: float = Field(
        0.75, ge=0.0, le=1.0, description="Share of an answer sentence's content words found in the evidence."
    )
    max_repeated_ngram_share: float = Field(
        0.35, gt=0.0, le=1.0, description="Share of repeated word 4-grams above which output is a loop."
    )
    check_language: bool = Field(True, description="Reject question/answer in another language than the source.")
    max_completed_quotes: int = Field(
        2,
        ge=0,
        le=8,
        description="An answer sentence the quotes do not support may be supported by this many shown sentences, "
        "added to the evidence (origin 'completed'); 0 = only the model's quotes count.",
    )


# -- normalisation --------------------------------------------------------------------------------

_WORD = re.compile(r"\w+")
_NON_SPACE = re.compile(r"\S+")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")


_QUOTE_CHARS = str.maketrans({"‘": "'", "’": "'", "‚": "'", "“": '"', "”": '"', "„": '"', "–": "-", "—": "-"})


def _char_class(code_points: Iterable[int]) -> re.Pattern[str]:
    """Runs of the given (ascending) code points, as one regex character class of ranges."""
    ranges: list[list[int]] = []
    for c in code_points:
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    return re.compile("[" + "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges) + "]+")


@functools.cache
def _combining_marks() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """Runs of combining characters (``unicodedata.combining`` non-zero; none is ASCII), those of the BMP and
    those above it: stripping accents is then a C-level ``sub``, not a Python call per non-ASCII run (texts with
    typographic quotes or dashes made those calls ~5% of judging). Two classes: the regex engine tests a BMP-only
    class with one table lookup, a class with code points above it range by range (10x slower). Built on first
    use (~70 ms: every code point is asked)."""
    marks = [c for c in range(0x80, sys.maxunicode + 1) if unicodedata.combining(chr(c))]
    return _char_class(c for c in marks if c <= 0xFFFF), _char_class(c for c in marks if c > 0xFFFF)


def _fold(text: str) -> str:
    """Casefolded, accents stripped."""
    if text.isascii():  # the common case: no accents to strip, casefold == lower (10-50x faster)
        return text.lower()
    bmp, astral = _combining_marks()
    folded = bmp.sub("", unicodedata.normalize("NFKD", text).casefold())
    if folded and max(folded) > "\uffff":  # rare: only then the slow class
        folded = astral.sub("", folded)
    return folded


def attribution_prefix(name: str) -> str:
    """How a question about a document of ``attributed_sources`` starts (the prompt asks it, the schema's pattern
    and :func:`validate_output` enforce it)."""
    return f"In {name}, "


def _names_document(question: str, name: str) -> bool:
    """The question starts with :func:`attribution_prefix` (case, accents, punctuation and spacing aside: the
    prefix's words begin the question's words)."""
    head = words(attribution_prefix(name))
    return words(question)[: len(head)] == head


#: a leading "In <document or context>," that qualifies a question (`attributed_sources` make every question of a
#: section start "In The Devil's Dictionary, "): not what makes two questions different
_LEADING_QUALIFIER = re.compile(r"^\s*In\s[^,?\n]{1,80},\s")


def duplicate_words(question: str) -> list[str]:
    """The words the near-duplicate check compares: :func:`words` of the question without a leading "In X, "."""
    return words(_LEADING_QUALIFIER.sub("", question, count=1))


def normalize_question(text: str) -> str:
    """Case-, accent-, punctuation- and whitespace-insensitive form used for duplicate detection."""
    return " ".join(words(text))


def words(text: str) -> list[str]:
    """Normalised word tokens (identifiers such as ``asyncio.run`` give ``asyncio``, ``run``)."""
    return list(_cached_words(text))


@functools.lru_cache(maxsize=1 << 13)
def _cached_words(text: str) -> tuple[str, ...]:
    """:func:`words` of a text, cached: one judgement reads the same texts again and again (the question and
    answer in several checks, the quotes, earlier pairs): 2 in 3 calls of :func:`words` were repeats."""
    # every character that is neither a word character nor whitespace separates words, like whitespace
    return tuple(_WORD.findall(_fold(text)))


def _normalize_with_map(text: str) -> tuple[str, list[int]]:
    """Casefolded text with unified quotes and collapsed whitespace, and each char's index in ``text``."""
    tokens = [(m.start(), m.end()) for m in _NON_SPACE.finditer(text)]
    if text.isascii():  # ASCII quotes need no unifying and lower() is casefold: map whole tokens at once
        pos_ascii: list[int] = []
        for i, (start, end) in enumerate(tokens):
            if i:
                pos_ascii.append(tokens[i - 1][1])  # the collapsed whitespace maps to where it starts
            pos_ascii.extend(range(start, end))
        return " ".join(text[a:b] for a, b in tokens).lower(), pos_ascii
    # token by token (whitespace is what str.isspace() says, as for \S): most tokens of a text with a few
    # typographic quotes or accents are ASCII and are mapped whole; char by char was ~2 ms per shown window
    out: list[str] = []
    pos: list[int] = []
    for i, (start, end) in enumerate(tokens):
        if i:
            out.append(" ")
            pos.append(tokens[i - 1][1])  # the collapsed whitespace maps to where it starts
        token = text[start:end]
        if token.isascii():
            out.append(token.lower())
            pos.extend(range(start, end))
            continue
        for j, ch in enumerate(token, start):  # char by char: one char may give several (NFKC, casefold)
            for c in unicodedata.normalize("NFKC", ch).translate(_QUOTE_CHARS).casefold():
                out.append(c)
                pos.append(j)
    norm = "".join(out)
    # a char whose normal form ends in a space ends the text with it: dropped, unless whitespace followed (then
    # that whitespace's space was the one dropped)
    if norm.endswith(" ") and tokens and tokens[-1][1] == len(text):
        norm = norm[:-1]
        pos.pop()
    return norm, pos


def _normalize(text: str) -> str:
    return _normalize_with_map(text)[0]


# -- the output -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvidenceSpan:
    """One accepted quote, mapped to its exact place in the chunk."""

    quote_index: int
    quote: str  # as the model wrote it
    source_text: str  # the chunk's own text of the span (what a report highlights)
    char_start: int  # chunk-relative, end exclusive
    char_end: int
    window_index: int  # which shown window (document order)
    score: float  # 100 = found exactly (normalised); else the fuzzy score
    origin: str = "model"  # "model": quoted by the model; "completed": the shown sentence the validator added
    chunk_id: str | None = None  # the chunk the span points into when it is not the section's own (cross pairs)

    def row(self, pair_id: str, section_id: str, chunk_id: str, run_id: str, config_hash: str) -> dict[str, Any]:
        """One row of the lineage table ``qa_evidence``."""
        return {
            "pair_id": pair_id,
            "section_id": section_id,
            "chunk_id": self.chunk_id or chunk_id,
            "quote_index": self.quote_index,
            "char_start": self.char_start,
            "char_end": self.char_end,
            "quote": self.source_text,
            "origin": self.origin,
            "score": self.score,
            "window_index": self.window_index,
            "run_id": run_id,
            "config_hash": config_hash,
        }


@dataclass(frozen=True)
class ValidatedQA:
    """The verdict on one output: an accepted, grounded pair, or the reason it is rejected."""

    question: str | None
    answer: str | None
    evidence: tuple[str, ...] = ()
    spans: tuple[EvidenceSpan, ...] = ()
    kind: str | None = None  # classified from the question (never trusted from the model)
    model_kind: str | None = None  # what the model said, when the schema asked for it
    support: float | None = None  # the weakest answer sentence's support (1.0 = every content word)
    reason: str | None = None  # a key of REJECTION_REASONS; None when accepted
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def failure(self) -> str | None:
        """``"<code>: <detail>"`` as stored in a failed step record (the code is what metrics count)."""
        return None if self.reason is None else f"{self.reason}: {self.detail}"

    def to_pair(self, pair_id: str, step: int) -> QAPair:
        if not self.ok or self.question is None or self.answer is None:
            raise ValueError(f"a rejected output is never a pair ({self.failure})")
        return QAPair(pair_id, step, self.question, self.answer)

    def evidence_rows(
        self, pair_id: str, section_id: str, chunk_id: str, run_id: str, config_hash: str
    ) -> list[dict[str, Any]]:
        return [s.row(pair_id, section_id, chunk_id, run_id, config_hash) for s in self.spans]


def _reject(reason: str, detail: str, **kw: Any) -> ValidatedQA:
    assert reason in REJECTION_REASONS, reason
    return ValidatedQA(kw.pop("question", None), kw.pop("answer", None), reason=reason, detail=detail, **kw)


# -- parsing --------------------------------------------------------------------------------------

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


#: how :func:`load_json_object` says the output was JSON, but not an object
NOT_AN_OBJECT = "expected an object"


def load_json_object(text: str) -> dict[str, Any] | str:
    """A model's JSON object output (a ```json fence around it allowed), or why it is not one: the decoder's
    message, or one starting with :data:`NOT_AN_OBJECT`."""
    raw = text.strip()
    fenced = _FENCE.match(raw)
    if fenced:
        raw = fenced.group(1)
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        return f"{exc.msg} at char {exc.pos}"
    if not isinstance(obj, dict):
        return f"{NOT_AN_OBJECT}, got {type(obj).__name__}"
    return obj


@dataclass(frozen=True)
class ParsedQA:
    """Outcome of the schema-level checks of one output: a question/answer or a reason it is invalid."""

    question: str | None
    answer: str | None
    reason: str | None = None  # "<code>: <detail>", None when valid

    @property
    def ok(self) -> bool:
        return self.reason is None


#: share of repeated word 4-grams above which an answer is a generation loop, not content
MAX_REPEATED_NGRAM_SHARE = 0.35


def repeated_ngram_share(text: str, n: int = 4) -> float:
    """Fraction of the word n-grams of `text` that already occurred earlier in it (0 for short texts)."""
    tokens = normalize_question(text).split()
    grams = list(zip(*(tokens[i:] for i in range(n)), strict=False))  # the n-grams, in order (shorter rows end it)
    if len(grams) < 8:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def parse_qa_output(text: str, max_question_chars: int, max_answer_chars: int) -> ParsedQA:
    """Schema-level checks only (JSON, fields, lengths, loops); evidence is read by :func:`validate_output`."""
    obj = load_json_object(text)
    if isinstance(obj, str):
        return ParsedQA(None, None, f"invalid_json: {obj}")
    question, answer = obj.get("question"), obj.get("answer")
    if not isinstance(question, str) or not isinstance(answer, str):
        return ParsedQA(None, None, "missing_field: question and answer must both be strings")
    question, answer = question.strip(), answer.strip()
    if not question:
        return ParsedQA(None, None, "not_a_question: the question is empty")
    if not answer:
        return ParsedQA(None, None, "empty_answer: the answer is empty")
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


# -- content checks -------------------------------------------------------------------------------

_QA_PREFIX = re.compile(r"^\s*(?:[-*]\s*)?(?:q|a|question|answer)\s*\d*\s*[:：]", re.IGNORECASE)
_QA_INNER = re.compile(r"(?:^|\n)\s*(?:q|a|question|answer)\s*[:：]", re.IGNORECASE)
_PLACEHOLDER = re.compile(
    r"\[\s*(?:insert|add|your|fill|placeholder|detail|details|answer|question|name|x+)\b[^\]]*\]"
    r"|<\s*(?:insert|answer|question|placeholder)[^>]*>|\{\{[^}]*\}\}|lorem ipsum|\[\s*(?:\.\.\.|…)\s*\]",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"^(?:n/?a|none given|unknown|no answer|not (?:mentioned|specified|stated|provided|given|available|found)"
    r"(?: in the (?:text|excerpts?|passage|document))?|the (?:text|excerpts?|passage) does not (?:say|mention|state)"
    r"[^.]*)\W*$",
    re.IGNORECASE,
)
# "the text" is also an ordinary noun phrase in docs ("the text of the message"): only the phrasings
# that point at the prompt itself count
_POINTS_AT_PROMPT = re.compile(
    r"\bexcerpts?\b"  # the prompt's own word: "mentioned in Excerpt 1", "the excerpt states"
    r"|\b(?:given|provided|above|following|shown|preceding|this)\s+(?:code\s+)?"
    r"(?:snippet|excerpt|passage|text|document|section|paragraph|example|code|context|article)s?\b"
    # "in the context of PL/pgSQL" names its subject (a demo question refused for it): "... of" is not the prompt
    r"|\b(?:in|from|according to|based on)\s+the\s+(?:code\s+)?(?:snippet|excerpt|passage|text|document|context)s?\b"
    r"(?!\s+of\b)"
    # "What does the text say about ...?" / "The text states that ..." (Qwen, demo run of 2026-12-02, accepted)
    r"|\b(?:does|do|did)\s+the\s+(?:text|document|author|source)\s+(?:say|state|describe|mention|suggest|explain|claim)\b"
    r"|\bthe\s+(?:text|document|author|source)\s+(?:says|said|states|stated|describes|mentions|suggests|explains|claims)\b"
    r"|\bthe\s+(?:code\s+)?(?:snippet|excerpt|passage)s?\b"
    r"(?!\s*(?:column|field|type|file|mode|format|value|string|search|editor|encoding|node|object|widget|box|area|"
    r"attribute|property|of)\b)",
    re.IGNORECASE,
)


# a question that says "that package" / "this function" leans on context the reader of the pair never sees
_DANGLING_REFERENCE = re.compile(
    r"\b(?:that|this|these|those)\s+(?:package|function|method|class|module|file|command|option|variable|"
    r"parameter|field|table|column|value|case|example|entry|definition|program|script|section)s?\b",
    re.IGNORECASE,
)


# "the two types mentioned for the host variable": "mentioned" asks about the text the model saw, not about the
# subject (Qwen wrote it in 4 of its first 25 demo outputs; none of those questions stood alone)
_MENTIONED = re.compile(r"\bmention(?:ed|s)?\b", re.IGNORECASE)


# a question mark that ends a sentence (not one inside `code?`, a quoted 'name?' or a regex)
_QUESTION_END = re.compile(r"\?(?=\s+[A-Z(]|\s*$)")


def asked_questions(question: str) -> int:
    """How many questions a question asks ("What happened ...? Did it return ...? What was the reason?" is three:
    Qwen chains them, and its one answer covers one or none; a training pair asks one thing)."""
    return len(_QUESTION_END.findall(question.strip()))


# an answer that ends where the list it announces should start ("... the term is a broad one which encompasses:")
# ("... and 7878 is the port. We've chosen this", 299 of 300 characters: accepted on the Rust book, 2026-12-02)
_UNFINISHED = re.compile(
    r"(?:[:,;(\[]|(?<![-\w])(?:and|or|the|an|of|to|with|which|that|this|is|are|for|from|i\.e\.|e\.g\.))\s*$",
    re.IGNORECASE,
)


def _has_alnum(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


# -- near-duplicates ------------------------------------------------------------------------------


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(a: str | Sequence[str], b: str | Sequence[str]) -> float:
    """ROUGE-L F1 (longest common subsequence of normalised words)."""
    ta = words(a) if isinstance(a, str) else list(a)
    tb = words(b) if isinstance(b, str) else list(b)
    if not ta or not tb:
        return 0.0
    return 2 * _lcs(ta, tb) / (len(ta) + len(tb))


def rouge_l_at_least(a: Sequence[str], b: Sequence[str], threshold: float) -> bool:
    """``rouge_l(a, b) >= threshold``, without the LCS when the words the two share cannot reach it."""
    total = len(a) + len(b)
    if not total or 2 * len(set(a) & set(b)) / total + 2 * (len(a) - len(set(a))) / total < threshold:
        return False
    return rouge_l(a, b) >= threshold


#: below this many questions the plain loop is cheaper than the array bound
_INDEX_ARRAYS_FROM = 48


class QuestionIndex:
    """A section's earlier questions, for near-duplicate checks in O(candidates), not O(all LCS).

    ROUGE-L F1 is bounded by the words two questions share (2·|A∩B| / (|A|+|B|)); only questions
    whose bound reaches the threshold get the exact LCS. The shared count is bounded from above by
    the shared distinct words (a C-level set intersection) plus the repeated words of the shorter
    side, so most earlier questions are ruled out without counting word by word.
    """

    def __init__(self, questions: Iterable[str] = ()) -> None:
        self._items: list[tuple[str, list[str], frozenset[str], int]] = []
        # the same bound for all questions at once (a section asks hundreds): word -> the indices of the
        # questions holding it (an int64 array, appended in place), and each question's word and repeat counts
        self._postings: dict[str, array.array[int]] = {}
        self._lengths = np.zeros(64, dtype=np.int64)
        self._repeats = np.zeros(64, dtype=np.int64)
        for q in questions:
            self.add(q)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, question: str) -> None:
        tokens = duplicate_words(question)
        distinct = frozenset(tokens)
        i = len(self._items)
        self._items.append((question, tokens, distinct, len(tokens) - len(distinct)))
        for word in distinct:
            postings = self._postings.get(word)
            if postings is None:
                postings = self._postings[word] = array.array("q")
            postings.append(i)
        if i >= len(self._lengths):
            self._lengths = np.concatenate([self._lengths, np.zeros_like(self._lengths)])
            self._repeats = np.concatenate([self._repeats, np.zeros_like(self._repeats)])
        self._lengths[i] = len(tokens)
        self._repeats[i] = len(tokens) - len(distinct)

    def _candidates(self, distinct: frozenset[str], n_tokens: int, repeats: int, threshold: float) -> list[int]:
        """Indices of the questions whose bound reaches ``threshold`` (in order), computed over arrays."""
        n = len(self._items)
        # each question's count of the distinct words it shares: one bincount over the words' postings (a
        # bitmask per word unpacked and added word by word cost 3x as much)
        found = [np.frombuffer(p, dtype=np.int64) for p in map(self._postings.get, distinct) if p is not None]
        shared = np.bincount(np.concatenate(found), minlength=n) if found else np.zeros(n, dtype=np.int64)
        total = n_tokens + self._lengths[:n]
        bound = shared + np.minimum(self._repeats[:n], repeats)
        # float64 division of exact integers rounds like Python's int / int: the same test as the loop's (an empty
        # pair, total 0, divides by 1 and is left out: no floating-point warnings to silence)
        reach = (total > 0) & ~(2 * bound / np.maximum(total, 1) < threshold)
        return np.flatnonzero(reach).tolist()

    def nearest(self, question: str, threshold: float) -> tuple[float, str | None]:
        """The highest ROUGE-L >= ``threshold`` to an earlier question (0.0, None when none reaches it)."""
        tokens = duplicate_words(question)
        distinct = frozenset(tokens)
        repeats = len(tokens) - len(distinct)
        best, match = 0.0, None
        items = self._items
        if len(items) > _INDEX_ARRAYS_FROM:
            items = [items[i] for i in self._candidates(distinct, len(tokens), repeats, threshold)]
        for text, other, other_distinct, other_repeats in items:
            total = len(tokens) + len(other)
            if not total:
                continue
            bound = len(distinct & other_distinct) + min(repeats, other_repeats)
            if 2 * bound / total < max(threshold, best):
                continue
            score = rouge_l(tokens, other)
            if score >= threshold and score > best:
                best, match = score, text
        return best, match


# -- language -------------------------------------------------------------------------------------

_FUNCTION_WORDS = {
    "en": "the of and to in is that for it with as was on are be by this which or from at an what how why does not",
    "de": "der die das und ist nicht ein eine zu den mit sich des auf für im dem auch es wie wird werden oder",
    "fr": "le la les des et est une un du que dans pour qui pas sur au avec ce il sont par plus ou se",
    "es": "el la los las de que y en un una es por con para del se no al lo como más pero sus",
    "it": "il di che è la le un una per non sono con del della dei gli nel si da anche come più ma",
    "pt": "o a os as de que e do da em um uma para com não se por mais como dos das ao",
    "nl": "de het een en van is dat op te in zijn met voor niet er aan ook als bij worden",
}
_FUNCTION_SETS = {lang: set(ws.split()) for lang, ws in _FUNCTION_WORDS.items()}
_SCRIPTS = (
    ("cyrillic", 0x0400, 0x04FF),
    ("greek", 0x0370, 0x03FF),
    ("arabic", 0x0600, 0x06FF),
    ("hebrew", 0x0590, 0x05FF),
    ("devanagari", 0x0900, 0x097F),
    ("cjk", 0x3040, 0x9FFF),
    ("hangul", 0xAC00, 0xD7AF),
)

_SCRIPT_PATTERNS = tuple((script, re.compile(f"[{chr(lo)}-{chr(hi)}]")) for script, lo, hi in _SCRIPTS)


def detect_language(text: str) -> str | None:
    """A coarse language guess (None when unsure): the script, then function-word profiles of Latin languages.

    Dependency-free on purpose: it only has to tell "the source's language" from "another one" on
    short texts, and must stay silent rather than guess on code or names.
    """
    if not text.isascii():  # ASCII letters are Latin: no other script to look for
        letters = "".join(filter(str.isalpha, text))
        if not letters:
            return None
        # every script's range lies above ASCII: only the non-ASCII letters can be in one (counted in C)
        others = "".join(_NON_ASCII.findall(letters))
        if len(others) >= 0.3 * len(letters):
            for script, pattern in _SCRIPT_PATTERNS:
                if len(pattern.findall(others)) >= 0.3 * len(letters):
                    return script
    elif not any(ch.isalpha() for ch in text):
        return None
    tokens = [t for t in normalize_question(text).split() if t.isalpha()]
    hits = sorted(((sum(map(s.__contains__, tokens)), lang) for lang, s in _FUNCTION_SETS.items()), reverse=True)
    (best, lang), (second, _) = hits[0], hits[1]
    if best >= 2 and best >= 2 * second:
        return lang
    return None


# -- evidence -------------------------------------------------------------------------------------

_ELLIPSIS = re.compile(r"\s*(?:\[\s*\.\.\.\s*\]|\.\.\.|…)\s*")


@dataclass
class _Window:
    index: int
    char_start: int
    text: str
    norm: str
    pos: list[int] = field(repr=False)


def _prepare_windows(windows: Sequence[MaskWindow]) -> list[_Window]:
    out = []
    for i, w in enumerate(windows):
        text = w.text
        norm, pos = _normalize_with_map(text)
        out.append(_Window(i, w.char_start, text, norm, pos))
    return out


_EXCERPT_LABEL = re.compile(r"^\s*excerpt\s+\d+\s*:\s*", re.IGNORECASE)


def _strip_quote(quote: str) -> str:
    """The quote without wrapping quote marks and without the prompt's own "Excerpt N:" label."""
    return _EXCERPT_LABEL.sub("", quote.strip().strip("\"'`“”‘’").strip())


def _find_segment(seg: str, win: _Window, threshold: float, after: int = 0) -> tuple[int, int, float] | None:
    """(norm start, norm end, score) of ``seg`` (normalised) in the window's normalised text."""
    at = win.norm.find(seg, after)
    if at >= 0:
        return at, at + len(seg), 100.0
    if threshold >= 100.0:
        return None
    hay = win.norm[after:]
    res = fuzz.partial_ratio_alignment(seg, hay, score_cutoff=threshold)
    if res is None or res.score < threshold:
        return None
    # the alignment may stop inside a word where the model changed punctuation: widen to whole words
    start, end = after + res.dest_start, after + res.dest_end
    while start > 0 and win.norm[start - 1].isalnum() and win.norm[start].isalnum():
        start -= 1
    while end < len(win.norm) and win.norm[end - 1].isalnum() and win.norm[end].isalnum():
        end += 1
    return start, end, float(res.score)


def _locate_quote(quote: str, windows: Sequence[_Window], threshold: float) -> tuple[int, int, int, float] | None:
    """(window index, norm start, norm end, score) of a quote; an elided quote ("a ... b") matches in order."""
    segments = [s for s in (_normalize(p) for p in _ELLIPSIS.split(_strip_quote(quote))) if s]
    if not segments:
        return None
    best: tuple[int, int, int, float] | None = None
    for win in windows:
        start = end = None
        score = 100.0
        cursor = 0
        for seg in segments:
            found = _find_segment(seg, win, threshold, cursor)
            if found is None:
                break
            s, e, sc = found
            start = s if start is None else start
            end, cursor, score = e, e, min(score, sc)
        else:
            assert start is not None and end is not None
            if best is None or score > best[3]:
                best = (win.index, start, end, score)
            if score >= 100.0:
                break
    return best


#: where quotable pieces end: whitespace after a sentence end (group 1), blank lines, line breaks. A sentence end is
#: punctuation attached to a word: a lone "." or ".." is a token of the text ("this affects . and bracket
#: expressions", "With Rust's .. range syntax", both cut in two on the Rust book, 2026-12-02), not an end. The
#: check on the character before the punctuation follows its first mark, so that every branch starts with a
#: character set and the regex engine skips ahead to candidates (half the time of a leading look-behind; the
#: same matches on all 140,256 paragraphs of the benchmark corpus)
_BREAK = re.compile(r"[.!?:;](?<![\s.!?:;][.!?:;])[.!?:;]*(\s+)|\n[ \t\r\f\v]*\n\s*|\n")


_COMMENT_MARKERS = ("#", "//", "--", "/*", "*", ";")
_NOT_AN_END = frozenset({"i.e.", "e.g."})


def _is_wrap(text: str, newline: int) -> bool:
    """A hard wrap inside prose: a long line ending in a word or comma, continued in lower case — also when
    the lines are indented (docstrings, indented manual text), which would otherwise give quotes that stop
    mid-sentence ("The value is as")."""
    line_start = text.rfind("\n", 0, newline) + 1
    line = text[line_start:newline].lstrip(" \t")
    after = newline + 1
    while after < len(text) and text[after] in " \t":
        after += 1
    nxt = text[after : after + 1]
    if line.startswith(_COMMENT_MARKERS):  # a code comment line ends where the code goes on
        return False
    return len(line) >= 40 and (line[-1:].isalnum() or line[-1:] == ",") and nxt.islower()


def _breaks(text: str) -> list[tuple[int, int]]:
    """The (start, end) spans between quotable pieces, in order (one regex pass; hard wraps are not breaks)."""
    out: list[tuple[int, int]] = []
    for m in _BREAK.finditer(text):
        if m.group(1) is not None:
            # "i.e." and "e.g." end no sentence: "... or asynchronously (i.e. different tick) to signal ..." was
            # offered as two pieces on the Node.js docs, and the first one copied as an answer (2026-12-03)
            if text[m.start() - 3 : m.start() + 1].lower() in _NOT_AN_END:
                continue
            start, end = m.span(1)
        else:
            start, end = m.span()
            if end - start == 1 and _is_wrap(text, start):
                continue
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(end, out[-1][1]))
        else:
            out.append((start, end))
    return out


def quotable_pieces(
    text: str, max_chars: int = 200, min_words: int = 3, min_chars: int = 20
) -> list[tuple[int, int, str]]:
    """``text`` cut into sentences (prose, hard wraps joined) and lines (code) as (start, end, piece), verbatim.

    A piece longer than ``max_chars`` is cut at a word boundary; pieces shorter than ``min_words``
    words and ``min_chars`` characters are left out (they ground nothing).
    """
    out = []
    pos = 0
    for brk_start, brk_end in [*_breaks(text), (len(text), len(text))]:
        raw = text[pos:brk_start]
        start = pos + len(raw) - len(raw.lstrip())
        piece = raw.strip()
        pos = brk_end
        if len(piece) > max_chars:
            cut = piece.rfind(" ", 0, max_chars)
            piece = piece[: cut if cut > max_chars // 2 else max_chars].rstrip()
        if not piece or (len(piece) < min_chars and len(words(piece)) < min_words):  # the quote rule's count
            continue
        out.append((start, start + len(piece), piece))
    return out


# -- answer support -------------------------------------------------------------------------------

# English function words, plus the words every answer about code uses for its subject ("the `x`
# function", "the `y` method"): they carry no fact that the evidence could support
_STOPWORDS = set(
    """a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing done down during each either else few for from further had has
    have having he her here hers him his how however i if in into is it its itself just may me might more most
    must my neither no nor not now of off on once one only or other our ours out over own per same shall she
    should so some such than that the their theirs them then there these they this those through to too under
    until up upon use used uses using very via was we were what when where whether which while who whom whose why
    will with within without would yes you your called named known example e g i e etc like
    function functions method methods class classes module modules""".split()
)
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?![\w])")
_SENTENCES = re.compile(r"(?<=[.!?;])\s+(?=[A-Z0-9`\"'(])|\n+")


@functools.lru_cache(maxsize=1 << 16)
def _stem(word: str) -> str:
    """A crude stem: create/creates/created/creating all give "creat" (enough for support, not linguistics)."""
    if word.isdigit():
        return word
    for suffix in ("ies", "ing", "ed", "es", "ly", "s"):
        # "focus", "status": a final "s" after "u" is the word's own ("focused" and "focus" must meet at "focus")
        if word.endswith(suffix) and not word.endswith(("ss", "us")) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)] + ("y" if suffix == "ies" else "")
            if suffix in ("ing", "ed") and len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeioulsz":
                word = word[:-1]  # stripping -> strip, stopped -> stop
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_CAMEL_TOKEN = re.compile(r"\b\w*?[a-z0-9][A-Z]\w*")


#: comparison operators of code, written between spaces, and the words an answer says them with: evidence
#: ``self.width > other.width && self.height > other.height`` supports "width must be greater than ..." (a can_hold
#: pair of the Rust book was refused for "greater", 2026-12-02). Not "->", "=>" or generics ("Vec<T>").
_OPERATOR = re.compile(r"(?<=\s)(?:>=|<=|==|!=|>|<)(?=\s)")
_OPERATOR_WORDS = {
    ">": ("greater", "larger", "bigger"),
    "<": ("less", "smaller", "fewer"),
    ">=": ("greater", "larger", "least"),
    "<=": ("less", "smaller", "most"),
    "==": ("equal", "same"),
    "!=": ("differ", "different", "equal"),
}


_OPERATOR_STEMS = frozenset(_stem(w) for ws in _OPERATOR_WORDS.values() for w in ws)


def _operator_words(text: str) -> list[str]:
    """The words the comparison operators of ``text`` are said with (none for prose, which has no operators)."""
    if ">" not in text and "<" not in text and "=" not in text:
        return []
    return [w for op in _OPERATOR.findall(text) for w in _OPERATOR_WORDS[op]]


#: distinct words :class:`_ContentStems` keeps before it starts over (a long run's vocabulary stays bounded)
_CONTENT_STEMS_MAX = 1 << 17


class _ContentStems(dict[str, str]):
    """word -> its stem, or "" for a word that carries no content (a stopword, a 1-letter token): the filter and
    stem of :func:`content_words` as one C-level lookup per word (stemming the pieces of new paragraphs word by
    word in Python was the largest part of evidence completion)."""

    def __missing__(self, word: str) -> str:
        if len(self) >= _CONTENT_STEMS_MAX:
            self.clear()
        stem = _stem(word) if word not in _STOPWORDS and (len(word) > 1 or word.isdigit()) else ""
        self[word] = stem
        return stem


_CONTENT_STEMS = _ContentStems()


def content_words(text: str, identifier_parts: bool = False) -> list[str]:
    """Stemmed words that carry content (stopwords and 1-letter tokens dropped; numbers kept).

    With ``identifier_parts`` (for the evidence side) identifiers also give their parts:
    ``pg_create_physical_replication_slot`` supports "creates a physical replication slot".
    """
    return list(_content_words(text, identifier_parts))


@functools.lru_cache(maxsize=1 << 13)
def _content_words(text: str, identifier_parts: bool) -> tuple[str, ...]:
    """:func:`content_words`, cached: the question, answer and quotes are read by several checks of a judgement
    (1 in 3 calls were repeats)."""
    tokens = list(_cached_words(text))
    if identifier_parts and ("_" in text or _CAMEL.search(text)):  # prose has no identifiers to take apart
        split = _cached_words(_CAMEL.sub("_", text))
        tokens += [p for w in split if "_" in w.strip("_") for p in w.split("_") if p]
    if identifier_parts:
        tokens += _operator_words(text)
    return tuple(filter(None, map(_CONTENT_STEMS.__getitem__, tokens)))


def content_word_set(text: str, identifier_parts: bool = False) -> set[str]:
    """``set(content_words(text, identifier_parts))`` for long texts: each distinct word is stemmed once."""
    distinct = set(words(text))
    if identifier_parts:
        parts = {p for w in distinct if "_" in w.strip("_") for p in w.split("_") if p}
        for token in _CAMEL_TOKEN.findall(text):  # rare in prose: only camel-case identifiers are re-read
            parts |= {p for w in words(_CAMEL.sub("_", token)) if "_" in w.strip("_") for p in w.split("_") if p}
        distinct |= parts | set(_operator_words(text))
    return set(filter(None, map(_CONTENT_STEMS.__getitem__, distinct)))  # content_words' filter and stem


#: the characters ``re.IGNORECASE`` matches to an ASCII letter other than by ``str.lower()``: "İ" (its lower case
#: is two characters), "ı" and "ſ" (matched to "i" and "s"); every other character matches an ASCII letter exactly
#: when its ``lower()`` is that letter's (checked on every code point by the tests)
_IGNORECASE_SPECIALS = ("\u0130", "\u0131", "\u017f")


def _lowered_for_ascii_probes(text: str) -> str | None:
    """``text.lower()``, in which an ASCII literal is found where ``re.IGNORECASE`` finds it in ``text`` (same
    offsets), or None for a text with one of :data:`_IGNORECASE_SPECIALS`."""
    if not text.isascii() and any(ch in text for ch in _IGNORECASE_SPECIALS):
        return None
    return text.lower()


def _occurrences(text: str, probe: str) -> Iterator[tuple[int, int]]:
    """The non-overlapping (start, end) spans of ``probe`` in ``text``, left to right (as ``finditer`` finds them)."""
    at = text.find(probe)
    while at >= 0:
        yield at, at + len(probe)
        at = text.find(probe, at + len(probe))


def word_around(text: str, start: int, end: int) -> str:
    """The word or identifier (letters, digits, "_") that holds ``text[start:end]``."""
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
        start -= 1
    while end < len(text) and (text[end].isalnum() or text[end] == "_"):
        end += 1
    return text[start:end]


def _stems_in_texts(stems: set[str], texts: Sequence[str]) -> set[str]:
    """The ``stems`` that are content words of ``texts`` (``stems & content_word_set(text, True)``), reading only
    the words around where a stem's prefix occurs instead of every word of the texts.

    A word stems to ``stem`` only if it contains ``stem[:-1]`` (stemming strips a suffix, then may drop a
    doubled consonant or a final "e", or turn "ies" into "y"); occurrences are found case-insensitively, so an
    accented spelling of a plain question word is not found (the check is then stricter, never looser).
    """
    found: set[str] = set()
    # an ASCII probe: its case-insensitive matches are its occurrences in the lowered text, found by str.find (the
    # regex, compiled per stem, was ~10x slower), unless the text has a character the regex engine matches to an
    # ASCII letter otherwise (None: the regex path)
    lowered = [_lowered_for_ascii_probes(text) for text in texts]
    for stem in stems:
        probe = stem[:-1] if len(stem) > 2 else stem
        ascii_probe, pattern = probe.isascii(), None
        for text, low in zip(texts, lowered, strict=True):
            if ascii_probe and low is not None:
                spans: Iterable[tuple[int, int]] = _occurrences(low, probe.lower())
            else:
                pattern = pattern or re.compile(re.escape(probe), re.IGNORECASE)
                spans = (m.span() for m in pattern.finditer(text))
            for start, end in spans:
                if stem in content_word_set(word_around(text, start, end), identifier_parts=True):
                    found.add(stem)
                    break
            if stem in found:
                break
    return found


def numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUMBER.findall(text)}


def answer_sentences(answer: str) -> list[str]:
    return [s.strip() for s in _SENTENCES.split(answer) if s.strip()]


#: contrasts and semicolons join claims that must each be supported: "X does A, while Y does not" must not
#: pass on the strength of its first half (a pattern of the compare questions, docs/qa_quality.md)
_CLAUSE_BREAK = re.compile(r",?\s+(?:while|whereas|but|however|unlike)\s+|;\s+", re.IGNORECASE)


def answer_claims(answer: str) -> list[str]:
    """The answer's sentences, each cut at contrasts and semicolons: every claim is checked on its own."""
    out = []
    for sentence in answer_sentences(answer):
        parts = [p.strip() for p in _CLAUSE_BREAK.split(sentence) if p.strip()]
        out.extend(parts or [sentence])
    return out


def _derived(pool_numbers: set[str]) -> set[str]:
    """Sums and differences of two numbers of the evidence ("from 1881 to 1906" supports "25 years")."""
    values = [int(n) for n in pool_numbers if n.isdigit() and len(n) <= 6][:20]
    return {str(abs(a - b)) for a in values for b in values} | {str(a + b) for a in values for b in values}


#: a sentence added to complete the evidence must share this many content words with the answer claim it supports:
#: one shared word is a coincidence ("( - this replaces the minus sign ..." supported "rupshift replaces each lower
#: case character ..." on "replaces" alone, while the shown "transforms every lower case character" was passed over)
MIN_COMPLETION_OVERLAP = 2


#: a shown sentence holding this share of what an answer claim is missing may complete it together with a second one
MIN_PAIR_COVER = 1 / 3


@dataclass(frozen=True)
class _Completion:
    """A shown piece that may complete an answer claim's evidence (offsets relative to its window)."""

    cover: float  # share of the claim's missing words it holds
    claim_overlap: int  # content words it shares with the claim
    neg_start: int  # earlier pieces win ties
    window: int
    start: int
    end: int
    text: str
    words: frozenset[str]  # its content words (identifier parts) and numbers

    def rank(self) -> tuple[float, int, int, int]:
        return self.cover, self.claim_overlap, self.neg_start, self.window


def completion_pair(
    scored: Sequence[_Completion],
    sentence: str,
    pool: set[str],
    pool_numbers: set[str],
    given: set[str],
    min_support: float,
) -> tuple[_Completion, ...]:
    """Two shown sentences that support an answer claim together when neither holds half of what it misses.

    An answer sentence often joins two neighbouring sentences of the text: "The purpose of creating
    `common/mod.rs` ... is to avoid having `common` appear in the test output by creating a separate file for
    common code that can be shared with the other integration test files" rests on "To avoid having common
    appear in the test output, ... we'll create tests/common/mod.rs." and "We just wanted to share some code
    with the other integration test files.", each holding 4 of its 9 missing words (Rust book, 2026-12-02).
    Each piece must hold at least :data:`MIN_PAIR_COVER` of the missing words (and share two content words
    with the claim, as every completing piece must), and the two must bring the claim to ``min_support``.
    """
    partial = sorted((c for c in scored if c.cover >= MIN_PAIR_COVER), key=_Completion.rank, reverse=True)[:8]
    best: tuple[float, tuple[_Completion, ...]] = (0.0, ())
    for i, first in enumerate(partial):
        for second in partial[i + 1 :]:
            if second.words <= first.words:  # adds nothing the first does not hold
                continue
            share, _ = sentence_support(
                sentence,
                pool | first.words | second.words,
                pool_numbers | numbers(first.text) | numbers(second.text),
                given,
            )
            if share >= min_support and share > best[0]:
                best = (share, (first, second))
    return best[1]


def claim_words(claim: str) -> set[str]:
    """What a completing sentence must share with one answer claim: its content words, numbers left out when it
    has enough other words (a claim that is mostly a number, "1851." or "9.3.2.", keeps them).

    A shared number is no shared subject: "three threads, Worker 0, Worker 2 and Worker 3" was completed with
    ``let (x, y) = (1, 2, 3);`` from unrelated code on "2" and "3" alone (Rust book run, 2026-12-02).
    """
    found = set(content_words(claim))
    named = {w for w in found if not w.isdigit()}
    return named if len(named) >= MIN_COMPLETION_OVERLAP else found | numbers(claim)


def sentence_support(
    sentence: str, pool: set[str], pool_numbers: set[str], given: frozenset[str] | set[str] = frozenset()
) -> tuple[float, list[str]]:
    """Share of the sentence's *new* content words in ``pool`` (0 if one of its numbers is missing), and the misses.

    ``given``: words the answer may restate without support (the question's words found in the shown
    text); they leave the count, so "The ceremony of investing a sovereign ... is known as coronation"
    is judged on "coronation" alone, not carried by the restated question.
    """
    found_numbers = numbers(sentence)
    missing_numbers = sorted(found_numbers - pool_numbers)
    if missing_numbers:
        missing_numbers = sorted(set(missing_numbers) - _derived(pool_numbers))
    supported_numbers = found_numbers - set(missing_numbers)
    cw = [w for w in content_words(sentence) if w not in given]
    misses = [w for w in cw if w not in pool and w not in supported_numbers]
    share = 1.0 if not cw else 1.0 - len(misses) / len(cw)
    if missing_numbers:
        return 0.0, missing_numbers + misses
    return share, misses


# -- kinds ----------------------------------------------------------------------------------------

_NUMERIC_Q = re.compile(
    r"^(?:how (?:many|much|long|old|often|large|big|far)|what (?:year|percentage|percent|number|port|size|"
    r"version|date|time)|in what year|when |which (?:year|version|port)|at what)",
    re.IGNORECASE,
)
_COMPARE_Q = re.compile(r"\b(?:differ|difference|compare|compared|versus|vs\.?|than|unlike|similar)\b", re.IGNORECASE)
_LIST_Q = re.compile(
    r"^(?:list|name (?:the|all|two|three|four|five)|what are (?:the|some|all)|which (?:\w+ ){0,2}(?:are|exist))"
    r"|\b(?:two|three|four|five|several|all the|which options|what options|what kinds)\b",
    re.IGNORECASE,
)
_YES_NO_Q = re.compile(
    r"^(?:is|are|was|were|do|does|did|can|could|should|will|would|has|have|had|may|must)\b", re.IGNORECASE
)


def classify_question_kind(question: str, answer: str = "", windows_cited: int = 1) -> str:
    """One of :data:`QUESTION_KINDS`, from the question's form (the model's own label is not trusted)."""
    q = question.strip()
    if windows_cited >= 2:
        return "multi_hop"
    if _NUMERIC_Q.search(q):
        return "numeric"
    if _COMPARE_Q.search(q):
        return "compare"
    if re.match(r"^why\b", q, re.IGNORECASE) or re.search(r"\b(?:purpose|reason)\b", q, re.IGNORECASE):
        return "why"
    if re.match(r"^how\b", q, re.IGNORECASE) or re.search(r"\bin what way\b", q, re.IGNORECASE):
        return "how"
    if _LIST_Q.search(q):
        return "list"
    if _YES_NO_Q.match(q):
        return "yes_no"
    if re.match(r"^(?:what|which|who|whom|whose|where|when)\b", q, re.IGNORECASE) or re.search(
        r"\b(?:what|which)\b", q, re.IGNORECASE
    ):
        numeric_answer = bool(answer) and bool(_NUMBER.fullmatch(answer.strip().rstrip(".")))
        return "numeric" if numeric_answer else "what"
    return "other"


# -- the whole check ------------------------------------------------------------------------------


def _shingles(text: str, n: int = 6) -> set[tuple[str, ...]]:
    tokens = words(text)
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


@functools.lru_cache(maxsize=16)
def _instruction_shingles(instructions: tuple[str, ...]) -> frozenset[tuple[str, ...]]:
    # the prompt's fixed texts are the same for every step: their shingles are computed once
    return frozenset(set().union(*(_shingles(t) for t in instructions)))


#: ``source_language`` value that switches the language check off (BCP 47 "undetermined")
UNDETERMINED_LANGUAGE = "und"


class ShownTextMemo:
    """The quotable pieces of each shown paragraph, cut once per paragraph instead of once per step.

    A section's paragraphs are shown several times over its life (its masks cover the chunk again and
    again); a memo per section (the scheduler keeps one with the section's state) makes
    :func:`lc_assets.lib.generation.prompts.evidence_choices` and evidence completion cost little more
    than the new paragraphs of a step. Keyed by paragraph id (index + text hash), so it never answers
    for another text; paragraphs without an id are cut every time. Results are the same with or
    without a memo.
    """

    def __init__(self) -> None:
        self._pieces: dict[tuple[str, int, int, int], tuple[tuple[int, int, str], ...]] = {}
        # per paragraph and cut: each piece's content words, stemmed on first need (None: not yet; a str: not yet,
        # the text its probes are looked for in)
        self._words: dict[tuple[str, int, int, int], list[frozenset[str] | str | None]] = {}
        self._probe_texts: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._pieces)

    def pieces(
        self, para: Paragraph, max_chars: int, min_words: int, min_chars: int
    ) -> tuple[tuple[int, int, str], ...]:
        """:func:`quotable_pieces` of one paragraph, as (start, end, piece) relative to the paragraph."""
        key = (para.paragraph_id, max_chars, min_words, min_chars)
        found = self._pieces.get(key) if para.paragraph_id else None
        if found is None:
            found = tuple(quotable_pieces(para.text, max_chars, min_words, min_chars))
            if para.paragraph_id:
                self._pieces[key] = found
        return found

    def probe_text(self, para: Paragraph) -> str:
        """The paragraph's folded text (:func:`_fold`) without commas, where evidence completion looks for the
        probes of the words it wants (a number's probe is found in "1,000" this way; no probe has a comma)."""
        found = self._probe_texts.get(para.paragraph_id) if para.paragraph_id else None
        if found is None:
            found = _fold(para.text).replace(",", "")
            if para.paragraph_id:
                self._probe_texts[para.paragraph_id] = found
        return found

    def pieces_with(
        self, para: Paragraph, wanted: set[str], probes: Sequence[str], operators: bool, cut: tuple[int, int, int]
    ) -> Iterator[tuple[int, int, str, frozenset[str]]]:
        """The paragraph's pieces whose content words (identifier parts included) and numbers hold a ``wanted``
        word, as (start, end, piece, its words), in order.

        A piece's words are computed once, and only when it may hold one: a piece whose probe text
        (:func:`_piece_probe_text`) lacks every wanted word's ``probes`` (see :func:`completion_candidates`) and,
        unless ``operators``, says no comparison operator, holds none and is passed over unstemmed (stemming
        every piece of a paragraph on first sight was ~20% of judging). Its probe text is kept for the next look.
        """
        pieces = self.pieces(para, *cut)
        key = (para.paragraph_id, *cut)
        stemmed = self._words.get(key) if para.paragraph_id else None
        if stemmed is None:
            stemmed = [None] * len(pieces)
            if para.paragraph_id:
                self._words[key] = stemmed
        for i, (a, b, t) in enumerate(pieces):
            words = stemmed[i]
            if not isinstance(words, frozenset):
                if words is None:
                    words = stemmed[i] = _piece_probe_text(t)
                if not any(p in words for p in probes) and not (operators and _OPERATOR.search(t)):
                    continue
                words = stemmed[i] = frozenset(content_words(t, identifier_parts=True)) | numbers(t)
            if not wanted.isdisjoint(words):
                yield a, b, t, words


def _piece_probe_text(piece: str) -> str:
    """Where the probes of a piece's words are found: each content word (identifier parts included) is in the
    folded text, each number in the text, commas dropped from both ("1,000" gives "1000"). An ASCII piece's
    folded text is ``lower()`` and holds its numbers too; a non-ASCII piece gets both, joined by a newline (no
    probe has one): folding changes digits such as "１２３"."""
    if piece.isascii():
        return piece.lower().replace(",", "")
    return f"{_fold(piece)}\n{piece}".replace(",", "")


def completion_candidates(
    windows: Sequence[MaskWindow], wanted: set[str], cfg: ValidationConfig, memo: ShownTextMemo
) -> Iterator[tuple[int, int, int, str, frozenset[str]]]:
    """The shown pieces that hold a ``wanted`` word, as (window, start, end, piece, its content words and
    numbers) with offsets relative to the window, in document order: the only pieces whose share of the
    wanted words is above 0, and so the only ones evidence completion can choose.

    Pieces are looked at only in paragraphs whose folded text contains a wanted stem's probe (the stem
    less its last letter, as in :func:`_stems_in_texts`; numbers also without thousands commas): a word
    stems to ``stem`` only if it contains that probe, so a skipped paragraph holds no wanted word. Most
    paragraphs hold none of a sentence's missing words.
    """
    probes = [w[:-1] if len(w) > 2 else w for w in wanted]
    # "greater" is also held by a line of code that says ">" (operator words, see content_words)
    operators = not wanted.isdisjoint(_OPERATOR_STEMS)
    cut = (cfg.max_quote_chars, cfg.min_quote_words, cfg.min_quote_chars)
    shown = [(win_i, para) for win_i, window in enumerate(windows) for para in window.paragraphs]
    # the probes are looked for in all shown paragraphs at once, their probe texts joined by a newline (no probe
    # has one): an occurrence names its paragraph, and the search goes on after that paragraph
    texts = [memo.probe_text(para) for _, para in shown]
    ends = list(itertools.accumulate(len(t) + 1 for t in texts))
    joined = "\n".join(texts)
    hit = bytearray(len(shown))
    for probe in probes:
        pos = joined.find(probe)
        while pos >= 0:
            i = bisect.bisect_right(ends, pos)
            hit[i] = 1
            pos = joined.find(probe, ends[i])  # the next paragraph on
    for i, (win_i, para) in enumerate(shown):
        if not hit[i] and not (operators and _OPERATOR.search(para.text)):
            continue
        offset = para.char_start - windows[win_i].char_start
        for a, b, t, words in memo.pieces_with(para, wanted, probes, operators, cut):
            yield win_i, offset + a, offset + b, t, words


def _locate_verbatim(quote: str, texts: Sequence[str]) -> tuple[int, int, int] | None:
    """(window index, start, end) of a quote found character for character (the common case with
    grammar-constrained evidence): no normalisation of the windows needed."""
    stripped = _strip_quote(quote)
    if not stripped or _ELLIPSIS.search(stripped):
        return None
    for i, text in enumerate(texts):
        at = text.find(stripped)
        if at >= 0:
            return i, at, at + len(stripped)
    return None


_BACKTICKED = re.compile(r"`([^`]+)`")
_SNAKE = re.compile(r"\b\w*[a-z0-9]_\w+\b")  # __repr__, parse_mime_parameters (not _private or CONSTANT_ONLY)
_IDENT = re.compile(r"[A-Za-z_][\w.]*")
#: paragraphs before an evidence span that may name its subject (a heading "rupshift", the signature line)
SUBJECT_LOOKBACK_PARAGRAPHS = 2


def named_identifiers(text: str) -> set[str]:
    """Identifiers a question or answer names: the leading name of each `backticked` text, and snake_case words."""
    names = {m.group(0) for b in _BACKTICKED.findall(text) for m in [_IDENT.match(b.strip())] if m}
    names |= set(_SNAKE.findall(_BACKTICKED.sub(" ", text)))
    return {n.rstrip(".") for n in names if len(n.rstrip(".")) >= 3}


def subject_context(spans: Sequence[EvidenceSpan], windows: Sequence[MaskWindow]) -> str:
    """The paragraphs of the evidence spans and the few shown paragraphs just before each (where its subject is
    named), lower-cased: a name the pair gives its facts must be there, not anywhere in the shown text."""
    parts: list[str] = []
    for span in spans:
        paras = windows[span.window_index].paragraphs
        hit = [i for i, p in enumerate(paras) if p.char_start < span.char_end and span.char_start < p.char_end]
        if hit:
            parts += [p.text for p in paras[max(0, hit[0] - SUBJECT_LOOKBACK_PARAGRAPHS) : hit[-1] + 1]]
    return "\n".join(parts).lower()


def used_spans(spans: tuple[EvidenceSpan, ...], question: str, answer: str) -> tuple[EvidenceSpan, ...]:
    """The spans the pair uses: a model quote sharing < 2 content words with question + answer is dropped.

    Qwen picks two sentences from the enum and then answers from a third, which the validator adds
    ("completed"); the decoration would otherwise be stored as the pair's evidence (wrong depth, a second
    window counted as multi-hop). Completed spans were chosen for the answer and always stay; if nothing
    else is left, the model's quotes stay as they are.
    """
    used_words = set(content_words(f"{question} {answer}", identifier_parts=True))
    kept = [
        s
        for s in spans
        if s.origin != "model" or len(used_words & set(content_words(s.source_text, identifier_parts=True))) >= 2
    ]
    if not kept or len(kept) == len(spans):
        return spans
    return tuple(replace(s, quote_index=i) for i, s in enumerate(kept))


def validate_output(
    text: str,
    windows: Sequence[MaskWindow],
    *,
    earlier: Sequence[QAPair] = (),
    question_index: QuestionIndex | None = None,
    long_range: bool = False,
    instructions: Sequence[str] = (),
    source_language: str | None = None,
    config: ValidationConfig | None = None,
    memo: ShownTextMemo | None = None,
    title: str | None = None,
    focus_window: int | None = None,
    attribution: str | None = None,
) -> ValidatedQA:
    """Parse one raw model output and run every check against the windows the prompt showed.

    ``earlier``: the section's earlier pairs (echo and duplicate checks; ``question_index`` may be
    given instead for the duplicate check of long sections). ``instructions``: the prompt's fixed
    texts (echo check). ``source_language`` defaults to :func:`detect_language` of the windows
    (:data:`UNDETERMINED_LANGUAGE` skips the check). ``memo``: the section's :class:`ShownTextMemo`.
    ``title``: the document's title the prompt named; its words support an answer that names the subject.
    ``focus_window``: the window (index into ``windows``) the prompt asked about: every model quote must lie in it
    (a grammar-constrained backend cannot quote elsewhere; completed sentences may come from any shown window).
    ``attribution``: the document's name when its questions must start "In <name>, " (``attributed_sources``).
    """
    # the checks of grounding_checks use this module's word functions: imported here, not at the top (a cycle)
    from lc_assets.lib.generation import grounding_checks

    cfg = config or ValidationConfig()
    memo = ShownTextMemo() if memo is None else memo
    obj = load_json_object(text)
    if isinstance(obj, str):
        return _reject("invalid_json", obj)
    question, answer, evidence = obj.get("question"), obj.get("answer"), obj.get("evidence")
    if not isinstance(question, str) or not isinstance(answer, str):
        return _reject("missing_field", "question and answer must both be strings")
    if isinstance(evidence, str):
        evidence = [evidence]
    if evidence is not None and (not isinstance(evidence, list) or not all(isinstance(e, str) for e in evidence)):
        return _reject("missing_field", "evidence must be a list of strings")
    # a string as long as the schema's maxLength was cut there by the output grammar, not ended by the model
    # (Qwen on the Rust book: an answer ending "... to call the `l", 2026-12-02)
    bounds = (("question", question, cfg.max_question_chars), ("answer", answer, cfg.max_answer_chars))
    cut = next(((name, bound) for name, value, bound in bounds if len(value) >= bound), None)
    question, answer = question.strip(), answer.strip()
    # the same shown sentence quoted twice (Qwen does, choosing from the enum) is one piece of evidence
    quotes = tuple(dict.fromkeys(e.strip() for e in (evidence or []) if e.strip()))
    model_kind = obj.get("kind") if isinstance(obj.get("kind"), str) else None
    kw: dict[str, Any] = {"question": question, "answer": answer, "evidence": quotes, "model_kind": model_kind}

    if cut is not None:
        return _reject("too_long", f"{cut[0]} reached its bound of {cut[1]} chars (cut by the output grammar)", **kw)
    if len(question) > cfg.max_question_chars:
        return _reject("too_long", f"question has {len(question)} chars > {cfg.max_question_chars}", **kw)
    if len(answer) > cfg.max_answer_chars:
        return _reject("too_long", f"answer has {len(answer)} chars > {cfg.max_answer_chars}", **kw)
    for i, q in enumerate(quotes):
        if len(q) > cfg.max_quote_chars:
            return _reject("too_long", f"quote {i} has {len(q)} chars > {cfg.max_quote_chars}", **kw)
    if _QA_PREFIX.match(question) or _QA_PREFIX.match(answer) or _QA_INNER.search(question + "\n" + answer):
        return _reject("qa_artefact", f"question {question[:60]!r} / answer {answer[:60]!r}", **kw)
    if not _has_alnum(answer) or _REFUSAL.match(answer):
        return _reject("empty_answer", f"answer {answer!r}", **kw)
    if _PLACEHOLDER.search(answer) or _PLACEHOLDER.search(question):
        return _reject("placeholder", f"answer {answer[:80]!r}", **kw)
    if not question.rstrip(" \"')]*_`").endswith("?") or len(words(question)) < 3:
        return _reject("not_a_question", f"question {question[:80]!r}", **kw)
    asked = asked_questions(question)
    if asked > 1:
        return _reject("not_a_question", f"{asked} questions in one: {question[:80]!r}", **kw)
    looping = max(repeated_ngram_share(answer), repeated_ngram_share(question))
    if looping > cfg.max_repeated_ngram_share:
        return _reject("degenerate", f"output loops ({looping:.0%} of its 4-grams are repeats)", **kw)
    answer_words = words(answer)
    norm_question, norm_answer = normalize_question(question), " ".join(answer_words)
    if norm_question == norm_answer:
        return _reject("degenerate", "answer repeats the question", **kw)
    # "... or asynchronously (i.e." (a quotable piece cut at "i.e.", copied as the answer, Node.js docs 2026-12-03)
    if _UNFINISHED.search(answer) or answer.count("(") > answer.count(")"):
        return _reject("degenerate", f"the answer stops mid-sentence: {answer[-60:]!r}", **kw)

    for pair in earlier:  # the same earlier pairs are listed step after step: their words are cached
        if norm_question == " ".join(_cached_words(pair.answer)):
            return _reject("echo", f"question repeats the answer of {pair.pair_id}", **kw)
        if norm_answer == " ".join(_cached_words(pair.question)):
            return _reject("echo", f"answer repeats the question of {pair.pair_id}", **kw)
        if len(answer_words) >= 3 and rouge_l_at_least(answer_words, _cached_words(pair.answer), cfg.echo_rouge_l):
            return _reject("echo", f"answer repeats the answer of {pair.pair_id}", **kw)
    prompt_shingles = _instruction_shingles(tuple(instructions)) if instructions else frozenset()
    if prompt_shingles and (_shingles(question) | _shingles(answer)) & prompt_shingles:
        return _reject("echo", "question or answer copies the prompt's instructions", **kw)
    index = question_index if question_index is not None else QuestionIndex(p.question for p in earlier)
    score, match = index.nearest(question, cfg.duplicate_rouge_l)
    if match is not None:
        return _reject("duplicate_question", f"ROUGE-L {score:.2f} to {match[:80]!r}", **kw)
    dangling = _DANGLING_REFERENCE.search(question) or _MENTIONED.search(question)
    if dangling:
        return _reject("not_standalone", f"question says {dangling.group(0)!r}: {question[:80]!r}", **kw)
    ordinal = grounding_checks.ordinal_reference(question)
    if ordinal:
        return _reject("not_standalone", f"question says {ordinal!r}: {question[:80]!r}", **kw)
    for part, value in (("question", question), ("answer", answer)):
        pointer = _POINTS_AT_PROMPT.search(value)
        if pointer:
            return _reject("not_standalone", f"{part} says {pointer.group(0)!r}: {value[:80]!r}", **kw)
        shown_code = grounding_checks.points_at_shown_code(value)
        if shown_code:
            return _reject("not_standalone", f"{part} says {shown_code!r}: {value[:80]!r}", **kw)
    if attribution and not _names_document(question, attribution):
        return _reject(
            "unattributed_question",
            f"question does not start '{attribution_prefix(attribution)}': {question[:80]!r}",
            **kw,
        )

    texts = [w.text for w in windows]
    if cfg.check_language and source_language != UNDETERMINED_LANGUAGE:
        source = source_language or detect_language(" ".join(texts)[:20000])
        if source is not None:
            for part, value in (("question", question), ("answer", answer)):
                lang = detect_language(value)
                if lang is not None and lang != source:
                    return _reject("wrong_language", f"{part} looks {lang}, the source {source}", **kw)

    if not quotes:
        return _reject("evidence_missing", "no evidence quote", **kw)
    prepared: list[_Window] | None = None  # normalised windows: only for quotes not found verbatim
    spans: list[EvidenceSpan] = []
    # the focus window is searched first: a line that also occurs in another shown window (code repeats lines)
    # is the focus window's, where the schema offered it
    order = list(range(len(windows)))
    if focus_window is not None and not long_range and 0 <= focus_window < len(windows):
        order.insert(0, order.pop(focus_window))
    search_texts = [texts[j] for j in order]
    for i, quote in enumerate(quotes):
        # a long identifier ("pg_create_physical_replication_slot") grounds as much as a phrase does
        if len(words(quote)) < cfg.min_quote_words and len(quote) < cfg.min_quote_chars:
            return _reject(
                "evidence_not_found",
                f"quote {i} {quote!r} has < {cfg.min_quote_words} words and < {cfg.min_quote_chars} chars",
                **kw,
            )
        exact = _locate_verbatim(quote, search_texts)
        if exact is not None:
            pos, start, end = exact
            win_i, sc = order[pos], 100.0
        else:
            prepared = prepared if prepared is not None else _prepare_windows(windows)
            found = _locate_quote(quote, [prepared[j] for j in order], cfg.fuzzy_threshold)
            if found is None:
                return _reject("evidence_not_found", f"quote {i} {quote[:80]!r} is not in the shown text", **kw)
            win_i, ns, ne, sc = found
            start, end = prepared[win_i].pos[ns], prepared[win_i].pos[ne - 1] + 1
        win = windows[win_i]
        spans.append(
            EvidenceSpan(i, quote, texts[win_i][start:end], win.char_start + start, win.char_start + end, win_i, sc)
        )
    cited = {s.window_index for s in spans}
    if long_range and len(cited) < min(2, len(windows)):
        return _reject("long_range_evidence", f"quotes cite {len(cited)} of the 2 far-apart windows", **kw)
    off_focus = [s.quote_index for s in spans if focus_window is not None and s.window_index != focus_window]
    if off_focus and not long_range:
        return _reject(
            "evidence_off_focus",
            f"quote {off_focus[0]} is from excerpt {spans[off_focus[0]].window_index + 1}, "
            f"the step asked about excerpt {focus_window + 1}",
            **{**kw, "spans": tuple(spans)},
        )

    pool = {w for s in spans for w in content_words(s.source_text, identifier_parts=True)}
    # the prompt names the document ("... titled 'PostgreSQL Functions and Operators'") and asks for questions that
    # name their subject: "convert ... in PostgreSQL" must not fail on "PostgreSQL" (a good demo pair did)
    pool |= set(content_words(title or "", identifier_parts=True))
    # the question's words the answer restates, if the shown text has them: the answer may repeat its subject
    # without support (only words in both matter for the checks below, so only they are looked up)
    given = _stems_in_texts(set(content_words(question)) & set(content_words(answer)), texts)
    pool_numbers = {n for s in spans for n in numbers(s.source_text)}
    restated_numbers = numbers(question) & numbers(answer)  # only numbers the answer repeats need support
    if restated_numbers:
        pool_numbers |= restated_numbers & {n for t in texts for n in numbers(t)}
    if not [w for w in content_words(answer) if w not in given] and not numbers(answer) - numbers(question):
        return _reject("degenerate", "the answer only restates the question", **{**kw, "spans": tuple(spans)})
    support = 1.0
    completed = 0
    for sentence in answer_claims(answer):
        share, misses = sentence_support(sentence, pool, pool_numbers, given)
        # small models quote one sentence and answer from its neighbour: add the shown sentence that
        # supports the answer sentence (exact span, marked "completed"), never text that was not shown;
        # a piece qualifies only if it alone holds at least half of what is missing (scattered words from
        # unrelated lines must not add up to support)
        while share < cfg.min_sentence_support and completed < cfg.max_completed_quotes and misses:
            wanted = set(misses)
            claim = claim_words(sentence)
            scored = [
                _Completion(len(wanted & extra) / len(wanted), len(claim & extra), -a, win_i, a, b, t, extra)
                for win_i, a, b, t, extra in completion_candidates(windows, wanted, cfg, memo)
                if len(claim & extra) >= MIN_COMPLETION_OVERLAP
            ]
            best = max(scored, default=None, key=_Completion.rank)
            chosen: tuple[_Completion, ...] = ()
            if best is not None and best.cover >= 0.5:
                chosen = (best,)
            elif cfg.max_completed_quotes - completed >= 2:
                chosen = completion_pair(scored, sentence, pool, pool_numbers, given, cfg.min_sentence_support)
            if not chosen:
                break
            for pick in chosen:
                win = windows[pick.window]
                start, end = win.char_start + pick.start, win.char_start + pick.end
                spans.append(
                    EvidenceSpan(len(spans), pick.text, pick.text, start, end, pick.window, 100.0, "completed")
                )
                pool |= set(content_words(pick.text, identifier_parts=True))
                pool_numbers |= numbers(pick.text)
                completed += 1
            share, misses = sentence_support(sentence, pool, pool_numbers, given)
        support = min(support, share)
        if share < cfg.min_sentence_support:
            return _reject(
                "unsupported_answer",
                f"sentence {sentence[:80]!r}: {share:.0%} of its content in the evidence (missing {misses[:6]})",
                **{**kw, "spans": tuple(spans), "support": share},
            )
    if long_range and len(windows) >= 2:
        # a quote from the far window that the pair never uses is decoration, not a long-range dependency
        used = set(content_words(f"{question} {answer}"))
        for win_i in sorted({s.window_index for s in spans}):
            window_words = {w for s in spans if s.window_index == win_i for w in content_words(s.source_text, True)}
            if len(used & window_words) < 2:
                return _reject(
                    "long_range_evidence",
                    f"the quote from window {win_i} is not used by the question or answer",
                    **{**kw, "spans": tuple(spans), "support": support},
                )
    kept = used_spans(tuple(spans), question, answer)
    if len(kept) < len(spans):  # a quote dropped as decoration must not have been what supported the answer
        lost = grounding_checks.support_without_decoration(
            answer, kept, title, given, pool_numbers, cfg.min_sentence_support
        )
        if lost:
            return _reject("unsupported_answer", lost, **{**kw, "spans": kept, "support": support})
    spans = kept
    # Qwen on cpython-email: "the header encoding in the `__repr__` function" -- __repr__ was shown, eight paragraphs
    # away from the header_encode docstring it quoted
    near = subject_context(spans, windows) + "\n" + (title or "").lower()
    # a dotted name (`Charset.header_encode`) is found by its last part: the class is named far above its methods
    absent = sorted(n for n in named_identifiers(f"{question}\n{answer}") if n.rsplit(".", 1)[-1].lower() not in near)
    # os.remove() named plainly: its last part must be there as code, "remove" as a word is not enough
    absent += [n for n in grounding_checks.unplaced_dotted_names(question, answer, near) if n not in absent]
    if absent:
        return _reject(
            "subject_not_in_evidence",
            f"{', '.join(absent)} not in or just before the evidence",
            **{**kw, "spans": spans, "support": support},
        )
    found = grounding_checks.grounding_failure(question, answer, spans, windows)
    if found is not None:
        return _reject(found[0], found[1], **{**kw, "spans": spans, "support": support})
    cited = {s.window_index for s in spans}
    kind = classify_question_kind(question, answer, len(cited))
    return ValidatedQA(question, answer, quotes, tuple(spans), kind, model_kind, support)
