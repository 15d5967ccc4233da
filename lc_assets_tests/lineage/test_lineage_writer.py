"""The group-committing writer: commits by count and by time, whole groups only across a SIGKILL, errors surface."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from lc_assets.lib.lineage.writer import LineageWriteError, LineageWriter, RowLayout
from lc_assets_tests.lineage.run_worker import wait_for


def prompt_row(section: str, step: int) -> dict:
    return dict(
        prompt_id=f"{section}:{step}", section_id=section, step=step, status="ok", prompt_hash="h",
        paragraph_ids=[], earlier_pair_ids=[], budget_tokens=1, context_tokens=1, prompt_tokens=1,
        config_hash="c", record="{}", run_id="r",
    )  # fmt: skip


def _rows(path: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(path))  # read-write: a killed writer's WAL is replayed only then
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_groups_commit_every_n_items_and_on_flush(tmp_path):
    with LineageWriter(tmp_path / "run.duckdb", commit_every=3, commit_every_ms=60_000) as writer:
        for step in range(7):
            writer.put({"masked_prompts": [prompt_row("s", step)]})
        deadline = time.monotonic() + 10
        while writer.stats.groups < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert writer.stats.groups == 2 and writer.stats.items == 6  # the 7th waits for its group
        writer.flush()
        assert writer.stats.groups == 3 and writer.stats.items == 7
    assert _rows(tmp_path / "run.duckdb", "SELECT count(*) FROM masked_prompts") == [(7,)]


def test_a_group_commits_after_its_time_is_up(tmp_path):
    with LineageWriter(tmp_path / "run.duckdb", commit_every=1000, commit_every_ms=50) as writer:
        writer.put({"masked_prompts": [prompt_row("s", 0)]})
        deadline = time.monotonic() + 10
        while writer.stats.groups < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert writer.stats.groups == 1


def test_upserts_keep_the_last_row_per_key(tmp_path):
    row = dict(
        section_id="s", chunk_id="c", document_id="d", shard="x", config_hash="h", chunk_tokens=10,
        target_tokens=20, section_tokens=10, n_pairs=0, steps=0, failed_steps=0, finish_reason=None,
        model=None, backend=None, run_id="r", n_paragraphs=3,
    )  # fmt: skip
    with LineageWriter(tmp_path / "run.duckdb", commit_every=2) as writer:
        for steps in range(5):
            writer.put({}, {"sections": {"s": dict(row, steps=steps, n_pairs=steps)}})
    assert _rows(tmp_path / "run.duckdb", "SELECT steps, n_pairs FROM sections") == [(4, 4)]


def test_a_failed_write_is_raised_to_the_producer_naming_the_file(tmp_path):
    writer = LineageWriter(tmp_path / "run.duckdb", commit_every=1)
    writer.put({"no_such_table": [{"x": 1}]})
    with pytest.raises(LineageWriteError, match="run.duckdb"):
        for _ in range(100):
            writer.flush()
            time.sleep(0.01)
    with pytest.raises(LineageWriteError):
        writer.close()


SPANS = pa.list_(pa.struct([("paragraph_index", pa.int32()), ("char_start", pa.int32()), ("char_end", pa.int32())]))
PROMPT_LAYOUT = RowLayout((*prompt_row("s", 0), "shown_spans"), {"shown_spans": SPANS})


def test_tuple_rows_store_the_same_values_as_dict_rows(tmp_path):
    spans = ((3, 10, 40), (4, 42, 90))
    with LineageWriter(tmp_path / "dicts.duckdb") as writer:
        writer.put({"masked_prompts": [dict(prompt_row("s", 0), shown_spans=[
            dict(paragraph_index=i, char_start=s, char_end=e) for i, s, e in spans])]})  # fmt: skip
    layouts = {"masked_prompts": PROMPT_LAYOUT}
    with LineageWriter(tmp_path / "tuples.duckdb", layouts=layouts) as writer:
        writer.put({"masked_prompts": [(*prompt_row("s", 0).values(), spans)]})
    query = "SELECT * EXCLUDE (created_at) FROM masked_prompts"
    stored = _rows(tmp_path / "tuples.duckdb", query)
    assert stored == _rows(tmp_path / "dicts.duckdb", query)
    assert stored[0][-3] == [
        {"paragraph_index": 3, "char_start": 10, "char_end": 40},
        {"paragraph_index": 4, "char_start": 42, "char_end": 90},
    ]


def test_rows_already_in_the_file_are_kept_and_new_ones_added(tmp_path):
    # a killed run's file written to again (resume into the same file): its rows win, nothing is duplicated
    db = tmp_path / "run.duckdb"
    with LineageWriter(db) as writer:
        writer.put({"masked_prompts": [prompt_row("s", 0), prompt_row("s", 1)]})
    with LineageWriter(db) as writer:
        writer.put({"masked_prompts": [dict(prompt_row("s", 1), prompt_hash="again"), prompt_row("s", 2)]})
    assert _rows(db, "SELECT step, prompt_hash FROM masked_prompts ORDER BY step") == [(0, "h"), (1, "h"), (2, "h")]


def test_a_key_put_twice_through_one_writer_fails_it_loudly(tmp_path):
    # keys new to a writer are inserted plainly (cheaper): a duplicate is a bug in the producer, never dropped silently
    writer = LineageWriter(tmp_path / "run.duckdb", commit_every=1)
    writer.put({"masked_prompts": [prompt_row("s", 0)]})
    writer.put({"masked_prompts": [prompt_row("s", 0)]})
    with pytest.raises(LineageWriteError, match="run.duckdb"):
        writer.close()
    assert _rows(tmp_path / "run.duckdb", "SELECT step FROM masked_prompts") == [(0,)]


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from lc_assets.lib.lineage.writer import LineageWriter
    from lc_assets_tests.lineage.test_lineage_writer import prompt_row

    writer = LineageWriter(sys.argv[1], commit_every=5, commit_every_ms=60_000)
    step = 0
    while True:  # two interleaved sections, one step each per item, until killed
        for section in ("a", "b"):
            writer.put({"masked_prompts": [prompt_row(section, step)]})
        step += 1
        if writer.stats.groups >= 8:
            Path(sys.argv[2]).touch()
        time.sleep(0.001)
    """
)


def test_sigkill_loses_at_most_the_uncommitted_group(tmp_path):
    db, marker = tmp_path / "run.duckdb", tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(db), str(marker)], env=dict(os.environ))
    try:
        wait_for(marker, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    n = _rows(db, "SELECT count(*) FROM masked_prompts")[0][0]
    assert n >= 40 and n % 5 == 0  # whole groups of five items only
    for section in ("a", "b"):  # and every section's steps a prefix
        steps = [r[0] for r in _rows(db, f"SELECT step FROM masked_prompts WHERE section_id = '{section}' ORDER BY 1")]
        assert steps == list(range(len(steps)))
