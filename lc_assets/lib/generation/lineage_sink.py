"""Commits generation steps to the DuckDB lineage store and reads them back to resume."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from lc_assets.lib.generation.scheduler import SectionResult, StepRecord
from lc_assets.lib.lineage import LineageStore, insert_rows
from lc_assets.lib.sections import Section


def section_id_for(chunk_id: str, generation_config_hash: str) -> str:
    return hashlib.sha256(f"{chunk_id}:{generation_config_hash}".encode()).hexdigest()[:32]


def prompt_id_for(section_id: str, step: int) -> str:
    return f"{section_id}:{step}"


@dataclass(frozen=True)
class SectionInfo:
    section: Section
    shard: str
    chunk_tokens: int


class LineageStepSink:
    """StepSink over the lineage store: each step is one transaction (prompt + pair or failure + section row)."""

    def __init__(self, store: LineageStore, run_id: str, sections: Iterable[SectionInfo]) -> None:
        self.store = store
        self.run_id = run_id
        self.info = {s.section.section_id: s for s in sections}
        self.committed = 0

    def register_sections(self, config_hash: str, targets: Mapping[str, int]) -> None:
        """Section rows for sections that have none yet (idempotent)."""
        rows = [
            dict(
                section_id=sid, chunk_id=i.section.chunk_id, document_id=i.section.document_id, shard=i.shard,
                config_hash=config_hash, chunk_tokens=i.chunk_tokens, target_tokens=targets[sid],
                section_tokens=i.chunk_tokens, n_pairs=0, steps=0, failed_steps=0, finish_reason=None,
                model=None, backend=None, run_id=self.run_id,
            )
            for sid, i in self.info.items()
        ]  # fmt: skip
        with self.store.transaction() as con:
            insert_rows(con, "sections", rows)

    def commit(self, record: StepRecord) -> None:
        prompt_id = prompt_id_for(record.section_id, record.step)
        row = record.to_row()
        prompt = dict(
            prompt_id=prompt_id, section_id=record.section_id, step=record.step, status=record.status,
            prompt_hash=record.prompt_hash, paragraph_ids=list(record.paragraph_ids),
            earlier_pair_ids=list(record.earlier_pair_ids), budget_tokens=record.budget_tokens,
            context_tokens=record.context_tokens, prompt_tokens=record.prompt_tokens,
            config_hash=record.config_hash, record=json.dumps(row), run_id=self.run_id,
        )  # fmt: skip
        with self.store.transaction() as con:
            insert_rows(con, "masked_prompts", [prompt])
            if record.pair is not None:
                insert_rows(
                    con,
                    "qa_pairs",
                    [
                        dict(
                            pair_id=record.pair.pair_id, section_id=record.section_id, step=record.step,
                            prompt_id=prompt_id, question=record.pair.question, answer=record.pair.answer,
                            model=record.model, backend=record.backend, prompt_tokens=record.prompt_tokens,
                            completion_tokens=record.completion_tokens, attempts=record.attempts,
                            seconds=record.seconds, config_hash=record.config_hash, run_id=self.run_id,
                        )
                    ],
                )  # fmt: skip
            else:
                insert_rows(
                    con,
                    "failed_steps",
                    [
                        dict(
                            prompt_id=prompt_id, section_id=record.section_id, step=record.step,
                            reason=record.failure_reason or "unknown", raw_text=record.raw_text,
                            attempts=record.attempts, model=record.model, backend=record.backend,
                            config_hash=record.config_hash, run_id=self.run_id,
                        )
                    ],
                )  # fmt: skip
            con.execute(
                """UPDATE sections SET section_tokens = ?, n_pairs = n_pairs + ?, steps = steps + 1,
                   failed_steps = failed_steps + ?, model = ?, backend = ?, run_id = ?, updated_at = current_timestamp
                   WHERE section_id = ?""",
                [
                    record.section_tokens, int(record.pair is not None), int(record.pair is None),
                    record.model, record.backend, self.run_id, record.section_id,
                ],
            )  # fmt: skip
        self.committed += 1

    def finish(self, results: Sequence[SectionResult]) -> None:
        """Record why each section stopped growing (a stopped run leaves sections open for resume)."""
        with self.store.transaction() as con:
            for res in results:
                if res.finish_reason == "stopped":
                    continue
                con.execute(
                    "UPDATE sections SET finish_reason = ?, section_tokens = ?, updated_at = current_timestamp "
                    "WHERE section_id = ?",
                    [res.finish_reason, res.section_tokens, res.section.section_id],
                )


def committed_records(store: LineageStore, section_ids: Sequence[str]) -> dict[str, list[StepRecord]]:
    """The finished steps of these sections, in step order, as the scheduler needs them to resume."""
    rows = store.query(
        "SELECT section_id, record FROM masked_prompts WHERE section_id IN (SELECT unnest(?::VARCHAR[])) "
        "ORDER BY section_id, step",
        [list(section_ids)],
    )
    out: dict[str, list[StepRecord]] = {}
    for sid, record in rows:
        out.setdefault(sid, []).append(StepRecord.from_row(json.loads(record)))
    return out
