"""What a suggested question kind needs in the text it is asked about: a "why" needs a stated reason.

The scheduler suggests one question kind per step (``prompts.suggest_kind``, a shuffled cycle per section) and the
task line says "If the excerpts cannot support that kind, ask another kind". The embedded 1.5B model does not
follow that: on the labelled real runs (docs/qa_quality.md, "why-questions only where the text gives a reason") the
steps suggested "why" whose text has no causal marker made no good pair (4 weak, 1 bad), the why-questions restating
the statement ("Why does the bytearray.expandtabs() method not operate in place?" -> "The bytearray version of this
method does not operate in place ..."). So "why" is suggested only when the text the question must come from states
a reason; otherwise the step falls back to the next kind of its section's cycle (:func:`kind_for_text`).

:func:`causal_markers` finds English causal and purpose markers ("because", "so that", "in order to", "due to",
"reason", "purpose", "therefore", ...) on word boundaries, case-insensitively. Code counts where it is prose: a
``# because ...`` comment states a reason; identifiers do not (``reason_code``, ``err.reason``, ``reason=...``,
``getReason``, ``--since``, ``pg_event_trigger_table_rewrite_reason ()``). A temporal "since" ("since Python 3.7",
"since then", "seconds since epoch", "ever since") is not a reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

#: Causal and purpose markers (regex fragments; words of a phrase may be split by any whitespace, a hard wrap).
CAUSAL_MARKERS: tuple[str, ...] = (
    r"because",
    r"since",  # causal only: a temporal "since" is excluded by _TEMPORAL_SINCE
    r"so\s+that",
    r"so\s+as\s+to",
    r"in\s+order\s+(?:to|for)",
    r"due\s+to",
    r"owing\s+to",
    r"thanks\s+to",
    r"reasons?",
    r"purposes?",
    r"as\s+a\s+(?:result|consequence)",
    r"therefore",
    r"thus",
    r"hence",
    r"consequently",
    r"caused\s+by",
    r"(?:this|that|which)\s+is\s+why",
    r"that[’']s\s+why",
)

# "since" followed by a time: a number or version ("since 1996", "since Python 3.7", "since v10"), "then", a period
# ("since the mid-1990s", "since its introduction"); or "ever since"
_TEMPORAL_SINCE = (
    r"(?<=ever\s)since|since(?=\s+(?:(?:about|around|at\s+least|the|its|their|version)\s+)?"
    r"(?:v?\d|then\b|mid\b|mid-|early\b|late\b|beginning\b|start\b|introduction\b|release\b|epoch\b"
    r"|[A-Za-z.]+\s+v?\d))"
)
# not part of an identifier: no word character, dot, $, @, / or - before; none of them, "(" (but "reason(s)"), "[",
# ".x" or an assignment after ("reason_code", "err.reason", "--since", "reason=...", "purpose(", "reason-code")
_BEFORE = r"(?<![\w.$@/-])"
_AFTER = r"(?![\w$\[-]|\((?!s\))|\.\w|\s*=(?!=))"
# a parameter or argument: right after "(" or ",", before "," or ")" or a type annotation ("def f(reason: str)")
_ARGUMENT = r"(?:(?<=[(,])|(?<=,\s))\w+(?:\s*[,)]|:\s*[\w.]+\s*[,)=])"

_CAUSAL = re.compile(
    rf"{_BEFORE}(?!{_TEMPORAL_SINCE}|{_ARGUMENT})(?:{'|'.join(CAUSAL_MARKERS)}){_AFTER}",
    re.IGNORECASE,
)
_SPACE = re.compile(r"\s+")


def causal_markers(text: str) -> list[str]:
    """The causal and purpose markers ``text`` states, in order, lowercased, inner whitespace as one space."""
    return [_SPACE.sub(" ", m.group(0).lower()) for m in _CAUSAL.finditer(text)]


def states_a_reason(text: str) -> bool:
    """Whether ``text`` states a reason or purpose (one causal marker is enough)."""
    return _CAUSAL.search(text) is not None


#: What a kind needs in the text its question must come from; kinds not listed fit any text. Measured on the
#: labelled runs before building (docs/qa_quality.md, session 10): only "why" is gated. Every "numeric" step's
#: text had a number (versions, code), and "compare" had too few labelled steps to tell a cue.
KIND_CUES: dict[str, Callable[[str], bool]] = {"why": states_a_reason}


def kind_for_text(kinds_in_turn: Iterable[str], text: str) -> str | None:
    """The first of ``kinds_in_turn`` (the step's suggested kind, then the rest of its section's cycle in order)
    whose cue ``text`` has; None when none fits (the step then asks for any question)."""
    for kind in kinds_in_turn:
        cue = KIND_CUES.get(kind)
        if cue is None or cue(text):
            return kind
    return None


def cues_fingerprint() -> dict[str, str]:
    """What the gating depends on, for the prompt fingerprint (``config.prompt_version``): the gated kinds, their
    cues and the marker pattern (a changed marker list changes which kind a step is sent)."""
    return {"causal": _CAUSAL.pattern, **{kind: cue.__name__ for kind, cue in sorted(KIND_CUES.items())}}
