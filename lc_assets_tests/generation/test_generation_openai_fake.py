"""OpenAI-compatible backend failure modes against a scripted local server.

Retries and their backoff are the `openai` client's own (0.5 s, doubling): the scripts keep retries few.
"""

from __future__ import annotations

import json
import re
import socket
import time

import pytest

from lc_assets.lib.generation.backend import BackendUnavailableError, GenerationRequest
from lc_assets.lib.generation.openai_backend import OpenAICompatibleBackend
from lc_assets.lib.generation.records import MemorySink
from lc_assets.lib.generation.scheduler import GenerationScheduler

from .conftest import make_section, small_config
from .fake_openai_server import FakeOpenAIServer

SCHEMA = {"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]}


def _req(i: int = 0) -> GenerationRequest:
    return GenerationRequest(f"r{i}", ({"role": "user", "content": "hello there"},), 32, 0.0, SCHEMA, seed=1)


def _backend(url: str, **kw) -> OpenAICompatibleBackend:
    opts = dict(base_url=url, max_retries=3, timeout_s=2.0)
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
    with FakeOpenAIServer(script=["sleep:1.0"] * 2) as srv:
        b = _backend(srv.base_url, timeout_s=0.2, max_retries=1)
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
        _backend(url, max_retries=0)


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


@pytest.mark.parametrize("status", [404, 500])
def test_failing_tokenize_is_loud_not_zero(status):
    """A count the server cannot give stops the run with the server named; it is never taken as 0 tokens."""
    with FakeOpenAIServer(tokenize_status=status) as srv:
        b = _backend(srv.base_url, max_retries=0)
        try:
            with pytest.raises(BackendUnavailableError, match=srv.base_url.replace(".", r"\.") + ".*/tokenize"):
                b.count_text_tokens(["one two three"])
            with pytest.raises(BackendUnavailableError, match="/tokenize"):
                b.count_prompt_tokens([{"role": "user", "content": "a b c"}])
        finally:
            b.close()


def test_text_counts_go_out_concurrently_and_exactly():
    with FakeOpenAIServer() as srv:
        b = _backend(srv.base_url)
        texts = [" ".join(["w"] * n) for n in range(40)]
        assert b.count_text_tokens(texts) == list(range(40))
        assert srv.tokenize_calls == 1 + 39  # the flavour probe, then one call per non-empty text
        b.close()


def test_abort_frees_the_slot_and_drops_the_result():
    """With one slot, an aborted slow request must not hold up the next one, and never surfaces."""
    with FakeOpenAIServer(script=["sleep:3.0", "ok"]) as srv:
        b = _backend(srv.base_url, max_concurrency=1, max_retries=0, timeout_s=10.0)
        b.submit(_req(0))
        time.sleep(0.3)  # the slow request is at the server
        b.abort("r0")
        started = time.monotonic()
        (res,) = b.generate_batch([_req(1)])
        assert res.request_id == "r1" and res.error is None
        assert time.monotonic() - started < 2.5  # did not wait for the aborted request's 3 s
        assert b.wait(timeout=3.5) == []  # the aborted one never comes back
        b.close()


def test_llamacpp_text_counts_are_joined_into_few_calls():
    """llama.cpp's /tokenize with pieces: many texts in one call, each text's count as if counted alone."""
    with FakeOpenAIServer(tokenize_flavor="llamacpp") as srv:
        b = _backend(srv.base_url)
        texts = [" ".join(["w"] * n) + ("  " if n % 3 == 0 else "") for n in range(40)] + ["", "x\n\ny z"]
        alone = [len(re.findall(r"\s+|\S+", t)) for t in texts]
        calls = srv.tokenize_calls
        assert b.count_text_tokens(texts) == alone
        assert srv.tokenize_calls - calls <= 2  # the flavour probe and one joined call
        b.close()


def test_many_requests_in_flight_with_an_instant_server(target_tokenizer):
    """Admission must keep up with a fast server: sections of hundreds of paragraphs, one pair each (the demo's
    shape), go out many at a time, not one by one behind a /tokenize round trip per paragraph."""
    sections = [make_section(f"s{i}", n_paragraphs=400) for i in range(24)]
    with FakeOpenAIServer(grounded=True, chat_delay_s=0.2, tokenize_flavor="llamacpp") as srv:
        b = _backend(srv.base_url, max_concurrency=8, timeout_s=30.0)
        try:
            cfg = small_config(target_ratio=100.0, max_steps_per_section=1)
            summary = GenerationScheduler(b, cfg, MemorySink(), target_tokenizer).run(sections)
        finally:
            b.close()
    assert summary.steps_ok == len(sections), summary.failure_reasons
    assert srv.max_chat_in_flight >= min(8, len(sections)) // 2
    # counting is not per paragraph: a few calls per section (paragraphs, title, calibration), not 400
    assert srv.tokenize_calls < 4 * len(sections)


def _run_one_section(target_tokenizer, steps: int, **cfg) -> tuple[FakeOpenAIServer, MemorySink]:
    with FakeOpenAIServer(grounded=True) as srv:
        b = _backend(srv.base_url, timeout_s=30.0)
        sink = MemorySink()
        try:
            config = small_config(target_ratio=100.0, max_steps_per_section=steps, earlier_pairs=3, **cfg)
            GenerationScheduler(b, config, sink, target_tokenizer).run([make_section("tk", n_paragraphs=120)])
        finally:
            b.close()
    return srv, sink


def test_steps_far_below_the_limit_make_no_tokenize_call(target_tokenizer):
    """Each step's earlier pairs are bounded by their bytes, not counted through /tokenize (a round trip on the
    loop thread per step against a remote server): more steps of the same section cost no more calls."""
    few, few_sink = _run_one_section(target_tokenizer, 2)
    many, many_sink = _run_one_section(target_tokenizer, 12)
    assert sum(r.status == "ok" for r in many_sink.records) >= 10
    assert many.tokenize_calls == few.tokenize_calls


def test_prompts_near_the_limit_never_exceed_the_window(target_tokenizer):
    # masks up to 1,500 of the fake's 2,048 tokens, 400 for the answer: pairs' byte bounds cross the limit
    srv, sink = _run_one_section(target_tokenizer, 12, min_context_tokens=1200, max_context_tokens=1500, max_tokens=400)
    assert sum(r.status == "ok" for r in sink.records) >= 10
    for body in srv.requests:  # the fake counts a prompt as the words of its messages' JSON
        assert len(json.dumps(body["messages"]).split()) + body["max_tokens"] <= 2048
    assert srv.tokenize_calls > 0
