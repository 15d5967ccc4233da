"""One generation run end to end: its own lineage file, the loop, the merge into the catalog, graceful stop.

    merge_pending(catalog, run_id)                          # files left by killed runs first (resume)
    todo, done = sections_to_grow(catalog, shard, chunk_hash, config.config_hash())
    result = grow_sections(catalog, todo, backend, config, tokenizer, run_id, stop=stop)

`run_until_stopped` runs such a call on a worker thread so that an interrupt of the calling thread
(SIGINT, SIGTERM, a Dagster run terminated from the UI) becomes a graceful stop: nothing new is
admitted, requests in flight get the config's grace period, everything handed over is committed and
merged, and then the interrupt is raised again.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from lc_assets.lib.generation.admission import SectionTask
from lc_assets.lib.generation.backend import GenerationBackend
from lc_assets.lib.generation.config import GenerationConfig
from lc_assets.lib.generation.lineage_sink import LineageStepSink
from lc_assets.lib.generation.records import GenerationSummary, ProgressEvent, StepSink
from lc_assets.lib.generation.scheduler import GenerationScheduler
from lc_assets.lib.lineage.catalog import MergeResult, merge_run_file
from lc_assets.lib.lineage.generation import SectionDescriptor, iter_section_tasks
from lc_assets.lib.lineage.store import LineageStore
from lc_assets.lib.lineage.writer import LineageWriter, WriterStats
from lc_assets.lib.tokenizer import TextTokenizer

T = TypeVar("T")


@dataclass(frozen=True)
class RunResult:
    summary: GenerationSummary
    merged: MergeResult  # what the run's lineage file added to the catalog
    writer: WriterStats  # group commits of the run file
    merge_seconds: float  # the one moment the run holds the catalog's lock


def grow_sections(
    catalog: LineageStore,
    descriptors: Sequence[SectionDescriptor],
    backend: GenerationBackend,
    config: GenerationConfig,
    target_tokenizer: TextTokenizer,
    run_id: str,
    stop: threading.Event | None = None,
    progress: Callable[[ProgressEvent], None] | None = None,
    progress_every_s: float = 10.0,
    *,
    tasks: Iterable[SectionTask] | None = None,
    sink: Callable[[LineageWriter, str, str], StepSink] = LineageStepSink,
) -> RunResult:
    """Grow `descriptors` into sections; steps go to this run's lineage file, merged into `catalog` at the end.

    ``tasks`` replaces the tasks loaded from ``descriptors`` (cross sections build their own; ``descriptors``
    then only gives the count), ``sink`` the step sink over the run's writer (``(writer, run_id, hash)``).
    The file is merged whatever happens (finish, stop, an error in the loop): a step that reached a
    group commit is never lost, and the merge is the only moment this run takes the catalog's lock.
    """
    config_hash = config.config_hash()
    run_file = catalog.run_file(run_id)
    writer = LineageWriter(run_file, config.commit_every_steps, config.commit_every_ms)
    try:
        writer.put(
            {
                "generation_configs": [
                    dict(config_hash=config_hash, config=json.dumps(config.model_dump(mode="json")), run_id=run_id)
                ]
            }
        )
        scheduler = GenerationScheduler(
            backend,
            config,
            sink(writer, run_id, config_hash),
            target_tokenizer,
            progress=progress,
            progress_every_s=progress_every_s,
        )
        source = tasks if tasks is not None else iter_section_tasks(catalog, descriptors)
        summary = scheduler.run(source, stop=stop, total=len(descriptors))
    finally:
        try:
            writer.close()  # commits everything queued, also when the loop raised
        finally:
            start = time.monotonic()
            merged = merge_run_file(catalog, run_file, run_id)
            merge_s = time.monotonic() - start
    return RunResult(summary, merged, writer.stats, merge_s)


def run_until_stopped(fn: Callable[[threading.Event], T], stop: threading.Event, grace_s: float) -> T:
    """`fn(stop)` on a worker thread; an interrupt of this thread sets `stop`, waits for `fn` (at most
    `grace_s` + 120 s for the commit and merge), then is raised again — or `fn`'s own error, when the stopped
    run failed, chained to the interrupt (a failed merge must not pass for a clean stop)."""
    box: dict[str, T | BaseException] = {}
    # Waited for through an Event, never Thread.join: on Python 3.11 a join interrupted by a signal marks a thread
    # that is still running as stopped (threading's bpo-45274 handling releases the *running* thread's lock), so the
    # next join returned at once: the step left while the run was still stopping, the backend was shut under it
    # and the process exited before the merge (seen on a terminated `dagster asset materialize`).
    finished = threading.Event()

    def work() -> None:
        try:
            box["value"] = fn(stop)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            box["error"] = exc
        finally:
            finished.set()

    worker = threading.Thread(target=work, name="generation-run", daemon=True)
    worker.start()
    try:
        while not finished.wait(0.5):
            pass
    except BaseException as interrupt:
        stop.set()
        finished.wait(grace_s + 120.0)
        if "error" in box:  # the stopped run failed (its commit or merge): that, not the interrupt, is the news
            raise box["error"] from interrupt  # type: ignore[misc]
        raise
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]
