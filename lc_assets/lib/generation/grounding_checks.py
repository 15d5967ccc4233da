"""Checks that refuse pairs the word-level support check passes: grounded words, wrong answer.

Each answer sentence's content words are found in the evidence (``validate.sentence_support``), yet a reading
of a real run (the Python 3.11 docs, Qwen2.5-Coder-1.5B, 2026-12-03: 33 accepted pairs, 10 bad) found pairs
whose every word is shown text and whose answer is still wrong. Each function here targets one such failure
seen there, returns why it refuses (the detail of a rejection) or ``None``, and is called by
:func:`lc_assets.lib.generation.validate.validate_output` after the support checks, on the pair's final evidence:

- :func:`off_topic_completion`: evidence the validator *added* to support the answer is about something else
  than the question (a "UTF-8 mode" question answered with the ``close()`` exit-status sentences);
- :func:`number_noun_mismatch`: a number counts another thing than in the evidence ("eleven messages" where the
  text says "eleven emails");
- :func:`count_without_number`: "how many" answered without any count ("All-zero pages are counted ...");
- :func:`copied_output_line`: the answer is a quoted line of program output or code, not an answer;
- :func:`unplaced_dotted_names`: a dotted or called name (``os.remove()``, ``str.format()``) the pair gives its
  facts is not named where the evidence is (the facts belong to the function defined above them);
- :func:`unsupported_superlative`: "the most common ..." where the evidence says no such thing;
- :func:`unsupported_negation`: "there are no restrictions on ..." where the evidence never mentions restrictions;
- :func:`points_at_shown_code`: "used in the code", "the provided runnable script": not standalone;
- :func:`ordinal_reference`: "Why would the first approach be unwieldy?": which approach? Not standalone;
- :func:`support_without_decoration`: the answer must still be supported once the quotes the pair does not use
  are dropped from its evidence ("Two arguments", supported by "... building two dynamic-load modules ...").

They cost little: each looks only at the question, answer and evidence spans, except
:func:`off_topic_completion`, which reads the paragraphs of a completed span only when that span shares no
word with the question.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from lc_assets.lib.generation.masking import MaskWindow
from lc_assets.lib.generation.validate import (
    _BACKTICKED,
    _STOPWORDS,
    EvidenceSpan,
    _stem,
    answer_claims,
    content_word_set,
    content_words,
    sentence_support,
    words,
)


@functools.lru_cache(maxsize=1 << 12)
def _evidence_words(text: str) -> frozenset[str]:
    """The content words (identifier parts included) of a quote or title: the same shown sentences are quoted step
    after step (the evidence choices), so they are stemmed once."""
    return frozenset(content_words(text, identifier_parts=True))


# -- completion about another subject -------------------------------------------------------------------------


def _paragraphs_of(span: EvidenceSpan, windows: Sequence[MaskWindow]) -> list[int]:
    paras = windows[span.window_index].paragraphs
    return [i for i, p in enumerate(paras) if p.char_start < span.char_end and span.char_start < p.char_end]


def off_topic_completion(question: str, spans: Sequence[EvidenceSpan], windows: Sequence[MaskWindow]) -> str | None:
    """A completed span whose paragraph shares no content word with the question, and that is not next to (the
    paragraph before, of or after) evidence whose paragraph does: the answer was assembled from text about
    something else.

    Evidence completion adds a shown sentence holding the words an answer claim misses; it checks the sentence
    against the *answer*. A model that answers with an unrelated shown sentence gets it back as support: "What is
    the impact of the Python UTF-8 Mode on the handling of command line arguments ...?" was answered with
    "converting the close method result (exit status) into an exit code", completed from the ``popen()`` text four
    paragraphs away; "Which messages are sent to both destinations?" with "DEBUG messages, WARNING messages, and
    ERROR messages", completed from ``LEVELS = [logging.DEBUG, ...]`` in another example (the text says DEBUG
    goes to the file only). Paragraph level, not sentence level: the definition line above a completed line names
    its subject (``fn can_hold`` above ``self.width > other.width``; ``math.floor(x)`` above "the greatest
    Integral <= x"), and the paragraph before counts: an option's description follows its name ("-s", then
    "Don't add the user site-packages directory to sys.path.", for "What is the purpose of the `-s` option ...?").
    """
    completed = [s for s in spans if s.origin == "completed"]
    if not completed:
        return None
    asked = set(content_words(question, identifier_parts=True))
    unrelated = [s for s in completed if asked.isdisjoint(_evidence_words(s.source_text))]
    if not unrelated:
        return None  # the common case: every added sentence names a word of the question
    # `-s` names the subject of "What is the purpose of the `-s` option ...?" though it is no content word
    named = [re.compile(rf"(?<![\w-]){re.escape(b.strip().lower())}(?![\w-])") for b in _BACKTICKED.findall(question)]
    cache: dict[tuple[int, int], bool] = {}

    def on_topic(win: int, para: int) -> bool:
        if (win, para) not in cache:
            paras = windows[win].paragraphs
            text = paras[para].text if 0 <= para < len(paras) else ""
            cache[(win, para)] = bool(text) and (
                bool(asked & content_word_set(text, identifier_parts=True))
                or any(n.search(text.lower()) for n in named)
            )
        return cache[(win, para)]

    for span in unrelated:
        placed = _paragraphs_of(span, windows)
        # its paragraph, or the one before it (an option or definition line: "-s", then "Don't add the user
        # site-packages directory to sys.path.")
        if any(on_topic(span.window_index, p - d) for p in placed for d in (0, 1)):
            continue
        # next to a paragraph of the evidence that is about the question: the same passage goes on
        anchors = {(s.window_index, p) for s in spans if s is not span for p in _paragraphs_of(s, windows)}
        if any(
            (span.window_index, p + d) in anchors and on_topic(span.window_index, p + d)
            for p in placed
            for d in (-1, 1)
        ):
            continue
        return f"the added evidence {span.source_text[:70]!r} shares no word with the question or its neighbours"
    return None


def answer_beside_question(
    question: str, answer: str, spans: Sequence[EvidenceSpan], windows: Sequence[MaskWindow]
) -> str | None:
    """The answer's own words come only from quotes that share no word with the question and sit apart from
    (not in or next to the paragraph of) the quotes that do: the question is asked about one passage and answered
    from another. "Why is the term '# leader' used for quotations in hacker speech style?" quoted the Jargon File's
    "# leader used for quotations" sentence, and answered with the "closest hackish equivalent of the Valspeak
    'gag me with a spoon'" of the *barf* entry, shown in another window (2026-12-03, Node.js docs + Jargon File).
    A definition below its heading, or one window's two halves of a comparison, is next to or shares the question's
    words, and passes."""
    if len(spans) < 2:
        return None
    asked = set(content_words(question, identifier_parts=True))
    own = set(content_words(answer, identifier_parts=True)) - asked
    if not own or not asked:
        return None
    on_question = [s for s in spans if not asked.isdisjoint(_evidence_words(s.source_text))]
    answering = [s for s in spans if not own.isdisjoint(_evidence_words(s.source_text))]
    if not on_question or not answering or any(s in on_question for s in answering):
        return None
    near = {(s.window_index, p + d) for s in on_question for p in _paragraphs_of(s, windows) for d in (-1, 0, 1)}
    if any((s.window_index, p) in near for s in answering for p in _paragraphs_of(s, windows)):
        return None
    # the answering passage names the question's subject in code: `self.width > other.width && ...` inside
    # `fn can_hold` answers "What is the condition that determines whether `rect1` can hold `rect2`?" (an English
    # word of its paragraph does not count: the *barf* entry's "Term of disgust" is not about the term asked of)
    for s in answering:
        paras = windows[s.window_index].paragraphs
        for p in _paragraphs_of(s, windows):
            for text in (paras[p].text, paras[p - 1].text if p > 0 else ""):
                if asked & (content_word_set(text, identifier_parts=True) - content_word_set(text)):
                    return None
    return (
        f"the answer rests on {answering[0].source_text[:60]!r}, which shares no word with the question and is "
        f"apart from {on_question[0].source_text[:60]!r}, the evidence the question is about"
    )


#: a negation and the (up to three) words after it: what it denies
_NEGATION = re.compile(
    r"\b(?:no|not|never|without|none|nothing|neither|nor|cannot|can't|don't|doesn't|isn't|aren't|won't|unable)\b"
    r"\s+((?:[\w'-]+\s+){0,2}[\w'-]+)",
    re.IGNORECASE,
)


def unsupported_negation(question: str, answer: str, spans: Sequence[EvidenceSpan]) -> str | None:
    """A claim that denies something ("there are no restrictions on ...") whose denied word is neither in the
    evidence nor in the question. The support check lets one content word in four go unsupported; a denial's
    object is not such a word: "How many options can a Transform stream have?" — "There are no restrictions on the
    number of options ..." was accepted on quotes about `highWaterMark` ("restrictions" the one word missing;
    held-out run, 2026-12-03). Measured on the accepted pairs of six real runs (84): only that pair."""
    denials = list(_NEGATION.finditer(answer))
    if not denials:
        return None
    known = set(content_words(question, identifier_parts=True))
    for s in spans:
        known |= _evidence_words(s.source_text)
    for match in denials:
        missing = [w for w in content_words(match.group(1)) if w not in known]
        if missing:
            return f"{match.group(0)!r} denies {missing[0]!r}, which the evidence does not mention"
    return None


# -- a number attached to another noun ------------------------------------------------------------------------

#: number words a small model writes for the digits or words of the text
NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand".split()
)
_DIGIT = re.compile(r"\d")
_LETTERS = re.compile(r"[a-z]+")
_HOW_MANY = re.compile(r"\bhow\s+many\s+(\w+)", re.IGNORECASE)


def _is_number(token: str) -> bool:
    return token.isdigit() or token in NUMBER_WORDS


def _noun_after(tokens: Sequence[str]) -> str | None:
    """The stem of the first token when it is a content word that is not a number ("emails" -> "email"), else None."""
    first = tokens[0] if tokens else None
    if first is None or not first.isalpha() or len(first) < 2 or first in _STOPWORDS or _is_number(first):
        return None
    return _stem(first)


def number_noun_mismatch(question: str, answer: str, spans: Sequence[EvidenceSpan]) -> str | None:
    """A number of the answer counting another thing than the same number in the evidence.

    "How many messages are sent to the addressee?" — "The script sends eleven messages": the text says it "sends
    eleven emails" (of ten messages each, 102 messages in all). The support check finds "eleven" and "messages"
    in the evidence, each on its own. Refused when the number occurs in the evidence, every occurrence is followed
    by a content word, and none of those (nor the two words after them: "ten log messages") is the answer's
    noun. A bare number answers the question's "how many X".
    """
    if not _DIGIT.search(answer) and NUMBER_WORDS.isdisjoint(_LETTERS.findall(answer.lower())):
        return None  # most answers hold no number
    said = words(answer)
    asked = _HOW_MANY.search(question)
    asked_noun = _noun_after(words(asked.group(1))) if asked else None
    evidence = [words(s.source_text) for s in spans]
    for i, number in enumerate(said):
        if not _is_number(number):
            continue
        noun = _noun_after(said[i + 1 : i + 2]) or asked_noun
        if noun is None:
            continue
        followers = [tokens[j + 1 : j + 4] for tokens in evidence for j, tok in enumerate(tokens) if tok == number]
        if not followers:
            continue  # a number the evidence does not hold is the support check's to refuse
        if any(noun in {_stem(t) for t in after} for after in followers):
            continue
        counted = [_noun_after(after) for after in followers]
        if None in counted:
            continue  # somewhere the evidence's number stands alone ("a value of 1."): no other noun to contradict
        said_as = " ".join(said[i : i + 2]) if _noun_after(said[i + 1 : i + 2]) else number
        in_evidence = sorted({f"{number} {after[0]}" for after in followers})
        return f"{said_as!r}: the evidence has {', '.join(map(repr, in_evidence))}"
    return None


#: words that answer "how many" without a numeral: "none", "several", "both", "a dozen", "unlimited"
_COUNT_WORDS = NUMBER_WORDS | frozenset(
    "no none nothing single both several multiple many few all any every each once twice thrice dozen dozens "
    "hundreds thousands millions million billion half couple numerous countless unlimited infinite arbitrary "
    "variable depends".split()
)
#: a word standing on its own, not inside a hyphenated compound: "All-zero pages" states no count
_FREE_WORD = re.compile(r"(?<![\w-])[A-Za-z]+(?![\w-])")


def count_without_number(question: str, answer: str) -> str | None:
    """A "how many" question whose answer gives no count at all (no numeral, no number or quantity word).

    "How many pages have been counted as free space in the PostgreSQL index?" — "All-zero pages are counted as free
    space in the PostgreSQL index." (the demo run of 2026-12-03: the suggested kind was a number, the text states
    which pages, not how many). The answer's words all come from the evidence, so the support check passes it.
    """
    if not _HOW_MANY.search(question) or _DIGIT.search(answer):
        return None
    if not _COUNT_WORDS.isdisjoint(w.lower() for w in _FREE_WORD.findall(answer)):
        return None
    return f"the question asks how many, the answer gives no count: {answer[:80]!r}"


# -- an answer that is a copied line of output ----------------------------------------------------------------

_SENTENCE_END = (".", "!", "?", ":", ";")


def copied_output_line(answer: str, spans: Sequence[EvidenceSpan]) -> str | None:
    """The answer is one quoted line of output or code, word for word, and not a sentence.

    "What process is responsible for handling GET requests from app2?" — "Thread-2 (process_request) app2
    __main__  jim    192.168.2.20 GET  Request processing started": a log line of an example's output, every
    word in the evidence, answering nothing. An answer that copies a whole quoted *sentence* is left alone (a
    restatement at worst).
    """
    if answer.rstrip().endswith(_SENTENCE_END):  # most answers: a sentence
        return None
    said = words(answer)
    if len(said) < 4:
        return None
    for span in spans:
        if words(span.source_text) == said and not span.source_text.rstrip().endswith(_SENTENCE_END):
            return f"the answer is the quoted line {span.source_text[:70]!r}"
    return None


# -- dotted and called names ----------------------------------------------------------------------------------

_DOTTED_OR_CALLED = re.compile(
    r"(?<![\w./-])[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+(?:\(\))?(?![\w/])|(?<![\w./-])[A-Za-z_]\w*\(\)"
)
_MAYBE_NAME = re.compile(r"\w\.[A-Za-z_]|\w\(\)")
#: dotted tokens that are not names of code: abbreviations and file names
_NOT_A_NAME = re.compile(
    r"(?:e\.g|i\.e|etc|vs|a\.k\.a|[\w-]+\.(?:py|rs|toml|log|txt|md|rst|html?|c|h|cc|cpp|js|ts|json|ya?ml|cfg|ini|sh|"
    r"conf|gz|zip|tar|db|sql|csv|xml|pdf|png))",
    re.IGNORECASE,
)


def dotted_names(text: str) -> set[str]:
    """Names of code a question or answer writes plainly: ``os.remove()``, ``str.format``, ``reversed()``."""
    if not _MAYBE_NAME.search(text):  # a dot inside a word or "()": the cheap test most pairs fail
        return set()
    found = {m.group(0) for m in _DOTTED_OR_CALLED.finditer(text)}
    names = set()
    for token in found:
        name = token.removesuffix("()").rstrip(".")
        # "init.d", "conf.d": a one-letter last part is a directory's suffix unless called
        if (
            len(name) >= 3
            and not _NOT_A_NAME.fullmatch(name)
            and (token.endswith("()") or len(name.rsplit(".", 1)[-1]) >= 2)
        ):
            names.add(name)
    return names


def unplaced_dotted_names(question: str, answer: str, near: str) -> list[str]:
    """The dotted or called names of the pair that the text around its evidence does not name as code.

    ``near`` is :func:`validate.subject_context` (the evidence's paragraphs and the two shown before each,
    lower-cased). A name is placed if it is there whole, or its last part is there *as code*: called
    (``remove(``), after a dot (``.expandtabs``) or as a Sphinx heading (``remove¶``) — the last part alone is
    often an English word ("format", "remove"). "What is the change in the behavior of the os.remove() function
    in Python 3.8?" quoted os.readlink's "Changed in version 3.8" line; ``os.remove(path, ...)`` was the next
    heading, after the quote, so the change was pinned on the wrong function.
    """
    out = []
    for name in sorted(dotted_names(f"{question}\n{answer}")):
        low = name.lower()
        if low in near:
            continue
        last = re.escape(low.rsplit(".", 1)[-1])
        if re.search(rf"\b{last}\s*\(|\.{last}\b|\b{last}¶", near):
            continue
        out.append(name)
    return out


# -- superlatives ---------------------------------------------------------------------------------------------

_SUPERLATIVE = re.compile(r"\b(?:most|least)\s+(?:\w+ly\s+)?[a-z]\w+", re.IGNORECASE)


def unsupported_superlative(question: str, answer: str, spans: Sequence[EvidenceSpan]) -> str | None:
    """ "The most common format string ..." where no evidence says "most common": a ranking is a claim.

    The support check lets a question's words be restated freely when they occur anywhere in the shown text,
    and "most" is a stopword, so "What is the most common format string used in the Python logging library?"
    answered with "{}-formatting" passed on words that each occur somewhere. A superlative of the question or
    answer must be in the evidence itself.
    """
    pair = f"{question}\n{answer}"
    low = pair.lower()
    if "most" not in low and "least" not in low:
        return None
    found = list(_SUPERLATIVE.finditer(pair))
    evidence = " ".join(" ".join(words(s.source_text)) for s in spans)
    for m in found:
        phrase = " ".join(words(m.group(0)))
        if f" {phrase} " not in f" {evidence} ":
            return f"{m.group(0)!r} is not in the evidence"
    return None


# -- questions about "the code" -------------------------------------------------------------------------------

_SHOWN_CODE = re.compile(
    r"\b(?:in|from|by)\s+the\s+code\b(?!\s+(?:of|for|that|which|point|page|base|block)\b)"
    # "the provided runnable script": one word between (the text said "the following runnable script")
    r"|\b(?:given|provided|shown)\s+(?:\w+\s+)?(?:snippet|excerpt|passage|text|document|section|paragraph|example|"
    r"code|context|article|script|listing|output|sample)s?\b",
    re.IGNORECASE,
)


def points_at_shown_code(text: str) -> str | None:
    """The phrase of a question or answer that points at the prompt's code ("What is the logging format used in
    the code?"), or None. The older pointer check (``validate._POINTS_AT_PROMPT``) wants "the given code
    snippet"; this one also reads "in the code" and an adjective between ("the provided runnable script")."""
    low = text.lower()
    if "code" not in low and "given" not in low and "provided" not in low and "shown" not in low:
        return None
    m = _SHOWN_CODE.search(text)
    return m.group(0) if m else None


# a question about "the first approach" leans on a list the reader of the pair never saw; "the previous chapter"
# (demo run 2026-12-03: "What does the name of the type used in the previous chapter typically appear in?", copied
# from "as mentioned in the previous chapter") on a part of the document the reader cannot place
_ORDINAL_REFERENCE = re.compile(
    r"\bthe\s+(?:(?:first|second|third|fourth|last|former|latter|previous|next|above|below|earlier)\s+"
    r"(?:approach|method|way|option|example|case|step|solution|technique|listing|snippet|part|statement|form)s?"
    # a part of the document by where it lies from the text shown ("the first page" of a heap file is a fact)
    r"|(?:previous|preceding|next|following|above|below|earlier|later)\s+"
    r"(?:chapter|section|paragraph|page|figure|table)s?)\b"
    r"(?!\s+(?:of|in)\b)",  # "the second example of the logging cookbook" names where it is
    re.IGNORECASE,
)


def ordinal_reference(question: str) -> str | None:
    """The phrase of a question that names its subject by its place in the shown text ("Why would the first
    approach be unwieldy?", the Python-docs run's logging cookbook), or None. Questions only: an answer may say
    "the second approach" once its question has named the subject."""
    m = _ORDINAL_REFERENCE.search(question)
    return m.group(0) if m else None


# -- support by the evidence kept -----------------------------------------------------------------------------


def support_without_decoration(
    answer: str,
    kept: Sequence[EvidenceSpan],
    title: str | None,
    given: set[str],
    pool_numbers: set[str],
    min_support: float,
) -> str | None:
    """The first answer claim the evidence *kept* does not support, once ``validate.used_spans`` has dropped the
    model quotes sharing fewer than two content words with the pair (decoration), or None.

    The support check reads every quote; the stored evidence keeps only those the pair uses. A quote dropped as
    decoration could still have carried a claim: "How many arguments does `system` take?" — "Two arguments" was
    supported by "Suppose you are building two dynamic-load modules, B and C ..." alone (a demo pair, wrong: one),
    "rupshift ... replaces each lower case character with an upper case character" by an unrelated line. The same
    pool as the support check (quotes, the title's words, the question's words restated), its words from the kept
    spans only. ``pool_numbers`` are the support check's own: a dropped quote still supplies its numbers ("built in
    1851" shares one word with "How many years after it was built ... converted to kerosene?" and yet gives
    1903 - 1851 = 52); a number word ("two") is a word.
    """
    pool = set(_evidence_words(title or "")).union(*(_evidence_words(s.source_text) for s in kept))
    for claim in answer_claims(answer):
        share, misses = sentence_support(claim, pool, pool_numbers, given)
        if share < min_support:
            return (
                f"sentence {claim[:80]!r}: {share:.0%} of its content in the evidence it uses (missing {misses[:6]}); "
                "the rest came from quotes that share < 2 words with the pair"
            )
    return None


# -- all of them ----------------------------------------------------------------------------------------------


def grounding_failure(
    question: str, answer: str, spans: Sequence[EvidenceSpan], windows: Sequence[MaskWindow]
) -> tuple[str, str] | None:
    """The first of these checks that refuses the pair, as (rejection code, detail), or None. ``spans``: the
    evidence the pair uses (model quotes and completed sentences, after ``validate.used_spans``)."""
    detail = unsupported_superlative(question, answer, spans) or unsupported_negation(question, answer, spans)
    if detail:
        return "unsupported_answer", detail
    detail = number_noun_mismatch(question, answer, spans) or count_without_number(question, answer)
    if detail:
        return "number_mismatch", detail
    detail = copied_output_line(answer, spans)
    if detail:
        return "copied_line", detail
    detail = off_topic_completion(question, spans, windows) or answer_beside_question(question, answer, spans, windows)
    if detail:
        return "off_topic_evidence", detail
    return None
