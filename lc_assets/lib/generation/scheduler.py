"""Grow many sections at once: one QA step per section in flight, committed before the next is sent.

The loop keeps up to ``max_in_flight`` sections active. Each active section has exactly one
request outstanding (steps of a section are sequential: step k shows pairs of steps < k). When a
result arrives it is validated, retried a bounded number of times if invalid or duplicate, and
then committed through the :class:`StepSink` *before* the section's next step is built — so the
store always holds a prefix of every section's steps and a killed run resumes from it, producing
exactly the same prompts (masks and pair samples are pure functions of seed, section id and step).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar, Literal, Protocol

from pydantic import Field, model_validator

from lc_assets.lib.generation.backend import GenerationBackend, GenerationRequest, GenerationResult
from lc_assets.lib.generation.masking import (
    DEFAULT_SKIP_MARKER,
    Paragraph,
    SectionMasker,
    derive_rng,
    sample_earlier_pairs,
    split_paragraphs,
)
from lc_assets.lib.generation.prompts import (
    FittedPrompt,
    PromptOverflowError,
    fit_prompt,
    normalize_question,
    parse_qa_output,
    prompt_hash,
    qa_json_schema,
)
from lc_assets.lib.sections import QAPair, Section
from lc_assets.lib.stepconfig import StepConfig
from lc_assets.lib.tokenizer import TextTokenizer

log = logging.getLogger(__name__)


class GenerationConfig(StepConfig):
    """How QA pairs are generated. `config_hash()` covers every field except throughput knobs."""

    HASH_EXCLUDE: ClassVar[frozenset[str]] = frozenset({"max_in_flight", "request_timeout_s"})

    seed: int = Field(0, ge=0, description="Root of every derived RNG (masks, pair samples, request seeds).")
    min_context_tokens: int = Field(
        1024, ge=32, le=131072, description="Smallest masked-context budget (generator tokens)."
    )
    max_context_tokens: int = Field(
        4096, ge=32, le=131072, description="Largest masked-context budget (generator tokens)."
    )
    max_paragraph_tokens: int = Field(
        512,
        ge=16,
        description="Longer paragraphs are split at line/sentence/word boundaries (capped at min_context_tokens).",
    )
    earlier_pairs: int = Field(
        3, ge=0, le=32, description="K: earlier pairs of the section shown so the model does not repeat them."
    )
    max_tokens: int = Field(256, ge=16, le=8192, description="Completion budget per step (also bounds the answer).")
    max_question_chars: int = Field(250, ge=16, le=4000, description="Schema maxLength of the question.")
    max_answer_chars: int = Field(600, ge=16, le=20000, description="Schema maxLength of the answer.")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Sampling temperature of the first attempt.")
    retry_temperature: float = Field(
        0.9, ge=0.0, le=2.0, description="Temperature of retries (greedy retries would repeat the failure)."
    )
    target_ratio: float | None = Field(
        None, gt=1.0, le=100.0, description="Section target = ceil(ratio x chunk tokens) in target tokens."
    )
    target_tokens: int | None = Field(None, ge=1, description="Absolute section target (chunk + pairs, target tokens).")
    max_steps_per_section: int = Field(2000, ge=1, description="Hard cap on steps (ok + failed) of one section.")
    max_retries_per_step: int = Field(2, ge=0, le=10, description="Extra attempts for invalid or duplicate output.")
    max_failed_steps_per_section: int = Field(20, ge=1, description="A section stops after this many failed steps.")
    skip_marker: str = Field(
        DEFAULT_SKIP_MARKER, min_length=1, max_length=16, description="Stands where text was skipped."
    )
    max_in_flight: int | None = Field(
        None, ge=1, le=4096, description="Sections in flight; default: backend.max_in_flight."
    )
    request_timeout_s: float = Field(
        600.0, gt=0, description="A request outstanding longer than this is a failed attempt."
    )

    @model_validator(mode="after")
    def _check(self) -> GenerationConfig:
        if self.min_context_tokens > self.max_context_tokens:
            raise ValueError(
                f"min_context_tokens={self.min_context_tokens} > max_context_tokens={self.max_context_tokens}"
            )
        # the schema's length bounds must fit max_tokens (~4 chars/token + JSON syntax), or valid
        # answers get cut off and every attempt fails as truncated
        needed = (self.max_question_chars + self.max_answer_chars) // 4 + 16
        if self.max_tokens < needed:
            raise ValueError(
                f"max_tokens={self.max_tokens} cannot hold max_question_chars={self.max_question_chars} + "
                f"max_answer_chars={self.max_answer_chars} (needs >= {needed}); raise max_tokens or lower the bounds"
            )
        if (self.target_ratio is None) == (self.target_tokens is None):
            raise ValueError(
                f"set exactly one of target_ratio ({self.target_ratio}) and target_tokens ({self.target_tokens})"
            )
        return self

    @property
    def paragraph_cap(self) -> int:
        """Paragraph pieces never exceed the smallest budget, so every step can show something."""
        return min(self.max_paragraph_tokens, self.min_context_tokens)

    def target_for(self, chunk_tokens: int) -> int:
        if self.target_tokens is not None:
            return self.target_tokens
        assert self.target_ratio is not None
        return -(-int(chunk_tokens * self.target_ratio * 1000) // 1000)  # ceil without float noise


# -- records --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepRecord:
    """One finished step (a pair, or a failure with the raw text) — one lineage row in the store."""

    section_id: str
    step: int
    status: Literal["ok", "failed"]
    pair: QAPair | None
    failure_reason: str | None
    raw_text: str  # output of the last attempt (kept for failures; never a pair when failed)
    attempts: int
    attempt_errors: tuple[str, ...]  # why earlier attempts were rejected
    prompt_hash: str
    messages: tuple[dict[str, str], ...]
    paragraph_ids: tuple[str, ...]  # shown, in document order
    dropped_paragraph_ids: tuple[str, ...]  # sampled but dropped by the overflow guard
    earlier_pair_ids: tuple[str, ...]
    budget_tokens: int
    context_tokens: int  # generator tokens of the shown paragraphs
    prompt_tokens: int  # of the final attempt, as the backend counted it
    completion_tokens: int  # of the final attempt
    total_completion_tokens: int  # over all attempts
    model: str
    backend: str
    config_hash: str
    seconds: float  # backend time of the final attempt
    wall_seconds: float  # first submit to commit
    started_at: float  # unix time
    finished_at: float
    section_tokens: int  # chunk + pairs after this step (target tokenizer)
    target_tokens: int

    def to_row(self) -> dict[str, Any]:
        """A flat, JSON-serialisable dict for the lineage store."""
        row = asdict(self)
        row["pair"] = None
        row["pair_id"] = self.pair.pair_id if self.pair else None
        row["question"] = self.pair.question if self.pair else None
        row["answer"] = self.pair.answer if self.pair else None
        row["messages"] = [dict(m) for m in self.messages]
        for key in ("attempt_errors", "paragraph_ids", "dropped_paragraph_ids", "earlier_pair_ids"):
            row[key] = list(row[key])
        del row["pair"]
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> StepRecord:
        data = dict(row)
        pair_id, question, answer = data.pop("pair_id", None), data.pop("question", None), data.pop("answer", None)
        data["pair"] = QAPair(pair_id, data["step"], question, answer) if pair_id else None
        data["messages"] = tuple(dict(m) for m in data["messages"])
        for key in ("attempt_errors", "paragraph_ids", "dropped_paragraph_ids", "earlier_pair_ids"):
            data[key] = tuple(data[key])
        return cls(**data)


class StepSink(Protocol):
    """Durable store of finished steps. `commit` returns only once the record is safe."""

    def commit(self, record: StepRecord) -> None: ...


@dataclass
class MemorySink:
    """Keeps records in memory (tests, benchmarks, small runs)."""

    records: list[StepRecord] = field(default_factory=list)

    def commit(self, record: StepRecord) -> None:
        self.records.append(record)

    def by_section(self) -> dict[str, list[StepRecord]]:
        out: dict[str, list[StepRecord]] = {}
        for rec in self.records:
            out.setdefault(rec.section_id, []).append(rec)
        return out


@dataclass(frozen=True)
class ProgressEvent:
    sections_done: int
    sections_total: int
    pairs: int
    failed_steps: int
    in_flight: int
    prompt_tokens: int
    completion_tokens: int
    elapsed_s: float

    @property
    def completion_tokens_per_s(self) -> float:
        return self.completion_tokens / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def __str__(self) -> str:
        return (
            f"sections {self.sections_done}/{self.sections_total}, pairs {self.pairs}, failed steps "
            f"{self.failed_steps}, in flight {self.in_flight}, {self.completion_tokens_per_s:.1f} output tok/s"
        )


FinishReason = Literal["target_reached", "max_steps", "max_failures", "empty_chunk", "stopped"]


@dataclass(frozen=True)
class SectionResult:
    section: Section  # with all pairs committed so far
    steps: int
    failed_steps: int
    chunk_tokens: int
    section_tokens: int
    target_tokens: int
    finish_reason: FinishReason


@dataclass(frozen=True)
class GenerationSummary:
    sections: tuple[SectionResult, ...]
    steps_ok: int  # in this run (resumed steps not counted)
    steps_failed: int
    failure_reasons: dict[str, int]  # failed steps by reason kind
    rejected_attempts: dict[str, int]  # retried attempts by reason kind
    prompt_tokens: int
    completion_tokens: int
    elapsed_s: float
    stopped: bool

    @property
    def completion_tokens_per_s(self) -> float:
        return self.completion_tokens / self.elapsed_s if self.elapsed_s > 0 else 0.0


# -- scheduler ------------------------------------------------------------------------------------


def pair_token_overhead(tokenizer: TextTokenizer) -> int:
    """Tokens the target chat template adds around one user/assistant pair (headers, end-of-turn)."""
    if not tokenizer.chat_template:
        return 0
    q, a = "question", "answer"
    one = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    two = one + one
    # the difference between two pairs and one excludes once-per-sample tokens such as BOS
    return (
        tokenizer.count(tokenizer.apply_chat_template(two))
        - tokenizer.count(tokenizer.apply_chat_template(one))
        - tokenizer.count(q)
        - tokenizer.count(a)
    )


@dataclass
class _SectionState:
    section: Section
    paragraphs: tuple[Paragraph, ...]
    masker: SectionMasker | None
    chunk_tokens: int
    target_tokens: int
    pairs: list[QAPair] = field(default_factory=list)
    seen_questions: set[str] = field(default_factory=set)
    section_tokens: int = 0
    next_step: int = 0
    failed_steps: int = 0
    finish_reason: FinishReason | None = None


@dataclass
class _Attempt:
    state: _SectionState
    step: int
    fitted: FittedPrompt
    budget_tokens: int
    attempt: int
    errors: list[str]
    total_completion_tokens: int
    started_at: float  # unix time of the first attempt
    started_mono: float
    submitted_mono: float


class GenerationScheduler:
    """Runs QA generation for many sections over one backend, committing every step to a sink."""

    def __init__(
        self,
        backend: GenerationBackend,
        config: GenerationConfig,
        sink: StepSink,
        target_tokenizer: TextTokenizer,
        progress: Callable[[ProgressEvent], None] | None = None,
        progress_every_s: float = 10.0,
        poll_s: float = 0.5,
    ) -> None:
        self.backend = backend
        self.config = config
        self.sink = sink
        self.target_tokenizer = target_tokenizer
        self.progress = progress
        self.progress_every_s = progress_every_s
        self.poll_s = poll_s
        self.config_hash = config.config_hash()
        self.schema = qa_json_schema(config.max_question_chars, config.max_answer_chars)
        self._pair_overhead = pair_token_overhead(target_tokenizer)
        self._run_nonce = f"{time.time_ns():x}"  # request ids stay unique if a backend is reused

    # -- state ----------------------------------------------------------------------------------
    def _pair_tokens(self, pair: QAPair) -> int:
        q, a = self.target_tokenizer.count_batch([pair.question, pair.answer])
        return q + a + self._pair_overhead

    def _init_state(self, section: Section, committed: Sequence[StepRecord]) -> _SectionState:
        cfg = self.config
        chunk_tokens = self.target_tokenizer.count(section.text)
        paragraphs = tuple(split_paragraphs(section.text, self.backend.count_text_tokens, cfg.paragraph_cap))
        masker = (
            SectionMasker(section.section_id, paragraphs, cfg.seed, cfg.min_context_tokens, cfg.max_context_tokens)
            if paragraphs
            else None
        )
        st = _SectionState(section, paragraphs, masker, chunk_tokens, cfg.target_for(chunk_tokens))
        st.section_tokens = chunk_tokens
        records = sorted(committed, key=lambda r: r.step)
        for expected, rec in enumerate(records):
            if rec.step != expected or rec.section_id != section.section_id:
                raise ValueError(
                    f"committed steps of section {section.section_id!r} are not a prefix 0..n-1 "
                    f"(found step {rec.step} of {rec.section_id!r} where {expected} was expected)"
                )
            self._apply(st, rec)
        for pair in section.pairs:  # pairs given on the Section itself (not through records)
            if pair.step >= st.next_step:
                raise ValueError(f"section {section.section_id!r} has pair at step {pair.step} but no record of it")
        if not paragraphs:
            st.finish_reason = "empty_chunk"
        self._check_finished(st)
        return st

    def _apply(self, st: _SectionState, rec: StepRecord) -> None:
        """Advance in-memory state by one committed record (same path for resume and live commits)."""
        if rec.status == "ok" and rec.pair is not None:
            st.pairs.append(rec.pair)
            st.seen_questions.add(normalize_question(rec.pair.question))
            st.section_tokens += self._pair_tokens(rec.pair)
        else:
            st.failed_steps += 1
        st.next_step = rec.step + 1

    def _check_finished(self, st: _SectionState) -> None:
        cfg = self.config
        if st.finish_reason is not None:
            return
        if st.section_tokens >= st.target_tokens:
            st.finish_reason = "target_reached"
        elif st.next_step >= cfg.max_steps_per_section:
            st.finish_reason = "max_steps"
        elif st.failed_steps >= cfg.max_failed_steps_per_section:
            st.finish_reason = "max_failures"

    # -- requests -------------------------------------------------------------------------------
    def _request_id(self, st: _SectionState, step: int, attempt: int) -> str:
        return f"{st.section.section_id}/{step}/{attempt}/{self._run_nonce}"

    def _request(self, att: _Attempt) -> GenerationRequest:
        cfg = self.config
        seed = derive_rng(cfg.seed, att.state.section.section_id, att.step, "request", att.attempt).getrandbits(31)
        return GenerationRequest(
            request_id=self._request_id(att.state, att.step, att.attempt),
            messages=att.fitted.messages,
            max_tokens=cfg.max_tokens,
            temperature=cfg.temperature if att.attempt == 0 else max(cfg.temperature, cfg.retry_temperature),
            json_schema=self.schema,
            seed=seed,
        )

    def _prepare(self, st: _SectionState) -> _Attempt | StepRecord:
        """Build the section's next step; an overflow that cannot be fixed becomes a failed record."""
        cfg = self.config
        assert st.masker is not None
        step = st.next_step
        mask = st.masker.mask(step)
        earlier = sample_earlier_pairs(st.pairs, cfg.earlier_pairs, cfg.seed, st.section.section_id, step)
        now, mono = time.time(), time.monotonic()
        try:
            fitted = fit_prompt(
                mask,
                len(st.paragraphs),
                earlier,
                self.backend.count_prompt_tokens,
                self.backend.context_window,
                cfg.max_tokens,
                cfg.skip_marker,
            )
        except PromptOverflowError as exc:
            empty = FittedPrompt((), mask.selected, (), earlier, (), 0)
            att = _Attempt(st, step, empty, mask.budget_tokens, 0, [], 0, now, mono, mono)
            return self._record(att, None, f"prompt_overflow: {exc}", "", 0, 0, 0.0)
        return _Attempt(st, step, fitted, mask.budget_tokens, 0, [], 0, now, mono, mono)

    def _record(
        self,
        att: _Attempt,
        pair: QAPair | None,
        failure: str | None,
        raw_text: str,
        prompt_tokens: int,
        completion_tokens: int,
        seconds: float,
    ) -> StepRecord:
        st, fitted = att.state, att.fitted
        section_tokens = st.section_tokens + (self._pair_tokens(pair) if pair else 0)
        return StepRecord(
            section_id=st.section.section_id,
            step=att.step,
            status="ok" if pair is not None else "failed",
            pair=pair,
            failure_reason=failure,
            raw_text=raw_text,
            attempts=att.attempt + 1,
            attempt_errors=tuple(att.errors),
            prompt_hash=prompt_hash(fitted.messages) if fitted.messages else "",
            messages=fitted.messages,
            paragraph_ids=tuple(p.paragraph_id for p in sorted(fitted.shown, key=lambda p: p.index)),
            dropped_paragraph_ids=tuple(p.paragraph_id for p in fitted.dropped),
            earlier_pair_ids=tuple(p.pair_id for p in fitted.earlier_pairs),
            budget_tokens=att.budget_tokens,
            context_tokens=sum(p.n_tokens for p in fitted.shown),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_completion_tokens=att.total_completion_tokens,
            model=self.backend.model,
            backend=self.backend.name,
            config_hash=self.config_hash,
            seconds=seconds,
            wall_seconds=time.monotonic() - att.started_mono,
            started_at=att.started_at,
            finished_at=time.time(),
            section_tokens=section_tokens,
            target_tokens=st.target_tokens,
        )

    def _judge(self, att: _Attempt, res: GenerationResult) -> tuple[QAPair | None, str | None]:
        """Validate one result: a new pair, or the reason the attempt is rejected."""
        cfg = self.config
        if res.error is not None:
            return None, f"backend_error: {res.error}"
        parsed = parse_qa_output(res.text, cfg.max_question_chars, cfg.max_answer_chars)
        if not parsed.ok:
            reason = parsed.reason or "invalid"
            if res.finish_reason == "length":
                reason = f"truncated at max_tokens={cfg.max_tokens}: {reason}"
            return None, reason
        assert parsed.question is not None and parsed.answer is not None
        if normalize_question(parsed.question) in att.state.seen_questions:
            return None, "duplicate_question: asked before in this section"
        pair_id = f"{att.state.section.section_id}:{att.step}"
        return QAPair(pair_id, att.step, parsed.question, parsed.answer), None

    # -- main loop ------------------------------------------------------------------------------
    def run(
        self,
        sections: Sequence[Section],
        committed: Mapping[str, Sequence[StepRecord]] | None = None,
        stop: threading.Event | None = None,
    ) -> GenerationSummary:
        """Grow ``sections`` until each reaches its target (or a cap), resuming after ``committed`` steps.

        ``committed`` maps section id to the records already in the store. ``stop`` ends the run
        gracefully: nothing new is submitted, requests in flight are finished and committed.
        """
        committed = committed or {}
        ids = [s.section_id for s in sections]
        if len(set(ids)) != len(ids):
            raise ValueError("section ids must be unique within one run")
        states = [self._init_state(s, committed.get(s.section_id, ())) for s in sections]
        waiting = deque(st for st in states if st.finish_reason is None)
        cap = self.config.max_in_flight or self.backend.max_in_flight
        in_flight: dict[str, _Attempt] = {}
        counters = Counter[str]()
        failures, rejected = Counter[str](), Counter[str]()
        t0 = time.monotonic()
        last_progress = t0
        stopped = False

        def emit(force: bool = False) -> None:
            nonlocal last_progress
            now = time.monotonic()
            if self.progress is None or (not force and now - last_progress < self.progress_every_s):
                return
            last_progress = now
            self.progress(
                ProgressEvent(
                    sections_done=sum(1 for s in states if s.finish_reason is not None),
                    sections_total=len(states),
                    pairs=sum(len(s.pairs) for s in states),
                    failed_steps=sum(s.failed_steps for s in states),
                    in_flight=len(in_flight),
                    prompt_tokens=counters["prompt_tokens"],
                    completion_tokens=counters["completion_tokens"],
                    elapsed_s=now - t0,
                )
            )

        def commit(record: StepRecord, st: _SectionState) -> None:
            self.sink.commit(record)  # durable first: a crash here leaves the state unadvanced
            self._apply(st, record)
            counters["ok" if record.status == "ok" else "failed"] += 1
            if record.failure_reason:
                failures[record.failure_reason.split(":", 1)[0]] += 1
            self._check_finished(st)

        def launch(st: _SectionState) -> None:
            """Submit the section's next step (committing unfixable overflows on the way)."""
            while st.finish_reason is None:
                prepared = self._prepare(st)
                if isinstance(prepared, StepRecord):
                    commit(prepared, st)
                    continue
                req = self._request(prepared)
                in_flight[req.request_id] = prepared
                self.backend.submit(req)
                return

        def admit() -> None:
            while waiting and len(in_flight) < cap and not stopped:
                launch(waiting.popleft())

        admit()
        while in_flight or (waiting and not stopped):
            if stop is not None and stop.is_set() and not stopped:
                stopped = True
                log.info("stop requested: finishing %d requests in flight", len(in_flight))
            if not in_flight:
                admit()
                continue
            results = self.backend.wait(timeout=self.poll_s)
            now = time.monotonic()
            for res in results:
                att = in_flight.pop(res.request_id, None)
                if att is None:
                    continue  # a late answer to a request we already gave up on
                counters["prompt_tokens"] += res.prompt_tokens
                counters["completion_tokens"] += res.completion_tokens
                att.total_completion_tokens += res.completion_tokens
                self._settle(att, res, in_flight, commit, rejected, launch, stopped)
            for rid, att in list(in_flight.items()):  # a stuck request must not hold its section forever
                if now - att.submitted_mono > self.config.request_timeout_s:
                    del in_flight[rid]
                    timeout = GenerationResult(
                        rid, "", 0, 0, "error", now - att.submitted_mono, error="request timed out"
                    )
                    self._settle(att, timeout, in_flight, commit, rejected, launch, stopped)
            admit()
            emit()
        for st in states:
            if st.finish_reason is None:
                st.finish_reason = "stopped"
        emit(force=True)
        return GenerationSummary(
            sections=tuple(
                SectionResult(
                    section=replace(st.section, pairs=tuple(st.pairs)),
                    steps=st.next_step,
                    failed_steps=st.failed_steps,
                    chunk_tokens=st.chunk_tokens,
                    section_tokens=st.section_tokens,
                    target_tokens=st.target_tokens,
                    finish_reason=st.finish_reason or "stopped",
                )
                for st in states
            ),
            steps_ok=counters["ok"],
            steps_failed=counters["failed"],
            failure_reasons=dict(failures),
            rejected_attempts=dict(rejected),
            prompt_tokens=counters["prompt_tokens"],
            completion_tokens=counters["completion_tokens"],
            elapsed_s=time.monotonic() - t0,
            stopped=stopped,
        )

    def _settle(
        self,
        att: _Attempt,
        res: GenerationResult,
        in_flight: dict[str, _Attempt],
        commit: Callable[[StepRecord, _SectionState], None],
        rejected: Counter[str],
        launch: Callable[[_SectionState], None],
        stopped: bool,
    ) -> None:
        """Commit a finished attempt, or retry it; then move the section on."""
        pair, reason = self._judge(att, res)
        if reason is not None and stopped:
            return  # stopping: leave the step uncommitted so a resume redoes it, rather than a failure
        if reason is not None and att.attempt < self.config.max_retries_per_step and not stopped:
            rejected[reason.split(":", 1)[0]] += 1
            att.errors.append(reason)
            att.attempt += 1
            att.submitted_mono = time.monotonic()
            req = self._request(att)
            in_flight[req.request_id] = att
            self.backend.submit(req)
            return
        record = self._record(att, pair, reason, res.text, res.prompt_tokens, res.completion_tokens, res.seconds)
        commit(record, att.state)
        if not stopped:
            launch(att.state)
