"""Stored generation steps with what their prompts showed: to re-judge real outputs with changed checks.

Every step of a lineage file keeps its raw output (the accepted one in ``masked_prompts.record``, each refused
attempt in ``rejected_attempts``), the shown paragraphs as chunk spans, the earlier pairs it listed, its
focus window and whether it was long-range. :func:`stored_steps` gives them back in section and step order
with the windows rebuilt offset-exact, so validation can be run again on exactly the text the model saw
(``benchmarks/revalidate_run.py``) without running a model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lc_assets.lib.generation.admission import source_language
from lc_assets.lib.generation.masking import MaskWindow, Paragraph, windows_of
from lc_assets.lib.generation.prompts import INSTRUCTION_TEXTS, section_attribution
from lc_assets.lib.generation.validate import (
    UNDETERMINED_LANGUAGE,
    QuestionIndex,
    ShownTextMemo,
    ValidatedQA,
    ValidationConfig,
    validate_output,
)
from lc_assets.lib.lineage.store import LineageStore
from lc_assets.lib.sections import QAPair


@dataclass(frozen=True)
class StoredAttempt:
    attempt: int
    raw_text: str
    code: str | None  # the rejection code stored for it; None for the accepted output


@dataclass(frozen=True)
class StoredStep:
    prompt_id: str
    section_id: str
    step: int
    chunk_text: str
    title: str
    windows: tuple[MaskWindow, ...]  # as shown, document order, offset-exact
    earlier_pairs: tuple[QAPair, ...]  # the pairs the prompt listed
    long_range: bool
    focus_window: int | None
    kind: str | None  # the suggested question kind
    attempts: tuple[StoredAttempt, ...]  # in order; the last one decided the step
    pair_id: str | None  # the stored pair when the step was accepted
    settings: dict[str, Any]  # the generation config the step ran with (its validation bounds and thresholds)
    attribution: str | None = None  # the name its questions had to start with (the config's attributed_sources)


def stored_steps(store: LineageStore, generation_hash: str | None = None) -> Iterator[StoredStep]:
    """Every step that sent a request (of one generation config, or all), by section and step.

    Cross-chunk sections are skipped (their text joins two chunks; the windows of this module read one)."""
    with store.connect(read_only=True) as con:
        steps = con.execute(
            """SELECT m.prompt_id, m.section_id, m.step, m.shown_spans, m.earlier_pair_ids, m.record, m.kind,
                      coalesce(m.long_range, false), s.chunk_id, coalesce(d.title, ''), g.config,
                      coalesce(d.source, '')
               FROM masked_prompts m
               JOIN sections s ON s.section_id = m.section_id
               LEFT JOIN documents d ON d.document_id = s.document_id
               LEFT JOIN generation_configs g ON g.config_hash = m.config_hash
               WHERE m.prompt_hash <> '' AND m.shown_spans IS NOT NULL AND (? IS NULL OR m.config_hash = ?)
               ORDER BY m.section_id, m.step""",
            [generation_hash, generation_hash],
        ).fetchall()
        chunk_ids = sorted({r[8] for r in steps})
        texts = dict(
            con.execute(
                "SELECT chunk_id, text FROM chunks WHERE chunk_id IN (SELECT unnest(?::VARCHAR[]))", [chunk_ids]
            ).fetchall()
        )
        pairs = {
            pid: QAPair(pid, step, q, a)
            for pid, step, q, a in con.execute("SELECT pair_id, step, question, answer FROM qa_pairs").fetchall()
        }
        prompt_pairs = dict(con.execute("SELECT prompt_id, pair_id FROM qa_pairs").fetchall())
        refused: dict[str, list[StoredAttempt]] = {}
        for pid, attempt, code, raw in con.execute(
            "SELECT prompt_id, attempt, code, raw_text FROM rejected_attempts ORDER BY prompt_id, attempt"
        ).fetchall():
            refused.setdefault(pid, []).append(StoredAttempt(attempt, raw, code))
    settings: dict[str, dict[str, Any]] = {}  # config JSON -> parsed, once per config
    for (
        prompt_id,
        section_id,
        step,
        spans,
        earlier_ids,
        record,
        kind,
        long_range,
        chunk_id,
        title,
        config,
        src,
    ) in steps:
        text = texts.get(chunk_id)
        if text is None:
            continue
        rec = json.loads(record) if record else {}
        attempts = list(refused.get(prompt_id, []))
        pair_id = prompt_pairs.get(prompt_id)
        if pair_id is not None and rec.get("raw_text"):
            attempts.append(StoredAttempt(len(attempts), rec["raw_text"], None))
        paragraphs = [
            # no paragraph id: a memo of quotable pieces then cuts them afresh (the same pieces, a little slower)
            Paragraph(s["paragraph_index"], "", s["char_start"], s["char_end"], text[s["char_start"] : s["char_end"]], 0)
            for s in spans
        ]  # fmt: skip
        yield StoredStep(
            prompt_id,
            section_id,
            step,
            text,
            title,
            windows_of(paragraphs),
            tuple(pairs[p] for p in earlier_ids if p in pairs),
            bool(long_range),
            rec.get("focus_window"),
            kind,
            tuple(attempts),
            pair_id,
            run_settings := settings.setdefault(config or "", json.loads(config) if config else {}),
            section_attribution(run_settings.get("attributed_sources", ()), src, title),
        )


def step_language(step: StoredStep) -> str:
    """The language the run checked the step's outputs against (detected from its chunk, as admission does)."""
    return source_language(step.chunk_text) or UNDETERMINED_LANGUAGE


def rejudge(
    step: StoredStep,
    raw_text: str,
    question_index: QuestionIndex,
    language: str,
    memo: ShownTextMemo | None = None,
) -> ValidatedQA:
    """One stored output validated again as its step would be now: the shown windows, the listed earlier pairs,
    the section's questions so far (``question_index``), the focus window and the run's own validation settings."""
    cfg = ValidationConfig(**{k: v for k, v in step.settings.items() if k in ValidationConfig.model_fields})
    return validate_output(
        raw_text,
        step.windows,
        earlier=step.earlier_pairs,
        question_index=question_index,
        long_range=step.long_range,
        instructions=INSTRUCTION_TEXTS,
        source_language=language,
        config=cfg,
        memo=memo,
        title=step.title,
        focus_window=step.focus_window,
        attribution=step.attribution,
    )
