"""Run a model on RULER samples and score stored predictions."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from lc_assets.lib.ruler.base import RulerSample
from lc_assets.lib.ruler.scoring import TaskScore, score_task
from lc_assets.lib.ruler.tasks import get_task

#: ``predict(prompts, max_new_tokens) -> completions``, one completion per prompt, greedy.
PredictFn = Callable[[list[str], int], list[str]]


def build_prompt(sample: RulerSample) -> str:
    """The exact text RULER sends: ``input + answer_prefix`` (the model wrapper is already in ``input``)."""
    return sample.input + sample.answer_prefix


def max_new_tokens(task: str) -> int:
    """RULER's generation cap for a task (niah 128, vt 30, cwe 120, fwe 50, qa 32)."""
    return get_task(task).tokens_to_generate


@dataclass(frozen=True)
class Prediction:
    """One stored model answer for one sample."""

    task: str
    max_seq_length: int
    index: int
    prediction: str


def run_predictions(
    samples: Sequence[RulerSample], predict: PredictFn, batch_size: int = 8, max_new_tokens_override: int | None = None
) -> list[Prediction]:
    """Call ``predict`` on samples grouped by task (one generation cap per call), in sample order."""
    out: list[Prediction] = []
    for start in range(0, len(samples), batch_size):
        batch = samples[start : start + batch_size]
        by_cap: dict[int, list[RulerSample]] = {}
        for s in batch:
            by_cap.setdefault(max_new_tokens_override or max_new_tokens(s.task), []).append(s)
        answers: dict[int, str] = {}
        for cap, group in by_cap.items():
            completions = predict([build_prompt(s) for s in group], cap)
            if len(completions) != len(group):
                raise ValueError(f"predict returned {len(completions)} completions for {len(group)} prompts")
            answers.update({id(s): c for s, c in zip(group, completions, strict=True)})
        out.extend(Prediction(s.task, s.max_seq_length, s.index, answers[id(s)]) for s in batch)
    return out


def score_predictions(
    samples: Iterable[RulerSample], predictions: Iterable[Prediction] | Mapping[tuple[str, int, int], str]
) -> dict[tuple[str, int], TaskScore]:
    """Score stored predictions against the samples' gold outputs, per (task, length).

    ``predictions`` are ``Prediction`` records or a {(task, length, index): text} mapping. A sample
    without a prediction scores as an empty answer and is counted as a null (RULER would silently
    leave the missing line out of the denominator).
    """
    if not isinstance(predictions, Mapping):
        predictions = {(p.task, p.max_seq_length, p.index): p.prediction for p in predictions}
    grouped: dict[tuple[str, int], tuple[list[str], list[list[str]]]] = {}
    for s in samples:
        preds, refs = grouped.setdefault((s.task, s.max_seq_length), ([], []))
        preds.append(predictions.get((s.task, s.max_seq_length, s.index), ""))
        refs.append(list(s.outputs))
    return {key: score_task(key[0], key[1], preds, refs) for key, (preds, refs) in sorted(grouped.items())}
