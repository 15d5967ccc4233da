"""masked_prompts + qa_pairs: sections grown step by step by a short-context generator.

One GPU-tagged op materializes both assets: a step's prompt depends on the pairs of the
section's earlier steps, so prompts and pairs are made together. The steps go into this run's own
lineage file in group commits and are merged into the catalog when the run ends (lib.generation.run);
a terminated run stops gracefully and stays resumable.
"""

import threading
from collections import Counter
from typing import Any

import dagster as dg
from pydantic import Field, ValidationError, create_model

from lc_assets.defs.generation.quality import (
    QualityRule,
    check_results,
    quality_check_specs,
    quality_metadata,
    thresholds_of,
    write_report,
)
from lc_assets.defs.generation.resources import GeneratorResource
from lc_assets.defs.partitions import corpus_shards
from lc_assets.defs.resources import LineageStoreResource, TokenizerResource
from lc_assets.defs.stepconfig import dagster_config, step_config
from lc_assets.lib.corpus.lineage import latest_chunk_config
from lc_assets.lib.generation.config import GenerationConfig, GeneratorIdentity
from lc_assets.lib.generation.cross import (
    CrossGenerationConfig,
    CrossPairConfig,
    grow_cross_sections,
    plan_cross_sections,
)
from lc_assets.lib.generation.records import ProgressEvent
from lc_assets.lib.generation.run import grow_sections, run_until_stopped
from lc_assets.lib.lineage.catalog import merge_pending
from lc_assets.lib.lineage.cross import shard_chunk_refs
from lc_assets.lib.lineage.generation import SectionDescriptor, generation_stats, sections_to_grow
from lc_assets.lib.lineage.quality import record_quality

GPU_RUN_TAG = {"lc_assets/gpu": "true"}


def gpu_op_tags(cpu_request: str) -> dict[str, Any]:
    """Op tags of a step that holds one GPU: the run tag (one GPU run at a time) and the Kubernetes pod's GPU limit,
    toleration and node selector."""
    return {
        "dagster-k8s/config": {
            "container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}, "requests": {"cpu": cpu_request}}},
            "pod_spec_config": {
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                "node_selector": {"nvidia.com/gpu.present": "true"},
            },
        },
        **GPU_RUN_TAG,
    }


#: GenerationConfig fields the code sets, not the user
_SET_BY_CODE = frozenset({"generator", "prompt_version"})
_KNOBS = [name for name in GenerationConfig.model_fields if name not in _SET_BY_CODE]

# Derived, not copied: every knob of the lib's GenerationConfig with its type, default, bounds and
# description. Cross-field rules are checked when `generation()` builds the lib config.
_GenerationKnobs: Any = create_model(
    "_GenerationKnobs",
    __base__=dg.Config,
    **{name: (GenerationConfig.model_fields[name].annotation, GenerationConfig.model_fields[name]) for name in _KNOBS},
)


CrossPairsConfig = dagster_config(CrossPairConfig, "CrossPairsConfig")


