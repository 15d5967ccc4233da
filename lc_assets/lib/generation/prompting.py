"""Prompt building for one step: mask + earlier pairs -> messages that fit the context window -> request.

The context-overflow guard counts exactly only near the limit. Every step first gets an upper bound
from counts already known — the paragraphs' generator tokens (counted once per section at admission),
the earlier pairs' UTF-8 bytes + 1 (no count per step; a pair is counted exactly, once, only when the
bound with bytes exceeds the limit), the document title's line (once per section) and the
template's own tokens with its longest task text (question kinds, the long-range task; measured once
per run) — plus slack for merges at the joins. Only a prompt whose bound exceeds the limit is rendered
through the chat template and counted exactly (25–70 ms for 3k tokens), and trimmed by ``fit_prompt``.
"""

from __future__ import annotations

import math
import operator
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lc_assets.lib.generation.admission import SectionState, title_line_tokens
from lc_assets.lib.generation.backend import GenerationBackend, GenerationRequest
from lc_assets.lib.generation.config import GenerationConfig
from lc_assets.lib.generation.focus import choose_focus
from lc_assets.lib.generation.masking import Mask, MaskWindow, Paragraph, derive_rng, sample_earlier_pairs
from lc_assets.lib.generation.prompts import (
    ATTRIBUTION_TASK,
    FittedPrompt,
    attribution_prefix,
    build_messages,
    evidence_choices,
    fit_prompt,
    kinds_in_turn,
    qa_json_schema,
    section_attribution,
)
from lc_assets.lib.generation.records import RejectedAttempt, Span
from lc_assets.lib.sections import QAPair

_n_tokens = operator.attrgetter("n_tokens")
_index = operator.attrgetter("index")

#: relative slack of the bound (BPE merges across joins; measured well below 1% on the embedded corpus)
BOUND_SLACK_RATIO = 0.01
BOUND_SLACK_TOKENS = 16


@dataclass(frozen=True)
class _Calibration:
    """Generator tokens the chat template and prompt text add, measured once per run through the real
    builder and counter (so a changed template is measured, not assumed)."""

    base: int  # the prompt without paragraphs, earlier pairs and title, with its longest task text
    first_window: int  # what the first shown paragraph adds beyond its own tokens (skip markers, labels)
    join: int  # a paragraph right after the previous one, beyond its tokens
    new_window: int  # a paragraph opening a further window, beyond its tokens
    header: int  # the earlier-pairs block's fixed text
    per_pair: int  # one earlier pair beyond its rendered question/answer
    questions: bool  # earlier questions are rendered (their tokens count)
    answers: bool  # earlier answers are rendered


@dataclass
class StepAttempt:
    """One step of one section on its way through the backend (retries reuse it)."""

    state: SectionState
    step: int
    fitted: FittedPrompt
    budget_tokens: int
    started_at: float  # unix time of the first attempt
    started_mono: float
    submitted_mono: float = 0.0
    attempt: int = 0
    errors: list[str] = field(default_factory=list)
    total_completion_tokens: int = 0
    request_id: str = ""
    schema: dict[str, Any] | None = None  # the step's output schema (its evidence choices are the shown text)
    rejected: list[RejectedAttempt] = field(default_factory=list)  # refused attempts, with their raw text


