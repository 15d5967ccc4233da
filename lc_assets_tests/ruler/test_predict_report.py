"""Predictions through a backend (in flight, saved in groups, failures) and how averages state their coverage."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from lc_assets.lib.generation.backend import (
    BackendUnavailableError,
    GenerationBackend,
    GenerationRequest,
    GenerationResult,
)
from lc_assets.lib.ruler import ALL_TASKS, RulerSample
from lc_assets.lib.ruler.predict import predict_with_backend
from lc_assets.lib.ruler.report import score_table_markdown, task_coverage


class Echo(GenerationBackend):
    """Answers each raw prompt with its last word; fails request ids listed in `fail`; dies after `die_after`."""

    name, model = "echo", "echo"

    def __init__(self, fail: Sequence[str] = (), die_after: int | None = None, in_flight: int = 3) -> None:
        self.fail, self.die_after, self.in_flight = set(fail), die_after, in_flight
        self.pending: list[GenerationRequest] = []
        self.sent: list[str] = []
        self.most_outstanding = 0

    @property
    def context_window(self) -> int:
        return 1 << 16

    @property
    def max_in_flight(self) -> int:
        return self.in_flight

    def count_prompt_tokens(self, messages: Sequence[dict[str, str]]) -> int:
        return 0

    def submit(self, request: GenerationRequest) -> None:
        self.pending.append(request)
        self.sent.append(request.request_id)
        self.most_outstanding = max(self.most_outstanding, len(self.pending))

    def wait(self, timeout: float | None = None) -> list[GenerationResult]:
        if self.die_after is not None and len(self.sent) > self.die_after:
            raise BackendUnavailableError("echo server went down")
        req = self.pending.pop(0)  # one at a time: progress and saving see many small steps
        if req.request_id in self.fail:
            return [GenerationResult(req.request_id, "", 0, 0, "error", 0.0, error="scripted failure")]
        return [GenerationResult(req.request_id, (req.prompt or "").split()[-1], 1, 1, "stop", 0.0)]


def _samples(n: int) -> list[RulerSample]:
    return [
        RulerSample(
            index=i, task="niah_single_1", max_seq_length=1024, input=f"find w{i}", answer_prefix=f" answer w{i}",
            outputs=[f"w{i}"], length=10, tokens_to_generate=128, num_units=1,
        )
        for i in range(n)
    ]  # fmt: skip


def _run(backend: Echo, samples: list[RulerSample], **kw):
    saved: list[list[str]] = []
    ticks: list[int] = []
    failures = predict_with_backend(
        backend,
        samples,
        lambda s: f"k{s.index}",
        lambda results: saved.append([f"{r.request_id}={r.text}" for r in results]),
        progress=ticks.append,
        **kw,
    )
    return failures, saved, ticks


def test_predictions_keep_the_backend_full_and_are_saved_in_groups():
    backend = Echo(in_flight=3)
    failures, saved, ticks = _run(backend, _samples(10), save_every=4)
    assert failures == []
    assert backend.most_outstanding == 3  # the backend's own in-flight limit, kept full
    assert [len(group) for group in saved] == [4, 4, 2]
    assert [x for group in saved for x in group] == [f"k{i}=w{i}" for i in range(10)]  # greedy raw prompt answered
    assert sum(ticks) == 10


def test_a_failed_request_stops_new_ones_and_keeps_what_finished():
    backend = Echo(fail=["k2"], in_flight=2)
    failures, saved, _ = _run(backend, _samples(10), save_every=100)
    assert [f.request_id for f in failures] == ["k2"]
    assert len(backend.sent) < 10  # nothing new after the failure
    assert {x.split("=")[0] for group in saved for x in group} == set(backend.sent) - {"k2"}


def test_a_dead_backend_still_saves_the_finished_predictions():
    backend = Echo(die_after=5, in_flight=1)
    saved: list[list[str]] = []
    with pytest.raises(BackendUnavailableError):
        predict_with_backend(
            backend, _samples(10), lambda s: f"k{s.index}", lambda rs: saved.append([r.request_id for r in rs])
        )
    assert [x for group in saved for x in group] == ["k0", "k1", "k2", "k3", "k4"]


def test_coverage_names_missing_tasks_and_reasons():
    scores = {(t, 4096): 80.0 for t in ALL_TASKS if not t.startswith("qa")}
    offline = {("qa_1", 4096): "SQuAD v2 is not available offline", ("qa_2", 4096): "SQuAD v2 is not available offline"}
    assert task_coverage(scores, offline) == "11 of 13 (qa_1, qa_2 not run: SQuAD v2 is not available offline)"
    assert task_coverage({(t, 4096): 1.0 for t in ALL_TASKS}) == "13 of 13"
    # a task too long for the short length: the averages cover different task counts per length
    scores.update({(t, 1024): 50.0 for t in ALL_TASKS if t not in ("vt", "qa_1", "qa_2")})
    text = task_coverage(scores, {**offline, ("vt", 1024): "the haystack does not fit"})
    assert text.startswith("11 of 13 at 4K, 10 of 13 at 1K (")
    assert "vt not run at 1K: the haystack does not fit" in text and "qa_1, qa_2 not run" in text
    table = score_table_markdown(scores, not_run=offline)
    assert "| tasks averaged (of 13) | 10 | 11 |" in table and "tasks averaged: 11 of 13 at 4K" in table