class QAGenerationConfig(_GenerationKnobs):
    """The knobs of lc_assets.lib.generation.config.GenerationConfig, plus which sections this run grows."""

    pairs_per_section: int | None = Field(
        None, ge=1, description="Demo: stop each section after this many steps (replaces the token target)."
    )
    max_sections: int | None = Field(None, ge=0, description="Cap on sections grown, counting finished ones (demo).")
    chunk_config_hash: str | None = Field(None, description="Which chunking of the shard; default: the latest.")
    quality_rules: list[QualityRule] | None = Field(  # type: ignore[valid-type]
        None,
        description="Thresholds of the qa_pairs quality checks (metric, op, value, WARN/ERROR severity, min_pairs); "
        "None: the defaults of lc_assets.lib.generation.quality.DEFAULT_THRESHOLDS.",
    )
    report_sample_pairs: int = Field(20, ge=0, description="Pairs shown with their evidence in the HTML report.")
    cross_pairs: CrossPairsConfig = Field(  # type: ignore[valid-type]
        default_factory=CrossPairsConfig,
        description="Cross sections (off by default): pairs about two chunks of one document far apart, grown "
        "after the sections under their own config hash; packed_documents (coherent mode) appends them.",
    )

    def generation(self, generator: GeneratorIdentity) -> GenerationConfig:
        knobs = {name: getattr(self, name) for name in _KNOBS}
        if self.pairs_per_section is not None:
            # demo: the step cap ends the section; the ratio only has to be out of reach
            knobs.update(target_ratio=100.0, target_tokens=None, max_steps_per_section=self.pairs_per_section)
        return GenerationConfig(**knobs, generator=generator)


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
            description="One grounded question/answer pair per step, appended to its section until the section "
            "reaches its target length: every pair cites verbatim evidence from the shown text (stored as exact "
            "chunk spans in qa_evidence) and passed every check; refused attempts are stored with their reason "
            "(rejected_attempts), retried, then recorded as a failed step. Quality per run, shard and section in "
            "generation_quality, as metadata, plots and checks.",
            partitions_def=corpus_shards,
            group_name="generation",
            kinds={"vllm", "duckdb"},
            owners=["team:data-pipeline"],
            tags={"gpu": "true"},
        ),
    ],
    check_specs=quality_check_specs(),
    pool="gpu",
    # 4 CPUs: the generation loop, vLLM's engine process and the production profile's 2 judge workers
    op_tags=gpu_op_tags(cpu_request="4"),
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
        gen_cfg = config.generation(generator.identity())
    except ValidationError as exc:  # a config error is not transient: no retry
        raise dg.Failure(description=f"invalid generation config: {exc}", allow_retries=False) from exc
    thresholds = thresholds_of(config.quality_rules)
    gen_hash = gen_cfg.config_hash()
    for merged in merge_pending(store, context.run_id):  # lineage files of killed runs: resume from them
        context.log.info(
            f"run lineage file {merged.run_file.name}: "
            + (f"not merged ({merged.skipped})" if merged.skipped else f"merged {merged.rows}")
        )
    sections: list[SectionDescriptor] = []
    already_finished = 0
    for shard in context.partition_keys:
        chunk_hash = config.chunk_config_hash or latest_chunk_config(store, shard)
        if chunk_hash is None:
            raise dg.Failure(f"shard {shard!r} has no chunks yet: materialize `chunks` for it first")
        todo, done = sections_to_grow(store, shard, chunk_hash, gen_hash)
        sections += todo
        already_finished += done
    if config.max_sections is not None:
        sections = sections[: max(0, config.max_sections - already_finished)]
    context.log.info(
        f"{len(sections)} section(s) to grow, {already_finished} already finished (generation config {gen_hash}, "
        f"generator {gen_cfg.generator}, prompt version {gen_cfg.prompt_version})"
    )

    result = None
    if sections:
        tok = target_tokenizer.load()

        def on_progress(ev: ProgressEvent) -> None:
            context.log.info(str(ev))

        with generator.build(context.log) as backend:
            result = run_until_stopped(
                lambda stop: grow_sections(
                    store, sections, backend, gen_cfg, tok, context.run_id, stop=stop, progress=on_progress
                ),
                threading.Event(),
                gen_cfg.stop_grace_s,
            )
    cross_meta = _grow_cross(context, config, gen_cfg, store, target_tokenizer, generator)
    summary = result.summary if result else None
    if result and result.merged.conflicting_prompts:
        context.log.warning(
            f"{result.merged.conflicting_prompts} step(s) of this run were already in the catalog with other "
            "prompts (another run grew the same sections at the same time); the catalog kept its own"
        )
    stats = generation_stats(store, gen_hash, [s.section_id for s in sections])
    reasons: Counter[str] = Counter(summary.failure_reasons if summary else {})
    finish = Counter(r.finish_reason for r in summary.sections) if summary else Counter()
    common = {"generation_config_hash": gen_hash, "lineage_db": dg.MetadataValue.path(str(store.path))}
    yield dg.MaterializeResult(
        asset_key="masked_prompts",
        metadata={
            **common,
            "prompts_this_run": summary.steps_ok + summary.steps_failed if summary else 0,
            "prompts_total": stats.prompts,
            "prompt_tokens_this_run": summary.prompt_tokens if summary else 0,
        },
    )
    qa_meta = {
        **common,
        "sections": stats.sections,
        "sections_finished": stats.sections_finished,
        "pairs_total": stats.pairs,
        "failed_steps_total": stats.failed_steps,
        "section_tokens_total": stats.section_tokens,
        "pairs_this_run": summary.steps_ok if summary else 0,
        "failed_steps_this_run": summary.steps_failed if summary else 0,
        "failures_by_reason": dg.MetadataValue.json(dict(reasons)),
        "rejected_attempts_by_reason": dg.MetadataValue.json(dict(summary.rejected_attempts) if summary else {}),
        "finish_reasons": dg.MetadataValue.json(dict(finish)),
        "output_tokens_per_s": round(summary.completion_tokens_per_s, 2) if summary else 0.0,
        "elapsed_s": round(summary.elapsed_s, 1) if summary else 0.0,
        "first_request_s": round(summary.first_request_s or 0.0, 2) if summary else 0.0,
        "resumed_steps": (
            sum(r.steps for r in summary.sections) - summary.steps_ok - summary.steps_failed if summary else 0
        ),
        "lineage_group_commits": result.writer.groups if result else 0,
        "lineage_rows_merged": dg.MetadataValue.json(result.merged.rows if result else {}),
    }
    if stats.sample_pair:
        q, a = stats.sample_pair
        quotes = "\n".join(f"> {e}" for e in stats.sample_evidence)
        qa_meta["sample_pair"] = dg.MetadataValue.md(f"**Q:** {q}\n\n**A:** {a}\n\n**Evidence:**\n\n{quotes}")
    qa_meta.update(cross_meta)
    quality = record_quality(store, gen_hash, context.run_id, list(context.partition_keys))
    qa_meta.update(quality_metadata(quality.run, quality.overall, quality.by_shard))
    context.log.info(
        f"quality: {quality.overall.accepted} pairs of {quality.overall.steps} steps, verbatim evidence "
        f"{quality.overall.evidence_verbatim_share:.2f}, near-duplicates {quality.overall.near_duplicate_share:.3f}, "
        f"depth coverage {quality.overall.depth_coverage:.2f} over {quality.overall.pairs_with_depth} pairs"
    )
    qa_meta.update(write_report(store, gen_hash, context.run_id, config.report_sample_pairs, context.log))
    yield dg.MaterializeResult(asset_key="qa_pairs", metadata=qa_meta)
    yield from check_results(quality.overall, thresholds)


