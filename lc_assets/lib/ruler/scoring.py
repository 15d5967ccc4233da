"""RULER scoring, exactly as NVIDIA's ``scripts/eval`` (post-processing, metrics), plus the README aggregates."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lc_assets.lib.ruler.tasks import get_task

#: Effective-length threshold: Llama2-7B's average at 4K in the RULER paper.
EFFECTIVE_LENGTH_THRESHOLD = 85.6

_CONTROL_CHARS = re.compile(r"[\x00-\x1f]")


def postprocess_pred(prediction: str) -> str:
    """RULER's only normalisation: strip, control chars -> newline, strip again (no lower-casing, no cut)."""
    return _CONTROL_CHARS.sub("\n", prediction.strip()).strip()


def _check(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    if not predictions:
        raise ValueError("no predictions to score")
    # RULER divides by len(refs) / takes max() over refs: an empty list crashes it; we say why instead.
    for i, refs in enumerate(references):
        if len(refs) == 0:
            raise ValueError(f"sample {i} has an empty reference list")


def string_match_all(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Mean over samples of the fraction of references found (case-insensitive substring), x100, 2 decimals."""
    _check(predictions, references)
    total = 0.0
    for pred, refs in zip(predictions, references, strict=True):
        low = pred.lower()
        total += sum(1.0 if r.lower() in low else 0.0 for r in refs) / len(refs)
    return round(total / len(predictions) * 100, 2)


def string_match_part(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Fraction of samples where any reference is found (case-insensitive substring), x100, 2 decimals."""
    _check(predictions, references)
    total = 0.0
    for pred, refs in zip(predictions, references, strict=True):
        low = pred.lower()
        total += max(1.0 if r.lower() in low else 0.0 for r in refs)
    return round(total / len(predictions) * 100, 2)


METRICS = {"string_match_all": string_match_all, "string_match_part": string_match_part}


@dataclass(frozen=True)
class TaskScore:
    """One task at one length: RULER's score (0-100) and its null count (empty predictions)."""

    task: str
    max_seq_length: int
    score: float
    nulls: int
    num_samples: int
    metric: str


def score_task(
    task: str, max_seq_length: int, predictions: Sequence[str], references: Sequence[Sequence[str]]
) -> TaskScore:
    """Score raw predictions for one task as RULER's ``evaluate.py`` does (post-process, then the task metric)."""
    spec = get_task(task)
    preds = [postprocess_pred(p) for p in predictions]
    if references and references[0] and references[0][0] is None:  # RULER: no references -> 0.0
        score = 0.0
    else:
        score = METRICS[spec.metric](preds, references)
    return TaskScore(
        task=task,
        max_seq_length=max_seq_length,
        score=score,
        nulls=sum(1 for p in preds if not p),
        num_samples=len(preds),
        metric=spec.metric,
    )


# -- aggregates (RULER README / paper) --------------------------------------------------------


def average_per_length(scores: Mapping[tuple[str, int], float]) -> dict[int, float]:
    """Mean task score per length, from a {(task, length): score} mapping (lengths ascending)."""
    by_length: dict[int, list[float]] = {}
    for (_task, length), score in scores.items():
        by_length.setdefault(length, []).append(score)
    return {length: sum(v) / len(v) for length, v in sorted(by_length.items())}


def average(per_length: Mapping[int, float]) -> float:
    """Plain mean over lengths (the README's "Avg.")."""
    if not per_length:
        raise ValueError("no lengths to average")
    return sum(per_length.values()) / len(per_length)


def weighted_average(per_length: Mapping[int, float], increasing: bool = True) -> float:
    """wAvg(inc) weights the shortest length 1 .. the longest n; wAvg(dec) the reverse (README)."""
    if not per_length:
        raise ValueError("no lengths to average")
    values = [per_length[k] for k in sorted(per_length)]
    weights = list(range(1, len(values) + 1))
    if not increasing:
        weights.reverse()
    return sum(w * v for w, v in zip(weights, values, strict=True)) / sum(weights)


def effective_length(
    per_length: Mapping[int, float], threshold: float = EFFECTIVE_LENGTH_THRESHOLD, contiguous: bool = False
) -> int | None:
    """Longest length whose average score exceeds ``threshold`` (None if none does).

    With ``contiguous=True`` every shorter length must also pass (a stricter reading than the README's).
    """
    best = None
    for length in sorted(per_length):
        if per_length[length] > threshold:
            best = length
        elif contiguous:
            break
    return best


@dataclass(frozen=True)
class Summary:
    """The README row: per-length averages and the three aggregates, plus the effective length."""

    per_length: dict[int, float]
    avg: float
    wavg_inc: float
    wavg_dec: float
    effective_length: int | None
    threshold: float


def summarize(scores: Mapping[tuple[str, int], float], threshold: float = EFFECTIVE_LENGTH_THRESHOLD) -> Summary:
    """Aggregate a {(task, length): score} table the way the RULER README reports it."""
    per_length = average_per_length(scores)
    return Summary(
        per_length=per_length,
        avg=average(per_length),
        wavg_inc=weighted_average(per_length, increasing=True),
        wavg_dec=weighted_average(per_length, increasing=False),
        effective_length=effective_length(per_length, threshold),
        threshold=threshold,
    )
