"""The loop's orchestration: lazy admission, the bounded prompt guard, aborts, graceful stop, config identity."""

from __future__ import annotations

import threading
import time

import pytest

from lc_assets.defs.generation.assets import QAGenerationConfig
from lc_assets.lib.generation.admission import SectionPreparer, SectionTask
from lc_assets.lib.generation.config import GenerationConfig, GeneratorIdentity, prompt_version
from lc_assets.lib.generation.prompting import PromptBuilder
from lc_assets.lib.generation.records import MemorySink
from lc_assets.lib.generation.scheduler import GenerationScheduler
from lc_assets.lib.sections import QAPair

from .conftest import make_section, small_config
from .doubles import Reply, ScriptedBackend, unique_reply


def _cfg(**kw) -> GenerationConfig:
    return small_config(**({"earlier_pairs": 3, "target_ratio": 1.2} | kw))


def test_sections_are_admitted_lazily_as_slots_free_up(target_tokenizer):
    pulled: list[str] = []
    at_first_submit: list[int] = []

    def sections():
        for i in range(40):
            pulled.append(f"s{i}")
            yield make_section(f"s{i}", n_paragraphs=30)

    backend = ScriptedBackend(tokenizer=target_tokenizer, in_flight_cap=2)
    submit = backend.submit

    def recording_submit(req):
        if not at_first_submit:
            at_first_submit.append(len(pulled))
        submit(req)

    backend.submit = recording_submit
    sink = MemorySink()
    summary = GenerationScheduler(backend, _cfg(target_ratio=1.05), sink, target_tokenizer, prepare_ahead=2).run(
        sections()
    )
    # the first request left before the source was read beyond the first few sections
    assert at_first_submit[0] <= 2 + 2 + 1
    assert backend.max_seen_in_flight <= 2
    assert len(summary.sections) == 40 and all(r.finish_reason == "target_reached" for r in summary.sections)
    assert summary.first_request_s is not None and summary.first_request_s < summary.elapsed_s


def test_resume_state_uses_the_stored_chunk_count(target_tokenizer, scripted):
    section = make_section("c")
    preparer = SectionPreparer(_cfg(), scripted.count_text_tokens, target_tokenizer)
    stored = target_tokenizer.count(section.text) + 1000  # what `chunks.n_tokens` holds is taken, not recounted
    state = preparer(SectionTask(section, stored))
    assert state.chunk_tokens == stored and state.target_tokens == _cfg().target_for(stored)


def test_prompt_guard_bound_is_never_below_the_exact_count(target_tokenizer):
    backend = ScriptedBackend(tokenizer=target_tokenizer, template_counts=True)
    cfg = _cfg(max_context_tokens=600, earlier_pairs=3, long_range_share=0.3)
    builder = PromptBuilder(backend, cfg)
    preparer = SectionPreparer(cfg, backend.count_text_tokens, target_tokenizer)
    checked = long_range_steps = 0
    builder.upper_bound(preparer(SectionTask(make_section("warm"))), (), ())  # the once-per-run calibration
    calibration_counts = builder.exact_counts
    for i in range(3):
        # titles of different lengths, every question kind and long-range steps: all inside the bound
        title = "The Devil's Dictionary, " * i + f"volume {i}"
        state = preparer(SectionTask(make_section(f"g{i}", n_paragraphs=80, words=30 + 7 * i), title=title))
        for step in range(12):
            _mask, _earlier, fitted = builder.fit(state, step)
            long_range_steps += fitted.long_range
            exact = backend.count_prompt_tokens(fitted.messages)
            bound = builder.upper_bound(state, fitted.shown, fitted.earlier_pairs)
            assert exact <= bound <= exact * 1.05 + 64, (step, exact, bound)
            question = f"What does paragraph {step * 7 + i} of section g{i} say about w{step}?"
            pair = QAPair(f"g{i}:{step}", step, question, f"It says w{step} " * (3 + step))
            state.apply(step, pair, 50)
            checked += 1
    assert checked == 36 and long_range_steps
    # prompts far below the limit are never counted exactly: only the guard's calibration counted
    assert builder.exact_counts == calibration_counts


def test_prompt_guard_counts_exactly_near_the_limit_and_trims(target_tokenizer):
    backend = ScriptedBackend(tokenizer=target_tokenizer, template_counts=True, window=520)
    cfg = _cfg(min_context_tokens=300, max_context_tokens=400, max_paragraph_tokens=120)
    sink = MemorySink()
    GenerationScheduler(backend, cfg, sink, target_tokenizer).run([make_section("n", n_paragraphs=40)])
    for req in backend.submitted:
        assert backend.count_prompt_tokens(req.messages) + cfg.max_tokens <= 520
    assert any(r.dropped_paragraph_ids for r in sink.records)


