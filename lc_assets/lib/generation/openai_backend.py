"""Any OpenAI-compatible server: vLLM's api_server, llama.cpp's server, a remote endpoint.

Requests run on a thread pool (one HTTP call each) so the server always has ``max_concurrency``
requests to batch. Transient failures (connection errors, timeouts, 429, 5xx) are retried with
exponential backoff; a server that stays unreachable raises :class:`BackendUnavailableError`
naming the endpoint, so a run stops cleanly with its committed steps kept.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from lc_assets.lib.generation.backend import (
    BackendUnavailableError,
    GenerationBackend,
    GenerationRequest,
    GenerationResult,
)
from lc_assets.lib.tokenizer import TextTokenizer, load_tokenizer

log = logging.getLogger(__name__)

_TRANSIENT_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAIBackendConfig(BaseModel):
    """Where the server is and how hard to push it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = Field(..., description="e.g. http://127.0.0.1:8000/v1")
    model: str | None = Field(None, description="Model id; None = the first one /models lists.")
    api_key: str = Field("EMPTY", description="Bearer token (vLLM/llama.cpp accept any unless configured).")
    max_concurrency: int = Field(16, ge=1, le=1024, description="Requests in flight = the server's batch.")
    timeout_s: float = Field(300.0, gt=0, description="Per-request read timeout.")
    connect_timeout_s: float = Field(5.0, gt=0)
    max_retries: int = Field(4, ge=0, le=20, description="Retries of transient errors per request.")
    backoff_base_s: float = Field(0.5, gt=0, description="First backoff; doubles each retry (with jitter).")
    backoff_max_s: float = Field(30.0, gt=0)
    context_window: int | None = Field(
        None, ge=256, description="None = ask the server (vLLM max_model_len / llama.cpp n_ctx)."
    )
    tokenizer: str | None = Field(
        None, description="Local tokenizer dir for exact counts; None = the server's /tokenize."
    )
    structured_output: Literal["auto", "response_format", "vllm_extra_body"] = Field(
        "auto", description="auto = OpenAI response_format json_schema, falling back to vLLM's guided/structured body."
    )