def _grow_cross(context, config: QAGenerationConfig, gen_cfg: GenerationConfig, store, target_tokenizer, generator):
    """Cross sections of the partition's documents (when `cross_pairs.sections_per_chunk` > 0): metadata."""
    cross = step_config(CrossPairConfig, config.cross_pairs)
    if not cross.enabled:
        return {}
    cross_cfg = CrossGenerationConfig.of(gen_cfg, cross)
    plan = []
    for shard in context.partition_keys:
        chunk_hash = config.chunk_config_hash or latest_chunk_config(store, shard)
        plan += plan_cross_sections(shard_chunk_refs(store, shard, chunk_hash), cross_cfg, shard) if chunk_hash else []
    context.log.info(f"{len(plan)} cross section(s) planned (cross config {cross_cfg.config_hash()})")
    result = None
    if plan:
        tok = target_tokenizer.load()
        with generator.build(context.log) as backend:
            result = run_until_stopped(
                lambda stop: grow_cross_sections(
                    store, plan, backend, cross_cfg, tok, context.run_id, stop=stop,
                    progress=lambda ev: context.log.info(f"cross: {ev}"),
                ),
                threading.Event(),
                cross_cfg.stop_grace_s,
            )  # fmt: skip
    return {
        "cross_config_hash": cross_cfg.config_hash(),
        "cross_sections_planned": len(plan),
        "cross_pairs_this_run": result.summary.steps_ok if result else 0,
        "cross_failed_steps_this_run": result.summary.steps_failed if result else 0,
    }
