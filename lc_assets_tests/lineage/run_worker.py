"""Generation runs for the lineage tests, as `generate_qa` runs them (per-run lineage file, merge), in any process.

python -m lc_assets_tests.lineage.run_worker CATALOG SHARD RUN_ID MARKER   # a child the tests kill
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from lc_assets.defs.chunks.assets import chunk_shard
from lc_assets.defs.corpus.assets import ingest_shard
from lc_assets.defs.filters.assets import filter_shard
from lc_assets.defs.generation.resources import GeneratorResource
from lc_assets.defs.resources import TokenizerResource
from lc_assets.lib.chunking import ChunkingConfig
from lc_assets.lib.corpus.lineage import latest_chunk_config
from lc_assets.lib.corpus.quality import FilterConfig
from lc_assets.lib.corpus.sources import SourceSpec
from lc_assets.lib.generation.backend import GenerationRequest
from lc_assets.lib.generation.config import GenerationConfig, GeneratorIdentity
from lc_assets.lib.generation.run import RunResult, grow_sections
from lc_assets.lib.lineage import LineageStore
from lc_assets.lib.lineage.catalog import merge_pending
from lc_assets.lib.lineage.generation import sections_to_grow
from lc_assets_tests.foundation.conftest import make_text
from lc_assets_tests.generation.conftest import small_config
from lc_assets_tests.generation.doubles import Reply, ScriptedBackend, unique_reply

STEPS = 6  # per section
CHUNKING = ChunkingConfig(min_tokens=200, max_tokens=600)


def seed_shard(catalog: LineageStore, shard: str, folder: Path, n_books: int, seed: int) -> int:
    """Documents and chunks of one shard, made by the product's own steps; returns the number of chunks."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_books):
        (folder / f"book{i}.txt").write_text(make_text(seed + i, 40))
    spec = SourceSpec(kind="local", path=str(folder), license="CC0-1.0")
    ingest_shard(shard, spec, catalog, TokenizerResource(), f"ingest-{shard}", 1 << 20)
    filter_shard(shard, catalog, FilterConfig(), f"filter-{shard}")
    chunk_shard(shard, catalog, TokenizerResource(), CHUNKING, f"chunks-{shard}")
    return catalog.scalar("SELECT count(*) FROM shard_chunks WHERE shard = ?", [shard])


def config(commit_every: int = 3) -> GenerationConfig:
    return small_config(
        seed=5,
        min_context_tokens=64,
        max_context_tokens=160,
        target_ratio=100.0,  # out of reach: sections end at the step cap
        max_steps_per_section=STEPS,
        commit_every_steps=commit_every,
        commit_every_ms=50.0,
        stop_grace_s=10.0,
        # the kill test runs with and without a judge worker process (not part of the config hash)
        judge_workers=int(os.environ.get("LC_ASSETS_TEST_JUDGE_WORKERS", "0")),
        generator=GeneratorIdentity(backend="scripted", model="scripted-double"),
    )


def wait_for(marker: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Until a child touches `marker` (it is then safe to kill); fails if the child ends first."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert proc.poll() is None, "the child ended before it could be stopped"
        assert time.monotonic() < deadline, "the child never got going"
        time.sleep(0.05)


def _script(delay_s: float, marker: str | None):
    sent = {"n": 0}

    def script(request: GenerationRequest) -> Reply:
        sent["n"] += 1
        if marker and sent["n"] == 12:
            Path(marker).touch()
        return Reply(unique_reply(request).text, delay_s=delay_s)

    return script


class ScriptedGenerator(GeneratorResource):
    """The generator resource answering with the scripted double (after `delay_s`), for Dagster runs."""

    delay_s: float = 0.0
    marker: str = ""

    def build(self, log=None):
        return ScriptedBackend(TokenizerResource().load(), script=_script(self.delay_s, self.marker or None))


def grow_shard(catalog_path: str, shard: str, run_id: str, delay_s: float = 0.0, marker: str | None = None) -> dict:
    """One generation run over `shard`; touches `marker` once 12 requests were sent (the tests kill then)."""
    catalog = LineageStore(catalog_path)
    tok = TokenizerResource().load()
    merge_pending(catalog, run_id)
    cfg = config()
    chunk_hash = latest_chunk_config(catalog, shard)
    assert chunk_hash is not None
    todo, _ = sections_to_grow(catalog, shard, chunk_hash, cfg.config_hash())
    backend = ScriptedBackend(tokenizer=tok, script=_script(delay_s, marker), in_flight_cap=4)
    result: RunResult = grow_sections(catalog, todo, backend, cfg, tok, run_id)
    return {
        "shard": shard,
        "steps": result.summary.steps_ok + result.summary.steps_failed,
        "merged": result.merged.rows,
        "finished": sum(r.finish_reason not in (None, "stopped") for r in result.summary.sections),
        "window": time.time(),
    }


if __name__ == "__main__":
    catalog_path, shard, run_id, marker = sys.argv[1:5]
    print(json.dumps(grow_shard(catalog_path, shard, run_id, delay_s=0.05, marker=marker)))
