"""Judging outputs in worker processes, beside the generation loop.

Judging (evidence lookup, completion, support, duplicate and subject checks) is pure Python and the
largest part of a step's CPU; in the loop thread it shares one core with prompt building, recording,
section admission and the lineage writer (one GIL), which capped one process at ~200 steps/s. With
``judge_workers: N`` the loop sends each output to one of N processes and goes on building and
submitting other sections' prompts; verdicts come back as they are made and are recorded as before.

Each section is pinned to one worker for its life, so the worker keeps what judging a section
accumulates — its memo of quotable pieces and the index of its questions — and a step's task carries
only what is new: the windows shown, the earlier pairs listed, the questions accepted since the last
task. Tasks of one section are sequential (one request per section), and a worker takes its tasks in
order, so the index is always the section's questions before the step, as in the loop thread.
Verdicts are the same as :func:`judging.judge_output` in the loop (tested).

Processes are started with ``spawn`` (the loop process runs threads: a fork could copy a held lock)
and fail loudly: a worker's exception comes back with its traceback; a dead worker stops the run.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import sys
import time
import traceback
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from typing import Any

from lc_assets.lib.generation.backend import GenerationResult
from lc_assets.lib.generation.config import GenerationConfig
from lc_assets.lib.generation.judging import StepContext, Verdict, judge_output
from lc_assets.lib.generation.masking import MaskWindow, Paragraph
from lc_assets.lib.generation.validate import QuestionIndex, ShownTextMemo
from lc_assets.lib.sections import QAPair
from lc_assets.lib.tokenizer import TextTokenizer

#: a shown window as the worker rebuilds it from the section's paragraphs: (first paragraph index, count)
WindowRef = tuple[int, int]


@dataclass(frozen=True)
class JudgeTask:
    """One output to judge: the step's context without its windows, the section's memo and index (the
    worker keeps those), the windows as references into the section's paragraphs (sent once, when the
    section is first seen: a step's windows are ~16 KB of text that would be pickled on every step),
    and the questions the section accepted since its previous task."""

    key: str
    context: StepContext
    windows: tuple[WindowRef | MaskWindow, ...]
    result: GenerationResult
    new_questions: tuple[str, ...]


@dataclass(frozen=True)
class _OpenSection:
    section_id: str
    paragraphs: tuple[Paragraph, ...]


def _window_ref(window: MaskWindow, paragraphs: Sequence[Paragraph]) -> WindowRef | MaskWindow:
    """The window as a reference when it is a run of the section's own paragraphs (else sent whole)."""
    first, n = window.paragraphs[0].index, len(window.paragraphs)
    # one C-level comparison (identical objects compare equal at once), not a check per paragraph
    if tuple(paragraphs[first : first + n]) == window.paragraphs:
        return (first, n)
    return window


class JudgeWorkerError(RuntimeError):
    """A judge worker raised or died; the message carries the worker's traceback or exit code."""


def _orphaned(parent_pid: int) -> bool:
    """The parent is gone (killed: it never sent the stop), so this process was handed to init."""
    return os.getppid() != parent_pid


def _next(tasks: Any, parent_pid: int) -> Any:
    """The next message, waiting in slices so that a killed parent is noticed within a second: the queue's
    pipe never ends, since this process holds its write end too."""
    while True:
        try:
            return tasks.get(timeout=1.0)
        except queue.Empty:
            if _orphaned(parent_pid):
                return None


