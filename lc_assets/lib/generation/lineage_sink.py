"""The lineage sink of the generation loop: every step becomes rows of one per-run lineage file.

Each step is one writer item — its `masked_prompts` row, its `qa_pairs` row with the pair's
`qa_evidence` rows or its `failed_steps` row, a `rejected_attempts` row per refused attempt, and its
section's new `sections` row — so a group commit never holds half a step (a pair is never stored
without its evidence), and the committed steps of a section are always a prefix (the writer commits
items in order).
"""

from __future__ import annotations

import json
from dataclasses import fields
from operator import attrgetter
from typing import Any

import pyarrow as pa

from lc_assets.lib.generation.quality import reason_code
from lc_assets.lib.generation.records import SectionResult, StepRecord
from lc_assets.lib.lineage.generation import prompt_id_for
from lc_assets.lib.lineage.writer import LineageWriter, RowLayout

#: StepRecord fields without a column of their own (or of the pair/failure row): `masked_prompts.record`
_EXTRA = tuple(
    f.name
    for f in fields(StepRecord)
    if f.name not in {"section_id", "step", "status", "prompt_hash", "paragraph_ids", "shown_spans",
                      "earlier_pair_ids", "budget_tokens", "context_tokens", "prompt_tokens", "config_hash", "pair",
                      "kind", "suggested_kind", "long_range", "evidence", "rejected"}
)  # fmt: skip
_extra = attrgetter(*_EXTRA)

#: the rows of a step as tuples (cheaper to make than dicts, hundreds of times a second; see lineage.writer)
LAYOUTS = {
    "masked_prompts": RowLayout(
        ("prompt_id", "section_id", "step", "status", "prompt_hash", "paragraph_ids", "shown_spans",
         "earlier_pair_ids", "budget_tokens", "context_tokens", "prompt_tokens", "config_hash", "record", "run_id",
         "kind", "long_range"),
        {
            "paragraph_ids": pa.list_(pa.string()),
            "shown_spans": pa.list_(pa.struct(
                [("paragraph_index", pa.int32()), ("char_start", pa.int32()), ("char_end", pa.int32())]
            )),
            "earlier_pair_ids": pa.list_(pa.string()),
        },
    ),
    "qa_pairs": RowLayout(
        ("pair_id", "section_id", "step", "prompt_id", "question", "answer", "model", "backend", "prompt_tokens",
         "completion_tokens", "attempts", "seconds", "config_hash", "run_id", "kind"),
    ),
    "sections": RowLayout(
        ("section_id", "chunk_id", "document_id", "shard", "config_hash", "chunk_tokens", "target_tokens",
         "section_tokens", "n_pairs", "steps", "failed_steps", "finish_reason", "model", "backend", "run_id",
         "n_paragraphs"),
    ),
}  # fmt: skip


#: the `sections` columns a step or the section's end changes
_STEPS, _N_PAIRS, _FAILED, _TOKENS, _FINISH, _MODEL, _BACKEND = map(
    LAYOUTS["sections"].columns.index,
    ("steps", "n_pairs", "failed_steps", "section_tokens", "finish_reason", "model", "backend"),
)


class LineageStepSink:
    """StepSink over a LineageWriter (see module doc)."""

    def __init__(self, writer: LineageWriter, run_id: str, config_hash: str) -> None:
        self.writer = writer
        writer.layouts.update(LAYOUTS)
        self.run_id = run_id
        self.config_hash = config_hash
        self.rows: dict[str, list[Any]] = {}  # sections in flight: their current `sections` row
        self.committed = 0

    def _section_row(self, section: SectionResult) -> list[Any]:
        return [
            section.section_id, section.chunk_id, section.document_id, section.shard, self.config_hash,
            section.chunk_tokens, section.target_tokens, section.section_tokens, section.n_pairs, section.steps,
            section.failed_steps, section.finish_reason, None, None, self.run_id, section.n_paragraphs,
        ]  # fmt: skip

    def open_section(self, section: SectionResult) -> None:
        row = self.rows[section.section_id] = self._section_row(section)
        # a tuple: a copy, since the writer thread reads the row later while this one keeps changing
        self.writer.put({}, {"sections": {section.section_id: tuple(row)}})

    def commit(self, record: StepRecord) -> None:
        prompt_id = prompt_id_for(record.section_id, record.step)
        sid, config_hash, run_id = record.section_id, record.config_hash, self.run_id
        extra = dict(zip(_EXTRA, _extra(record), strict=True))  # no asdict(): it deep-copies, per step
        rows: dict[str, list[Any]] = {
            "masked_prompts": [
                (
                    prompt_id, sid, record.step, record.status, record.prompt_hash, record.paragraph_ids,
                    record.shown_spans, record.earlier_pair_ids, record.budget_tokens, record.context_tokens,
                    record.prompt_tokens, config_hash, json.dumps(extra), run_id, record.suggested_kind,
                    record.long_range,
                )
            ]
        }  # fmt: skip
        if record.rejected:
            rows["rejected_attempts"] = [
                dict(
                    prompt_id=prompt_id, section_id=sid, attempt=r.attempt, code=reason_code(r.reason) or "unknown",
                    detail=r.reason, raw_text=r.raw_text, run_id=run_id, config_hash=config_hash,
                )
                for r in record.rejected
            ]  # fmt: skip
        row = self.rows[sid]
        if record.pair is not None:
            chunk_id = row[1]
            rows["qa_evidence"] = [
                span.row(record.pair.pair_id, sid, chunk_id, run_id, config_hash) for span in record.evidence
            ]
            rows["qa_pairs"] = [
                (
                    record.pair.pair_id, sid, record.step, prompt_id, record.pair.question, record.pair.answer,
                    record.model, record.backend, record.prompt_tokens, record.completion_tokens, record.attempts,
                    record.seconds, config_hash, run_id, record.kind,
                )
            ]  # fmt: skip
        else:
            rows["failed_steps"] = [
                dict(
                    prompt_id=prompt_id, section_id=sid, step=record.step, reason=record.failure_reason or "unknown",
                    raw_text=record.raw_text, attempts=record.attempts, model=record.model, backend=record.backend,
                    config_hash=config_hash, run_id=run_id,
                )
            ]  # fmt: skip
        row[_STEPS], row[_N_PAIRS], row[_FAILED] = record.step + 1, record.n_pairs, record.failed_steps
        row[_TOKENS], row[_MODEL], row[_BACKEND] = record.section_tokens, record.model, record.backend
        self.writer.put(rows, {"sections": {sid: tuple(row)}})
        self.committed += 1

    def close_section(self, section: SectionResult) -> None:
        row = self.rows.pop(section.section_id, None) or self._section_row(section)
        row[_FINISH], row[_STEPS], row[_N_PAIRS] = section.finish_reason, section.steps, section.n_pairs
        row[_FAILED], row[_TOKENS] = section.failed_steps, section.section_tokens
        self.writer.put({}, {"sections": {section.section_id: tuple(row)}})

    def flush(self) -> None:
        self.writer.flush()