def test_a_timed_out_request_is_aborted_before_its_retry(target_tokenizer):
    def script(req):
        if req.request_id.startswith("stuck/") and req.request_id.split("/")[2] == "0":
            return Reply(unique_reply(req).text, delay_s=3600)
        return unique_reply(req)

    backend = ScriptedBackend(tokenizer=target_tokenizer, script=script)
    summary = GenerationScheduler(
        backend, _cfg(request_timeout_s=0.2, max_retries_per_step=1), MemorySink(), target_tokenizer, poll_s=0.05
    ).run([make_section("stuck")])
    stuck = [rid for kind, rid in backend.events if kind == "submit" and rid.split("/")[2] == "0"]
    assert stuck and set(stuck) <= set(backend.aborted)
    for rid in stuck:  # the abort came before the retry of the same step was sent
        retry = rid.split("/")[0] + "/" + rid.split("/")[1] + "/1/"
        order = [e for e in backend.events if e[1] == rid or e[1].startswith(retry)]
        assert order[0] == ("submit", rid) and order[1] == ("abort", rid) and order[2][0] == "submit"
    assert summary.aborted_requests == len(stuck)
    assert summary.sections[0].finish_reason == "target_reached"


@pytest.mark.parametrize("grace_s", [10.0, 0.0])
def test_stop_waits_for_requests_in_flight_up_to_the_grace_period(target_tokenizer, grace_s):
    stop = threading.Event()
    backend = ScriptedBackend(
        tokenizer=target_tokenizer, script=lambda r: Reply(unique_reply(r).text, delay_s=0.3), in_flight_cap=4
    )
    sink = MemorySink()
    threading.Timer(0.5, stop.set).start()
    t0 = time.monotonic()
    summary = GenerationScheduler(backend, _cfg(target_ratio=3.0, stop_grace_s=grace_s), sink, target_tokenizer).run(
        [make_section(f"st{i}") for i in range(6)], stop=stop
    )
    assert summary.stopped and time.monotonic() - t0 < 0.5 + grace_s + 1.0
    sent = {r.request_id.rsplit("/", 1)[0] for r in backend.submitted}
    recorded = {f"{r.section_id}/{r.step}/{r.attempts - 1}" for r in sink.records}
    if grace_s:  # everything sent was answered and recorded; nothing aborted; no new section admitted
        assert sent == recorded and not backend.aborted
    else:  # no grace: what was in flight is aborted (a resume redoes those steps)
        assert backend.aborted and sent - recorded == {a.rsplit("/", 1)[0] for a in backend.aborted}
    assert all(r.finish_reason == "stopped" for r in summary.sections)
    assert len(summary.sections) == 4  # admission stopped: the other two sections were never started


def test_dagster_config_is_derived_from_the_lib_config():
    knobs = {n for n in GenerationConfig.model_fields if n not in {"generator", "prompt_version"}}
    fields = QAGenerationConfig.model_fields
    assert knobs <= set(fields)
    assert set(fields) - knobs == {
        "pairs_per_section",
        "max_sections",
        "chunk_config_hash",
        "quality_rules",
        "report_sample_pairs",
        "cross_pairs",  # derived from generation.cross.CrossPairConfig (its own hash)
    }
    for name in knobs:  # same defaults, descriptions and bounds: nothing re-declared
        assert fields[name].default == GenerationConfig.model_fields[name].default, name
        assert fields[name].description == GenerationConfig.model_fields[name].description, name
    ident = GeneratorIdentity(backend="vllm", model="/models/a")
    assert QAGenerationConfig().generation(ident) == GenerationConfig(generator=ident)
    with pytest.raises(ValueError):
        QAGenerationConfig(max_tokens=1)


def test_generator_identity_and_prompt_version_are_part_of_the_hash(monkeypatch):
    a = GenerationConfig(generator=GeneratorIdentity(backend="vllm", model="/models/llama-8b"))
    b = GenerationConfig(generator=GeneratorIdentity(backend="vllm", model="/models/qwen-7b"))
    c = GenerationConfig(
        generator=GeneratorIdentity(backend="vllm", model="/models/llama-8b", settings={"dtype": "fp8"})
    )
    assert len({a.config_hash(), b.config_hash(), c.config_hash()}) == 3
    assert a.config_hash() == GenerationConfig(generator=a.generator).config_hash()
    assert GenerationConfig(max_in_flight=4).config_hash() == GenerationConfig(max_in_flight=400).config_hash()

    from lc_assets.lib.generation import config as config_module

    before = prompt_version()
    monkeypatch.setattr(config_module, "build_messages", lambda *a, **kw: ({"role": "user", "content": "changed"},))
    prompt_version.cache_clear()
    try:
        assert prompt_version() != before
        assert GenerationConfig().config_hash() != a.model_copy(update={"generator": None}).config_hash()
    finally:
        prompt_version.cache_clear()


def test_default_target_is_the_documented_ratio():
    cfg = GenerationConfig()
    assert cfg.target_ratio == 1.3 and cfg.target_tokens is None
    assert GenerationConfig(target_tokens=5000).target_ratio is None


def test_each_generator_resource_names_its_model():
    from lc_assets.defs.generation.resources import GeneratorResource

    identities = [
        GeneratorResource().identity(),  # the packaged default
        GeneratorResource(gguf_path="smollm2-135m").identity(),
        GeneratorResource(gguf_path="/models/other.gguf").identity(),
        GeneratorResource(backend="openai", model="served-a").identity(),
        GeneratorResource(backend="vllm", model="/models/a").identity(),
        GeneratorResource(backend="vllm", model="/models/a", dtype="float16").identity(),
    ]
    assert len({GenerationConfig(generator=i).config_hash() for i in identities}) == len(identities)
    # engine knobs that do not change outputs leave the identity alone
    assert GeneratorResource(local_parallel=8).identity() == identities[0]
