"""OpenAI-compatible backend failure modes against a scripted local server."""

from __future__ import annotations

import socket

import pytest

from lc_assets.lib.generation.backend import BackendUnavailableError, GenerationRequest
from lc_assets.lib.generation.openai_backend import OpenAICompatibleBackend

from .fake_openai_server import FakeOpenAIServer

SCHEMA = {"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]}


def _req(i: int = 0) -> GenerationRequest:
    return GenerationRequest(f"r{i}", ({"role": "user", "content": "hello there"},), 32, 0.0, SCHEMA, seed=1)


def _backend(url: str, **kw) -> OpenAICompatibleBackend:
    opts = dict(base_url=url, max_retries=3, backoff_base_s=0.01, backoff_max_s=0.05, timeout_s=2.0)
    opts.update(kw)
    return OpenAICompatibleBackend(**opts)


def test_discovery_and_vllm_tokenize():
    with FakeOpenAIServer() as srv:
        b = _backend(srv.base_url)
        assert b.model == "fake-model" and b.context_window == 2048
        assert b.count_prompt_tokens([{"role": "user", "content": "a b c"}]) > 0
        assert b.count_text_tokens(["one two three", ""]) == [3, 0]
        b.close()


def test_transient_500s_are_retried():
    with FakeOpenAIServer(script=["500", "500", "ok"]) as srv:
        b = _backend(srv.base_url)
        res = b.generate_batch([_req()])[0]
        assert res.error is None and res.completion_tokens == 9 and len(srv.requests) == 3
        assert srv.requests[-1]["response_format"]["type"] == "json_schema"
        b.close()


def test_timeouts_end_as_error_results():
    with FakeOpenAIServer(script=["sleep:1.0"] * 3) as srv:
        b = _backend(srv.base_url, timeout_s=0.2, max_retries=2)
        res = b.generate_batch([_req()])[0]
        assert res.finish_reason == "error" and "timeout" in res.error
        b.close()


def test_bad_request_is_not_retried():
    with FakeOpenAIServer(script=["400"]) as srv:
        b = _backend(srv.base_url)
        res = b.generate_batch([_req()])[0]
        assert res.error.startswith("HTTP 400") and len(srv.requests) == 1
        b.close()


def test_falls_back_to_vllm_structured_body():
    with FakeOpenAIServer(reject_response_format=True) as srv:
        b = _backend(srv.base_url)
        res = b.generate_batch([_req(0), _req(1)])
        assert all(r.error is None for r in res)
        assert srv.requests[-1]["structured_outputs"] == {"json": SCHEMA} and "response_format" not in srv.requests[-1]
        b.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_down_names_endpoint():
    url = f"http://127.0.0.1:{_free_port()}/v1"
    with pytest.raises(BackendUnavailableError, match=url.replace(".", r"\.")):
        _backend(url)


def test_server_going_down_mid_run_raises_unavailable():
    srv = FakeOpenAIServer().__enter__()
    b = _backend(srv.base_url, max_retries=1)
    srv.stop()
    b.submit(_req())
    res = b.wait(timeout=5)
    assert res and res[0].error.startswith("connection failed")
    with pytest.raises(BackendUnavailableError, match="went down"):
        b.wait(timeout=0.1)
    with pytest.raises(BackendUnavailableError):
        b.submit(_req(1))
    b.close()
