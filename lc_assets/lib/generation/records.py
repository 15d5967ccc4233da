"""What the generation loop hands to its sink, and what a run reports: step records, section results, progress.

A sink receives, per section, ``open_section`` (at admission, with the state after resume), one
``commit`` per finished step in step order, and ``close_section`` when the section stops growing
(target reached or a cap; not when the run is stopped). ``flush`` makes everything handed over
durable. A record holds ids and spans, never rendered messages: the prompt of any step is rebuilt
from them (``lineage.generation.rebuild_prompt``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from lc_assets.lib.generation.validate import EvidenceSpan
from lc_assets.lib.sections import QAPair

FinishReason = Literal["target_reached", "max_steps", "max_failures", "empty_chunk", "stopped"]

#: (paragraph index, char_start, char_end) in the chunk text, for every paragraph a prompt showed
Span = tuple[int, int, int]


@dataclass(frozen=True)
class RejectedAttempt:
    """One attempt the checks refused (retried, or the last one of a failed step): stored, never a pair."""

    attempt: int  # 0 = the first request of the step
    reason: str  # "<code>: <detail>" (validate.REJECTION_REASONS, backend_error, truncated ...)
    raw_text: str  # the model's output as it came


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
    prompt_hash: str  # of the exact messages sent ("" when nothing was sent)
    paragraph_ids: tuple[str, ...]  # shown, in document order
    shown_spans: tuple[Span, ...]  # the same paragraphs as chunk spans: rebuild the prompt from these
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
    n_pairs: int  # pairs of the section after this step
    failed_steps: int  # failed steps of the section after this step
    kind: str | None = None  # the accepted question's kind, classified from its form (validate)
    suggested_kind: str | None = None  # the kind the prompt asked for (None: any)
    long_range: bool = False  # the prompt showed two far-apart windows and asked for evidence from both
    evidence: tuple[EvidenceSpan, ...] = ()  # the accepted pair's quotes as exact chunk spans
    rejected: tuple[RejectedAttempt, ...] = ()  # every refused attempt of the step, in order
    focus_window: int | None = None  # the shown window (document order) the prompt asked about (focus steering)

    @property
    def evidence_spans(self) -> tuple[tuple[int, int], ...]:
        """The accepted pair's quotes as (char_start, char_end) in the chunk."""
        return tuple((e.char_start, e.char_end) for e in self.evidence)

    def to_row(self) -> dict[str, Any]:
        """A flat, JSON-serialisable dict."""
        row = asdict(self)  # evidence and rejected become lists of dicts
        del row["pair"]
        row["pair_id"] = self.pair.pair_id if self.pair else None
        row["question"] = self.pair.question if self.pair else None
        row["answer"] = self.pair.answer if self.pair else None
        for key in ("attempt_errors", "paragraph_ids", "dropped_paragraph_ids", "earlier_pair_ids"):
            row[key] = list(row[key])
        row["shown_spans"] = [list(s) for s in self.shown_spans]
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> StepRecord:
        data = dict(row)
        pair_id, question, answer = data.pop("pair_id", None), data.pop("question", None), data.pop("answer", None)
        data["pair"] = QAPair(pair_id, data["step"], question, answer) if pair_id else None
        for key in ("attempt_errors", "paragraph_ids", "dropped_paragraph_ids", "earlier_pair_ids"):
            data[key] = tuple(data[key])
        data["shown_spans"] = tuple(tuple(s) for s in data["shown_spans"])
        data["evidence"] = tuple(EvidenceSpan(**e) for e in data.get("evidence", ()))
        data["rejected"] = tuple(RejectedAttempt(**r) for r in data.get("rejected", ()))
        return cls(**data)


@dataclass(frozen=True)
class CommittedStep:
    """A step already in the store, as resume needs it: which step, and its pair if it made one."""

    section_id: str
    step: int
    pair: QAPair | None
    evidence_spans: tuple[tuple[int, int], ...] = ()  # the pair's quotes (qa_evidence) as (char_start, char_end)

    @property
    def status(self) -> Literal["ok", "failed"]:
        return "ok" if self.pair is not None else "failed"


@dataclass(frozen=True)
class SectionResult:
    """A section's state as the sink and the summary see it (no text, no pairs: memory stays flat)."""

    section_id: str
    chunk_id: str
    document_id: str
    shard: str
    chunk_tokens: int
    target_tokens: int
    n_paragraphs: int
    steps: int
    n_pairs: int
    failed_steps: int
    section_tokens: int
    finish_reason: FinishReason | None  # None while the section still grows


class StepSink(Protocol):
    """Where finished steps go. `flush` returns once everything handed over is durable."""

    def open_section(self, section: SectionResult) -> None: ...

    def commit(self, record: StepRecord) -> None: ...

    def close_section(self, section: SectionResult) -> None: ...

    def flush(self) -> None: ...


@dataclass
class MemorySink:
    """Keeps records in memory (tests, benchmarks)."""

    records: list[StepRecord] = field(default_factory=list)
    sections: dict[str, SectionResult] = field(default_factory=dict)

    def open_section(self, section: SectionResult) -> None:
        self.sections[section.section_id] = section

    def commit(self, record: StepRecord) -> None:
        self.records.append(record)

    def close_section(self, section: SectionResult) -> None:
        self.sections[section.section_id] = section

    def flush(self) -> None:
        pass

    def by_section(self) -> dict[str, list[StepRecord]]:
        out: dict[str, list[StepRecord]] = {}
        for rec in self.records:
            out.setdefault(rec.section_id, []).append(rec)
        return out


@dataclass(frozen=True)
class ProgressEvent:
    sections_done: int
    sections_total: int | None  # None when the source does not know its length
    sections_in_flight: int
    pairs: int
    failed_steps: int
    in_flight: int
    prompt_tokens: int
    completion_tokens: int
    elapsed_s: float
    # failed steps by refusal code, most frequent first: a run refusing most steps says why while it runs
    failure_reasons: tuple[tuple[str, int], ...] = ()

    @property
    def completion_tokens_per_s(self) -> float:
        return self.completion_tokens / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def __str__(self) -> str:
        total = "?" if self.sections_total is None else self.sections_total
        reasons = ", ".join(f"{code} {n}" for code, n in self.failure_reasons[:3])
        more = ", ..." if len(self.failure_reasons) > 3 else ""
        if reasons and sum(n for _, n in self.failure_reasons) < self.failed_steps:  # resumed: earlier runs' too
            reasons = f"this run: {reasons}"
        steps = self.pairs + self.failed_steps
        yield_ = f" (yield {self.pairs / steps:.0%})" if steps else ""
        return (
            f"sections {self.sections_done}/{total} done ({self.sections_in_flight} growing), pairs {self.pairs}"
            f"{yield_}, failed steps {self.failed_steps}{f' ({reasons}{more})' if reasons else ''}, "
            f"requests in flight {self.in_flight}, {self.completion_tokens_per_s:.1f} output tok/s"
        )


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
    first_request_s: float | None  # run start to the first request sent
    phase_seconds: dict[str, float]  # loop-thread CPU by phase (admit, prompt, submit, wait, judge, record, flush)
    aborted_requests: int = 0  # given up on (timeouts, the end of a stop's grace period)
    sections_stored_counts: int = 0  # prepared with the paragraph counts stored at chunking (not counted again)

    @property
    def completion_tokens_per_s(self) -> float:
        return self.completion_tokens / self.elapsed_s if self.elapsed_s > 0 else 0.0
