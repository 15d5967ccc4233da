"""A scriptable OpenAI-compatible HTTP server for failure-mode tests (timeouts, 5xx, 400s)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeOpenAIServer:
    """Serves /v1/models, /v1/chat/completions (scripted) and a vLLM-style /tokenize on 127.0.0.1."""

    def __init__(
        self, script: list[str] | None = None, reject_response_format: bool = False, tokenize_status: int = 200
    ) -> None:
        self.script = list(script or [])  # per chat request: "ok" | "500" | "400" | "sleep:<s>"
        self.reject_response_format = reject_response_format
        self.tokenize_status = tokenize_status  # 200, or the error /tokenize answers with
        self.tokenize_calls = 0
        self.requests: list[dict[str, Any]] = []
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
                if self.path == "/tokenize":
                    server.tokenize_calls += 1
                    if server.tokenize_status != 200:
                        self._send(server.tokenize_status, {"error": {"message": "scripted tokenize failure"}})
                        return
                    text = json.dumps(body.get("messages")) if "messages" in body else body.get("prompt", "")
                    self._send(200, {"count": len(text.split())})
                    return
                server.requests.append(body)
                if server.reject_response_format and "response_format" in body:
                    self._send(400, {"error": {"message": "response_format json_schema is not supported"}})
                    return
                mode = server.script.pop(0) if server.script else "ok"
                if mode.startswith("sleep:"):
                    time.sleep(float(mode.split(":")[1]))
                elif mode in ("500", "400"):
                    self._send(int(mode), {"error": {"message": f"scripted {mode}"}})
                    return
                content = json.dumps({"question": "What is scripted here?", "answer": "A reply."})
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
