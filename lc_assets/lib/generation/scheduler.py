"""The generation loop: admit sections, submit their steps, settle results, record them.

Steps of a section are sequential (step k shows pairs of steps < k), so a section has exactly one
request outstanding; the engine's batch is filled by keeping many sections in flight. Sections are
admitted lazily (`admission`) as slots free up; each step's prompt is built by `prompting`, its
output judged by `judging.judge_output`, and the finished step handed to the sink (`records`) before
the section's next step is built. A killed run resumes from what the sink made durable: masks, pair
samples and request seeds are pure functions of (seed, section id, step), so the prompts are the same.
"""

from __future__ import annotations

import logging
import operator
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence

from lc_assets.lib.generation.admission import Admission, SectionPreparer, SectionState, SectionTask
from lc_assets.lib.generation.backend import GenerationBackend, GenerationResult
from lc_assets.lib.generation.config import GenerationConfig
from lc_assets.lib.generation.judge_pool import JudgePool
from lc_assets.lib.generation.judging import StepContext, Verdict, judge_output
from lc_assets.lib.generation.prompting import PromptBuilder, StepAttempt
from lc_assets.lib.generation.prompts import FittedPrompt, PromptOverflowError, prompt_hash
from lc_assets.lib.generation.quality import reason_code
from lc_assets.lib.generation.records import (
    CommittedStep,
    GenerationSummary,
    ProgressEvent,
    RejectedAttempt,
    SectionResult,
    StepRecord,
    StepSink,
)
from lc_assets.lib.generation.validate import ValidatedQA
from lc_assets.lib.sections import QAPair, Section
from lc_assets.lib.tokenizer import TextTokenizer

log = logging.getLogger(__name__)

#: verdicts settled per loop turn: the steps they launch are judged as soon as the turn ends, so the judge worker
#: works on them while the loop records the rest (settling every verdict that came back at once left the worker
#: idle until the loop had recorded them all)
_VERDICTS_PER_TURN = 4
#: how often requests in flight are checked against request_timeout_s
_TIMEOUT_CHECK_S = 1.0
#: phases are measured in CPU time of the loop thread (wall time would count other processes' load)
_cpu = time.thread_time
_index = operator.attrgetter("index")
_n_tokens = operator.attrgetter("n_tokens")
_paragraph_id = operator.attrgetter("paragraph_id")
_span = operator.attrgetter("index", "char_start", "char_end")  # a shown paragraph as a chunk span


class GenerationScheduler:
    """Runs QA generation for many sections over one backend, handing every finished step to a sink."""

    def __init__(
        self,
        backend: GenerationBackend,
        config: GenerationConfig,
        sink: StepSink,
        target_tokenizer: TextTokenizer,
        progress: Callable[[ProgressEvent], None] | None = None,
        progress_every_s: float = 10.0,
        poll_s: float = 0.5,
        prepare_ahead: int = 4,
    ) -> None:
        self.backend = backend
        self.config = config
        self.sink = sink
        self.progress = progress
        self.progress_every_s = progress_every_s
        self.poll_s = poll_s
        self.prepare_ahead = prepare_ahead
        self.config_hash = config.config_hash()
        self.prompts = PromptBuilder(backend, config)
        self.preparer = SectionPreparer(config, self.prompts.count_text, target_tokenizer, backend.counting_fingerprint)

    # -- main loop ------------------------------------------------------------------------------
    def run(
        self,
        sections: Iterable[Section | SectionTask],
        committed: Mapping[str, Sequence[CommittedStep | StepRecord]] | None = None,
        stop: threading.Event | None = None,
        total: int | None = None,
    ) -> GenerationSummary:
        """Grow sections until each reaches its target (or a cap), resuming after their committed steps.

        ``sections`` may be lazy (a paging source): it is consumed as slots free up. Plain `Section`s are
        wrapped with ``committed`` (section id -> records already in the store). ``stop`` ends the run
        gracefully: nothing new is admitted or submitted, requests in flight may finish for
        ``config.stop_grace_s`` (valid ones are recorded), the rest are aborted and redone on resume.
        """
        return _Run(self, sections, committed or {}, stop, total).loop()


