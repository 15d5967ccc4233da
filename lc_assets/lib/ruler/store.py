"""RULER's rows in the lineage store: task builds, samples, predictions, scores (the only SQL on those tables).

Every row carries the Dagster run id; samples and builds the tasks config hash; predictions the model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lc_assets.lib.lineage import LineageStore, insert_rows
from lc_assets.lib.ruler.base import RulerSample, TaskBuild
from lc_assets.lib.ruler.scoring import TaskScore


def sample_key(config_hash: str, sample: RulerSample) -> str:
    """The sample's id across tables: tasks config hash, task, length, index."""
    return f"{config_hash}:{sample.task}:{sample.max_seq_length}:{sample.index}"


@dataclass(frozen=True)
class BuildRow:
    """One task x length of a tasks config: built (`ok`) or `not_run`, with the reason."""

    task: str
    max_seq_length: int
    status: str
    reason: str | None
    n_samples: int


def largest_documents(store: LineageStore, limit: int = 8) -> list[str]:
    """Texts of the largest stored documents (the essay haystack's prose)."""
    return [
        r[0] for r in store.query("SELECT text FROM documents ORDER BY byte_size DESC, document_id LIMIT ?", [limit])
    ]


def built_task_lengths(store: LineageStore, config_hash: str) -> set[tuple[str, int]]:
    """(task, length) pairs already recorded for a tasks config (built or not run): a re-run skips them."""
    rows = store.query("SELECT task, max_seq_length FROM ruler_task_builds WHERE config_hash = ?", [config_hash])
    return {(t, int(n)) for t, n in rows}


def record_task_build(store: LineageStore, config_hash: str, build: TaskBuild, run_id: str) -> None:
    """One task x length lands whole (its samples and its build row) or not at all."""
    rows = [
        dict(
            sample_key=sample_key(config_hash, s), config_hash=config_hash, task=s.task,
            max_seq_length=s.max_seq_length, idx=s.index, length=s.length, sample=json.dumps(s.to_dict()),
            run_id=run_id,
        )
        for s in build.samples
    ]  # fmt: skip
    build_row = dict(
        config_hash=config_hash, task=build.task, max_seq_length=build.max_seq_length, status=build.status,
        reason=build.reason, n_samples=len(build.samples), run_id=run_id,
    )  # fmt: skip
    with store.transaction() as con:
        insert_rows(con, "ruler_samples", rows)
        insert_rows(con, "ruler_task_builds", [build_row])


def task_builds(store: LineageStore, config_hash: str) -> list[BuildRow]:
    rows = store.query(
        "SELECT task, max_seq_length, status, reason, n_samples FROM ruler_task_builds WHERE config_hash = ? "
        "ORDER BY task, max_seq_length",
        [config_hash],
    )
    return [BuildRow(t, int(n), st, r, int(k)) for t, n, st, r, k in rows]


def latest_tasks_hash(store: LineageStore) -> str | None:
    return store.scalar("SELECT config_hash FROM ruler_task_builds ORDER BY created_at DESC LIMIT 1")


def load_samples(store: LineageStore, config_hash: str) -> list[RulerSample]:
    rows = store.query(
        "SELECT sample FROM ruler_samples WHERE config_hash = ? ORDER BY task, max_seq_length, idx", [config_hash]
    )
    return [RulerSample(**json.loads(r[0])) for r in rows]


def stored_predictions(store: LineageStore, model: str) -> dict[str, str]:
    """sample_key -> prediction of `model` (a prediction is asked once and kept)."""
    return dict(store.query("SELECT sample_key, prediction FROM ruler_predictions WHERE model = ?", [model]))


def record_predictions(
    store: LineageStore, model: str, backend: str, predictions: Iterable[tuple[str, str]], run_id: str
) -> int:
    """Store (sample_key, prediction) pairs in one transaction; returns how many were new."""
    rows = [dict(sample_key=k, model=model, backend=backend, prediction=p, run_id=run_id) for k, p in predictions]
    with store.transaction() as con:
        return insert_rows(con, "ruler_predictions", rows)


def replace_scores(
    store: LineageStore, model: str, backend: str, tasks_hash: str, scores: Sequence[TaskScore], run_id: str
) -> None:
    """The model's scores on a tasks config, replaced whole (scores are recomputed from stored predictions)."""
    rows = [
        dict(
            model=model, backend=backend, tasks_config_hash=tasks_hash, task=v.task, max_seq_length=v.max_seq_length,
            score=v.score, nulls=v.nulls, num_samples=v.num_samples, metric=v.metric, run_id=run_id,
        )
        for v in scores
    ]  # fmt: skip
    with store.transaction() as con:
        con.execute("DELETE FROM ruler_scores WHERE model = ? AND tasks_config_hash = ?", [model, tasks_hash])
        insert_rows(con, "ruler_scores", rows)