class OpenAICompatibleBackend(GenerationBackend):
    """Concurrent chat completions against an OpenAI-compatible endpoint."""

    name = "openai"

    def __init__(self, config: OpenAIBackendConfig | None = None, **kwargs: Any) -> None:
        self.config = config or OpenAIBackendConfig(**kwargs)
        cfg = self.config
        self.base_url = cfg.base_url.rstrip("/")
        # vLLM and llama.cpp serve /tokenize, /props next to /v1, not under it
        self.root_url = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
        timeout = httpx.Timeout(cfg.timeout_s, connect=cfg.connect_timeout_s)
        limits = httpx.Limits(max_connections=cfg.max_concurrency + 4, max_keepalive_connections=cfg.max_concurrency)
        headers = {"Authorization": f"Bearer {cfg.api_key}"}
        self._http = httpx.Client(timeout=timeout, limits=limits, headers=headers)
        self._structured = cfg.structured_output
        self._tokenizer: TextTokenizer | None = load_tokenizer(cfg.tokenizer) if cfg.tokenizer else None
        self._tokenize_flavor: str | None = None
        self.model, self._window = self._discover()
        self._pool = ThreadPoolExecutor(cfg.max_concurrency, thread_name_prefix="openai-req")
        self._done: queue.Queue[GenerationResult] = queue.Queue()
        self._fatal: BackendUnavailableError | None = None
        self._lock = threading.Lock()

    # -- discovery ------------------------------------------------------------------------------
    def _unavailable(self, what: str, exc: BaseException | str) -> BackendUnavailableError:
        return BackendUnavailableError(f"OpenAI-compatible server at {self.base_url} {what}: {exc}")

    def _discover(self) -> tuple[str, int | None]:
        try:
            resp = self._http.get(f"{self.base_url}/models")
            resp.raise_for_status()
            models = resp.json().get("data", [])
        except (httpx.HTTPError, ValueError) as exc:
            raise self._unavailable("is unreachable or not OpenAI-compatible (GET /models)", exc) from exc
        if not models and not self.config.model:
            raise self._unavailable("lists no models", "set `model`")
        entry = next((m for m in models if m.get("id") == self.config.model), models[0] if models else {})
        model = self.config.model or entry["id"]
        window = self.config.context_window or entry.get("max_model_len")  # vLLM
        if window is None:
            try:  # llama.cpp: per-slot context
                props = self._http.get(f"{self.root_url}/props").json()
                window = props.get("default_generation_settings", {}).get("n_ctx")
            except (httpx.HTTPError, ValueError):
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

    # -- token counting -------------------------------------------------------------------------
    def _post_root(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        try:
            resp = self._http.post(f"{self.root_url}{path}", json=body)
        except httpx.HTTPError as exc:
            raise self._unavailable(f"failed on {path}", exc) from exc
        if resp.status_code >= 400:
            return None
        return resp.json()

    def count_prompt_tokens(self, messages: Sequence[dict[str, str]]) -> int:
        msgs = [dict(m) for m in messages]
        if self._tokenizer is not None:
            text = self._tokenizer.apply_chat_template(msgs, add_generation_prompt=True)
            return self._tokenizer.count(text)
        if self._tokenize_flavor in (None, "vllm"):
            out = self._post_root("/tokenize", {"model": self.model, "messages": msgs, "add_generation_prompt": True})
            if out is not None and "count" in out:
                self._tokenize_flavor = "vllm"
                return int(out["count"])
        if self._tokenize_flavor in (None, "llamacpp"):
            rendered = self._post_root("/apply-template", {"messages": msgs})
            if rendered is not None and "prompt" in rendered:
                out = self._post_root("/tokenize", {"content": rendered["prompt"], "parse_special": True})
                if out is not None and "tokens" in out:
                    self._tokenize_flavor = "llamacpp"
                    return len(out["tokens"])
        raise ValueError(
            f"the server at {self.base_url} cannot count prompt tokens (no vLLM or llama.cpp /tokenize): "
            "set `tokenizer` to a local tokenizer dir with a chat template"
        )

    def count_text_tokens(self, texts: Sequence[str]) -> list[int]:
        if self._tokenizer is not None:
            return self._tokenizer.count_batch(list(texts))
        if self._tokenize_flavor is None:
            self.count_prompt_tokens([{"role": "user", "content": "x"}])  # detect the flavour once
        out: list[int] = []
        for text in texts:
            if not text:
                out.append(0)
                continue
            if self._tokenize_flavor == "vllm":
                body = {"model": self.model, "prompt": text, "add_special_tokens": False}
                res = self._post_root("/tokenize", body)
                out.append(int(res["count"]) if res else 0)
            else:
                res = self._post_root("/tokenize", {"content": text, "add_special": False, "parse_special": False})
                out.append(len(res["tokens"]) if res else 0)
        return out

    # -- requests -------------------------------------------------------------------------------
    def submit(self, request: GenerationRequest) -> None:
        if self._fatal is not None:
            raise self._fatal
        self._pool.submit(self._run, request)

    def wait(self, timeout: float | None = None) -> list[GenerationResult]:
        try:
            first = self._done.get(timeout=timeout)
        except queue.Empty:
            first = None
        out = [] if first is None else [first]
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                break
        if self._fatal is not None and not out:
            raise self._fatal
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    def _body(self, req: GenerationRequest, structured: str) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "max_tokens": req.max_tokens, "temperature": req.temperature}
        if req.prompt is not None:
            body["prompt"] = req.prompt  # raw completion: /completions, no chat template
        else:
            body["messages"] = [dict(m) for m in req.messages]
        if req.seed is not None:
            body["seed"] = req.seed
        if req.json_schema is not None:
            if structured == "vllm_extra_body":
                body["guided_json"] = req.json_schema  # vLLM < 0.11
                body["structured_outputs"] = {"json": req.json_schema}  # vLLM >= 0.11
            else:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "qa_pair", "schema": req.json_schema, "strict": True},
                }
        return body

    def _backoff(self, attempt: int) -> float:
        delay = min(self.config.backoff_max_s, self.config.backoff_base_s * 2**attempt)
        return delay * (0.5 + random.random() / 2)  # jitter: concurrent retries do not stampede

    def _run(self, req: GenerationRequest) -> None:
        start = time.monotonic()
        last_error = ""
        connect_failures = 0
        attempt = 0
        while attempt <= self.config.max_retries:
            structured = "vllm_extra_body" if self._structured == "vllm_extra_body" else "response_format"
            try:
                endpoint = "completions" if req.prompt is not None else "chat/completions"
                resp = self._http.post(f"{self.base_url}/{endpoint}", json=self._body(req, structured))
            except httpx.ConnectError as exc:
                connect_failures += 1
                last_error = f"connection failed: {exc}"
            except httpx.TimeoutException as exc:
                last_error = f"timeout: {type(exc).__name__}"
            except httpx.HTTPError as exc:
                last_error = f"transport error: {exc}"
            else:
                rejected_format = resp.status_code == 400 and "response_format" in resp.text
                if rejected_format and structured == "response_format" and self._structured != "response_format":
                    with self._lock:
                        self._structured = "vllm_extra_body"  # server rejects response_format: switch for good
                    log.info("%s rejects response_format json_schema; using vLLM structured output body", self.base_url)
                    continue
                if resp.status_code < 400:
                    self._done.put(self._result(req, resp.json(), time.monotonic() - start))
                    return
                last_error = f"HTTP {resp.status_code}: {resp.text[:300]}"
                if resp.status_code not in _TRANSIENT_STATUS:
                    break  # a bad request will not get better by retrying
            attempt += 1
            if attempt <= self.config.max_retries:
                time.sleep(self._backoff(attempt - 1))
        if connect_failures == attempt and attempt > self.config.max_retries:
            self._fatal = self._unavailable("went down", last_error)
        self._done.put(GenerationResult(req.request_id, "", 0, 0, "error", time.monotonic() - start, error=last_error))

    @staticmethod
    def _result(req: GenerationRequest, data: dict[str, Any], seconds: float) -> GenerationResult:
        choices = data.get("choices") or []
        if not choices:
            return GenerationResult(
                req.request_id, "", 0, 0, "error", seconds, error=f"no choices in {str(data)[:200]}"
            )
        usage = data.get("usage") or {}
        return GenerationResult(
            request_id=req.request_id,
            text=(choices[0].get("message") or {}).get("content") or choices[0].get("text") or "",
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason=choices[0].get("finish_reason") or "stop",
            seconds=seconds,
        )
