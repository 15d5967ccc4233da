"""Run a model on RULER samples and score stored predictions."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from lc_assets.lib.generation.backend import GenerationBackend, GenerationRequest, GenerationResult
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


def predict_with_backend(
    backend: GenerationBackend,
    samples: Sequence[RulerSample],
    request_id: Callable[[RulerSample], str],
    save: Callable[[list[GenerationResult]], None],
    *,
    max_new_tokens_override: int | None = None,
    progress: Callable[[int], None] | None = None,
    save_every: int = 32,
    save_every_s: float = 10.0,
    poll_s: float = 5.0,
) -> list[GenerationResult]:
    """Greedy predictions for `samples` with up to `backend.max_in_flight` requests outstanding.

    Finished predictions go to `save` in groups (every `save_every` results or `save_every_s` seconds, and
    at the end, also when the backend fails), so a stopped run keeps them. `progress(n)` hears of every n
    newly finished samples, and of a heartbeat `progress(0)` at least every `poll_s` seconds. After the first
    failed request nothing new is sent; the failures are returned (the caller reports them; a re-run resumes).
    """
    by_id = {request_id(s): s for s in samples}
    if len(by_id) != len(samples):
        raise ValueError("request ids of the samples are not unique")
    todo = list(by_id.items())[::-1]  # popped from the end: sample order
    in_flight: set[str] = set()
    failures: list[GenerationResult] = []
    batch: list[GenerationResult] = []
    last_save = time.monotonic()
    try:
        while in_flight or (todo and not failures):
            while todo and not failures and len(in_flight) < backend.max_in_flight:
                rid, sample = todo.pop()
                backend.submit(
                    GenerationRequest(
                        request_id=rid,
                        messages=(),
                        prompt=build_prompt(sample),
                        max_tokens=max_new_tokens_override or max_new_tokens(sample.task),
                        temperature=0.0,  # RULER decodes greedily
                    )
                )
                in_flight.add(rid)
            results = [r for r in backend.wait(timeout=poll_s) if r.request_id in in_flight]
            for res in results:
                in_flight.discard(res.request_id)
                (failures if res.error is not None else batch).append(res)
            if batch and (len(batch) >= save_every or time.monotonic() - last_save >= save_every_s):
                save(batch)
                batch, last_save = [], time.monotonic()
            if progress is not None:
                progress(len(results))
    finally:
        if batch:
            save(batch)  # finished predictions are kept even when the backend went down
    return failures


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
