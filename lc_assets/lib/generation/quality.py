"""Quality of generated QA data as numbers: per run, shard or section, from step outcomes.

Metrics (all plain values, ready for DuckDB rows and Dagster metadata):
- yield: accepted steps / attempted steps; rejections by reason (failed steps and retried attempts);
- evidence depth: where in its chunk each accepted pair's evidence lies, as a histogram over chunk
  deciles, and its coverage = least-used decile / most-used decile (1.0 = even);
- near-duplicate share: accepted questions within ROUGE-L >= 0.7 of an earlier question of their
  section (validation rejects these, so a non-zero share means a check was off or bypassed);
- evidence found verbatim: accepted pairs whose every quote was found exactly (normalised);
- empty answers, question-kind mix, question/answer lengths;
- generated tokens per 1M packed tokens (all attempts' completion tokens against section tokens).

:class:`QualityThresholds` turns them into pass/WARN/ERROR verdicts for asset checks; the defaults
are the targets of issue 10 (>= 95% verbatim evidence, 0 empty answers, < 3% near-duplicates,
coverage >= 0.6 on runs with >= 200 pairs).
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lc_assets.lib.generation.validate import QuestionIndex, ValidatedQA, words
from lc_assets.lib.stepconfig import StepConfig

N_DECILES = 10


@dataclass(frozen=True)
class EvidenceRef:
    """One accepted quote's chunk-relative span (``qa_evidence`` row) and how it was matched."""

    char_start: int
    char_end: int
    score: float = 100.0  # 100 = found verbatim (normalised whitespace/case)
    origin: str = "model"  # or "completed": a shown sentence the validator added to support the answer


@dataclass(frozen=True)
class StepOutcome:
    """What quality needs of one finished step (from a scheduler record or a lineage row)."""

    section_id: str
    step: int
    ok: bool
    failure: str | None = None  # "<code>: <detail>" as stored; the code is what is counted
    attempt_failures: tuple[str, ...] = ()  # rejected attempts before the final one (retries)
    question: str | None = None
    answer: str | None = None
    kind: str | None = None
    evidence: tuple[EvidenceRef, ...] = ()
    chunk_chars: int | None = None  # length of the section's chunk text (for depth)
    completion_tokens: int = 0  # over all attempts
    shard: str | None = None


def outcome_of(
    section_id: str,
    step: int,
    verdict: ValidatedQA,
    *,
    attempt_failures: Sequence[str] = (),
    chunk_chars: int | None = None,
    completion_tokens: int = 0,
    shard: str | None = None,
) -> StepOutcome:
    """The outcome of a step whose final attempt got ``verdict`` (the scheduler's natural input)."""
    return StepOutcome(
        section_id=section_id,
        step=step,
        ok=verdict.ok,
        failure=verdict.failure,
        attempt_failures=tuple(attempt_failures),
        question=verdict.question if verdict.ok else None,
        answer=verdict.answer if verdict.ok else None,
        kind=verdict.kind,
        evidence=tuple(EvidenceRef(s.char_start, s.char_end, s.score, s.origin) for s in verdict.spans)
        if verdict.ok
        else (),
        chunk_chars=chunk_chars,
        completion_tokens=completion_tokens,
        shard=shard,
    )


def reason_code(failure: str | None) -> str | None:
    """The stable code of a stored failure string.

    ``"evidence_not_found: quote 0 ..."`` -> ``evidence_not_found``; the scheduler's
    ``"truncated at max_tokens=256: invalid_json: ..."`` -> ``truncated``.
    """
    if not failure:
        return None
    head = failure.split(":", 1)[0].strip()
    if head.startswith("truncated"):
        return "truncated"
    return head.split()[0] if head else "unknown"


def decile_histogram(spans: Iterable[tuple[int, int]], chunk_chars: int) -> list[int]:
    """How many spans have their middle in each tenth of a chunk of ``chunk_chars`` characters."""
    hist = [0] * N_DECILES
    if chunk_chars <= 0:
        return hist
    for start, end in spans:
        mid = (start + end) / 2
        hist[min(N_DECILES - 1, max(0, int(N_DECILES * mid / chunk_chars)))] += 1
    return hist


