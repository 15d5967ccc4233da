"""Per-run lineage files and their merge into the catalog.

A generation run writes its steps into its own DuckDB file (`<catalog>.runs/<run id>.duckdb`), held
open by one writer for the whole run, so runs on different shards or hosts never wait on each other
for a lock. When a run ends — finished, stopped or failed — it merges its file into the catalog in
one short transaction and deletes it. A file left behind by a killed run is merged by the next
generation run (or by `lc-assets lineage merge`) before anything reads the catalog: its committed
groups are all there, so the resume loses nothing.

Merging is idempotent: rows are inserted by primary key (existing rows are kept), and a section's row
is replaced only by one at least as far along (`steps`), so merging a file twice, or two runs'
files in any order, gives the same catalog.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from lc_assets.lib.lineage.store import LineageStore, ensure_schema, is_lock_error

#: tables whose rows are state, not events: the newer state (more steps) wins
_STATE_TABLES = {"sections": ("section_id", "steps")}
#: bookkeeping, never copied from a run file
_SKIP_TABLES = {"schema_info", "lineage_merges"}
#: state columns a run file may leave empty (a section it opened but did not step): keep the catalog's
_KEEP_IF_NULL = {"model", "backend", "finish_reason", "n_paragraphs"}


class RunFileBusyError(RuntimeError):
    """The run file is held by a live writer (its run is still going)."""


@dataclass(frozen=True)
class MergeResult:
    run_file: Path
    rows: dict[str, int]  # rows written into the catalog, per table
    skipped: str | None = None  # why the file was not merged (a live run holds it)
    conflicting_prompts: int = 0  # steps the catalog already had with another prompt (kept the catalog's)


def _sql_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _settle_run_file(run_file: Path, wait_s: float) -> None:
    """Open the file read-write once: proves nobody holds it, replays and checkpoints a killed writer's WAL,
    and upgrades an older file's schema so its columns match the catalog's."""
    deadline = time.monotonic() + wait_s
    delay = 0.05
    while True:
        try:
            con = duckdb.connect(str(run_file))
            break
        except duckdb.IOException as exc:
            if not is_lock_error(exc):
                raise
            if time.monotonic() >= deadline:
                raise RunFileBusyError(f"run lineage file {run_file} is held by a running process") from exc
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 1.0)
    try:
        ensure_schema(con)
        con.execute("CHECKPOINT")
    finally:
        con.close()


def merge_run_file(catalog: LineageStore, run_file: Path, merged_by: str, wait_s: float = 60.0) -> MergeResult:
    """Copy one run file's rows into the catalog (one transaction), then delete the file."""
    run_file = Path(run_file)
    _settle_run_file(run_file, wait_s)
    written: dict[str, int] = {}
    with catalog.connect() as con:
        try:
            con.execute(f"ATTACH {_sql_path(run_file)} AS run_file (READ_ONLY)")
        except duckdb.Error as exc:  # a writer in this very process holds it (no file lock within a process)
            if "already attached" in str(exc) or "file handle conflict" in str(exc).lower():
                raise RunFileBusyError(f"run lineage file {run_file} is held by a running writer") from exc
            raise
        try:
            tables = [
                r[0]
                for r in con.execute(
                    "SELECT table_name FROM duckdb_tables() WHERE database_name = 'run_file' ORDER BY table_name"
                ).fetchall()
                if r[0] not in _SKIP_TABLES
            ]
            con.execute("BEGIN TRANSACTION")
            try:
                # the same step made twice with different prompts: two runs grew one section at once
                # (the gpu pool prevents it within one Dagster instance); the catalog keeps the first
                conflicts = con.execute(
                    """SELECT count(*) FROM run_file.masked_prompts r JOIN masked_prompts m USING (prompt_id)
                       WHERE r.prompt_hash <> m.prompt_hash"""
                ).fetchone()[0]
                for table in tables:
                    n = _merge_table(con, table)
                    if n:
                        written[table] = n
                con.execute(
                    "INSERT INTO lineage_merges (run_file, rows, run_id) VALUES (?, ?, ?)",
                    [str(run_file), json.dumps(written | {"conflicting_prompts": conflicts}), merged_by],
                )
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            con.execute("DETACH run_file")
    for path in (run_file, run_file.with_name(run_file.name + ".wal")):
        path.unlink(missing_ok=True)  # another process may have merged and removed it as well
    return MergeResult(run_file, written, conflicting_prompts=conflicts)


def _columns(con: duckdb.DuckDBPyConnection, database: str, table: str) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND table_name = ? ORDER BY column_index",
            [database, table],
        ).fetchall()
    ]


def _merge_table(con: duckdb.DuckDBPyConnection, table: str) -> int:
    catalog_db = con.execute("SELECT current_database()").fetchone()[0]
    target = _columns(con, catalog_db, table)
    if not target:
        raise ValueError(f"run file has table {table!r} that the catalog does not have")
    cols = [c for c in _columns(con, "run_file", table) if c in target]
    names = ", ".join(cols)
    if table in _STATE_TABLES:
        key, progress = _STATE_TABLES[table]
        sets = ", ".join(
            f"{c} = coalesce(excluded.{c}, {table}.{c})" if c in _KEEP_IF_NULL else f"{c} = excluded.{c}"
            for c in cols
            if c != key
        )
        sql = (
            f"INSERT INTO {table} ({names}) SELECT {names} FROM run_file.{table} "
            f"ON CONFLICT ({key}) DO UPDATE SET {sets} WHERE excluded.{progress} >= {table}.{progress}"
        )
    else:
        sql = f"INSERT OR IGNORE INTO {table} ({names}) SELECT {names} FROM run_file.{table}"
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0


def pending_run_files(catalog: LineageStore) -> list[Path]:
    """Run files not merged yet: of runs still going, or of runs that were killed."""
    return sorted(catalog.runs_dir.glob("*.duckdb")) if catalog.runs_dir.is_dir() else []


def merge_pending(catalog: LineageStore, merged_by: str, exclude: Path | None = None) -> list[MergeResult]:
    """Merge every run file no live process holds; files of runs still going are reported as skipped."""
    results = []
    for path in pending_run_files(catalog):
        if exclude is not None and path == exclude:
            continue
        try:
            results.append(merge_run_file(catalog, path, merged_by, wait_s=0.0))
        except RunFileBusyError as exc:
            results.append(MergeResult(path, {}, skipped=str(exc)))
    return results
