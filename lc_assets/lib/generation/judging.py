"""Judging one model output: a new pair for the section, or the reason the attempt is rejected.

This is the one place where an output is accepted or refused: :func:`validate.validate_output` with
what the step showed (its windows with their chunk spans, the earlier pairs it listed, whether it was
a long-range step) and what the section knows (every question so far, its language, its memo of
quotable pieces). The scheduler retries a rejected attempt or records it as a failed step; every
rejected attempt is stored with its code, never as a pair.
"""

from __future__ import annotations

from dataclasses import dataclass

from lc_assets.lib.generation.backend import GenerationResult
from lc_assets.lib.generation.config import GenerationConfig
from lc_assets.lib.generation.masking import MaskWindow
from lc_assets.lib.generation.prompts import INSTRUCTION_TEXTS
from lc_assets.lib.generation.validate import QuestionIndex, ShownTextMemo, ValidatedQA, validate_output
from lc_assets.lib.sections import QAPair


@dataclass(frozen=True)
class StepContext:
    """What one step showed the model, and what its section knows: everything a judgement checks against."""

    section_id: str
    step: int
    windows: tuple[MaskWindow, ...]  # the shown windows in document order (chunk spans, offset-exact text)
    earlier_pairs: tuple[QAPair, ...]  # listed in the prompt (echo checks)
    question_index: QuestionIndex  # every question of the section so far (near-duplicate check)
    long_range: bool  # evidence must come from both far-apart windows
    source_language: str  # the chunk's language (validate.UNDETERMINED_LANGUAGE: no language check)
    config: GenerationConfig
    memo: ShownTextMemo | None = None  # the section's quotable pieces (speed only)
    title: str = ""  # the document's title the prompt named (its words may name the answer's subject)
    focus_window: int | None = None  # the window the prompt asked about: model quotes must come from it
    attribution: str | None = None  # the document's name the question must start with (attributed_sources)


@dataclass(frozen=True)
class Verdict:
    pair: QAPair | None
    reason: str | None  # "<code>: <detail>" when rejected; the code is counted by reason
    checked: ValidatedQA | None = None  # the validation result (evidence spans, kind); None for backend errors
    # target-tokenizer counts of the pair's question and answer, when the judge counted them (a judge worker)
    pair_counts: tuple[int, int] | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


def judge_output(context: StepContext, result: GenerationResult) -> Verdict:
    """Accept the output as the step's pair (with its evidence spans and kind), or say why not."""
    cfg = context.config
    if result.error is not None:
        return Verdict(None, f"backend_error: {result.error}")
    checked = validate_output(
        result.text,
        context.windows,
        earlier=context.earlier_pairs,
        question_index=context.question_index,
        long_range=context.long_range,
        instructions=INSTRUCTION_TEXTS,
        source_language=context.source_language,
        config=cfg,
        memo=context.memo,
        title=context.title,
        focus_window=context.focus_window,
        attribution=context.attribution,
    )
    if not checked.ok:
        reason = checked.failure
        assert reason is not None
        if result.finish_reason == "length":
            reason = f"truncated at max_tokens={cfg.max_tokens}: {reason}"
        return Verdict(None, reason, checked)
    return Verdict(checked.to_pair(f"{context.section_id}:{context.step}", context.step), None, checked)
