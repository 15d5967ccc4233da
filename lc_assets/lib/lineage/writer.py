"""One writer thread with one long-lived DuckDB connection: rows handed over are committed in groups.

Opening a DuckDB file, inserting a few rows and committing costs 50-700 ms; doing that per generation
step capped a run at ~2-8 steps/s. Here the producer only queues rows (microseconds); the writer
thread inserts everything queued as one Arrow batch per table and commits once every
``commit_every`` items or ``commit_every_ms`` milliseconds, whichever comes first. Every group is one
transaction: a killed process loses at most the last uncommitted group, never half of one.

An *item* is the set of rows that belong together (one generation step: its prompt row, its pair or
failure row, its section's new state); items are never split across groups, and groups commit in
the order items were put, so the committed steps of any section are always a prefix.

Rows are dicts, or tuples for a table given a :class:`RowLayout` (its columns in order): a step's rows are
made hundreds of times a second, and tuples cost the producer (which holds the interpreter lock the loop
needs) a fraction of dicts. A table that holds no rows when the writer opens the file gets plain
``INSERT``s: every key put through one writer is new (rows already in the file — a killed run's — are
skipped as before), and DuckDB inserts plainly in a third to a half of the time of ``INSERT OR IGNORE``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from lc_assets.lib.lineage.store import ensure_schema, insert_rows, is_lock_error


class LineageWriteError(RuntimeError):
    """The writer thread failed; nothing after its last committed group is stored."""


#: a row: a dict, or a tuple in its table's layout order
Row = dict[str, Any] | tuple[Any, ...]


@dataclass(frozen=True)
class RowLayout:
    """The columns of a table's tuple rows, in order, and the Arrow types of those not inferred from values
    (a list of structs given as tuples)."""

    columns: tuple[str, ...]
    types: Mapping[str, pa.DataType] = field(default_factory=dict)


@dataclass
class _Item:
    inserts: Mapping[str, Sequence[Row]]
    upserts: Mapping[str, Mapping[str, Row]]


@dataclass
class _Flush:
    done: threading.Event = field(default_factory=threading.Event)


class _Stop:
    pass


@dataclass
class WriterStats:
    items: int = 0
    groups: int = 0
    commit_seconds: float = 0.0  # wall time inside the group transactions (writer thread)
    commit_cpu_seconds: float = 0.0  # CPU time of the writer thread inside them
    max_group_items: int = 0


class LineageWriter:
    """Group-committing writer to one lineage file (see module doc). Use as a context manager."""

    def __init__(
        self,
        path: str | Path,
        commit_every: int = 256,
        commit_every_ms: float = 500.0,
        max_queued: int | None = None,
        layouts: Mapping[str, RowLayout] | None = None,
    ) -> None:
        """``layouts``: tables whose rows are put as tuples (see :class:`RowLayout`)."""
        if commit_every < 1 or commit_every_ms <= 0:
            raise ValueError(f"need commit_every >= 1 and commit_every_ms > 0, got {commit_every}, {commit_every_ms}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con: duckdb.DuckDBPyConnection | None = None  # opened on the writer thread: the caller goes on
        self.commit_every = commit_every
        self.commit_every_s = commit_every_ms / 1000.0
        # back-pressure: a producer far ahead of the disk waits instead of growing memory without bound
        self._queue: queue.Queue[_Item | _Flush | _Stop] = queue.Queue(maxsize=max_queued or 16 * commit_every)
        self._error: BaseException | None = None
        self._closed = False
        self.layouts: dict[str, RowLayout] = dict(layouts or {})
        self._fresh: dict[str, bool] = {}  # table -> it held no rows when the file was opened (writer thread)
        self.stats = WriterStats()
        self._thread = threading.Thread(target=self._run, name=f"lineage-writer:{self.path.name}", daemon=True)
        self._thread.start()

    # -- producer side ----------------------------------------------------------------------------
    def _check(self) -> None:
        if self._error is not None:
            raise LineageWriteError(f"lineage writer for {self.path} failed: {self._error}") from self._error
        if self._closed:
            raise LineageWriteError(f"lineage writer for {self.path} is closed")

    def put(
        self,
        inserts: Mapping[str, Sequence[Row]],
        upserts: Mapping[str, Mapping[str, Row]] | None = None,
    ) -> None:
        """Queue one item: `inserts` (table -> rows) and `upserts` (table -> key -> row, the last row per key
        wins). Returns at once; the rows commit with the item's group. An inserted row's key must be new to
        this writer (a key put twice fails the writer); rows the file held before the writer opened it are
        kept, the new row with their key skipped."""
        self._check()
        self._queue.put(_Item(inserts, upserts or {}))

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything put so far is committed."""
        self._check()
        marker = _Flush()
        self._queue.put(marker)
        if not marker.done.wait(timeout):
            raise LineageWriteError(f"lineage writer for {self.path} did not commit within {timeout} s")
        self._check()

    def close(self) -> None:
        """Commit what is queued, stop the thread, close the connection."""
        if self._closed:
            return
        if self._error is None and self._thread.is_alive():
            self._queue.put(_Stop())
        self._thread.join()
        self._closed = True
        if self._con is not None:
            self._con.close()
        if self._error is not None:
            raise LineageWriteError(f"lineage writer for {self.path} failed: {self._error}") from self._error

    def __enter__(self) -> LineageWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writer thread ----------------------------------------------------------------------------
    def _open(self) -> duckdb.DuckDBPyConnection:
        try:
            con = duckdb.connect(str(self.path))
        except duckdb.IOException as exc:
            if is_lock_error(exc):
                raise LineageWriteError(f"lineage file {self.path} is held by another process") from exc
            raise
        ensure_schema(con)
        # group inserts are small: DuckDB's parallel workers would cost more than they save, and the
        # producer's threads need the cores
        con.execute("SET threads = 1")
        return con

    def _run(self) -> None:
        inserts: dict[str, list[Row]] = {}
        upserts: dict[str, dict[str, Row]] = {}
        pending = 0
        first_at = 0.0
        waiting: list[_Flush] = []
        try:
            self._con = self._open()
            while True:
                timeout = None if not pending else max(0.0, first_at + self.commit_every_s - time.monotonic())
                try:
                    item = self._queue.get(timeout=timeout)
                except queue.Empty:
                    item = None  # the group's time is up
                stop = isinstance(item, _Stop)
                if isinstance(item, _Flush):
                    waiting.append(item)
                elif isinstance(item, _Item):
                    for table, rows in item.inserts.items():
                        inserts.setdefault(table, []).extend(rows)
                    for table, by_key in item.upserts.items():
                        upserts.setdefault(table, {}).update(by_key)
                    if not pending:
                        first_at = time.monotonic()
                    pending += 1
                if pending and (item is None or stop or waiting or pending >= self.commit_every):
                    self._commit(inserts, upserts, pending)
                    inserts, upserts, pending = {}, {}, 0
                for marker in waiting:
                    marker.done.set()
                waiting.clear()
                if stop:
                    return
        except BaseException as exc:  # noqa: BLE001 - reported to the producer on its next call
            self._error = exc
            for marker in waiting:
                marker.done.set()
            self._drain()

    def _drain(self) -> None:
        """After a failure: release producers blocked on a full queue or waiting for a flush."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Flush):
                item.done.set()

    def _layout(self, table: str) -> dict[str, Any]:
        layout = self.layouts.get(table)
        return {} if layout is None else {"columns": layout.columns, "types": layout.types}

    def _is_fresh(self, con: duckdb.DuckDBPyConnection, table: str) -> bool:
        """Whether the table held no rows when this writer first inserted into it (then every key is new)."""
        fresh = self._fresh.get(table)
        if fresh is None:
            rows = con.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {table})").fetchall()
            fresh = self._fresh[table] = bool(rows[0][0])
        return fresh

    def _commit(
        self,
        inserts: Mapping[str, list[Row]],
        upserts: Mapping[str, dict[str, Row]],
        items: int,
    ) -> None:
        start, cpu = time.perf_counter(), time.thread_time()
        con = self._con
        assert con is not None
        con.execute("BEGIN TRANSACTION")
        try:
            for table, rows in inserts.items():
                insert_rows(con, table, rows, new_keys=self._is_fresh(con, table), **self._layout(table))
            for table, by_key in upserts.items():
                insert_rows(con, table, list(by_key.values()), replace=True, **self._layout(table))
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
        self.stats.items += items
        self.stats.groups += 1
        self.stats.max_group_items = max(self.stats.max_group_items, items)
        self.stats.commit_seconds += time.perf_counter() - start
        self.stats.commit_cpu_seconds += time.thread_time() - cpu
