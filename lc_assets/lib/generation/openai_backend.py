"""Any OpenAI-compatible server: vLLM's api_server, llama.cpp's server, a remote endpoint.

Requests go through the official `openai` async client on an event loop of the backend's own thread:
the client keeps one connection pool, retries transient failures (connection errors, timeouts, 408,
409, 429, 5xx) with exponential backoff, and enforces the per-request timeout; a semaphore keeps at
most ``max_concurrency`` requests at the server, the batch it should run. `abort` cancels a request's
task, which closes its connection: vLLM and llama.cpp then stop generating it. A server that stays
unreachable raises :class:`BackendUnavailableError` naming the endpoint, so a run stops cleanly with
its committed steps kept; so does a server whose /tokenize fails (a count is never guessed as 0).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Coroutine, Sequence
from typing import Any, Literal, TypeVar

import openai
from pydantic import BaseModel, ConfigDict, Field

from lc_assets.lib.generation.backend import (
    JOIN_SEPARATOR,
    BackendUnavailableError,
    GenerationBackend,
    GenerationRequest,
    GenerationResult,
    counts_from_pieces,
    join_batches,
    scatter_counts,
    take_ready,
)
from lc_assets.lib.tokenizer import TextTokenizer, load_tokenizer

log = logging.getLogger(__name__)

T = TypeVar("T")

#: /tokenize calls in flight at once when counting many texts through the server
TOKENIZE_CONCURRENCY = 16


class OpenAIBackendConfig(BaseModel):
    """Where the server is and how hard to push it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = Field(..., description="e.g. http://127.0.0.1:8000/v1")
    model: str | None = Field(None, description="Model id; None = the first one /models lists.")
    api_key: str = Field("EMPTY", description="Bearer token (vLLM/llama.cpp accept any unless configured).")
    max_concurrency: int = Field(16, ge=1, le=1024, description="Requests in flight = the server's batch.")
    timeout_s: float = Field(300.0, gt=0, description="Per-request timeout (each attempt).")
    connect_timeout_s: float = Field(5.0, gt=0)
    max_retries: int = Field(4, ge=0, le=20, description="Client retries of transient errors (exponential backoff).")
    context_window: int | None = Field(
        None, ge=256, description="None = ask the server (vLLM max_model_len / llama.cpp n_ctx)."
    )
    tokenizer: str | None = Field(
        None, description="Local tokenizer dir for exact counts; None = the server's /tokenize."
    )
    structured_output: Literal["auto", "response_format", "vllm_extra_body"] = Field(
        "auto", description="auto = OpenAI response_format json_schema, falling back to vLLM's structured body."
    )


