"""masked_prompts + qa_pairs: sections grown step by step by a short-context generator.

One GPU-tagged op materializes both assets: a step's prompt depends on the pairs of the
section's earlier steps, so prompts and pairs are made together, and each step is committed
to DuckDB (prompt row + pair or failure) before the section's next step is scheduled.
"""

import threading
from collections import Counter
from dataclasses import astuple

import dagster as dg
from pydantic import ValidationError

from lc_assets.defs.generation.resources import GeneratorResource
from lc_assets.defs.partitions import corpus_shards
from lc_assets.defs.resources import LineageStoreResource, TokenizerResource
from lc_assets.lib.corpus.lineage import chunks_of_shard, latest_chunk_config
from lc_assets.lib.generation.lineage_sink import (
    LineageStepSink,
    SectionInfo,
    committed_records,
    section_id_for,
)
from lc_assets.lib.generation.scheduler import GenerationConfig, GenerationScheduler, ProgressEvent
from lc_assets.lib.lineage import LineageStore
from lc_assets.lib.sections import Section

GPU_RUN_TAG = {"lc_assets/gpu": "true"}


class QAGenerationConfig(dg.Config):
    """Generation knobs (see lc_assets.lib.generation.scheduler.GenerationConfig for each field)."""

    seed: int = 0
    min_context_tokens: int = 1024
    max_context_tokens: int = 4096
    earlier_pairs: int = 3
    max_tokens: int = 320
    max_question_chars: int = 250
    max_answer_chars: int = 900
    temperature: float = 0.7
    target_ratio: float | None = None
    target_tokens: int | None = None
    pairs_per_section: int | None = None  # demo: stop after this many pairs (target = chunk + pairs)
    max_steps_per_section: int = 2000
    max_retries_per_step: int = 2
    max_in_flight: int | None = None
    max_sections: int | None = None  # cap on sections grown in this run (demo)
    chunk_config_hash: str | None = None  # which chunking of the shard; default: the latest

    def generation(self) -> GenerationConfig:
        target_ratio, target_tokens = self.target_ratio, self.target_tokens
        max_steps = self.max_steps_per_section
        if self.pairs_per_section is not None:
            # demo: the step cap ends the section; the ratio is only there to satisfy the model
            target_ratio, target_tokens = 100.0, None
            max_steps = self.pairs_per_section
        elif target_ratio is None and target_tokens is None:
            target_ratio = 8.0
        return GenerationConfig(
            seed=self.seed,
            min_context_tokens=self.min_context_tokens,
            max_context_tokens=self.max_context_tokens,
            earlier_pairs=self.earlier_pairs,
            max_tokens=self.max_tokens,
            max_question_chars=self.max_question_chars,
            max_answer_chars=self.max_answer_chars,
            temperature=self.temperature,
            target_ratio=target_ratio,
            target_tokens=target_tokens,
            max_steps_per_section=max_steps,
            max_retries_per_step=self.max_retries_per_step,
            max_in_flight=self.max_in_flight,
        )


