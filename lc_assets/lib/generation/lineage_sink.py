"""The lineage sink of the generation loop: every step becomes rows of one per-run lineage file.

Each step is one writer item — its `masked_prompts` row, its `qa_pairs` or `failed_steps` row and
its section's new `sections` row — so a group commit never holds half a step, and the committed
steps of a section are always a prefix (the writer commits items in order).
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

from lc_assets.lib.generation.records import SectionResult, StepRecord
from lc_assets.lib.lineage.generation import prompt_id_for
from lc_assets.lib.lineage.writer import LineageWriter

#: StepRecord fields without a column of their own (or of the pair/failure row): `masked_prompts.record`
_EXTRA = tuple(
    f.name
    for f in fields(StepRecord)
    if f.name not in {"section_id", "step", "status", "prompt_hash", "paragraph_ids", "shown_spans",
                      "earlier_pair_ids", "budget_tokens", "context_tokens", "prompt_tokens", "config_hash", "pair"}
)  # fmt: skip


class LineageStepSink:
    """StepSink over a LineageWriter (see module doc)."""

    def __init__(self, writer: LineageWriter, run_id: str, config_hash: str) -> None:
        self.writer = writer
        self.run_id = run_id
        self.config_hash = config_hash
        self.rows: dict[str, dict[str, Any]] = {}  # sections in flight: their current `sections` row
        self.committed = 0

    def _section_row(self, section: SectionResult) -> dict[str, Any]:
        return dict(
            section_id=section.section_id, chunk_id=section.chunk_id, document_id=section.document_id,
            shard=section.shard, config_hash=self.config_hash, chunk_tokens=section.chunk_tokens,
            target_tokens=section.target_tokens, section_tokens=section.section_tokens, n_pairs=section.n_pairs,
            steps=section.steps, failed_steps=section.failed_steps, finish_reason=section.finish_reason,
            model=None, backend=None, run_id=self.run_id, n_paragraphs=section.n_paragraphs,
        )  # fmt: skip

    def _put_section(self, row: dict[str, Any], rows: dict[str, list[dict[str, Any]]] | None = None) -> None:
        # a copy: the writer thread reads the row later, while this one keeps changing
        self.writer.put(rows or {}, {"sections": {row["section_id"]: dict(row)}})

    def open_section(self, section: SectionResult) -> None:
        row = self.rows[section.section_id] = self._section_row(section)
        self._put_section(row)

    def commit(self, record: StepRecord) -> None:
        prompt_id = prompt_id_for(record.section_id, record.step)
        extra = {k: getattr(record, k) for k in _EXTRA}  # no asdict(): it deep-copies, per step
        prompt = dict(
            prompt_id=prompt_id, section_id=record.section_id, step=record.step, status=record.status,
            prompt_hash=record.prompt_hash, paragraph_ids=list(record.paragraph_ids),
            shown_spans=[dict(paragraph_index=i, char_start=s, char_end=e) for i, s, e in record.shown_spans],
            earlier_pair_ids=list(record.earlier_pair_ids), budget_tokens=record.budget_tokens,
            context_tokens=record.context_tokens, prompt_tokens=record.prompt_tokens,
            config_hash=record.config_hash, record=json.dumps(extra), run_id=self.run_id,
        )  # fmt: skip
        rows: dict[str, list[dict[str, Any]]] = {"masked_prompts": [prompt]}
        if record.pair is not None:
            rows["qa_pairs"] = [
                dict(
                    pair_id=record.pair.pair_id, section_id=record.section_id, step=record.step,
                    prompt_id=prompt_id, question=record.pair.question, answer=record.pair.answer,
                    model=record.model, backend=record.backend, prompt_tokens=record.prompt_tokens,
                    completion_tokens=record.completion_tokens, attempts=record.attempts,
                    seconds=record.seconds, config_hash=record.config_hash, run_id=self.run_id,
                )
            ]  # fmt: skip
        else:
            rows["failed_steps"] = [
                dict(
                    prompt_id=prompt_id, section_id=record.section_id, step=record.step,
                    reason=record.failure_reason or "unknown", raw_text=record.raw_text,
                    attempts=record.attempts, model=record.model, backend=record.backend,
                    config_hash=record.config_hash, run_id=self.run_id,
                )
            ]  # fmt: skip
        row = self.rows[record.section_id]
        row.update(
            steps=record.step + 1, n_pairs=record.n_pairs, failed_steps=record.failed_steps,
            section_tokens=record.section_tokens, model=record.model, backend=record.backend,
        )  # fmt: skip
        self._put_section(row, rows)
        self.committed += 1

    def close_section(self, section: SectionResult) -> None:
        row = self.rows.pop(section.section_id, None) or self._section_row(section)
        row.update(
            finish_reason=section.finish_reason, steps=section.steps, n_pairs=section.n_pairs,
            failed_steps=section.failed_steps, section_tokens=section.section_tokens,
        )  # fmt: skip
        self._put_section(row)

    def flush(self) -> None:
        self.writer.flush()
