"""A scriptable OpenAI-compatible HTTP server for failure-mode tests (timeouts, 5xx, 400s)."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lc_assets.lib.generation.backend import GenerationRequest

from .doubles import grounded_text


def grounded_reply(body: dict[str, Any], n: int) -> str:
    """A valid pair for a chat request's body (its messages and json_schema), as the in-process doubles answer."""
    schema = body.get("response_format", {}).get("json_schema", {}).get("schema")
    messages = tuple(body["messages"])
    return grounded_text(GenerationRequest(f"http/{n}/0", messages, body.get("max_tokens", 256), 0.0, schema))


class FakeOpenAIServer:
    """Serves /v1/models, /v1/chat/completions (scripted) and a vLLM-style /tokenize on 127.0.0.1."""

    def __init__(
        self,
        script: list[str] | None = None,
        reject_response_format: bool = False,
        tokenize_status: int = 200,
        grounded: bool = False,
        chat_delay_s: float = 0.0,
        tokenize_flavor: str = "vllm",
    ) -> None:
        self.script = list(script or [])  # per chat request: "ok" | "500" | "400" | "sleep:<s>"
        self.reject_response_format = reject_response_format
        self.tokenize_status = tokenize_status  # 200, or the error /tokenize answers with
        self.grounded = grounded  # answer with a valid pair quoting the request's evidence choices
        self.chat_delay_s = chat_delay_s  # every chat request takes this long (a server's generation time)
        self.tokenize_flavor = tokenize_flavor  # "vllm" (`prompt` -> `count`) or "llamacpp" (`content` -> `tokens`)
        self.tokenize_calls = 0
        self.requests: list[dict[str, Any]] = []
        self.chat_in_flight = 0
        self.max_chat_in_flight = 0  # the most chat requests the server held at once
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, code: int, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                if self.path == "/v1/models":
                    self._send(200, {"data": [{"id": "fake-model", "max_model_len": 2048}]})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/apply-template" and server.tokenize_flavor == "llamacpp":
                    self._send(200, {"prompt": json.dumps(body["messages"])})
                    return
                if self.path == "/tokenize":
                    server.tokenize_calls += 1
                    if server.tokenize_status != 200:
                        self._send(server.tokenize_status, {"error": {"message": "scripted tokenize failure"}})
                        return
                    if server.tokenize_flavor == "llamacpp":
                        if "content" not in body:
                            self._send(400, {"error": {"message": "llama.cpp's /tokenize reads `content`"}})
                            return
                        # whitespace runs and words are the tokens; their pieces join to the content exactly
                        pieces = re.findall(r"\s+|\S+", body["content"])
                        tokens = (
                            [{"id": i, "piece": p} for i, p in enumerate(pieces)]
                            if body.get("with_pieces")
                            else [i for i, _ in enumerate(pieces)]
                        )
                        self._send(200, {"tokens": tokens})
                        return
                    text = json.dumps(body.get("messages")) if "messages" in body else body.get("prompt", "")
                    self._send(200, {"count": len(text.split())})
                    return
                with server._lock:
                    server.requests.append(body)
                    server.chat_in_flight += 1
                    server.max_chat_in_flight = max(server.max_chat_in_flight, server.chat_in_flight)
                try:
                    self._chat(body)
                finally:
                    with server._lock:
                        server.chat_in_flight -= 1

            def _chat(self, body: dict[str, Any]) -> None:
                if server.reject_response_format and "response_format" in body:
                    self._send(400, {"error": {"message": "response_format json_schema is not supported"}})
                    return
                with server._lock:
                    mode = server.script.pop(0) if server.script else "ok"
                if server.chat_delay_s:
                    time.sleep(server.chat_delay_s)
                if mode.startswith("sleep:"):
                    time.sleep(float(mode.split(":")[1]))
                elif mode in ("500", "400"):
                    self._send(int(mode), {"error": {"message": f"scripted {mode}"}})
                    return
                content = (
                    grounded_reply(body, len(server.requests))
                    if server.grounded
                    else json.dumps({"question": "What is scripted here?", "answer": "A reply."})
                )
                self._send(
                    200,
                    {
                        "choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 12, "completion_tokens": 9},
                    },
                )

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
