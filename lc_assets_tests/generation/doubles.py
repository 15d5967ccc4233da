"""Test doubles for generation: a scripted in-process backend (no model, no threads)."""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from lc_assets.lib.generation.backend import GenerationBackend, GenerationRequest, GenerationResult
from lc_assets.lib.generation.grounding_checks import _HOW_MANY
from lc_assets.lib.generation.prompts import EARLIER_HEADER, KIND_HINTS
from lc_assets.lib.generation.validate import content_words, quotable_pieces
from lc_assets.lib.tokenizer import TextTokenizer


@dataclass
class Reply:
    """What the double answers to one request."""

    text: str
    delay_s: float = 0.0
    error: str | None = None
    finish_reason: str = "stop"


def evidence_options(request: GenerationRequest) -> list[list[str]]:
    """What each evidence item may be: the schema's choices (one list per window on a long-range step), or,
    for free quotes, the sentences of the excerpts the prompt showed (as a model that copies would pick)."""
    evidence = (request.json_schema or {}).get("properties", {}).get("evidence", {})
    if "prefixItems" in evidence:
        return [list(item["enum"]) for item in evidence["prefixItems"]]
    if "enum" in evidence.get("items", {}):
        return [list(evidence["items"]["enum"])]
    user = request.messages[-1]["content"]
    body = user.split("Document excerpts:\n\n", 1)[-1].split("\n\n" + EARLIER_HEADER, 1)[0]
    body = body.rsplit("\n\n", 1)[0]  # the task line
    sentences = [t for _, _, t in quotable_pieces(body) if not t.startswith("Excerpt ")]
    return [sentences]


def _cut(quote: str, budget: int) -> str:
    """The quote's first words within ``budget`` characters, without closing punctuation."""
    part = ""
    for token in quote.split():
        if len(part) + len(token) + 1 > budget:
            break
        part = f"{part} {token}".strip()
    return part.rstrip(".,;:!?")


def _content_slice(quote: str, budget: int, rng: random.Random) -> str | None:
    """A slice of the quote within ``budget`` characters holding at least two content words."""
    tokens = quote.split()
    for start in rng.sample(range(len(tokens)), min(len(tokens), 8)):
        part = _cut(" ".join(tokens[start:]), budget)
        if len(set(content_words(part))) >= 2:
            return part
    return None


_QUESTIONS = {
    "what": "What is recorded as item {d}?",
    "why": "Why is item {d} recorded?",
    "how": "How is item {d} recorded?",
    # ROUGE-L of two such questions with different tags stays below the duplicate threshold (0.7): "from the others"
    # made any two compare questions of a section duplicates (0.70), and with "why" falling back to the next kind of
    # the cycle where the text states no reason (kind_cues) a section asks compare twice in a row more often
    "compare": "How does item {d} differ from others?",
    "list": "Which items are listed under {d}?",
    "numeric": "How many entries does item {d} record?",
    "multi_hop": "What connects the items {d}?",
}


_ATTRIBUTION = re.compile(r'Begin the question with "(In [^"]+, )"')


def _question(request: GenerationRequest, tag: str) -> str:
    """A question of the kind the prompt asked for (as a model that follows the prompt would), unique by ``tag``,
    starting as the prompt asks when the document must be named."""
    user = request.messages[-1]["content"]
    kind = next((k for k, hint in KIND_HINTS.items() if hint in user), "what")
    question = _QUESTIONS[kind].format(d=tag)
    named = _ATTRIBUTION.search(user)
    return f"{named.group(1)}{question[0].lower()}{question[1:]}" if named else question


def grounded_text(request: GenerationRequest, question: str | None = None, first: bool = False) -> str:
    """A valid output for this request: a quote from the shown text (one per window on a long-range
    step), an answer made of the quotes' words and a question unique per prompt and attempt.

    ``first``: always quote the first allowed choice (a model that prefers the first excerpt), not a random one."""
    # depends on the prompt and attempt only (not the run nonce), so reruns answer identically
    key = "/".join(request.request_id.split("/")[:3])
    digest = hashlib.sha1(json.dumps(request.messages).encode() + key.encode()).hexdigest()
    rng = random.Random(digest)
    max_answer = (request.json_schema or {}).get("properties", {}).get("answer", {}).get("maxLength", 100)
    budget = (max_answer - 10) // max(1, len(evidence_options(request)))
    quotes, parts = [], []
    for options in evidence_options(request):
        # a quote with some content (a model quotes what it asks about), answered by a slice of it with at
        # least two content words (a long-range answer must use both quotes)
        order = options[:1] if first else rng.sample(options, len(options))
        quote, part = order[0], _cut(order[0], budget)
        for candidate in order[:40]:
            found = _content_slice(candidate, budget, rng)
            if found:
                quote, part = candidate, found
                break
        quotes.append(quote)
        parts.append(part)
    question = question or _question(request, f"{digest[:4]} {digest[4:8]} {digest[8:12]}")
    answer = " and ".join(parts) + "."
    if _HOW_MANY.search(question):
        answer = f"All {answer}"  # "how many" is answered with a count (a quantity word the evidence need not hold)
    return json.dumps({"evidence": quotes, "question": question, "answer": answer})


def unique_reply(request: GenerationRequest) -> Reply:
    """A valid, grounded pair whose question is unique per prompt and attempt."""
    return Reply(grounded_text(request))


def first_choice_reply(request: GenerationRequest) -> Reply:
    """A valid, grounded pair quoting the first allowed choice (the first shown sentence it may quote)."""
    return Reply(grounded_text(request, first=True))


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
    # report the tokenizer's counting fingerprint (as vLLM does): stored paragraph counts are used
    shares_counts: bool = False
    submitted: list[GenerationRequest] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    events: list[tuple[str, str]] = field(default_factory=list)  # ("submit" | "abort", request id), in order
    max_seen_in_flight: int = 0
    counted_texts: int = 0  # texts count_text_tokens counted
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
        self.counted_texts += len(texts)
        return self.tokenizer.count_batch(list(texts))

    @property
    def counting_fingerprint(self) -> str | None:
        return self.tokenizer.counting_fingerprint if self.shares_counts else None

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