def coverage(hist: Sequence[int]) -> float:
    """Least-used bin / most-used bin (0.0 for an empty histogram)."""
    top = max(hist, default=0)
    return min(hist) / top if top else 0.0


def near_duplicate_flags(questions: Sequence[str], threshold: float = 0.7) -> list[bool]:
    """For questions in step order: is each within ROUGE-L ``threshold`` of an earlier one?"""
    index = QuestionIndex()
    flags = []
    for q in questions:
        flags.append(index.nearest(q, threshold)[1] is not None)
        index.add(q)
    return flags


def _lengths(values: Sequence[int]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "p50": 0.0, "p90": 0.0, "max": 0.0}
    ordered = sorted(values)
    return {
        "mean": round(statistics.fmean(ordered), 1),
        "p50": float(ordered[len(ordered) // 2]),
        "p90": float(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]),
        "max": float(ordered[-1]),
    }


@dataclass(frozen=True)
class QualityReport:
    """The metrics of one set of steps (a run, a shard, a section)."""

    steps: int
    accepted: int
    yield_: float  # accepted / steps
    attempts: int  # steps + retried attempts
    rejections_by_reason: dict[str, int]  # failed steps, by code
    rejected_attempts_by_reason: dict[str, int]  # retried attempts, by code
    depth_histogram: list[int]  # accepted quotes per chunk decile
    depth_coverage: float
    pairs_with_depth: int
    near_duplicate_share: float
    evidence_verbatim_share: float  # accepted pairs whose every quote was found exactly
    completed_evidence_share: float  # accepted pairs whose evidence the validator had to complete
    empty_answers: int
    kind_mix: dict[str, int]
    max_kind_share: float
    question_chars: dict[str, float]
    answer_chars: dict[str, float]
    answer_words_mean: float
    completion_tokens: int
    generated_per_1m_packed: float | None  # completion tokens per 1,048,576 packed (section) tokens
    sections: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def metric(self, name: str) -> float:
        value = getattr(self, name)
        if not isinstance(value, int | float):
            raise KeyError(f"{name!r} is not a numeric quality metric")
        return float(value)

    def to_metadata(self) -> dict[str, Any]:
        """Plain JSON-able values (Dagster metadata, DuckDB JSON column)."""
        return asdict(self)


def compute_quality(
    outcomes: Sequence[StepOutcome],
    *,
    section_tokens: int | None = None,
    duplicate_threshold: float = 0.7,
) -> QualityReport:
    """Metrics over ``outcomes``. ``section_tokens``: packed tokens they belong to (chunk + pairs, target tokens)."""
    steps = len(outcomes)
    ok = [o for o in outcomes if o.ok]
    rejections = Counter(reason_code(o.failure) or "unknown" for o in outcomes if not o.ok)
    retried = Counter(reason_code(f) or "unknown" for o in outcomes for f in o.attempt_failures)
    spans_hist = [0] * N_DECILES
    with_depth = 0
    for o in ok:
        if o.chunk_chars and o.evidence:
            with_depth += 1
            for bin_, n in enumerate(decile_histogram(((e.char_start, e.char_end) for e in o.evidence), o.chunk_chars)):
                spans_hist[bin_] += n
    by_section: dict[str, list[StepOutcome]] = defaultdict(list)
    for o in ok:
        by_section[o.section_id].append(o)
    dups = 0
    for items in by_section.values():
        items.sort(key=lambda o: o.step)
        dups += sum(near_duplicate_flags([o.question or "" for o in items], duplicate_threshold))
    verbatim = sum(1 for o in ok if o.evidence and all(e.score >= 100.0 for e in o.evidence))
    completed = sum(1 for o in ok if any(e.origin == "completed" for e in o.evidence))
    empty = sum(1 for o in ok if not (o.answer or "").strip() or not any(ch.isalnum() for ch in o.answer or ""))
    kinds = Counter(o.kind or "unclassified" for o in ok)
    completion = sum(o.completion_tokens for o in outcomes)
    return QualityReport(
        steps=steps,
        accepted=len(ok),
        yield_=round(len(ok) / steps, 4) if steps else 0.0,
        attempts=steps + sum(retried.values()),
        rejections_by_reason=dict(rejections.most_common()),
        rejected_attempts_by_reason=dict(retried.most_common()),
        depth_histogram=spans_hist,
        depth_coverage=round(coverage(spans_hist), 4),
        pairs_with_depth=with_depth,
        near_duplicate_share=round(dups / len(ok), 4) if ok else 0.0,
        evidence_verbatim_share=round(verbatim / len(ok), 4) if ok else 0.0,
        completed_evidence_share=round(completed / len(ok), 4) if ok else 0.0,
        empty_answers=empty,
        kind_mix=dict(kinds.most_common()),
        max_kind_share=round(max(kinds.values()) / len(ok), 4) if ok else 0.0,
        question_chars=_lengths([len(o.question or "") for o in ok]),
        answer_chars=_lengths([len(o.answer or "") for o in ok]),
        answer_words_mean=round(statistics.fmean([len(words(o.answer or "")) for o in ok]), 1) if ok else 0.0,
        completion_tokens=completion,
        generated_per_1m_packed=round(completion * 1_048_576 / section_tokens, 1) if section_tokens else None,
        sections=len({o.section_id for o in outcomes}),
    )


def quality_by(
    outcomes: Sequence[StepOutcome], key: Callable[[StepOutcome], str], **kw: Any
) -> dict[str, QualityReport]:
    """One report per group (e.g. ``key=lambda o: o.section_id`` or ``o.shard``)."""
    groups: dict[str, list[StepOutcome]] = defaultdict(list)
    for o in outcomes:
        groups[key(o)].append(o)
    return {k: compute_quality(v, **kw) for k, v in sorted(groups.items())}


# -- thresholds -----------------------------------------------------------------------------------

Severity = Literal["WARN", "ERROR"]


class Threshold(BaseModel):
    """One rule: ``metric op value``, checked only when the report has at least ``min_pairs`` accepted pairs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: str = Field(description="A numeric field of QualityReport, e.g. depth_coverage.")
    op: Literal[">=", ">", "<=", "<"]
    value: float
    severity: Severity = "ERROR"
    min_pairs: int = Field(0, ge=0, description="Below this many accepted pairs the rule is skipped (too few).")
    description: str = ""


DEFAULT_THRESHOLDS: tuple[Threshold, ...] = (
    Threshold(
        metric="evidence_verbatim_share",
        op=">=",
        value=0.95,
        min_pairs=1,
        description="accepted pairs whose evidence is found verbatim in the shown text",
    ),
    Threshold(metric="empty_answers", op="<=", value=0, description="accepted pairs with an empty answer"),
    Threshold(
        metric="near_duplicate_share",
        op="<",
        value=0.03,
        min_pairs=1,
        description="accepted questions within ROUGE-L 0.7 of an earlier one of their section",
    ),
    Threshold(
        metric="depth_coverage",
        op=">=",
        value=0.6,
        min_pairs=200,
        description="least-used / most-used chunk decile of the evidence",
    ),
    Threshold(metric="yield_", op=">=", value=0.3, severity="WARN", min_pairs=1, description="accepted / attempted"),
    Threshold(
        metric="max_kind_share",
        op="<=",
        value=0.6,
        severity="WARN",
        min_pairs=20,
        description="share of the most common question kind (one template must not dominate)",
    ),
)


class QualityThresholds(StepConfig):
    """The rules asset checks apply to a QualityReport (configurable; hashed like every step config)."""

    rules: tuple[Threshold, ...] = DEFAULT_THRESHOLDS


@dataclass(frozen=True)
class ThresholdResult:
    metric: str
    passed: bool
    skipped: bool
    severity: Severity
    value: float
    rule: str  # e.g. "depth_coverage >= 0.6"
    description: str


_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
}


def evaluate_thresholds(report: QualityReport, thresholds: QualityThresholds | None = None) -> list[ThresholdResult]:
    """Each rule's verdict; a skipped rule (too few pairs) passes and says so."""
    out = []
    for rule in (thresholds or QualityThresholds()).rules:
        value = report.metric(rule.metric)
        skipped = report.accepted < rule.min_pairs
        passed = skipped or _OPS[rule.op](value, rule.value)
        text = f"{rule.metric} {rule.op} {rule.value:g}" + (f" (>= {rule.min_pairs} pairs)" if rule.min_pairs else "")
        out.append(ThresholdResult(rule.metric, passed, skipped, rule.severity, value, text, rule.description))
    return out