def _worker(worker: int, config: GenerationConfig, tasks: Any, verdicts: Connection, parent_pid: int) -> None:
    """A judge process: tasks in order, per-section memo and question index, verdicts as they are made (each with
    the worker's CPU seconds so far, for the run's accounting). The first message is the target tokenizer
    (or None): ~7 MB pickled, it comes through the queue's feeder thread, so starting a worker does not
    hold up the loop. Verdicts are written to a pipe from this thread, not through a queue's feeder thread,
    which would wait for the judging thread to hand over the interpreter lock (up to 5 ms per verdict)."""
    tokenizer: TextTokenizer | None = _next(tasks, parent_pid)
    sections: dict[str, tuple[ShownTextMemo, QuestionIndex, tuple[Paragraph, ...]]] = {}
    idle = 0.0  # wall seconds spent waiting for tasks, from the first task on
    item = _next(tasks, parent_pid)
    while True:
        if item is None:  # the stop (or an orphan's end)
            if not _orphaned(parent_pid):
                verdicts.send((worker, time.process_time(), idle, None, None, None))
            return
        for entry in item:
            if isinstance(entry, str):  # the section closed
                sections.pop(entry, None)
                continue
            if isinstance(entry, _OpenSection):
                sections[entry.section_id] = (ShownTextMemo(), QuestionIndex(), entry.paragraphs)
                continue
            task: JudgeTask = entry
            memo, index, paragraphs = sections[task.context.section_id]
            for question in task.new_questions:
                index.add(question)
            verdict, error = None, None
            try:
                windows = tuple(
                    MaskWindow(paragraphs[w[0] : w[0] + w[1]]) if isinstance(w, tuple) else w for w in task.windows
                )
                context = replace(task.context, windows=windows, config=config, memo=memo, question_index=index)
                verdict = judge_output(context, task.result)
                if tokenizer is not None and verdict.pair is not None:
                    q, a = tokenizer.count_batch([verdict.pair.question, verdict.pair.answer])
                    verdict = replace(verdict, pair_counts=(q, a))
            except Exception:  # noqa: BLE001 - the loop re-raises it with this traceback
                error = traceback.format_exc()
            # one verdict per message, at once: the loop waits for verdicts (batches of 8 left both it and the
            # worker idle ~40% of the time)
            verdicts.send((worker, time.process_time(), idle, task.key, verdict, error))
        waited = time.monotonic()
        item = _next(tasks, parent_pid)
        idle += time.monotonic() - waited


