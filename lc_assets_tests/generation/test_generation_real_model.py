"""Real llama.cpp inference with the packaged SmolLM2: the local backend end to end, and the openai
backend against the same engine's OpenAI-compatible HTTP server (127.0.0.1, closed after the module)."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from lc_assets.lib.generation.backend import GenerationRequest
from lc_assets.lib.generation.config import GenerationConfig
from lc_assets.lib.generation.local_backend import LocalLlamaBackend
from lc_assets.lib.generation.openai_backend import OpenAICompatibleBackend
from lc_assets.lib.generation.prompts import parse_qa_output, qa_json_schema
from lc_assets.lib.generation.quality import reason_code
from lc_assets.lib.generation.records import MemorySink
from lc_assets.lib.generation.scheduler import GenerationScheduler
from lc_assets.lib.generation.validate import REJECTION_REASONS
from lc_assets.lib.sections import Section

TEXT = """The lighthouse at Carrow Point was built in 1851 by the engineer Margaret Hale.

Its lamp burned whale oil until 1903, when it was converted to kerosene.

The keeper, Thomas Reed, kept the light for forty-one years and logged every storm.

In 1932 a storm destroyed the northern pier, and the village rebuilt it with granite from Elm Quarry.

The lighthouse was automated in 1978 and is now a museum open from May to September.

Visitors can climb 112 steps to the lantern room, which holds the original Fresnel lens."""


@pytest.fixture(scope="module")
def local():
    # 1 thread: with 2 threads llama.cpp stalls badly when other processes share the 2 cores (measured 80x)
    backend = LocalLlamaBackend(model="smollm2-135m", n_parallel=2, n_ctx_per_slot=1024, n_threads=1)
    yield backend
    backend.close()


def test_local_backend_metadata_and_exact_counts(local):
    assert "SmolLM2-135M-Instruct" in local.model and local.license == "Apache-2.0"
    msgs = ({"role": "system", "content": "Reply in JSON."}, {"role": "user", "content": TEXT[:200]})
    res = local.generate_batch([GenerationRequest("c", msgs, 8, 0.0, None, seed=1)])[0]
    assert res.error is None
    assert res.prompt_tokens == local.count_prompt_tokens(msgs)  # counted as the engine counts


def test_local_scheduler_end_to_end_judges_every_attempt(local, target_tokenizer):
    # kept tiny: the machine's 2 cores are shared; one section, at most two short steps. SmolLM2 rarely
    # writes a grounded pair (docs/qa_quality.md): what must hold is that every attempt is judged, an
    # accepted pair carries evidence that is the chunk's own text, and a refused one is stored with its code
    sections = [Section("lh0", "c0", "d", "test", "CC0", TEXT)]
    chunk = target_tokenizer.count(TEXT)
    cfg = GenerationConfig(
        seed=3,
        min_context_tokens=60,
        max_context_tokens=120,
        max_tokens=160,
        earlier_pairs=2,
        max_question_chars=100,
        max_answer_chars=150,
        max_quote_chars=120,
        target_tokens=chunk + 20,
        max_steps_per_section=2,
        max_retries_per_step=1,
        temperature=0.3,
    )
    sink = MemorySink()
    summary = GenerationScheduler(local, cfg, sink, target_tokenizer).run(sections)
    assert sink.records and summary.completion_tokens > 0
    for rec in sink.records:
        assert rec.model == local.model and rec.backend == "local" and rec.completion_tokens > 0
        assert len(rec.rejected) == rec.attempts - (rec.status == "ok")
        assert all(reason_code(r.reason) in {*REJECTION_REASONS, "truncated"} for r in rec.rejected), rec.rejected
        if rec.status == "ok":
            assert rec.evidence and rec.kind
            assert all(TEXT[e.char_start : e.char_end] == e.source_text for e in rec.evidence)
            assert parse_qa_output(json.dumps({"question": rec.pair.question, "answer": rec.pair.answer}), 100, 150).ok


def test_joined_counts_equal_counts_text_by_text(local):
    """Many texts in one /tokenize call (token pieces mapped back) count as each text alone: SmolLM2's BPE
    never merges across a blank line. The same through the openai backend against the same server."""
    paras = [p.strip() for p in TEXT.split("\n\n")] + ["  indented line", "ends in spaces   ", "x"]
    alone = [len(local._tokenize(p, special=False)) for p in paras]
    assert local.count_text_tokens(paras) == alone
    backend = OpenAICompatibleBackend(base_url=local.openai_base_url, max_concurrency=2, timeout_s=120)
    try:
        assert backend.count_text_tokens(paras) == alone
    finally:
        backend.close()


def test_openai_backend_against_real_llamacpp_server(local):
    backend = OpenAICompatibleBackend(base_url=local.openai_base_url, max_concurrency=2, timeout_s=120)
    try:
        assert backend.context_window == 1024
        msgs = ({"role": "system", "content": "Reply in JSON."}, {"role": "user", "content": TEXT[:300]})
        assert backend.count_prompt_tokens(msgs) == local.count_prompt_tokens(msgs)
        assert backend.count_text_tokens(["lighthouse keeper"]) == local.count_text_tokens(["lighthouse keeper"])
        # every string bounded (one quote of <= 60 chars): 180 chars + JSON syntax fit max_tokens at any tokenization
        schema = qa_json_schema(60, 60, max_quote_chars=60, max_quotes=1)
        reqs = [GenerationRequest(f"o{i}", msgs, 256, 0.5, schema, seed=i) for i in range(2)]
        for res in backend.generate_batch(reqs):
            assert res.error is None and res.completion_tokens > 0 and res.finish_reason == "stop", res
            obj = json.loads(res.text)  # schema-constrained by the server
            assert list(obj) == ["evidence", "question", "answer"]  # the grammar writes evidence first
    finally:
        backend.close()


def test_raw_completion_prompts_on_local_and_openai(local):
    """RULER sends raw prompts (their own model template + answer prefix): no chat template is applied."""
    prompt = "The lighthouse was automated in"
    req = GenerationRequest("raw", (), max_tokens=8, temperature=0.0, prompt=prompt)
    (direct,) = local.generate_batch([req])
    assert direct.error is None and direct.completion_tokens > 0 and direct.text
    # the prompt was not wrapped in the chat template: its token count is the bare text's
    assert direct.prompt_tokens <= local.count_text_tokens([prompt])[0] + 1
    backend = OpenAICompatibleBackend(base_url=local.openai_base_url, max_concurrency=1, timeout_s=120)
    try:
        (served,) = backend.generate_batch([req])
        assert served.error is None and served.text == direct.text  # greedy: same engine, same answer
    finally:
        backend.close()


def _busy_slots(local: LocalLlamaBackend) -> int:
    return sum(1 for slot in httpx.get(f"{local.base_url}/slots", timeout=10).json() if slot["is_processing"])


def _until(predicate, limit_s: float, every_s: float) -> None:
    """Poll `predicate()` until it holds; fail after `limit_s`."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < limit_s, f"not within {limit_s} s"
        time.sleep(every_s)


