"""Test doubles for generation: a scripted in-process backend (no model, no threads)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from lc_assets.lib.generation.backend import GenerationBackend, GenerationRequest, GenerationResult
from lc_assets.lib.tokenizer import TextTokenizer


@dataclass
class Reply:
    """What the double answers to one request."""

    text: str
    delay_s: float = 0.0
    error: str | None = None
    finish_reason: str = "stop"


def unique_reply(request: GenerationRequest) -> Reply:
    """A valid pair whose question is unique per prompt and attempt."""
    # depends on the prompt and attempt only (not the run nonce), so reruns answer identically
    key = "/".join(request.request_id.split("/")[:3])
    digest = hashlib.sha1(json.dumps(request.messages).encode() + key.encode()).hexdigest()[:10]
    return Reply(json.dumps({"question": f"What does passage {digest} state?", "answer": f"It states {digest}."}))


@dataclass
class ScriptedBackend(GenerationBackend):
    """Answers with `script(request)` after the reply's delay; counts tokens with a real tokenizer."""

    tokenizer: TextTokenizer
    script: Callable[[GenerationRequest], Reply] = unique_reply
    window: int = 8192
    in_flight_cap: int = 4
    name: str = "scripted"
    model: str = "scripted-double"
    template_counts: bool = False  # count prompts exactly through the tokenizer's chat template (as vLLM does)
    submitted: list[GenerationRequest] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    events: list[tuple[str, str]] = field(default_factory=list)  # ("submit" | "abort", request id), in order
    max_seen_in_flight: int = 0
    _pending: list[tuple[float, GenerationResult]] = field(default_factory=list)

    @property
    def context_window(self) -> int:
        return self.window

    @property
    def max_in_flight(self) -> int:
        return self.in_flight_cap

    def count_prompt_tokens(self, messages: Sequence[dict[str, str]]) -> int:
        if self.template_counts:
            rendered = self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True)
            return self.tokenizer.count(rendered)
        return sum(self.tokenizer.count(m["content"]) + 4 for m in messages) + 1

    def count_text_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.tokenizer.count_batch(list(texts))

    def submit(self, request: GenerationRequest) -> None:
        self.submitted.append(request)
        self.events.append(("submit", request.request_id))
        reply = self.script(request)
        prompt_tokens = self.count_prompt_tokens(request.messages)
        result = GenerationResult(
            request.request_id,
            "" if reply.error else reply.text,
            prompt_tokens,
            0 if reply.error else max(1, len(reply.text) // 4),
            "error" if reply.error else reply.finish_reason,
            reply.delay_s,
            error=reply.error,
        )
        self._pending.append((time.monotonic() + reply.delay_s, result))
        self.max_seen_in_flight = max(self.max_seen_in_flight, len(self._pending))

    def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)
        self.events.append(("abort", request_id))
        self._pending = [(t, r) for t, r in self._pending if r.request_id != request_id]

    def wait(self, timeout: float | None = None) -> list[GenerationResult]:
        deadline = time.monotonic() + (timeout if timeout is not None else 3600)
        while True:
            now = time.monotonic()
            ready = [r for t, r in self._pending if t <= now]
            if ready:
                self._pending = [(t, r) for t, r in self._pending if t > now]
                return ready
            if not self._pending or now >= deadline:
                return []
            time.sleep(max(0.0, min(min(t for t, _ in self._pending), deadline) - now))
