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

Tasks go to a worker through a plain pipe the loop thread writes itself, without blocking: what the pipe cannot
take yet waits in the loop's buffer and goes on with the next send or while the loop waits for verdicts. A
``multiprocessing.Queue`` hands its messages to a feeder thread, which needs the interpreter lock the loop,
lineage writer and admission threads hold (up to a 5 ms switch interval each time): the worker ran out of tasks
while they waited there. The loop never blocks on a full task pipe, so a worker blocked on a full verdict pipe
is always read: no deadlock.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import select
import struct
import sys
import time
import traceback
import types
from collections import deque
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
    the pairs the section accepted since its previous task, and the prompt's earlier pairs by id where the worker
    has them (each pair is pickled once, not with every step that lists it: they were half of a task's bytes)."""

    key: str
    context: StepContext  # without windows, memo, index, config and earlier pairs
    windows: tuple[WindowRef | MaskWindow, ...]
    result: GenerationResult
    new_pairs: tuple[QAPair, ...]
    earlier: tuple[str | QAPair, ...]  # the prompt's earlier pairs: ids of pairs the worker was sent, else whole


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


class _Section:
    """What a worker keeps of one open section: its memo, question index and paragraphs, and the text of all its
    paragraphs as :attr:`MaskWindow.text` builds it, from which each shown window's text is a slice (joining a
    window's ~45 paragraphs on every step was ~5% of judging; a window is rarely shown twice)."""

    def __init__(self, paragraphs: tuple[Paragraph, ...]) -> None:
        self.memo = ShownTextMemo()
        self.index = QuestionIndex()
        self.pairs: dict[str, QAPair] = {}
        self.paragraphs = paragraphs
        self._text: str | None = None
        # the slices are exact only where paragraphs do not overlap (as split_paragraphs cuts them)
        self._sliceable = bool(paragraphs) and all(
            a.char_end <= b.char_start for a, b in zip(paragraphs, paragraphs[1:], strict=False)
        )

    def context(self, task: JudgeTask, config: GenerationConfig) -> StepContext:
        """The task's whole step context: its windows, earlier pairs, and the section's memo and question index
        (which first take in the pairs the section accepted since the previous task)."""
        for pair in task.new_pairs:
            self.pairs[pair.pair_id] = pair
            self.index.add(pair.question)
        return replace(
            task.context,
            windows=self.windows(task.windows),
            earlier_pairs=tuple(self.pairs[p] if isinstance(p, str) else p for p in task.earlier),
            config=config,
            memo=self.memo,
            question_index=self.index,
        )

    def windows(self, refs: Sequence[WindowRef | MaskWindow]) -> tuple[MaskWindow, ...]:
        """The shown windows of a task, rebuilt from their references."""
        return tuple(self._window(*w) if isinstance(w, tuple) else w for w in refs)

    def _window(self, first: int, n: int) -> MaskWindow:
        window = MaskWindow(self.paragraphs[first : first + n])
        if self._sliceable:
            if self._text is None:
                self._text = MaskWindow(self.paragraphs).text
            base = self.paragraphs[0].char_start
            window.__dict__["text"] = self._text[window.char_start - base : window.char_end - base]  # cached_property
        return window


class JudgeWorkerError(RuntimeError):
    """A judge worker raised or died; the message carries the worker's traceback or exit code."""


def _orphaned(parent_pid: int) -> bool:
    """The parent is gone (killed: it never sent the stop), so this process was handed to init."""
    return os.getppid() != parent_pid


def _next(tasks: Connection, parent_pid: int) -> Any:
    """The next message, or None when the parent is gone: its end of the pipe closed, or (should another process
    hold that end) this process handed to init, checked every second."""
    while not tasks.poll(1.0):
        if _orphaned(parent_pid):
            return None
    try:
        return tasks.recv()
    except EOFError:
        return None


class _TaskPipe:
    """The loop's end of a worker's task pipe: a message is pickled on the calling thread and written at once as
    far as the pipe takes it (non-blocking); the rest waits here and goes on with :meth:`flush`. Framed as
    :class:`multiprocessing.connection.Connection` frames its messages, so the worker reads it with ``recv``."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn  # owns the file descriptor
        self.fd = conn.fileno()
        os.set_blocking(self.fd, False)
        self._out: deque[memoryview] = deque()

    @property
    def pending(self) -> bool:
        return bool(self._out)

    def put(self, message: object) -> None:
        """Queue the message (written by :meth:`flush`)."""
        data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        n = len(data)
        header = struct.pack("!i", n) if n <= 0x7FFFFFFF else struct.pack("!iQ", -1, n)
        self._out += (memoryview(header), memoryview(data))

    def flush(self) -> None:
        """Write what the pipe takes now (raises BrokenPipeError when the worker's end is closed)."""
        out = self._out
        while out:
            try:
                written = os.writev(self.fd, list(out)[:64])
            except BlockingIOError:
                return
            while written and written >= len(out[0]):
                written -= len(out.popleft())
            if written:
                out[0] = out[0][written:]
                return  # the pipe is full

    def close(self) -> None:
        self._out.clear()
        self.conn.close()


def _worker(worker: int, config: GenerationConfig, tasks: Connection, verdicts: Connection, parent_pid: int) -> None:
    """A judge process: tasks in order, per-section memo and question index, verdicts as they are made (each with
    the worker's CPU seconds so far and the time it waited for tasks, for the run's accounting). The first message
    is the target tokenizer (or None): ~7 MB pickled, it goes through the pipe while the loop works on, so starting
    a worker does not hold up the loop. Verdicts are written to a pipe from this thread, not through a queue's
    feeder thread, which would wait for the judging thread to hand over the interpreter lock (up to 5 ms each)."""
    tokenizer: TextTokenizer | None = _next(tasks, parent_pid)
    sections: dict[str, _Section] = {}
    idle = 0.0  # wall seconds spent waiting for tasks, from the first task on
    item = _next(tasks, parent_pid)
    while True:
        if item is None:  # the stop (or an orphan's end)
            with contextlib.suppress(OSError):  # a parent that is gone reads no report
                verdicts.send((worker, time.process_time(), idle, None, None, None))
            return
        for entry in item:
            if isinstance(entry, str):  # the section closed
                sections.pop(entry, None)
                continue
            if isinstance(entry, _OpenSection):
                sections[entry.section_id] = _Section(entry.paragraphs)
                continue
            task: JudgeTask = entry
            section = sections[task.context.section_id]
            verdict, error = None, None
            try:
                context = section.context(task, config)
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
        task_pipes = [ctx.Pipe(duplex=False) for _ in range(workers)]
        pipes = [ctx.Pipe(duplex=False) for _ in range(workers)]
        self._readers: list[Connection] = [r for r, _ in pipes]
        self._procs = [
            ctx.Process(target=_worker, args=(i, config, tr, w, os.getpid()), name=f"lc-judge-{i}", daemon=True)
            for i, ((tr, _), (_, w)) in enumerate(zip(task_pipes, pipes, strict=True))
        ]
        with _without_main_module():
            for proc in self._procs:
                proc.start()
        for (tr, _), (_, w) in zip(task_pipes, pipes, strict=True):
            tr.close()  # the worker holds the task pipe's read end: this process's exit is an end-of-file there
            w.close()  # the worker holds the write end: its exit is an end-of-file here
        self._tasks = [_TaskPipe(tw) for _, tw in task_pipes]
        self._alive = [True] * workers
        for pipe in self._tasks:
            pipe.put(target_tokenizer)
        self._flush()
        self._owner: dict[str, int] = {}  # section id -> worker
        self._sent_pairs: dict[str, set[str]] = {}  # section id -> ids of the pairs the worker has
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
        sent = self._sent_pairs.setdefault(sid, set())  # pair ids are unique: the first len(sent) pairs went
        new = tuple(pairs[len(sent) :])
        sent.update(p.pair_id for p in new)
        earlier = tuple(p.pair_id if p.pair_id in sent else p for p in context.earlier_pairs)
        slim = replace(context, windows=(), earlier_pairs=(), memo=None, question_index=None, config=None)  # type: ignore[arg-type]
        windows = tuple(_window_ref(w, paragraphs) for w in context.windows)
        self._batches.setdefault(worker, []).append(JudgeTask(key, slim, windows, result, new, earlier))
        self.pending += 1

    def forget(self, section_id: str) -> None:
        """The section is closed: its worker drops its memo and index."""
        worker = self._owner.pop(section_id, None)
        self._sent_pairs.pop(section_id, None)
        if worker is not None:
            self._load[worker] -= 1
            self._batches.setdefault(worker, []).append(section_id)

    def send(self) -> None:
        """Hand the queued tasks to their workers (one message per worker; what a full pipe does not take now
        goes on with the next call or while :meth:`ready` waits)."""
        for worker, batch in self._batches.items():
            self._tasks[worker].put(batch)
        self._batches.clear()
        self._flush()

    def _flush(self) -> None:
        for worker, pipe in enumerate(self._tasks):
            if pipe.pending and self._alive[worker]:
                try:
                    pipe.flush()
                except BrokenPipeError:
                    proc = self._procs[worker]
                    proc.join(timeout=1)
                    raise JudgeWorkerError(f"judge worker {proc.name} died (exit code {proc.exitcode})") from None

    def ready(self, timeout: float = 0.0) -> list[tuple[str, Verdict]]:
        """Verdicts back so far (waiting up to ``timeout`` for the first when none are, writing the tasks a full
        pipe held back as the workers read)."""
        out: list[tuple[str, Verdict]] = []
        if not self.pending:
            return out
        deadline = time.monotonic() + timeout
        while True:
            self._flush()
            poller = select.poll()
            for worker, (conn, pipe) in enumerate(zip(self._readers, self._tasks, strict=True)):
                if self._alive[worker]:
                    poller.register(conn.fileno(), select.POLLIN)
                    if pipe.pending:
                        poller.register(pipe.fd, select.POLLOUT)
            left = deadline - time.monotonic()
            events = poller.poll(max(0, int(left * 1000 + 0.999)))  # milliseconds, rounded up
            readable = {fd for fd, ev in events if not ev & select.POLLOUT}
            for worker, conn in enumerate(self._readers):
                if self._alive[worker] and conn.fileno() in readable:
                    while self._alive[worker] and conn.poll():
                        out += self._receive(worker)
            if out or time.monotonic() >= deadline:
                break
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
        for pipe in self._tasks:
            pipe.put(None)
        deadline = time.monotonic() + 5
        while any(self._alive) and time.monotonic() < deadline:
            for pipe in self._tasks:
                with contextlib.suppress(OSError):  # a dead worker: its pipe's end-of-file below says so
                    pipe.flush()
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
        for pipe in self._tasks:
            pipe.close()  # tasks nobody will read are dropped

    def __enter__(self) -> JudgePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
