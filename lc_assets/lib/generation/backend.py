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


#: texts are counted in batches joined by this separator (llama.cpp's /tokenize: one call per batch, not per text)
JOIN_SEPARATOR = "\n\n"
#: characters of text per joined /tokenize call
JOIN_BATCH_CHARS = 32_000


def join_batches(texts: Sequence[str], batch_chars: int = JOIN_BATCH_CHARS) -> list[list[int]]:
    """Indices of the non-empty `texts` grouped into batches of about `batch_chars` characters (in order)."""
    batches: list[list[int]] = []
    size = batch_chars
    for i, text in enumerate(texts):
        if not text:
            continue
        if size + len(text) > batch_chars:
            batches.append([])
            size = 0
        batches[-1].append(i)
        size += len(text) + len(JOIN_SEPARATOR)
    return batches


def counts_from_pieces(texts: Sequence[str], pieces: Sequence[str | Sequence[int]]) -> list[int]:
    """Tokens of each text from one tokenization of ``JOIN_SEPARATOR.join(texts)``: the pieces llama.cpp's
    /tokenize returns with ``with_pieces`` (a string, or the piece's bytes when it is not valid UTF-8 alone).

    A text counts every token that overlaps its bytes, so a token merged across a join counts for both sides;
    tokens of the separators alone count for none. With the pre-tokenizers of BPE models (Llama-3, Qwen2,
    SmolLM2) no token crosses a blank line and the counts equal the texts' own counts; otherwise they can
    differ by a token at a join, which the prompt guard's per-paragraph slack covers.
    """
    sep = len(JOIN_SEPARATOR.encode())
    ends: list[int] = []  # byte end of each text in the joined string (starts: previous end + separator)
    pos = 0
    for i, text in enumerate(texts):
        pos += (sep if i else 0) + len(text.encode())
        ends.append(pos)
    counts = [0] * len(texts)
    i, start = 0, 0  # current text and its byte start
    offset = 0
    for piece in pieces:
        size = len(piece.encode()) if isinstance(piece, str) else len(piece)
        first, last = offset, offset + size  # the token's bytes [first, last)
        offset = last
        while i < len(texts) and first >= ends[i]:
            i += 1
            start = ends[i - 1] + sep
        j, j_start = i, start
        while j < len(texts) and j_start < last:  # every text the token overlaps
            if size and first < ends[j] and j_start < ends[j]:
                counts[j] += 1
            j_start = ends[j] + sep
            j += 1
    return counts


def scatter_counts(n_texts: int, batches: Sequence[list[int]], counts: Sequence[Sequence[int]]) -> list[int]:
    """Per-text counts from the per-batch counts of `join_batches` (texts in no batch, the empty ones, count 0)."""
    out = [0] * n_texts
    for batch, batch_counts in zip(batches, counts, strict=True):
        for i, n in zip(batch, batch_counts, strict=True):
            out[i] = n
    return out


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

    @property
    def counting_fingerprint(self) -> str | None:
        """`lib.tokenizer.counting_fingerprint` of the tokenizer `count_text_tokens` counts with, when it is a
        local Hugging Face tokenizer: paragraph counts stored under the same fingerprint are used instead of
        counting again. None (the default): unknown, everything is counted."""
        return None

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