def load_sections(
    store: LineageStore, shard: str, chunk_config_hash: str, generation_hash: str
) -> tuple[list[SectionInfo], int]:
    """Sections of the shard's chunks; returns (not yet finished, already finished count)."""
    # the chunks the shard uses: its own and those of documents it shares with other shards
    rows = [astuple(c) for c in chunks_of_shard(store, shard, chunk_config_hash)]
    finished = {
        r[0]
        for r in store.query(
            "SELECT section_id FROM sections WHERE config_hash = ? AND finish_reason IS NOT NULL", [generation_hash]
        )
    }
    todo, done = [], 0
    for chunk_id, doc_id, source, license_, text, n_tokens in rows:
        sid = section_id_for(chunk_id, generation_hash)
        if sid in finished:
            done += 1
            continue
        section = Section(sid, chunk_id, doc_id, source, license_, text)
        todo.append(SectionInfo(section, shard, n_tokens))
    return todo, done


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "masked_prompts",
            deps=["chunks"],
            description="Per generation step: paragraphs sampled from the whole chunk (in order, gaps marked) "
            "plus earlier pairs of the section; deterministic in (seed, section, step).",
            partitions_def=corpus_shards,
            group_name="generation",
            kinds={"duckdb"},
            owners=["team:data-pipeline"],
            tags={"gpu": "true"},
        ),
        dg.AssetSpec(
            "qa_pairs",
            deps=["masked_prompts"],
            description="One validated question/answer pair per step, appended to its section until the section "
            "reaches its target length. Invalid output is retried, then recorded as a failed step.",
            partitions_def=corpus_shards,
            group_name="generation",
            kinds={"vllm", "duckdb"},
            owners=["team:data-pipeline"],
            tags={"gpu": "true"},
        ),
    ],
    pool="gpu",
    op_tags={
        "dagster-k8s/config": {
            "container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}},
            "pod_spec_config": {
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                "node_selector": {"nvidia.com/gpu.present": "true"},
            },
        },
        **GPU_RUN_TAG,
    },
    backfill_policy=dg.BackfillPolicy.single_run(),
    retry_policy=dg.RetryPolicy(max_retries=1, delay=30),
)
def generate_qa(
    context: dg.AssetExecutionContext,
    config: QAGenerationConfig,
    lineage: LineageStoreResource,
    target_tokenizer: TokenizerResource,
    generator: GeneratorResource,
):
    store = lineage.store()
    try:
        gen_cfg = config.generation()
    except ValidationError as exc:  # a config error is not transient: no retry
        raise dg.Failure(description=f"invalid generation config: {exc}", allow_retries=False) from exc
    gen_hash = gen_cfg.config_hash()
    sections: list[SectionInfo] = []
    already_finished = 0
    for shard in context.partition_keys:
        chunk_hash = config.chunk_config_hash or latest_chunk_config(store, shard)
        if chunk_hash is None:
            raise dg.Failure(f"shard {shard!r} has no chunks yet: materialize `chunks` for it first")
        todo, done = load_sections(store, shard, chunk_hash, gen_hash)
        sections += todo
        already_finished += done
    if config.max_sections is not None:
        sections = sections[: max(0, config.max_sections - already_finished)]
    context.log.info(
        f"{len(sections)} section(s) to grow, {already_finished} already finished (generation config {gen_hash})"
    )
    sink = LineageStepSink(store, context.run_id, sections)
    tok = target_tokenizer.load()
    sink.register_sections(gen_hash, {s.section.section_id: gen_cfg.target_for(s.chunk_tokens) for s in sections})
    committed = committed_records(store, [s.section.section_id for s in sections])
    resumed_steps = sum(len(v) for v in committed.values())
    if resumed_steps:
        context.log.info(f"resuming after {resumed_steps} committed step(s)")

    summary = None
    if sections:
        with generator.build(context.log) as backend:

            def on_progress(ev: ProgressEvent) -> None:
                context.log.info(str(ev))

            scheduler = GenerationScheduler(backend, gen_cfg, sink, tok, progress=on_progress)
            summary = scheduler.run([s.section for s in sections], committed, stop=threading.Event())
        sink.finish(summary.sections)

    ids = [s.section.section_id for s in sections]
    stats = store.query(
        """SELECT count(*), coalesce(sum(n_pairs), 0), coalesce(sum(failed_steps), 0),
                  count(*) FILTER (WHERE finish_reason IS NOT NULL), coalesce(sum(section_tokens), 0)
           FROM sections WHERE config_hash = ?""",
        [gen_hash],
    )[0]
    sample_pair = store.query(
        "SELECT question, answer FROM qa_pairs WHERE section_id IN (SELECT unnest(?::VARCHAR[])) "
        "ORDER BY created_at DESC LIMIT 1",
        [ids],
    )
    reasons: Counter[str] = Counter(summary.failure_reasons if summary else {})
    finish = Counter(r.finish_reason for r in summary.sections) if summary else Counter()
    common = {"generation_config_hash": gen_hash, "lineage_db": dg.MetadataValue.path(str(store.path))}
    yield dg.MaterializeResult(
        asset_key="masked_prompts",
        metadata={
            **common,
            "prompts_this_run": sink.committed,
            "prompts_total": store.scalar("SELECT count(*) FROM masked_prompts WHERE config_hash = ?", [gen_hash]),
            "prompt_tokens_this_run": summary.prompt_tokens if summary else 0,
        },
    )
    qa_meta = {
        **common,
        "sections": stats[0],
        "sections_finished": stats[3],
        "pairs_total": stats[1],
        "failed_steps_total": stats[2],
        "section_tokens_total": stats[4],
        "pairs_this_run": summary.steps_ok if summary else 0,
        "failed_steps_this_run": summary.steps_failed if summary else 0,
        "failures_by_reason": dg.MetadataValue.json(dict(reasons)),
        "rejected_attempts_by_reason": dg.MetadataValue.json(dict(summary.rejected_attempts) if summary else {}),
        "finish_reasons": dg.MetadataValue.json(dict(finish)),
        "output_tokens_per_s": round(summary.completion_tokens_per_s, 2) if summary else 0.0,
        "elapsed_s": round(summary.elapsed_s, 1) if summary else 0.0,
        "resumed_steps": resumed_steps,
    }
    if sample_pair:
        q, a = sample_pair[0]
        qa_meta["sample_pair"] = dg.MetadataValue.md(f"**Q:** {q}\n\n**A:** {a}")
    yield dg.MaterializeResult(asset_key="qa_pairs", metadata=qa_meta)
