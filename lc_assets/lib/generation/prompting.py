"""Prompt building for one step: mask + earlier pairs -> messages that fit the context window -> request.

The context-overflow guard counts exactly only near the limit. Every step first gets an upper bound
from counts already known — the paragraphs' generator tokens (counted once per section at admission),
the earlier pairs' tokens (counted once per pair) and the template's own tokens (measured once per
run) — plus slack for merges at the joins. Only a prompt whose bound exceeds the limit is rendered
through the chat template and counted exactly (25–70 ms for 3k tokens), and trimmed by ``fit_prompt``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from lc_assets.lib.generation.admission import SectionState
from lc_assets.lib.generation.backend import GenerationBackend, GenerationRequest
from lc_assets.lib.generation.config import GenerationConfig
from lc_assets.lib.generation.masking import Mask, Paragraph, derive_rng, sample_earlier_pairs
from lc_assets.lib.generation.prompts import FittedPrompt, build_messages, fit_prompt, qa_json_schema
from lc_assets.lib.generation.records import Span
from lc_assets.lib.sections import QAPair

#: relative slack of the bound (BPE merges across joins; measured well below 1% on the embedded corpus)
BOUND_SLACK_RATIO = 0.01
BOUND_SLACK_TOKENS = 16


@dataclass(frozen=True)
class _Calibration:
    """Generator tokens the chat template and prompt text add, measured once per run through the real
    builder and counter (so a changed template is measured, not assumed)."""

    base: int  # the prompt without paragraphs and earlier pairs
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


class PromptBuilder:
    """Builds each step's prompt and request; owns the guard's calibration and the counting lock."""

    def __init__(self, backend: GenerationBackend, config: GenerationConfig) -> None:
        self.backend = backend
        self.config = config
        self.schema = qa_json_schema(config.max_question_chars, config.max_answer_chars)
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

            def count(paragraphs: Sequence[Paragraph], pairs: Sequence[QAPair]) -> int:
                return self.count_exact(build_messages(paragraphs, 20, pairs, marker))

            t1, t2 = "The first calibration paragraph has a few words.", "A second one follows it here."
            n1, n2 = self.count_text([t1, t2])
            p1, p2, p9 = (Paragraph(i, "", 0, 0, t, n) for i, t, n in ((5, t1, n1), (6, t2, n2), (9, t2, n2)))
            base = count([], [])
            one = count([p1], [])
            first_window = one - base - n1  # a paragraph inside the chunk: skip markers on both sides
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
            header = with_pair - base - g_a - per_pair
            self._calibration = _Calibration(
                base, max(0, first_window), max(0, join), max(0, new_window), max(0, header), max(0, per_pair),
                questions, answers,
            )  # fmt: skip
        return self._calibration

    def pair_generator_tokens(self, state: SectionState, pairs: Sequence[QAPair]) -> int:
        """Generator tokens of the parts of these pairs the prompt renders (counted once per pair)."""
        cal = self._calibrate()
        known = state.generator_pair_tokens
        missing = [p for p in pairs if p.pair_id not in known]
        if missing:
            counts = self.count_text([t for p in missing for t in (p.question, p.answer)])
            for i, p in enumerate(missing):
                known[p.pair_id] = (counts[2 * i], counts[2 * i + 1])
        return sum(cal.questions * known[p.pair_id][0] + cal.answers * known[p.pair_id][1] for p in pairs)

    def upper_bound(self, state: SectionState, selected: Sequence[Paragraph], earlier: Sequence[QAPair]) -> int:
        """Tokens the prompt of these paragraphs and pairs can have at most (never below the exact count)."""
        cal = self._calibrate()
        total = cal.base + sum(p.n_tokens for p in selected)
        if selected:
            indices = sorted(p.index for p in selected)
            windows = 1 + sum(1 for a, b in zip(indices, indices[1:], strict=False) if b != a + 1)
            # +2 per window and per paragraph: longer window labels, merges at the joins
            total += cal.first_window + (windows - 1) * cal.new_window + (len(selected) - windows) * cal.join
            total += 2 * (windows + len(selected))
        if earlier:
            total += cal.header + self.pair_generator_tokens(state, earlier) + (cal.per_pair + 2) * len(earlier)
        return total + math.ceil(total * BOUND_SLACK_RATIO) + BOUND_SLACK_TOKENS

    # -- one step ---------------------------------------------------------------------------------
    def fit(self, state: SectionState, step: int) -> tuple[Mask, tuple[QAPair, ...], FittedPrompt]:
        """The step's mask, earlier pairs and fitted prompt (raises PromptOverflowError if nothing fits)."""
        cfg = self.config
        assert state.masker is not None
        mask = state.masker.mask(step)
        earlier = sample_earlier_pairs(state.pairs, cfg.earlier_pairs, cfg.seed, state.section_id, step)
        bound = self.upper_bound(state, mask.selected, earlier)
        count = (lambda _messages: bound) if bound <= self.limit else self.count_exact
        fitted = fit_prompt(mask, len(state.paragraphs), earlier, count, self.window, cfg.max_tokens, cfg.skip_marker)
        return mask, earlier, fitted

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
            json_schema=self.schema,
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
) -> tuple[dict[str, str], ...]:
    """The exact messages of a step from what lineage stores (ids and spans), through the same builder."""
    shown = [Paragraph(i, "", s, e, chunk_text[s:e], 0) for i, s, e in spans]
    return build_messages(shown, n_paragraphs, earlier_pairs, marker)