@pytest.mark.parametrize("client", ["local", "openai"])
def test_abort_stops_generation_and_frees_the_slot(local, client):
    """An aborted request stops at once (llama.cpp's slot goes idle) and its result never comes back."""
    # the grammar forces >= 400 array items (~800+ tokens, 10+ s here): only an abort ends it early
    schema = {"type": "array", "items": {"type": "integer"}, "minItems": 400}
    req = GenerationRequest("long", ({"role": "user", "content": "List numbers."},), 900, 0.0, schema)
    backend = local if client == "local" else OpenAICompatibleBackend(base_url=local.openai_base_url, timeout_s=120)
    try:
        backend.submit(req)
        _until(lambda: _busy_slots(local) == 1, limit_s=30, every_s=0.1)
        time.sleep(0.5)  # decoding
        backend.abort("long")
        # llama.cpp notices a closed connection within ~1 s; polling /slots faster than that delays it (measured)
        _until(lambda: _busy_slots(local) == 0, limit_s=5, every_s=1.5)
        assert backend.wait(timeout=0.5) == []
        (after,) = backend.generate_batch([GenerationRequest("next", req.messages, 4, 0.0, None)])
        assert after.error is None  # the backend goes on serving
    finally:
        if backend is not local:
            backend.close()


def test_grammar_copies_evidence_from_the_shown_sentences(local, target_tokenizer):
    """The evidence enum (and prefixItems for long-range steps) is honoured by llama.cpp's grammar."""
    from lc_assets.lib.generation.masking import split_paragraphs, windows_of
    from lc_assets.lib.generation.prompts import evidence_choices

    paras = split_paragraphs(TEXT, target_tokenizer.count_batch, 512)
    first, second = windows_of(paras[:2])[0], windows_of(paras[4:])[0]
    per_window = [evidence_choices([first]), evidence_choices([second])]
    schema = qa_json_schema(100, 150, quote_choices_per_window=per_window)
    msgs = (
        {"role": "user", "content": f"Quote one sentence of each part, then ask.\n\n{first.text}\n\n{second.text}"},
    )
    (res,) = local.generate_batch([GenerationRequest("enum", msgs, 160, 0.7, schema, seed=4)])
    assert res.error is None, res.error
    if res.finish_reason == "stop":  # a tiny model may run out of tokens inside the answer
        evidence = json.loads(res.text)["evidence"]
        assert evidence[0] in per_window[0] and evidence[1] in per_window[1]
    else:
        assert res.text.startswith("{") and '"evidence"' in res.text
        head = res.text.split('"question"')[0]
        assert any(c in head for c in per_window[0]) and any(c in head for c in per_window[1])
