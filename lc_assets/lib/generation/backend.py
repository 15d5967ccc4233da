"""The one interface every generation backend implements (local, openai, vllm).

Backends keep many requests in flight; the scheduler submits requests as soon as
a section's previous step is committed and collects results as they finish, so a
slow request never holds back the others.
"""

from __future__ import annotations

import abc
import queue
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str
    messages: tuple[dict[str, str], ...]  # chat messages, rendered by the backend's chat template
    max_tokens: int
    temperature: float = 0.0
    json_schema: dict[str, Any] | None = None  # constrain output (structured outputs / grammar)
    seed: int | None = None
    #: a raw completion prompt sent as is, without the chat template (RULER's prompts carry their own
    #: model template and pre-filled answer prefix); when set, `messages` is ignored
    prompt: str | None = None


@dataclass(frozen=True)
class GenerationResult:
    request_id: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" | "length" | "error"
    seconds: float
    error: str | None = None  # set when the backend failed this request (text is then "")
    extra: dict[str, Any] = field(default_factory=dict)


def take_ready(source: queue.Queue[T], timeout: float | None) -> list[T]:
    """Wait up to `timeout` s (None: forever) for one item, then take every item already queued; [] on timeout."""
    try:
        items = [source.get(timeout=timeout)]
    except queue.Empty:
        return []
    while True:
        try:
            items.append(source.get_nowait())
        except queue.Empty:
            return items


class BackendUnavailableError(RuntimeError):
    """The backend cannot serve at all (server down, engine failed to start); names the endpoint."""


class GenerationBackend(abc.ABC):
    """Continuous-batching generation: submit requests, wait for whichever finish first."""

    name: str = "abstract"
    model: str = ""

    @property
    @abc.abstractmethod
    def context_window(self) -> int:
        """Max prompt + completion tokens the model accepts."""

    @property
    def max_in_flight(self) -> int:
        """How many requests the backend wants outstanding to keep its batch full."""
        return 8

    @abc.abstractmethod
    def count_prompt_tokens(self, messages: Sequence[dict[str, str]]) -> int:
        """Exact prompt length in the generator's tokens, chat template applied."""

    def count_text_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token counts of plain texts in the generator's vocabulary (masking budgets).

        Default: derived from `count_prompt_tokens` (a user message minus an empty one), exact up to
        merges at the template boundary, one template render per text. Backends with direct tokenizer
        access override it with one batched call: admission counts every paragraph of a chunk (~2,600 for
        100k tokens) through it, on its own thread while the loop thread counts prompts and submits: both
        counting methods must be safe to call concurrently (a Rust tokenizer used without changing its
        truncation or padding is; so is an HTTP client).
        """
        base = self.count_prompt_tokens([{"role": "user", "content": ""}])
        return [max(0, self.count_prompt_tokens([{"role": "user", "content": t}]) - base) for t in texts]

    @abc.abstractmethod
    def submit(self, request: GenerationRequest) -> None:
        """Queue one request; returns at once."""

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> list[GenerationResult]:
        """Block until at least one request finished (or timeout); return all finished ones."""

    def abort(self, request_id: str) -> None:  # noqa: B027 - optional hook
        """Stop generating a request the caller gave up on (frees its batch slot); late results are dropped."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the engine / connections."""

    def generate_batch(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Run a batch to completion; results in request order. Subclasses may use a native batched call."""
        for req in requests:
            self.submit(req)
        done: dict[str, GenerationResult] = {}
        while len(done) < len(requests):
            for res in self.wait():
                done[res.request_id] = res
        return [done[r.request_id] for r in requests]

    def __enter__(self) -> GenerationBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