class OpenAICompatibleBackend(GenerationBackend):
    """Concurrent chat (or raw) completions against an OpenAI-compatible endpoint."""

    name = "openai"

    def __init__(self, config: OpenAIBackendConfig | None = None, **kwargs: Any) -> None:
        self.config = config or OpenAIBackendConfig(**kwargs)
        cfg = self.config
        self.base_url = cfg.base_url.rstrip("/")
        # vLLM and llama.cpp serve /tokenize, /props next to /v1, not under it
        self.root_url = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
        self._structured = cfg.structured_output
        self._tokenizer: TextTokenizer | None = load_tokenizer(cfg.tokenizer) if cfg.tokenizer else None
        self._tokenize_flavor: Literal["vllm", "llamacpp"] | None = None
        self._pieces: bool | None = None  # the llama.cpp server returns token pieces (joined counting works)
        self._done: queue.Queue[GenerationResult] = queue.Queue()
        self._live: dict[str, concurrent.futures.Future[None]] = {}  # submitted, not yet returned or aborted
        self._fatal: BackendUnavailableError | None = None
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="openai-loop", daemon=True)
        self._loop_thread.start()
        self._client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=cfg.api_key,
            max_retries=cfg.max_retries,
            timeout=openai.Timeout(cfg.timeout_s, connect=cfg.connect_timeout_s),
        )
        self._root = self._client.with_options(base_url=self.root_url)
        self._slots = asyncio.Semaphore(cfg.max_concurrency)
        try:
            self.model, self._window = self._call(self._discover())
        except BaseException:
            self.close()
            raise

    # -- the event loop ------------------------------------------------------------------------------
    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the backend's loop and wait for it (counting, discovery)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _unavailable(self, what: str, exc: BaseException | str) -> BackendUnavailableError:
        return BackendUnavailableError(f"OpenAI-compatible server at {self.base_url} {what}: {exc}")

    # -- discovery -----------------------------------------------------------------------------------
    async def _discover(self) -> tuple[str, int | None]:
        try:
            models = (await self._client.models.list()).data
        except openai.OpenAIError as exc:
            raise self._unavailable("is unreachable or not OpenAI-compatible (GET /models)", exc) from exc
        if not models and not self.config.model:
            raise self._unavailable("lists no models", "set `model`")
        entry = next((m for m in models if m.id == self.config.model), models[0] if models else None)
        model = self.config.model or (entry.id if entry is not None else "")
        window = self.config.context_window or getattr(entry, "max_model_len", None)  # vLLM
        if window is None:
            try:  # llama.cpp: per-slot context
                props = await self._root.get("/props", cast_to=object)
                window = props.get("default_generation_settings", {}).get("n_ctx") if isinstance(props, dict) else None
            except openai.OpenAIError:
                window = None
        return model, int(window) if window else None

    @property
    def context_window(self) -> int:
        if self._window is None:
            raise ValueError(f"the server at {self.base_url} does not report its context window: set context_window")
        return self._window

    @property
    def max_in_flight(self) -> int:
        return self.config.max_concurrency

    # -- token counting ------------------------------------------------------------------------------
    async def _post_root(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST next to /v1 (vLLM's and llama.cpp's /tokenize, /apply-template); any failure is loud."""
        try:
            out = await self._root.post(path, cast_to=object, body=body)
        except openai.OpenAIError as exc:
            raise self._unavailable(f"failed on POST {path}", exc) from exc
        if not isinstance(out, dict):
            raise self._unavailable(f"answered POST {path} with no JSON object", repr(out)[:200])
        return out

    async def _flavor(self) -> Literal["vllm", "llamacpp"]:
        """Which /tokenize the server speaks: vLLM's (`prompt` -> `count`) or llama.cpp's (`content` -> `tokens`)."""
        if self._tokenize_flavor is None:
            probe = {"model": self.model, "prompt": "x", "content": "x", "add_special_tokens": False}
            try:
                out = await self._post_root("/tokenize", probe)
            except BackendUnavailableError as exc:
                raise BackendUnavailableError(
                    f"{exc}\nthe server cannot count tokens (no vLLM or llama.cpp /tokenize): "
                    "set `tokenizer` to a local tokenizer dir with a chat template"
                ) from exc
            if "count" in out:
                self._tokenize_flavor = "vllm"
            elif "tokens" in out:
                self._tokenize_flavor = "llamacpp"
            else:
                raise self._unavailable("answered POST /tokenize with neither `count` nor `tokens`", str(out)[:200])
        return self._tokenize_flavor

    def _field(self, out: dict[str, Any], key: str, path: str) -> Any:
        if key not in out:
            raise self._unavailable(f"answered POST {path} without `{key}`", str(out)[:200])
        return out[key]

    async def _count_prompt(self, messages: list[dict[str, str]]) -> int:
        if await self._flavor() == "vllm":
            body = {"model": self.model, "messages": messages, "add_generation_prompt": True}
            return int(self._field(await self._post_root("/tokenize", body), "count", "/tokenize"))
        rendered = self._field(
            await self._post_root("/apply-template", {"messages": messages}), "prompt", "/apply-template"
        )
        # the rendered template holds its special tokens as text: parse them, add none
        out = await self._post_root("/tokenize", {"content": rendered, "add_special": False, "parse_special": True})
        return len(self._field(out, "tokens", "/tokenize"))

    async def _count_texts(self, texts: Sequence[str]) -> list[int]:
        flavor = await self._flavor()
        limit = asyncio.Semaphore(TOKENIZE_CONCURRENCY)

        async def one(text: str) -> int:
            if not text:
                return 0
            async with limit:
                if flavor == "vllm":
                    body = {"model": self.model, "prompt": text, "add_special_tokens": False}
                    return int(self._field(await self._post_root("/tokenize", body), "count", "/tokenize"))
                body = {"content": text, "add_special": False, "parse_special": False}
                return len(self._field(await self._post_root("/tokenize", body), "tokens", "/tokenize"))

        async def joined(batch: list[int]) -> list[int] | None:
            part = [texts[i] for i in batch]
            body = {"content": JOIN_SEPARATOR.join(part), "add_special": False, "parse_special": False}
            async with limit:
                tokens = self._field(
                    await self._post_root("/tokenize", body | {"with_pieces": True}), "tokens", "/tokenize"
                )
            if tokens and not isinstance(tokens[0], dict):
                return None  # a llama.cpp server without `with_pieces`: count text by text
            return counts_from_pieces(part, [t["piece"] for t in tokens])

        if flavor == "llamacpp" and len(texts) > 1 and self._pieces is not False:
            # one call per ~32k characters instead of one per text: admission counts a chunk's thousands of
            # paragraphs, and a round trip per paragraph admitted sections slower than requests finished
            batches = join_batches(texts)
            counted = await asyncio.gather(*(joined(b) for b in batches))
            if all(c is not None for c in counted):
                self._pieces = True
                return scatter_counts(len(texts), batches, [c or () for c in counted])
            self._pieces = False
        return list(await asyncio.gather(*(one(t) for t in texts)))

    def count_prompt_tokens(self, messages: Sequence[dict[str, str]]) -> int:
        msgs = [dict(m) for m in messages]
        if self._tokenizer is not None:
            return self._tokenizer.count(self._tokenizer.apply_chat_template(msgs, add_generation_prompt=True))
        return self._call(self._count_prompt(msgs))

    @property
    def counting_fingerprint(self) -> str | None:
        """The local tokenizer's, when one is set (the server's /tokenize: unknown)."""
        return self._tokenizer.counting_fingerprint if self._tokenizer is not None else None

    def count_text_tokens(self, texts: Sequence[str]) -> list[int]:
        """Exact counts: one batched call of the local tokenizer, else concurrent /tokenize calls (no template)."""
        if self._tokenizer is not None:
            return self._tokenizer.count_batch(list(texts))
        return self._call(self._count_texts(list(texts)))

    # -- requests ------------------------------------------------------------------------------------
    def submit(self, request: GenerationRequest) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self._closed:
            raise BackendUnavailableError(f"openai backend for {self.base_url} is closed")
        if request.request_id in self._live:
            raise ValueError(f"request {request.request_id!r} is already in flight")
        self._live[request.request_id] = asyncio.run_coroutine_threadsafe(self._run(request), self._loop)

    def abort(self, request_id: str) -> None:
        """Cancel the request's task: its connection closes, the server stops generating, no result returns."""
        future = self._live.pop(request_id, None)
        if future is not None:
            future.cancel()

    def wait(self, timeout: float | None = None) -> list[GenerationResult]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._live:
            batch = take_ready(self._done, None if deadline is None else max(0.0, deadline - time.monotonic()))
            if not batch:
                break
            # results of aborted requests (finished before the cancel landed) are dropped here
            out = [r for r in batch if self._live.pop(r.request_id, None) is not None]
            if out:
                return out
            if deadline is not None and time.monotonic() >= deadline:
                break
        if self._fatal is not None:
            raise self._fatal
        return []

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for future in self._live.values():
            future.cancel()
        self._live.clear()
        try:
            asyncio.run_coroutine_threadsafe(self._client.close(), self._loop).result(timeout=10)
        except Exception as exc:  # noqa: BLE001 - closing must not fail the caller
            log.debug("closing the openai client failed: %s", exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop_thread.join(timeout=10)
        if not self._loop.is_running():
            self._loop.close()

    def _structured_kwargs(self, req: GenerationRequest, structured: str) -> dict[str, Any]:
        if req.json_schema is None:
            return {}
        if structured == "vllm_extra_body":
            # vLLM < 0.11 reads guided_json, >= 0.11 structured_outputs
            return {"extra_body": {"guided_json": req.json_schema, "structured_outputs": {"json": req.json_schema}}}
        schema = {"name": "qa_pair", "schema": req.json_schema, "strict": True}
        return {"response_format": {"type": "json_schema", "json_schema": schema}}

    async def _complete(self, req: GenerationRequest, structured: str) -> tuple[str, str | None, Any]:
        """One completion (the client retries transient failures); returns (text, finish_reason, usage)."""
        common: dict[str, Any] = {"model": self.model, "max_tokens": req.max_tokens, "temperature": req.temperature}
        if req.seed is not None:
            common["seed"] = req.seed
        common.update(self._structured_kwargs(req, structured))
        if req.prompt is not None:  # raw completion: /completions, no chat template (RULER)
            comp = await self._client.completions.create(prompt=req.prompt, **common)
            if not comp.choices:
                raise ValueError(f"no choices in {str(comp)[:200]}")
            return comp.choices[0].text or "", comp.choices[0].finish_reason, comp.usage
        chat = await self._client.chat.completions.create(messages=[dict(m) for m in req.messages], **common)
        if not chat.choices:
            raise ValueError(f"no choices in {str(chat)[:200]}")
        return chat.choices[0].message.content or "", chat.choices[0].finish_reason, chat.usage

    async def _run(self, req: GenerationRequest) -> None:
        start = time.monotonic()
        error: str | None = None
        text, finish, usage = "", "error", None
        async with self._slots:  # an abort (task cancel) releases the slot too
            structured = "vllm_extra_body" if self._structured == "vllm_extra_body" else "response_format"
            try:
                try:
                    text, finish, usage = await self._complete(req, structured)
                except openai.BadRequestError as exc:
                    auto = self.config.structured_output == "auto" and structured == "response_format"
                    if not (auto and req.json_schema is not None and "response_format" in str(exc)):
                        raise
                    self._structured = "vllm_extra_body"  # the server rejects response_format: switch for good
                    log.info(
                        "%s rejects response_format json_schema; using vLLM's structured output body", self.base_url
                    )
                    text, finish, usage = await self._complete(req, "vllm_extra_body")
            except openai.APITimeoutError as exc:
                error = f"timeout after {self.config.max_retries} retries: {exc}"
            except openai.APIConnectionError as exc:
                error = f"connection failed after {self.config.max_retries} retries: {exc}"
                self._fatal = self._unavailable("went down", exc)
            except openai.APIStatusError as exc:
                error = f"HTTP {exc.status_code}: {str(exc)[:300]}"
            except (openai.OpenAIError, ValueError) as exc:
                error = f"{type(exc).__name__}: {str(exc)[:300]}"
        seconds = time.monotonic() - start
        if error is not None:
            self._done.put(GenerationResult(req.request_id, "", 0, 0, "error", seconds, error=error))
            return
        self._done.put(
            GenerationResult(
                request_id=req.request_id,
                text=text,
                prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                finish_reason=finish or "stop",
                seconds=seconds,
            )
        )
