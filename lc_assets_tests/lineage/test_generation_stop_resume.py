"""A generation run stopped by SIGTERM (as a terminated Dagster run is) or killed by SIGKILL, then run again:
no committed step lost, none duplicated, through real DuckDB files in a child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import dagster as dg
import duckdb
import pytest

from lc_assets.defs.generation.assets import generate_qa
from lc_assets.defs.partitions import CORPUS_SHARDS
from lc_assets.defs.resources import LineageStoreResource, TokenizerResource
from lc_assets.lib.lineage import LineageStore
from lc_assets.lib.lineage.catalog import pending_run_files
from lc_assets_tests.lineage.run_worker import STEPS, ScriptedGenerator, grow_shard, seed_shard, wait_for

_STEP_ROWS = """SELECT m.prompt_id, m.prompt_hash, m.status, q.question
                FROM masked_prompts m LEFT JOIN qa_pairs q USING (prompt_id) ORDER BY 1"""


def _assert_complete(catalog: LineageStore, n_sections: int, before: list[tuple]) -> None:
    after = catalog.query(_STEP_ROWS)
    assert len(after) == len({r[0] for r in after}) == n_sections * STEPS  # none lost, none twice
    assert set(before) <= set(after)  # what was committed before the stop is kept exactly
    assert catalog.query("SELECT DISTINCT steps, finish_reason FROM sections") == [(STEPS, "max_steps")]
    # every step is a pair or a failure (validation may refuse the double's output), never both or neither
    ok = catalog.scalar("SELECT count(*) FROM masked_prompts WHERE status = 'ok'")
    assert catalog.scalar("SELECT count(*) FROM qa_pairs") == ok
    assert catalog.scalar("SELECT count(*) FROM failed_steps") == n_sections * STEPS - ok
    assert ok >= 0.9 * n_sections * STEPS
    assert pending_run_files(catalog) == []


@pytest.mark.parametrize("judge_workers", ["0", "1"])
def test_sigkill_mid_generation_then_rerun_loses_and_duplicates_nothing(tmp_path, monkeypatch, judge_workers):
    # with a judge worker, SIGKILL leaves it orphaned: it holds no lineage file and exits when its queue closes
    monkeypatch.setenv("LC_ASSETS_TEST_JUDGE_WORKERS", judge_workers)
    catalog = LineageStore(tmp_path / "lineage.duckdb")
    n_sections = seed_shard(catalog, "books", tmp_path / "books", 3, 11)
    marker = tmp_path / "marker"
    child = [
        sys.executable,
        "-m",
        "lc_assets_tests.lineage.run_worker",
        str(catalog.path),
        "books",
        "killed",
        str(marker),
    ]
    proc = subprocess.Popen(child, env=dict(os.environ), stdout=subprocess.DEVNULL)
    try:
        wait_for(marker, proc)
        time.sleep(1.0)  # a few group commits (every 3 steps or 50 ms) reach the run file
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    [run_file] = pending_run_files(catalog)
    con = duckdb.connect(str(run_file))  # read-write: replays the killed writer's WAL
    before = con.execute(_STEP_ROWS).fetchall()
    con.close()
    assert 0 < len(before) < n_sections * STEPS
    assert catalog.scalar("SELECT count(*) FROM masked_prompts") == 0  # nothing merged by the killed run

    result = grow_shard(str(catalog.path), "books", "rerun")  # merges the killed run's file first
    assert result["steps"] == n_sections * STEPS - len(before)  # only what was not committed is redone
    _assert_complete(catalog, n_sections, before)


CHILD = textwrap.dedent(
    """
    import sys
    import dagster as dg
    from lc_assets.defs.generation.assets import generate_qa
    from lc_assets.defs.partitions import CORPUS_SHARDS
    from lc_assets.defs.resources import LineageStoreResource, TokenizerResource
    from lc_assets_tests.lineage.run_worker import ScriptedGenerator
    from lc_assets_tests.lineage.test_generation_stop_resume import RUN_CONFIG

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(CORPUS_SHARDS, ["books"])
    dg.materialize(
        [generate_qa],
        resources={
            "lineage": LineageStoreResource(path=sys.argv[1]),
            "target_tokenizer": TokenizerResource(),
            "generator": ScriptedGenerator(delay_s=0.2, marker=sys.argv[2]),
        },
        instance=instance, partition_key="books", run_config=RUN_CONFIG, raise_on_error=False,
    )
    """
)

RUN_CONFIG = {
    "ops": {
        "generate_qa": {
            "config": {
                "min_context_tokens": 64,
                "max_context_tokens": 160,
                "pairs_per_section": STEPS,
                "stop_grace_s": 20.0,
                "commit_every_ms": 50.0,
            }
        }
    }
}


def test_sigterm_stops_a_dagster_run_gracefully_and_it_resumes(tmp_path):
    catalog = LineageStore(tmp_path / "lineage.duckdb")
    n_sections = seed_shard(catalog, "books", tmp_path / "books", 3, 21)
    marker = tmp_path / "marker"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(catalog.path), str(marker)],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(marker, proc)
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        # the stopped run commits and merges its lineage file before it hands the interrupt back to Dagster
        # (whose op retry policy would then retry the step after 30 s: the test stops the child before that)
        deadline = stopped_at + 20.0 + 30.0  # grace period + commit and merge, on two loaded cores
        while not catalog.scalar("SELECT count(*) FROM lineage_merges"):
            assert proc.poll() is None and time.monotonic() < deadline, "no merge after the stop"
            time.sleep(0.1)
        before = catalog.query(_STEP_ROWS)
        open_sections = catalog.scalar("SELECT count(*) FROM sections WHERE finish_reason IS NULL")
    finally:
        proc.kill()
        proc.wait(timeout=30)
    # whole steps only, no failures (the stop records none), sections left open, no file left behind
    assert 12 <= len(before) < n_sections * STEPS
    assert all(status == "ok" and question for _, _, status, question in before)
    assert open_sections > 0 and pending_run_files(catalog) == []

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(CORPUS_SHARDS, ["books"])
    rerun = dg.materialize(
        [generate_qa],
        resources={
            "lineage": LineageStoreResource(path=str(catalog.path)),
            "target_tokenizer": TokenizerResource(),
            "generator": ScriptedGenerator(),
        },
        instance=instance,
        partition_key="books",
        run_config=RUN_CONFIG,
    )
    assert rerun.success
    _assert_complete(catalog, n_sections, before)
