"""The model judge's queries: which pairs to judge, stored verdicts, the keep policy, counts, agreement with people.

`pair_judgements` holds one verdict per (pair, judge config). What packing honours is the newest verdict
on a pair over every judge config (`effective_judgements`), and only where no person reviewed the pair:
a human verdict wins over the model's.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from lc_assets.lib.lineage.store import LineageStore, insert_rows

#: judge errors of the serving side, not of the model's answer: a later run of the same judge config asks again
RETRYABLE_ERROR_CODES = ("backend_error", "timeout")


def shard_pair_ids(store: LineageStore, shard: str, generation_config_hash: str) -> list[str]:
    """The accepted pairs of a generation config whose sections grow from the shard's chunks, sorted."""
    rows = store.query(
        """SELECT DISTINCT q.pair_id FROM qa_pairs q JOIN sections s ON s.section_id = q.section_id
           WHERE q.config_hash = ? AND (s.shard = ? OR s.chunk_id IN (SELECT chunk_id FROM shard_chunks WHERE shard = ?))
           ORDER BY 1""",
        [generation_config_hash, shard, shard],
    )
    return [r[0] for r in rows]


def pairs_to_judge(store: LineageStore, config_hash: str, pair_ids: Sequence[str]) -> list[str]:
    """`pair_ids` without those already judged under this judge config (a serving error is asked again)."""
    done = {
        r[0]
        for r in store.query(
            """SELECT pair_id FROM pair_judgements WHERE config_hash = ?
               AND pair_id IN (SELECT unnest(?::VARCHAR[])) AND coalesce(error_code, '') NOT IN (SELECT unnest(?::VARCHAR[]))""",
            [config_hash, list(pair_ids), list(RETRYABLE_ERROR_CODES)],
        )
    }
    return [p for p in pair_ids if p not in done]


def record_judge_config(store: LineageStore, config_hash: str, config: Mapping[str, Any], run_id: str) -> None:
    """Store the judge config its verdicts are keyed by (first writer wins: equal hashes, equal configs)."""
    row = dict(config_hash=config_hash, config=json.dumps(config, sort_keys=True, default=str), run_id=run_id)
    with store.transaction() as con:
        insert_rows(con, "judge_configs", [row])


def record_judgements(store: LineageStore, rows: Sequence[dict[str, Any]]) -> int:
    """Commit a group of verdicts in one transaction (a re-asked pair's row is replaced)."""
    if not rows:
        return 0
    with store.transaction() as con:
        return insert_rows(con, "pair_judgements", rows, replace=True)


@dataclass(frozen=True)
class StoredJudgement:
    """One row of pair_judgements, as readers need it."""

    pair_id: str
    verdict: str
    standalone: bool | None
    kept: bool
    check_text: str | None
    error_code: str | None
    judge_model: str
    config_hash: str
    created_at: datetime | None = None


_COLUMNS = "pair_id, verdict, standalone, kept, check_text, error_code, judge_model, config_hash, created_at"


def judgements_of(store: LineageStore, config_hash: str, pair_ids: Sequence[str]) -> list[StoredJudgement]:
    """The verdicts of one judge config on these pairs (pairs not judged are left out), by pair id."""
    rows = store.query(
        f"""SELECT {_COLUMNS} FROM pair_judgements WHERE config_hash = ?
            AND pair_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY pair_id""",
        [config_hash, list(pair_ids)],
    )
    return [StoredJudgement(*r) for r in rows]


def set_kept(store: LineageStore, config_hash: str, kept: Mapping[str, bool], keep_policy: str) -> int:
    """Re-label stored verdicts of a judge config under a new keep policy (no model call); returns rows changed."""
    if not kept:
        return 0
    table = pa.table({"pair_id": list(kept), "kept": list(kept.values())})
    with store.transaction() as con:
        con.register("_kept", table)
        try:
            changed = con.execute(
                """UPDATE pair_judgements SET kept = k.kept FROM _kept k
                   WHERE pair_judgements.pair_id = k.pair_id AND pair_judgements.config_hash = ?
                     AND pair_judgements.kept <> k.kept""",
                [config_hash],
            ).fetchone()
            con.execute(  # the policy the rows are labelled under, whether or not their label changed
                """UPDATE pair_judgements SET keep_policy = ? FROM _kept k
                   WHERE pair_judgements.pair_id = k.pair_id AND pair_judgements.config_hash = ?
                     AND pair_judgements.keep_policy <> ?""",
                [keep_policy, config_hash, keep_policy],
            )
        finally:
            con.unregister("_kept")
    return int(changed[0]) if changed else 0


