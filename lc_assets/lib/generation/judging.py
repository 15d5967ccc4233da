"""Judging one model output: a new pair for the section, or the reason the attempt is rejected.

This is the one place where an output is accepted or refused. `judge_output` sees what the step
showed (paragraphs with their chunk spans, the earlier pairs, the questions the section already has)
and the backend's result; the scheduler retries a rejected attempt or records it as a failed step.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

from lc_assets.lib.generation.backend import GenerationResult
from lc_assets.lib.generation.config import GenerationConfig
from lc_assets.lib.generation.masking import Paragraph
from lc_assets.lib.generation.prompts import normalize_question, parse_qa_output
from lc_assets.lib.sections import QAPair


@dataclass(frozen=True)
class StepContext:
    """What one step showed the model: everything a judgement may check the output against."""

    section_id: str
    step: int
    chunk_text: str
    shown: tuple[Paragraph, ...]  # in selection order; `char_start/char_end` locate each in chunk_text
    earlier_pairs: tuple[QAPair, ...]  # shown in the prompt
    seen_questions: Set[str]  # normalized questions of all the section's pairs so far
    config: GenerationConfig


@dataclass(frozen=True)
class Verdict:
    pair: QAPair | None
    reason: str | None  # "<kind>: <detail>" when rejected; the kind is counted by reason

    @property
    def ok(self) -> bool:
        return self.reason is None


def judge_output(context: StepContext, result: GenerationResult) -> Verdict:
    """Accept the output as the step's pair, or say why not."""
    cfg = context.config
    if result.error is not None:
        return Verdict(None, f"backend_error: {result.error}")
    parsed = parse_qa_output(result.text, cfg.max_question_chars, cfg.max_answer_chars)
    if not parsed.ok:
        reason = parsed.reason or "invalid"
        if result.finish_reason == "length":
            reason = f"truncated at max_tokens={cfg.max_tokens}: {reason}"
        return Verdict(None, reason)
    assert parsed.question is not None and parsed.answer is not None
    if normalize_question(parsed.question) in context.seen_questions:
        return Verdict(None, "duplicate_question: asked before in this section")
    return Verdict(QAPair(f"{context.section_id}:{context.step}", context.step, parsed.question, parsed.answer), None)