@contextlib.contextmanager
def _without_main_module() -> Iterator[None]:
    """Start spawned workers without the parent's ``__main__``: spawn re-imports it in every child (the Dagster
    CLI, a benchmark script: seconds of imports that delay the first verdicts); the judge needs none of it."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


class JudgePool:
    """N judge processes; sections are pinned to the least-busy worker when first seen."""

    def __init__(self, config: GenerationConfig, workers: int, target_tokenizer: TextTokenizer | None = None) -> None:
        """``target_tokenizer``: the workers also count accepted pairs in it (``Verdict.pair_counts``), which
        the loop would otherwise do for every pair."""
        if workers < 1:
            raise ValueError(f"a judge pool needs at least one worker, got {workers}")
        ctx = multiprocessing.get_context("spawn")
        self._queues = [ctx.Queue() for _ in range(workers)]
        pipes = [ctx.Pipe(duplex=False) for _ in range(workers)]
        self._readers: list[Connection] = [r for r, _ in pipes]
        self._procs = [
            ctx.Process(target=_worker, args=(i, config, q, w, os.getpid()), name=f"lc-judge-{i}", daemon=True)
            for i, (q, (_, w)) in enumerate(zip(self._queues, pipes, strict=True))
        ]
        with _without_main_module():
            for proc in self._procs:
                proc.start()
        for _, w in pipes:
            w.close()  # the worker holds the write end: its exit is an end-of-file here
        self._alive = [True] * workers
        for q in self._queues:
            q.put(target_tokenizer)
        self._owner: dict[str, int] = {}  # section id -> worker
        self._synced: dict[str, int] = {}  # section id -> questions the worker has
        self._load = [0] * workers  # sections pinned per worker
        self._batches: dict[int, list[JudgeTask | _OpenSection | str]] = {}
        self._cpu = [0.0] * workers  # CPU seconds each worker reported last
        self._idle = [0.0] * workers  # wall seconds each worker waited for tasks (reported last)
        self.pending = 0

    @property
    def cpu_seconds(self) -> float:
        """CPU time the workers spent (as of their last verdict; all of it after :meth:`close`)."""
        return sum(self._cpu)

    @property
    def idle_seconds(self) -> float:
        """Wall time the workers waited for a task after their first (as of their last verdict)."""
        return sum(self._idle)

    def submit(
        self,
        key: str,
        context: StepContext,
        result: GenerationResult,
        pairs: Sequence[QAPair],
        paragraphs: Sequence[Paragraph],
    ) -> None:
        """Queue one output (sent with :meth:`send`); ``pairs``: every pair of the section so far;
        ``paragraphs``: the section's paragraphs (the windows' source)."""
        sid = context.section_id
        worker = self._owner.get(sid)
        if worker is None:
            worker = min(range(len(self._load)), key=self._load.__getitem__)
            self._owner[sid] = worker
            self._load[worker] += 1
            self._batches.setdefault(worker, []).append(_OpenSection(sid, tuple(paragraphs)))
        synced = self._synced.get(sid, 0)
        self._synced[sid] = len(pairs)
        slim = replace(context, windows=(), memo=None, question_index=None, config=None)  # type: ignore[arg-type]
        windows = tuple(_window_ref(w, paragraphs) for w in context.windows)
        new = tuple(p.question for p in pairs[synced:])
        self._batches.setdefault(worker, []).append(JudgeTask(key, slim, windows, result, new))
        self.pending += 1

    def forget(self, section_id: str) -> None:
        """The section is closed: its worker drops its memo and index."""
        worker = self._owner.pop(section_id, None)
        self._synced.pop(section_id, None)
        if worker is not None:
            self._load[worker] -= 1
            self._batches.setdefault(worker, []).append(section_id)

    def send(self) -> None:
        """Hand the queued tasks to their workers (one message per worker)."""
        for worker, batch in self._batches.items():
            self._queues[worker].put(batch)
        self._batches.clear()

    def ready(self, timeout: float = 0.0) -> list[tuple[str, Verdict]]:
        """Verdicts back so far (waiting up to ``timeout`` for the first when none are)."""
        out: list[tuple[str, Verdict]] = []
        if not self.pending:
            return out
        for conn in wait(self._live_readers(), timeout):
            worker = self._readers.index(conn)
            while self._alive[worker] and conn.poll():
                out += self._receive(worker)
        if not out and timeout > 0:
            self._check_alive()
        return out

    def _live_readers(self) -> list[Connection]:
        return [r for r, alive in zip(self._readers, self._alive, strict=True) if alive]

    def _receive(self, worker: int) -> list[tuple[str, Verdict]]:
        """One message of a worker: its CPU time so far and a verdict (an end-of-file: it died)."""
        try:
            _, cpu, idle, key, verdict, error = self._readers[worker].recv()
        except EOFError:
            self._alive[worker] = False
            proc = self._procs[worker]
            proc.join(timeout=1)
            raise JudgeWorkerError(f"judge worker {proc.name} died (exit code {proc.exitcode})") from None
        self._cpu[worker], self._idle[worker] = cpu, idle
        if key is None:  # its last report, on the stop
            return []
        self.pending -= 1
        if error is not None:
            raise JudgeWorkerError(f"judging {key} failed in a judge worker:\n{error}")
        return [(key, verdict)]

    def _check_alive(self) -> None:
        for proc in self._procs:
            if not proc.is_alive():
                raise JudgeWorkerError(f"judge worker {proc.name} died (exit code {proc.exitcode})")

    def close(self) -> None:
        """Stop the workers, reading their last reports (CPU time) until each pipe ends."""
        for q in self._queues:
            try:
                q.put(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 5
        while any(self._alive) and time.monotonic() < deadline:
            for conn in wait(self._live_readers(), 0.05):
                worker = self._readers.index(conn)
                try:
                    _, self._cpu[worker], self._idle[worker], *_ = conn.recv()
                except EOFError:  # exited after its last report
                    self._alive[worker] = False
        for proc in self._procs:
            proc.join(timeout=0.5)
            if proc.is_alive():
                proc.terminate()
        for conn in self._readers:
            conn.close()
        for q in self._queues:
            q.close()
            q.cancel_join_thread()  # tasks nobody will read must not hold up the exit

    def __enter__(self) -> JudgePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