class _Run:
    """The state of one `GenerationScheduler.run` call."""

    def __init__(
        self,
        sched: GenerationScheduler,
        sections: Iterable[Section | SectionTask],
        committed: Mapping[str, Sequence[CommittedStep | StepRecord]],
        stop: threading.Event | None,
        total: int | None,
    ) -> None:
        self.s = sched
        self.stored_counts_before = sched.preparer.stored_counts_used  # the preparer outlives a run
        self.cfg = sched.config
        self.backend = sched.backend
        self.stop = stop
        self.total = total if total is not None else (len(sections) if isinstance(sections, Sequence) else None)
        self.tasks = self._tasks(sections, committed)
        self.cap = self.cfg.max_in_flight or self.backend.max_in_flight
        self.in_flight: dict[str, StepAttempt] = {}
        # outputs with a judge worker (request id -> attempt, result); their sections count as in flight
        self.judging: dict[str, tuple[StepAttempt, GenerationResult]] = {}
        self.judges: JudgePool | None = None
        self.verdicts: deque[tuple[str, Verdict]] = deque()  # back from the judge workers, not settled yet
        self.active: dict[str, SectionState] = {}  # admitted and still growing
        self.results: list[SectionResult] = []  # sections that stopped growing (small: no text, no pairs)
        self.pairs = 0
        self.failed = 0
        self.counters = Counter[str]()
        self.failures = Counter[str]()
        self.rejected = Counter[str]()
        self.phase = Counter[str]()
        self.stopping = False
        self.stop_deadline = 0.0
        self.t0 = time.monotonic()
        self.first_request: float | None = None
        self.last_progress = self.t0
        self.last_timeout_check = self.t0

    @staticmethod
    def _tasks(
        sections: Iterable[Section | SectionTask], committed: Mapping[str, Sequence[CommittedStep | StepRecord]]
    ) -> Iterable[SectionTask]:
        seen: set[str] = set()
        for item in sections:
            task = (
                item if isinstance(item, SectionTask) else SectionTask(item, None, committed.get(item.section_id, ()))
            )
            if task.section.section_id in seen:
                raise ValueError(f"section id {task.section.section_id!r} appears twice in one run")
            seen.add(task.section.section_id)
            yield task

    # -- phases -----------------------------------------------------------------------------------
    def _timed(self, name: str, start: float) -> float:
        now = _cpu()
        self.phase[name] += now - start
        return now

    def _open(self, st: SectionState) -> None:
        self.s.sink.open_section(st.result())
        self.pairs += len(st.pairs)
        self.failed += st.failed_steps
        if st.finish_reason is not None:
            self._close(st)  # finished before this run (or an empty chunk): nothing to send
            return
        self.active[st.section_id] = st
        self._launch(st)

    def _close(self, st: SectionState) -> None:
        self.active.pop(st.section_id, None)
        if self.judges is not None:
            self.judges.forget(st.section_id)
        result = st.result()
        self.results.append(result)
        if result.finish_reason != "stopped":
            self.s.sink.close_section(result)

    def _record(
        self,
        att: StepAttempt,
        pair: QAPair | None,
        failure: str | None,
        res: GenerationResult | None,
        checked: ValidatedQA | None = None,
        pair_counts: tuple[int, int] | None = None,
    ) -> StepRecord:
        st, fitted = att.state, att.fitted
        if pair is None:
            pair_tokens = 0
        elif pair_counts is not None:  # counted by a judge worker
            pair_tokens = pair_counts[0] + pair_counts[1] + self.s.preparer.pair_overhead
        else:
            pair_tokens = self.s.preparer.pair_tokens([pair])[0]
        shown = sorted(fitted.shown, key=_index)  # document order (shown_spans)
        return StepRecord(
            section_id=st.section_id,
            step=att.step,
            status="ok" if pair is not None else "failed",
            pair=pair,
            failure_reason=failure,
            raw_text=res.text if res is not None else "",
            attempts=att.attempt + 1,
            attempt_errors=tuple(att.errors),
            prompt_hash=prompt_hash(fitted.messages) if fitted.messages else "",
            paragraph_ids=tuple(map(_paragraph_id, shown)),
            shown_spans=tuple(map(_span, shown)),
            dropped_paragraph_ids=tuple(p.paragraph_id for p in fitted.dropped),
            earlier_pair_ids=tuple(p.pair_id for p in fitted.earlier_pairs),
            budget_tokens=att.budget_tokens,
            context_tokens=sum(map(_n_tokens, shown)),
            prompt_tokens=res.prompt_tokens if res is not None else 0,
            completion_tokens=res.completion_tokens if res is not None else 0,
            total_completion_tokens=att.total_completion_tokens,
            model=self.backend.model,
            backend=self.backend.name,
            config_hash=self.s.config_hash,
            seconds=res.seconds if res is not None else 0.0,
            wall_seconds=time.monotonic() - att.started_mono,
            started_at=att.started_at,
            finished_at=time.time(),
            section_tokens=st.section_tokens + pair_tokens,
            target_tokens=st.target_tokens,
            n_pairs=len(st.pairs) + (pair is not None),
            failed_steps=st.failed_steps + (pair is None),
            kind=checked.kind if pair is not None and checked is not None else None,
            suggested_kind=fitted.kind,
            long_range=fitted.long_range,
            evidence=checked.spans if pair is not None and checked is not None else (),
            rejected=tuple(att.rejected),
            focus_window=fitted.focus,
        )

    def _commit(self, record: StepRecord, state: SectionState) -> None:
        self.s.sink.commit(record)
        pair_tokens = record.section_tokens - state.section_tokens
        state.apply(record.step, record.pair, pair_tokens, record.evidence_spans)
        if record.pair is not None:
            self.pairs += 1
            self.counters["ok"] += 1
        else:
            self.failed += 1
            self.counters["failed"] += 1
            self.failures[reason_code(record.failure_reason) or "unknown"] += 1
        state.check_finished(self.cfg)
        if state.finish_reason is not None:
            self._close(state)

    def _launch(self, st: SectionState) -> None:
        """Submit the section's next step (recording unfixable overflows on the way)."""
        while st.finish_reason is None and not self.stopping:
            t = _cpu()
            now, mono = time.time(), time.monotonic()
            step = st.next_step
            try:
                mask, _earlier, fitted = self.s.prompts.fit(st, step)
            except PromptOverflowError as exc:
                assert st.masker is not None
                mask = st.masker.mask(step)
                empty = FittedPrompt((), mask.selected, (), (), (), 0)
                att = StepAttempt(st, step, empty, mask.budget_tokens, now, mono)
                self._commit(self._record(att, None, f"prompt_overflow: {exc}", None), st)
                self._timed("prompt", t)
                continue
            att = StepAttempt(st, step, fitted, mask.budget_tokens, now, mono, schema=self.s.prompts.schema(st, fitted))
            t = self._timed("prompt", t)
            self._submit(att)
            self._timed("submit", t)
            return

    def _submit(self, att: StepAttempt) -> None:
        req = self.s.prompts.request(att)
        att.submitted_mono = time.monotonic()
        self.in_flight[req.request_id] = att
        self.backend.submit(req)
        if self.first_request is None:
            self.first_request = time.monotonic()

    def _settle(self, att: StepAttempt, res: GenerationResult) -> None:
        """Judge a finished attempt (here, or in a judge worker: then :meth:`_judged` follows later)."""
        t = _cpu()
        st = att.state
        fitted = att.fitted
        workers = self.cfg.judge_workers
        context = StepContext(
            st.section_id, att.step, fitted.windows, fitted.earlier_pairs,
            None if workers else st.question_index,  # type: ignore[arg-type] - a judge worker keeps its own index
            fitted.long_range, st.source_language, self.cfg, st.memo, title=st.title, focus_window=fitted.focus,
            attribution=fitted.attribution,
        )  # fmt: skip
        if workers:
            if self.judges is None:  # started with the first output: nothing to judge holds up the first request
                self.judges = JudgePool(self.cfg, self.cfg.judge_workers, self.s.preparer.target_tokenizer)
            self.judging[res.request_id] = (att, res)
            self.judges.submit(res.request_id, context, res, st.pairs, st.paragraphs)
            self._timed("judge", t)
            return
        verdict = judge_output(context, res)
        self._judged(att, res, verdict, self._timed("judge", t))

    def _collect_verdicts(self, timeout: float) -> None:
        """Settle up to ``_VERDICTS_PER_TURN`` verdicts the judge workers sent back (waiting up to ``timeout`` for
        the first when none are left from an earlier turn)."""
        assert self.judges is not None
        t, wall = _cpu(), time.monotonic()
        self.judges.send()
        if not self.verdicts:
            self.verdicts.extend(self.judges.ready(timeout))
        self.phase["judge_wait_wall"] += time.monotonic() - wall  # the loop idle for want of verdicts, mostly
        t = self._timed("judge", t)
        for _ in range(min(len(self.verdicts), _VERDICTS_PER_TURN)):
            key, verdict = self.verdicts.popleft()
            found = self.judging.pop(key, None)
            if found is not None:  # None: dropped when the stop's grace period ended
                self._judged(*found, verdict, t)
                t = _cpu()

    def _judged(self, att: StepAttempt, res: GenerationResult, verdict: Verdict, t: float) -> None:
        """Record a judged attempt, or retry it; then move the section on."""
        st = att.state
        if not verdict.ok and self.stopping:
            return  # stopping: leave the step unrecorded so a resume redoes it, rather than a failure
        assert verdict.reason is not None or verdict.pair is not None
        if verdict.reason is not None:
            att.rejected.append(RejectedAttempt(att.attempt, verdict.reason, res.text))
            if att.attempt < self.cfg.max_retries_per_step:
                self.rejected[reason_code(verdict.reason) or "unknown"] += 1
                att.errors.append(verdict.reason)
                att.attempt += 1
                self._submit(att)
                self._timed("submit", t)
                return
        self._commit(self._record(att, verdict.pair, verdict.reason, res, verdict.checked, verdict.pair_counts), st)
        t = self._timed("record", t)
        if st.finish_reason is None:
            self._launch(st)

    def _check_timeouts(self, now: float) -> None:
        if now - self.last_timeout_check < min(_TIMEOUT_CHECK_S, self.cfg.request_timeout_s / 4):
            return
        self.last_timeout_check = now
        for rid, att in list(self.in_flight.items()):  # a stuck request must not hold its section forever
            waited = now - att.submitted_mono
            if waited > self.cfg.request_timeout_s:
                del self.in_flight[rid]
                self.backend.abort(rid)  # free its batch slot before the retry takes another
                self.counters["aborted"] += 1
                self._settle(att, GenerationResult(rid, "", 0, 0, "error", waited, error="request timed out"))

    def _emit(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.s.progress is None or (not force and now - self.last_progress < self.s.progress_every_s):
            return
        self.last_progress = now
        self.s.progress(
            ProgressEvent(
                sections_done=len(self.results),
                sections_total=self.total,
                sections_in_flight=len(self.active),
                pairs=self.pairs,
                failed_steps=self.failed,
                in_flight=len(self.in_flight),
                prompt_tokens=self.counters["prompt_tokens"],
                completion_tokens=self.counters["completion_tokens"],
                elapsed_s=now - self.t0,
                failure_reasons=tuple(self.failures.most_common()),
            )
        )

    def _busy(self) -> int:
        """Sections with a step under way: at the engine or with a judge worker."""
        return len(self.in_flight) + len(self.judging)

    def _begin_stop(self, admission: Admission) -> None:
        self.stopping = True
        self.stop_deadline = time.monotonic() + self.cfg.stop_grace_s
        admission.close()
        log.info(
            "stop requested: admitting nothing more; %d request(s) in flight get %.0f s to finish",
            len(self.in_flight),
            self.cfg.stop_grace_s,
        )

    def loop(self) -> GenerationSummary:
        admission = Admission(self.tasks, self.s.preparer, self.s.prepare_ahead)
        loop_cpu = _cpu()
        try:
            while True:
                if self.stop is not None and self.stop.is_set() and not self.stopping:
                    self._begin_stop(admission)
                t = _cpu()
                while not self.stopping and self._busy() < self.cap:
                    st = admission.take(timeout=0.0 if self._busy() else min(self.s.poll_s, 0.05))
                    if st is None:
                        break
                    self._open(st)
                t = self._timed("admit", t)
                if not self._busy():
                    if self.stopping or admission.exhausted:
                        break
                    continue
                if self.stopping and time.monotonic() >= self.stop_deadline:
                    for rid in list(self.in_flight):  # grace period over: give up, a resume redoes them
                        self.backend.abort(rid)
                        self.counters["aborted"] += 1
                    self.in_flight.clear()
                    self.judging.clear()
                    self.verdicts.clear()
                    break
                if self.judging:
                    # nothing at the engine: wait for verdicts; else look, and give the engine a moment below
                    self._collect_verdicts(0.0 if self.in_flight else min(self.s.poll_s, 0.05))
                    t = _cpu()
                if self.in_flight:  # (only verdicts pending: no engine to wait for; progress still goes out)
                    room = not self.stopping and not admission.exhausted and self._busy() < self.cap
                    wait_s = min(self.s.poll_s, 0.02) if room else self.s.poll_s
                    if self.verdicts:  # verdicts left to settle: take what the engine has, without waiting
                        wait_s = 0.0
                    elif self.judging:
                        wait_s = min(wait_s, 0.002)
                    results = self.backend.wait(timeout=wait_s)
                    t = self._timed("wait", t)
                    for res in results:
                        att = self.in_flight.pop(res.request_id, None)
                        if att is None:
                            continue  # a late answer to a request already given up on
                        self.counters["prompt_tokens"] += res.prompt_tokens
                        self.counters["completion_tokens"] += res.completion_tokens
                        att.total_completion_tokens += res.completion_tokens
                        self._settle(att, res)
                self._check_timeouts(time.monotonic())
                self._emit()
        finally:
            admission.close()
            if self.judges is not None:
                self.judges.close()
                self.phase["judge_workers_cpu"] += self.judges.cpu_seconds
                self.phase["judge_workers_idle_wall"] += self.judges.idle_seconds
            self.phase["prepare_sections_wall (admission thread)"] += admission.prepare_seconds
            self.phase["prepare_sections_cpu (admission thread)"] += admission.prepare_cpu_seconds
            self.phase["loop_thread_cpu"] += _cpu() - loop_cpu  # all of it: the phases above and the loop's own
        for st in list(self.active.values()):  # stopped while growing: left open for a resume
            st.finish_reason = "stopped"
            self._close(st)
        t = _cpu()
        self.s.sink.flush()
        self._timed("flush", t)
        self._emit(force=True)
        return GenerationSummary(
            sections=tuple(self.results),
            steps_ok=self.counters["ok"],
            steps_failed=self.counters["failed"],
            failure_reasons=dict(self.failures),
            rejected_attempts=dict(self.rejected),
            prompt_tokens=self.counters["prompt_tokens"],
            completion_tokens=self.counters["completion_tokens"],
            elapsed_s=time.monotonic() - self.t0,
            stopped=self.stopping,
            first_request_s=None if self.first_request is None else self.first_request - self.t0,
            phase_seconds={k: round(v, 4) for k, v in self.phase.items()},
            sections_stored_counts=self.s.preparer.stored_counts_used - self.stored_counts_before,
            aborted_requests=self.counters["aborted"],
        )
