"""Quality of generated QA pairs from what lineage stores: per run, shard and section of a generation config.

The metrics are :func:`lc_assets.lib.generation.quality.compute_quality` over step outcomes read back
from `masked_prompts`, `qa_pairs`, `qa_evidence` and `failed_steps` (not from the process that made
them), so a resumed or merged run is measured the same way as one that ran in one go.
`record_quality` stores the reports in `generation_quality` (one row per run, shard and section).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lc_assets.lib.generation.quality import EvidenceRef, QualityReport, StepOutcome, compute_quality, quality_by
from lc_assets.lib.lineage.store import LineageStore, insert_rows


def _filters(generation_config_hash: str, run_id: str | None, shards: Sequence[str] | None) -> tuple[str, list[Any]]:
    sql, params = "m.config_hash = ?", [generation_config_hash]
    if run_id is not None:
        sql += " AND m.run_id = ?"
        params.append(run_id)
    if shards is not None:
        sql += " AND s.shard IN (SELECT unnest(?::VARCHAR[]))"
        params.append(list(shards))
    return sql, params


def load_outcomes(
    store: LineageStore,
    generation_config_hash: str,
    run_id: str | None = None,
    *,
    shards: Sequence[str] | None = None,
) -> tuple[list[StepOutcome], int]:
    """Every stored step of a generation config (only those `run_id` made; only `shards`' sections), as
    quality outcomes in (section, step) order, and the section tokens of the sections they belong to."""
    where, params = _filters(generation_config_hash, run_id, shards)
    with store.connect(read_only=True) as con:
        rows = con.execute(
            f"""SELECT m.section_id, m.step, m.status, f.reason,
                       CAST(json_extract(m.record, '$.attempt_errors') AS VARCHAR),
                       coalesce(CAST(json_extract(m.record, '$.total_completion_tokens') AS BIGINT), 0),
                       q.pair_id, q.question, q.answer, q.kind, s.shard, length(c.text)
                FROM masked_prompts m
                JOIN sections s ON s.section_id = m.section_id
                LEFT JOIN chunks c ON c.chunk_id = s.chunk_id
                LEFT JOIN failed_steps f ON f.prompt_id = m.prompt_id
                LEFT JOIN qa_pairs q ON q.prompt_id = m.prompt_id
                WHERE {where} ORDER BY m.section_id, m.step""",
            params,
        ).fetchall()
        evidence: dict[str, list[EvidenceRef]] = defaultdict(list)
        for pair_id, start, end, score, origin in con.execute(
            f"""SELECT e.pair_id, e.char_start, e.char_end, e.score, e.origin
                FROM qa_evidence e JOIN qa_pairs q USING (pair_id)
                JOIN masked_prompts m ON m.prompt_id = q.prompt_id
                JOIN sections s ON s.section_id = m.section_id
                WHERE {where} ORDER BY e.pair_id, e.quote_index""",
            params,
        ).fetchall():
            evidence[pair_id].append(EvidenceRef(int(start), int(end), float(score), origin))
        section_ids = sorted({r[0] for r in rows})
        section_tokens = con.execute(
            "SELECT coalesce(sum(section_tokens), 0) FROM sections WHERE section_id IN (SELECT unnest(?::VARCHAR[]))",
            [section_ids],
        ).fetchone()[0]
    outcomes = [
        StepOutcome(
            section_id=sid,
            step=step,
            ok=status == "ok" and pair_id is not None,
            failure=reason if status != "ok" else None,
            attempt_failures=tuple(json.loads(errors) if errors else ()),
            question=question,
            answer=answer,
            kind=kind,
            evidence=tuple(evidence.get(pair_id, ())) if pair_id else (),
            chunk_chars=chunk_chars,
            completion_tokens=int(completion),
            shard=shard,
        )
        for sid, step, status, reason, errors, completion, pair_id, question, answer, kind, shard, chunk_chars in rows
    ]
    return outcomes, int(section_tokens)


def load_quality(
    store: LineageStore,
    generation_config_hash: str,
    run_id: str | None = None,
    *,
    shards: Sequence[str] | None = None,
) -> QualityReport:
    """The quality of a generation config's stored steps (of one run when `run_id` is given; of `shards`)."""
    outcomes, section_tokens = load_outcomes(store, generation_config_hash, run_id, shards=shards)
    return compute_quality(outcomes, section_tokens=section_tokens or None)


@dataclass(frozen=True)
class RecordedQuality:
    """What `record_quality` computed and stored."""

    run: QualityReport  # the steps this run made
    overall: QualityReport  # every step of the config in these shards, this run's included
    by_shard: dict[str, QualityReport]
    by_section: dict[str, QualityReport]


def _row(generation_config_hash: str, scope: str, key: str, report: QualityReport, run_id: str) -> dict[str, Any]:
    return {
        "config_hash": generation_config_hash,
        "scope": scope,
        "scope_key": key,
        "steps": report.steps,
        "accepted": report.accepted,
        "yield_share": report.yield_,
        "evidence_verbatim_share": report.evidence_verbatim_share,
        "empty_answers": report.empty_answers,
        "near_duplicate_share": report.near_duplicate_share,
        "depth_coverage": report.depth_coverage,
        "metrics": json.dumps(report.to_metadata()),
        "run_id": run_id,
    }


def record_quality(
    store: LineageStore, generation_config_hash: str, run_id: str, shards: Sequence[str]
) -> RecordedQuality:
    """Compute the quality of `run_id`'s steps and of every step so far per shard and section, and store it
    in `generation_quality` (the shard and section rows replace earlier ones: they are cumulative)."""
    outcomes, section_tokens = load_outcomes(store, generation_config_hash, shards=shards)
    run_outcomes, run_tokens = load_outcomes(store, generation_config_hash, run_id, shards=shards)
    run = compute_quality(run_outcomes, section_tokens=run_tokens or None)
    overall = compute_quality(outcomes, section_tokens=section_tokens or None)
    by_shard = quality_by(outcomes, lambda o: o.shard or "")
    by_section = quality_by(outcomes, lambda o: o.section_id)
    rows = [_row(generation_config_hash, "run", run_id, run, run_id)]
    rows += [_row(generation_config_hash, "shard", k, r, run_id) for k, r in by_shard.items()]
    rows += [_row(generation_config_hash, "section", k, r, run_id) for k, r in by_section.items()]
    with store.transaction() as con:
        insert_rows(con, "generation_quality", rows, replace=True)
    return RecordedQuality(run, overall, by_shard, by_section)


def stored_quality(store: LineageStore, generation_config_hash: str, scope: str) -> dict[str, dict[str, Any]]:
    """The stored reports of one scope (run, shard or section): scope key -> metrics."""
    return {
        key: json.loads(metrics)
        for key, metrics in store.query(
            "SELECT scope_key, metrics FROM generation_quality WHERE config_hash = ? AND scope = ? ORDER BY scope_key",
            [generation_config_hash, scope],
        )
    }