def effective_judgements(store: LineageStore, generation_config_hash: str) -> dict[str, StoredJudgement]:
    """The newest verdict on each judged pair of a generation config (over every judge config): what packing reads."""
    rows = store.query(
        f"""SELECT {_COLUMNS} FROM pair_judgements WHERE generation_config_hash = ?
            QUALIFY row_number() OVER (PARTITION BY pair_id ORDER BY created_at DESC, config_hash) = 1""",
        [generation_config_hash],
    )
    return {r[0]: StoredJudgement(*r) for r in rows}


def judgements_by_pair(store: LineageStore, pair_ids: Sequence[str]) -> dict[str, StoredJudgement]:
    """The newest verdict on each of these pairs (unjudged pairs left out)."""
    if not pair_ids:
        return {}
    rows = store.query(
        f"""SELECT {_COLUMNS} FROM pair_judgements WHERE pair_id IN (SELECT unnest(?::VARCHAR[]))
            QUALIFY row_number() OVER (PARTITION BY pair_id ORDER BY created_at DESC, config_hash) = 1""",
        [list(pair_ids)],
    )
    return {r[0]: StoredJudgement(*r) for r in rows}


@dataclass(frozen=True)
class JudgeCounts:
    """What the judge decided over a set of pairs (one verdict per pair)."""

    judged: int = 0
    kept: int = 0
    by_verdict: dict[str, int] = field(default_factory=dict)  # supported / partly / unsupported / judge_error
    rejected_by_verdict: dict[str, int] = field(default_factory=dict)
    errors_by_code: dict[str, int] = field(default_factory=dict)
    not_standalone: int = 0

    @property
    def rejected(self) -> int:
        return self.judged - self.kept

    @property
    def rejected_share(self) -> float:
        return self.rejected / self.judged if self.judged else 0.0

    @property
    def error_share(self) -> float:
        return sum(self.errors_by_code.values()) / self.judged if self.judged else 0.0


def count_judgements(judgements: Sequence[StoredJudgement]) -> JudgeCounts:
    """Counts over verdict rows (at most one per pair)."""
    by_verdict = Counter(j.verdict for j in judgements)
    rejected = Counter(j.verdict for j in judgements if not j.kept)
    errors = Counter(j.error_code or "?" for j in judgements if j.error_code)
    return JudgeCounts(
        judged=len(judgements),
        kept=sum(1 for j in judgements if j.kept),
        by_verdict=dict(by_verdict.most_common()),
        rejected_by_verdict=dict(rejected.most_common()),
        errors_by_code=dict(errors.most_common()),
        not_standalone=sum(1 for j in judgements if j.standalone is False),
    )


def generation_judge_counts(store: LineageStore, generation_config_hash: str, run_id: str | None = None) -> JudgeCounts:
    """Counts of the newest verdict per pair of a generation config (of pairs made by `run_id` when given)."""
    judged = effective_judgements(store, generation_config_hash)
    if run_id:
        made = {r[0] for r in store.query("SELECT pair_id FROM qa_pairs WHERE run_id = ?", [run_id])}
        judged = {p: j for p, j in judged.items() if p in made}
    return count_judgements(list(judged.values()))


def judge_vs_human(
    store: LineageStore, generation_config_hash: str, run_id: str | None = None
) -> list[tuple[str, str]]:
    """(judge decision as 'accepted'/'rejected', newest human verdict) for every pair both judged and reviewed;
    the input of `review.agreement`, read with the judge in the place of the automatic checks."""
    rows = store.query(
        """SELECT pair_id, verdict, generation_run_id FROM pair_reviews
           WHERE item_kind = 'pair' AND generation_config_hash = ?
           QUALIFY row_number() OVER (PARTITION BY pair_id ORDER BY reviewed_at DESC, reviewer) = 1
           ORDER BY pair_id""",
        [generation_config_hash],
    )
    judged = effective_judgements(store, generation_config_hash)
    return [
        ("accepted" if judged[pid].kept else "rejected", verdict)
        for pid, verdict, made_by in rows
        if pid in judged and (run_id is None or made_by == run_id)
    ]


def rejected_examples(store: LineageStore, config_hash: str, pair_ids: Sequence[str], n: int) -> list[dict[str, Any]]:
    """Up to `n` pairs this judge config rejected (question, answer, verdict, the judge's check), by pair id."""
    rows = store.query(
        """SELECT j.pair_id, q.question, q.answer, j.verdict, j.standalone, coalesce(j.check_text, j.error_code)
           FROM pair_judgements j JOIN qa_pairs q USING (pair_id)
           WHERE j.config_hash = ? AND NOT j.kept AND j.pair_id IN (SELECT unnest(?::VARCHAR[]))
           ORDER BY j.pair_id LIMIT ?""",
        [config_hash, list(pair_ids), n],
    )
    keys = ("pair_id", "question", "answer", "verdict", "standalone", "check")
    return [dict(zip(keys, r, strict=True)) for r in rows]
