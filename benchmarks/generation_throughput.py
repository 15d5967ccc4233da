"""Generation throughput: the production generation run (QA steps) against the backend's own batched call.

Grows N sections for S steps each exactly as `generate_qa` does — lineage catalog with real chunks
(embedded corpus), lazy admission, the DuckDB lineage of the run (per-run file, group commits, merge) —
then rebuilds every prompt it sent from lineage (`lineage.generation.rebuild_prompt`, the same path as
`lc-assets lineage prompt`) and replays exactly those requests (same messages, max_tokens, temperature,
schema) through ``backend.generate_batch`` in one batch, on a fresh engine in the same process. Reports
output tok/s of both (target ratio >= 0.9), prompt tok/s, steps/min, start-up (run start to the first
request) and the seconds of one lone QA step.

    python benchmarks/generation_throughput.py --backend local --sections 4 --steps 2
    python benchmarks/generation_throughput.py --backend openai --base-url http://127.0.0.1:8000/v1
    python benchmarks/generation_throughput.py --backend vllm --backend-kwargs '{"model": "..."}'
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lineage_fixture import SHARD, seeded_catalog  # noqa: E402

from lc_assets.lib.corpus.lineage import latest_chunk_config  # noqa: E402
from lc_assets.lib.generation.backend import GenerationBackend, GenerationRequest  # noqa: E402
from lc_assets.lib.generation.config import GenerationConfig, GeneratorIdentity  # noqa: E402
from lc_assets.lib.generation.prompts import qa_json_schema  # noqa: E402
from lc_assets.lib.generation.run import grow_sections  # noqa: E402
from lc_assets.lib.lineage.generation import (  # noqa: E402
    rebuild_prompt,
    sections_to_grow,
    sent_prompts,
)
from lc_assets.lib.tokenizer import load_tokenizer  # noqa: E402


def make_backend(args: argparse.Namespace) -> GenerationBackend:
    kwargs = json.loads(args.backend_kwargs) if args.backend_kwargs else {}
    if args.backend == "local":
        from lc_assets.lib.generation.local_backend import LocalLlamaBackend

        kwargs.setdefault("n_parallel", args.parallel)
        kwargs.setdefault("n_threads", args.threads)
        kwargs.setdefault("n_ctx_per_slot", 4096)
        return LocalLlamaBackend(**kwargs)
    if args.backend == "openai":
        from lc_assets.lib.generation.openai_backend import OpenAICompatibleBackend

        return OpenAICompatibleBackend(base_url=args.base_url, max_concurrency=args.parallel, **kwargs)
    from lc_assets.lib.generation.vllm_backend import VllmBackend, VllmEngineConfig

    kwargs.setdefault("max_in_flight", args.parallel)
    return VllmBackend(VllmEngineConfig(**kwargs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=["local", "openai", "vllm"], default="local")
    ap.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    ap.add_argument("--backend-kwargs", default="", help="JSON object passed to the backend constructor")
    ap.add_argument("--sections", type=int, default=4)
    ap.add_argument("--steps", type=int, default=2, help="steps per section")
    ap.add_argument("--parallel", type=int, default=4, help="slots / concurrent requests")
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp threads (local)")
    ap.add_argument("--context-tokens", type=int, default=1500, help="masked context per step (generator tokens)")
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "lc_assets_bench"))
    args = ap.parse_args()

    tok = load_tokenizer()
    backend = make_backend(args)
    cfg = GenerationConfig(
        seed=0,
        min_context_tokens=args.context_tokens - 100,
        max_context_tokens=args.context_tokens + 100,
        max_tokens=args.max_tokens,
        max_question_chars=200,
        max_answer_chars=360,
        target_ratio=100.0,  # never reached: the run is bounded by steps
        max_steps_per_section=args.steps,
        max_consecutive_failed_steps=args.steps,
        max_retries_per_step=0,  # every request counts once in both runs
        temperature=0.7,
        generator=GeneratorIdentity(backend=backend.name, model=backend.model),
    )
    with tempfile.TemporaryDirectory() as tmp:
        catalog = seeded_catalog(Path(tmp) / "lineage.duckdb", args.sections, Path(args.cache))
        try:
            print(f"backend={backend.name} model={backend.model} in_flight={backend.max_in_flight}")
            first_submit: list[float] = []
            submit = backend.submit

            def timed_submit(req: GenerationRequest) -> None:
                first_submit.append(first_submit[0] if first_submit else time.monotonic())
                submit(req)

            backend.submit = timed_submit  # type: ignore[method-assign]
            t0 = time.monotonic()
            chunk_hash = latest_chunk_config(catalog, SHARD)
            assert chunk_hash is not None
            todo, _ = sections_to_grow(catalog, SHARD, chunk_hash, cfg.config_hash())
            result = grow_sections(catalog, todo, backend, cfg, tok, "throughput-bench")
            end = time.monotonic()
            setup_s = first_submit[0] - t0  # sections listed, first section's paragraphs counted
            sched_s = end - first_submit[0]  # first request to the run's merge into the catalog
            backend.close()
            # a fresh engine for the raw run: the engine's prompt cache would otherwise replay the
            # scheduler's prompts for free and inflate the raw figure
            backend = make_backend(args)
            sent = sent_prompts(catalog, cfg.config_hash())
            sched_out = sum(p.completion_tokens for p in sent)
            sched_prompt = sum(p.prompt_tokens for p in sent)
            schema = qa_json_schema(cfg.max_question_chars, cfg.max_answer_chars)
            messages = {p.prompt_id: rebuild_prompt(catalog, p.prompt_id).messages for p in sent}
            requests = [
                GenerationRequest(f"raw{i}", messages[p.prompt_id], cfg.max_tokens, cfg.temperature, schema, seed=i)
                for i, p in enumerate(sent)
            ]
            lone = min(sent, key=lambda p: abs(p.context_tokens - args.context_tokens))
            t0 = time.monotonic()  # one QA step alone on the fresh engine (nothing cached yet)
            lone_req = GenerationRequest("lone", messages[lone.prompt_id], cfg.max_tokens, 0.7, schema, 1)
            single = backend.generate_batch([lone_req])[0]
            lone_s = time.monotonic() - t0

            t0 = time.monotonic()
            raw = backend.generate_batch(requests)
            raw_s = time.monotonic() - t0
            raw_out = sum(r.completion_tokens for r in raw)
            raw_prompt = sum(r.prompt_tokens for r in raw)

            ratio = (sched_out / sched_s) / (raw_out / raw_s) if raw_out else float("nan")
            report = {
                "steps": len(sent),
                "valid_pairs": result.summary.steps_ok,
                "scheduler_output_tok_s": round(sched_out / sched_s, 2),
                "raw_batch_output_tok_s": round(raw_out / raw_s, 2),
                "ratio_scheduler_vs_raw": round(ratio, 3),
                "scheduler_prompt_tok_s": round(sched_prompt / sched_s, 1),
                "raw_batch_prompt_tok_s": round(raw_prompt / raw_s, 1),
                "scheduler_steps_per_min": round(len(sent) / sched_s * 60, 2),
                "raw_requests_per_min": round(len(raw) / raw_s * 60, 2),
                "mean_prompt_tokens": round(statistics.mean(p.prompt_tokens for p in sent), 1),
                "mean_completion_tokens": round(statistics.mean(p.completion_tokens for p in sent), 1),
                "lone_step_seconds": round(lone_s, 2),
                "lone_step_prompt_tokens": single.prompt_tokens,
                "lone_step_completion_tokens": single.completion_tokens,
                "scheduler_setup_seconds": round(setup_s, 1),
                "scheduler_seconds": round(sched_s, 1),
                "raw_seconds": round(raw_s, 1),
            }
            print(json.dumps(report, indent=2))
        finally:
            backend.close()


if __name__ == "__main__":
    main()