class PromptBuilder:
    """Builds each step's prompt and request; owns the guard's calibration and the counting lock."""

    def __init__(self, backend: GenerationBackend, config: GenerationConfig) -> None:
        self.backend = backend
        self.config = config
        self.window = backend.context_window
        self.limit = self.window - config.max_tokens
        self.exact_counts = 0
        self._calibration: _Calibration | None = None
        self._run_nonce = f"{time.time_ns():x}"  # request ids stay unique if a backend is reused

    # -- counting ---------------------------------------------------------------------------------
    # No lock: the admission thread counts paragraphs while this thread counts pairs and prompts, and a
    # lock would stall the loop for a whole chunk's count (~0.25 s); backends count thread-safely.
    def count_text(self, texts: Sequence[str]) -> list[int]:
        return self.backend.count_text_tokens(texts)

    def count_exact(self, messages: Sequence[dict[str, str]]) -> int:
        self.exact_counts += 1
        return self.backend.count_prompt_tokens(messages)

    def _calibrate(self) -> _Calibration:
        """What the template adds around paragraphs, windows and earlier pairs, measured once per run."""
        if self._calibration is None:
            marker = self.config.skip_marker

            cfg = self.config

            def count(paragraphs: Sequence[Paragraph], pairs: Sequence[QAPair], **task: Any) -> int:
                return self.count_exact(
                    build_messages(paragraphs, 20, pairs, marker, max_quotes=cfg.max_quotes, **task)
                )

            t1, t2 = "The first calibration paragraph has a few words.", "A second one follows it here."
            n1, n2 = self.count_text([t1, t2])
            p1, p2, p9 = (Paragraph(i, "", 0, 0, t, n) for i, t, n in ((5, t1, n1), (6, t2, n2), (9, t2, n2)))
            # the task text differs per step (suggested kind, focus excerpt, long-range): the bound takes the longest
            focus = {"focus": 9} if cfg.focus_window else {}  # the widest excerpt number a step can name (1 digit)
            # no kind: a step whose text fits none of the kinds (kind_cues) asks for any question
            tasks = [{"kind": k, **focus} for k in cfg.question_kinds] + [focus]
            base = max(count([], [], **t) for t in [*tasks, {"long_range": True}])
            base_plain = count([], [])
            one = count([p1], [])
            first_window = one - base_plain - n1  # a paragraph inside the chunk: skip markers on both sides
            join = count([p1, p2], []) - one - n2
            new_window = count([p1, p9], []) - one - n2
            q, a = "Which question calibrates the earlier pairs?", "The answer that calibrates them."
            qa = QAPair("c:0", 0, q, a)
            with_pair = count([], [qa])
            questions = count([], [QAPair("c:0", 0, q + " It asks more." * 8, a)]) > with_pair
            answers = count([], [QAPair("c:0", 0, q, a + " It says more." * 8)]) > with_pair
            qb = QAPair("c:1", 1, "What does a second question ask?", "A second answer.")
            gq = self.count_text([qa.question, qa.answer, qb.question, qb.answer])
            g_a = questions * gq[0] + answers * gq[1]
            g_b = questions * gq[2] + answers * gq[3]
            per_pair = count([], [qa, qb]) - with_pair - g_b
            header = with_pair - base_plain - g_a - per_pair
            self._calibration = _Calibration(
                base, max(0, first_window), max(0, join), max(0, new_window), max(0, header), max(0, per_pair),
                questions, answers,
            )  # fmt: skip
        return self._calibration

    def pair_generator_tokens(self, state: SectionState, pairs: Sequence[QAPair], exact: bool = False) -> int:
        """Generator tokens of the parts of these pairs the prompt renders, at most.

        A pair not yet counted exactly is bounded by its UTF-8 bytes + 1 (a byte-level BPE token covers at
        least one byte; +1 for a leading dummy-prefix piece): counting it would cost a /tokenize round trip
        on the loop thread per step against a server. With ``exact`` the uncounted pairs are counted (once
        per pair), for a prompt whose bound is near the limit.
        """
        cal = self._calibrate()
        known = state.generator_pair_tokens
        missing = [p for p in pairs if p.pair_id not in known]
        if missing and exact:
            counts = self.count_text([t for p in missing for t in (p.question, p.answer)])
            for i, p in enumerate(missing):
                known[p.pair_id] = (counts[2 * i], counts[2 * i + 1])
        total = 0
        for p in pairs:
            q, a = known.get(p.pair_id) or (len(p.question.encode()) + 1, len(p.answer.encode()) + 1)
            total += cal.questions * q + cal.answers * a
        return total

    def title_tokens(self, state: SectionState) -> int:
        """Generator tokens of the section's title line (counted once per section, +2 for the join)."""
        if state.title_tokens is None:  # a state not built by admission (which counts it there)
            state.title_tokens = title_line_tokens(self.count_text, state.task.title)
        return state.title_tokens

    def attribution(self, state: SectionState) -> str | None:
        """The name the section's questions must start with (``attributed_sources``), or None."""
        return section_attribution(self.config.attributed_sources, state.task.section.source, state.task.title)

    def attribution_tokens(self, state: SectionState, attribution: str | None) -> int:
        """Generator tokens the attribution sentence adds to the task line, at most (counted once per section,
        +2 for the join)."""
        if attribution is None:
            return 0
        if state.attribution_tokens is None:
            sentence = ATTRIBUTION_TASK.format(prefix=attribution_prefix(attribution))
            state.attribution_tokens = self.count_text([sentence])[0] + 2
        return state.attribution_tokens

    def upper_bound(
        self, state: SectionState, selected: Sequence[Paragraph], earlier: Sequence[QAPair], exact_pairs: bool = False
    ) -> int:
        """Tokens the prompt of these paragraphs and pairs can have at most (never below the exact count);
        ``exact_pairs`` counts the earlier pairs exactly instead of bounding them by their bytes."""
        cal = self._calibrate()
        total = cal.base + self.title_tokens(state) + sum(map(_n_tokens, selected))
        total += self.attribution_tokens(state, self.attribution(state))
        if selected:
            indices = sorted(map(_index, selected))
            windows = 1 + sum(1 for a, b in zip(indices, indices[1:], strict=False) if b != a + 1)
            # +2 per window and per paragraph: longer window labels, merges at the joins
            total += cal.first_window + (windows - 1) * cal.new_window + (len(selected) - windows) * cal.join
            total += 2 * (windows + len(selected))
        if earlier:
            total += (
                cal.header + self.pair_generator_tokens(state, earlier, exact_pairs) + (cal.per_pair + 2) * len(earlier)
            )
        return total + math.ceil(total * BOUND_SLACK_RATIO) + BOUND_SLACK_TOKENS

    # -- one step ---------------------------------------------------------------------------------
    def focus(self, state: SectionState, step: int, windows: tuple[MaskWindow, ...]) -> int | None:
        """The step's focus window: the shown window whose deciles hold the fewest of the section's accepted
        quotes so far (generation.focus); only windows with something to quote when quotes are choices."""
        cfg = self.config
        eligible = None
        if cfg.evidence_choices:
            args = (cfg.max_quote_chars, cfg.min_quote_words, cfg.min_quote_chars)
            # has a quotable piece (the first paragraph with one decides; building the choices costs ~20x more)
            eligible = [any(state.memo.pieces(p, *args) for p in w.paragraphs) for w in windows]
        rng = derive_rng(cfg.seed, state.section_id, step, "focus")
        return choose_focus(windows, state.evidence_depth, rng, eligible)

    def fit(self, state: SectionState, step: int) -> tuple[Mask, tuple[QAPair, ...], FittedPrompt]:
        """The step's mask, earlier pairs and fitted prompt (raises PromptOverflowError if nothing fits)."""
        cfg = self.config
        assert state.masker is not None
        mask = state.masker.mask(step)
        # state.pairs grow in step order and all precede the section's next step
        earlier = sample_earlier_pairs(
            state.pairs, cfg.earlier_pairs, cfg.seed, state.section_id, step, ascending=step == state.next_step
        )
        # the cycle's kind, then the rest of the cycle: a kind the question's text cannot support ("why" where no
        # reason is stated) gives way to the next that it can (chosen in fit_prompt, where the focus is known)
        turn = kinds_in_turn(cfg.seed, state.section_id, step, cfg.question_kinds) if cfg.question_kinds else ()
        bound = self.upper_bound(state, mask.selected, earlier)
        if bound > self.limit and earlier:
            # near the limit: the pairs' byte bounds are ~4x their tokens, count them before the whole prompt
            bound = self.upper_bound(state, mask.selected, earlier, exact_pairs=True)
        count = (lambda _messages: bound) if bound <= self.limit else self.count_exact
        # cross sections (a masker of their own) are long-range steps over two chunks: no focus
        steer = cfg.focus_window and state.task.masker is None
        fitted = fit_prompt(
            mask,
            len(state.paragraphs),
            earlier,
            count,
            self.window,
            cfg.max_tokens,
            cfg.skip_marker,
            kind=turn[0] if turn else None,
            title=state.task.title,
            max_quotes=cfg.max_quotes,
            choose_focus=(lambda windows: self.focus(state, step, windows)) if steer else None,
            attribution=self.attribution(state),
            kind_fallbacks=turn[1:],
        )
        return mask, earlier, fitted

    def schema(self, state: SectionState, fitted: FittedPrompt) -> dict[str, Any]:
        """The step's output schema: evidence first, its items the shown sentences/lines when configured
        (item i from window i on a long-range step; the focus window's only on a focused step), then
        question and answer, each bounded."""
        cfg = self.config
        long_range = fitted.long_range
        choices: list[str] | None = None
        per_window: list[list[str]] | None = None
        if cfg.evidence_choices:
            args = (cfg.max_quote_chars, cfg.min_quote_words, cfg.min_quote_chars)
            if long_range:
                per_window = [evidence_choices([w], *args, memo=state.memo) for w in fitted.windows]
            if not per_window or not all(per_window):
                shown = fitted.windows if fitted.focus is None else fitted.windows[fitted.focus : fitted.focus + 1]
                choices = evidence_choices(shown, *args, memo=state.memo)
        return qa_json_schema(
            cfg.max_question_chars,
            cfg.max_answer_chars,
            max_quote_chars=cfg.max_quote_chars,
            min_quotes=2 if long_range else 1,
            max_quotes=max(cfg.max_quotes, 2 if long_range else 1),
            quote_choices=choices,
            quote_choices_per_window=per_window,
            question_prefix=attribution_prefix(fitted.attribution) if fitted.attribution else None,
        )

    def request(self, att: StepAttempt) -> GenerationRequest:
        cfg = self.config
        sid = att.state.section_id
        seed = derive_rng(cfg.seed, sid, att.step, "request", att.attempt).getrandbits(31)
        att.request_id = f"{sid}/{att.step}/{att.attempt}/{self._run_nonce}"
        return GenerationRequest(
            request_id=att.request_id,
            messages=att.fitted.messages,
            max_tokens=cfg.max_tokens,
            temperature=cfg.temperature if att.attempt == 0 else max(cfg.temperature, cfg.retry_temperature),
            json_schema=att.schema,
            seed=seed,
        )


def shown_spans(fitted: FittedPrompt) -> tuple[Span, ...]:
    """The shown paragraphs as (index, char_start, char_end), in document order."""
    return tuple((p.index, p.char_start, p.char_end) for p in sorted(fitted.shown, key=lambda p: p.index))


def rebuild_messages(
    chunk_text: str,
    spans: Sequence[Span],
    n_paragraphs: int,
    earlier_pairs: Sequence[QAPair],
    marker: str,
    *,
    kind: str | None = None,
    long_range: bool = False,
    title: str | None = None,
    max_quotes: int = 2,
    focus: int | None = None,
    attribution: str | None = None,
) -> tuple[dict[str, str], ...]:
    """The exact messages of a step from what lineage stores (ids, spans, the suggested kind, whether it
    was long-range, the document's title, the focus window, the attribution its config asked), through the same
    builder."""
    shown = [Paragraph(i, "", s, e, chunk_text[s:e], 0) for i, s, e in spans]
    return build_messages(
        shown, n_paragraphs, earlier_pairs, marker, kind=kind, long_range=long_range, title=title,
        max_quotes=max_quotes, focus=focus, attribution=attribution,
    )  # fmt: skip
