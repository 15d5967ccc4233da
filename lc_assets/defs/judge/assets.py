"""judged_qa_pairs: a model judges every accepted pair of a shard; packing leaves the rejected ones out.

A thin layer over `lc_assets.lib.judge`: config, resources, metadata, checks. GPU-tagged like
generation (one more model call per pair); the judge is the generator by default (`judge_model`
resource, `same_as_generator: true`). Verdicts are committed in groups as they come: a killed run keeps
them and the next run asks only for the pairs not judged under the same judge config.
"""

import threading
from collections import defaultdict

import dagster as dg
from pydantic import Field, ValidationError

from lc_assets.defs.generation.assets import gpu_op_tags
from lc_assets.defs.generation.resources import GeneratorResource
from lc_assets.defs.judge.resources import JudgeModelResource
from lc_assets.defs.partitions import corpus_shards
from lc_assets.defs.resources import LineageStoreResource
from lc_assets.defs.stepconfig import dagster_config, step_config
from lc_assets.lib.generation.run import run_until_stopped
from lc_assets.lib.judge import JudgeRunSummary, PairJudgeConfig, apply_keep_policy, judge_pairs
from lc_assets.lib.lineage.judge import (
    JudgeCounts,
    count_judgements,
    judgements_of,
    pairs_to_judge,
    record_judge_config,
    rejected_examples,
    shard_pair_ids,
)
from lc_assets.lib.lineage.review import newest_config_with_pairs

CHECK_REJECTED = "judge_rejected_share"
CHECK_ERRORS = "judge_errors"
#: how long requests in flight may finish after a stop (then they are aborted, and asked again next run)
STOP_GRACE_S = 30.0

JudgedQAPairsConfig = dagster_config(
    PairJudgeConfig,
    "JudgedQAPairsConfig",
    exclude={"judge", "prompt_version"},  # set by code: the judge model's identity and the prompt's fingerprint
    enabled=(
        bool,
        Field(True, description="false: judge nothing this run (verdicts stored earlier still count in packing)."),
    ),
    generation_config_hash=(
        str | None,
        Field(None, description="Whose pairs are judged; None: the newest generation config with pairs in the shard."),
    ),
    max_rejected_share=(
        float,
        Field(
            0.5,
            ge=0.0,
            le=1.0,
            description="The judge_rejected_share check WARNs when the judge rejects a larger share of the judged pairs.",
        ),
    ),
    max_judge_error_share=(
        float,
        Field(
            0.1,
            ge=0.0,
            le=1.0,
            description="The judge_errors check fails (ERROR) when a larger share of verdicts are judge errors.",
        ),
    ),
    rejected_examples=(int, Field(5, ge=0, le=100, description="Rejected pairs shown in the metadata.")),
)


@dg.asset(
    deps=["qa_pairs"],
    partitions_def=corpus_shards,
    group_name="generation",
    kinds={"duckdb"},
    owners=["team:data-pipeline"],
    tags={"gpu": "true"},
    description="A model judges every accepted QA pair of the shard: do the evidence quotes, read in the text around "
    "them, support the answer, and does the question stand alone? One verdict per pair and judge config in "
    "pair_judgements (supported / partly / unsupported, or judge_error with its code); packing leaves rejected "
    "pairs out unless a person reviewed them.",
    check_specs=[
        dg.AssetCheckSpec(
            CHECK_REJECTED,
            asset="judged_qa_pairs",
            description="share of judged pairs the judge rejected <= max_rejected_share (WARN)",
        ),
        dg.AssetCheckSpec(
            CHECK_ERRORS,
            asset="judged_qa_pairs",
            description="share of judge outputs that could not be read <= max_judge_error_share",
        ),
    ],  # fmt: skip
    pool="gpu",
    op_tags=gpu_op_tags(cpu_request="2"),  # the loop and the engine (vLLM's process, or llama.cpp in-process)
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def judged_qa_pairs(
    context: dg.AssetExecutionContext,
    config: JudgedQAPairsConfig,  # type: ignore[valid-type]
    lineage: LineageStoreResource,
    generator: GeneratorResource,
    judge_model: JudgeModelResource,
):
    store = lineage.store()
    by_generation: dict[str, list[str]] = defaultdict(list)
    for shard in context.partition_keys:
        gen_hash = config.generation_config_hash or newest_config_with_pairs(store, shard)
        if gen_hash is not None:
            by_generation[gen_hash] += shard_pair_ids(store, shard, gen_hash)
    n_pairs = sum(len(v) for v in by_generation.values())
    if not config.enabled or not n_pairs:
        note = "judge disabled (enabled: false)" if not config.enabled else "no accepted pairs in the shard yet"
        context.log.info(f"{note}: {n_pairs} pair(s) not judged")
        yield dg.MaterializeResult(metadata={"enabled": config.enabled, "pairs": n_pairs, "judged_this_run": 0,
                                             "note": note})  # fmt: skip
        for name in (CHECK_REJECTED, CHECK_ERRORS):
            yield dg.AssetCheckResult(check_name=name, passed=True, metadata={"note": note})
        return
    chosen = judge_model.chosen(generator)
    try:
        cfg = step_config(PairJudgeConfig, config, judge=chosen.identity())
    except ValidationError as exc:  # a config error is not transient
        raise dg.Failure(description=f"invalid judge config: {exc}", allow_retries=False) from exc
    judge_hash = cfg.config_hash()
    record_judge_config(store, judge_hash, cfg.model_dump(mode="json"), context.run_id)
    relabelled = sum(apply_keep_policy(store, cfg, ids) for ids in by_generation.values())
    if relabelled:
        context.log.info(f"{relabelled} stored verdict(s) re-labelled under the keep policy {cfg.keep_policy}")
    todo = {g: pairs_to_judge(store, judge_hash, ids) for g, ids in by_generation.items()}
    context.log.info(
        f"{sum(map(len, todo.values()))} of {n_pairs} pair(s) to judge (judge config {judge_hash}, judge "
        f"{cfg.judge.model if cfg.judge else '?'} via {chosen.backend}, keep {cfg.keep_policy})"
    )
    runs: list[JudgeRunSummary] = []
    if any(todo.values()):
        with chosen.build(context.log) as backend:
            for gen_hash, ids in todo.items():
                if ids:
                    runs.append(
                        run_until_stopped(
                            lambda stop, g=gen_hash, i=ids: judge_pairs(
                                store, backend, cfg, i, run_id=context.run_id, generation_config_hash=g,
                                progress=lambda ev: context.log.info(str(ev)), stop=stop,
                            ),
                            threading.Event(),
                            STOP_GRACE_S,
                        )
                    )  # fmt: skip
    all_ids = [p for ids in by_generation.values() for p in ids]
    counts = count_judgements(judgements_of(store, judge_hash, all_ids))
    examples = rejected_examples(store, judge_hash, all_ids, config.rejected_examples)
    yield dg.MaterializeResult(metadata=_metadata(cfg, counts, runs, n_pairs, relabelled, examples, by_generation))
    yield dg.AssetCheckResult(
        check_name=CHECK_REJECTED,
        passed=counts.rejected_share <= config.max_rejected_share,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"rejected_share": round(counts.rejected_share, 4), "threshold": config.max_rejected_share,
                  "judged": counts.judged},
    )  # fmt: skip
    yield dg.AssetCheckResult(
        check_name=CHECK_ERRORS,
        passed=counts.error_share <= config.max_judge_error_share,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"judge_error_share": round(counts.error_share, 4), "threshold": config.max_judge_error_share,
                  "errors_by_code": dg.MetadataValue.json(counts.errors_by_code)},
    )  # fmt: skip


def _metadata(cfg, counts: JudgeCounts, runs, n_pairs, relabelled, examples, by_generation) -> dict:
    this_run = sum(r.judged for r in runs)
    meta = {
        "pairs": n_pairs,
        "judged": counts.judged,
        "not_judged": n_pairs - counts.judged,  # max_pairs left them, or a stop: packing keeps them unjudged
        "judged_this_run": this_run,
        "kept": counts.kept,
        "rejected": counts.rejected,
        "rejected_share": round(counts.rejected_share, 4),
        "verdicts": dg.MetadataValue.json(counts.by_verdict),
        "rejected_by_verdict": dg.MetadataValue.json(counts.rejected_by_verdict),
        "not_standalone": counts.not_standalone,
        "judge_errors": dg.MetadataValue.json(counts.errors_by_code),
        "relabelled": relabelled,
        "keep_policy": cfg.keep_policy,
        "judge_config_hash": cfg.config_hash(),
        "judge_model": cfg.judge.model if cfg.judge else "",
        "judge_backend": cfg.judge.backend if cfg.judge else "",
        "generation_config_hashes": dg.MetadataValue.json(sorted(by_generation)),
        "elapsed_s": round(sum(r.elapsed_s for r in runs), 1),
        "seconds_per_pair": round(sum(r.elapsed_s for r in runs) / this_run, 2) if this_run else 0.0,
        "prompt_tokens_this_run": sum(r.prompt_tokens for r in runs),
        "completion_tokens_this_run": sum(r.completion_tokens for r in runs),
        "context_dropped_this_run": sum(r.context_dropped for r in runs),
    }
    if examples:
        lines = [
            f"- **Q:** {e['question']}  \n  **A:** {e['answer']}  \n  *{e['verdict']}"
            f"{', not standalone' if e['standalone'] is False else ''}:* {e['check']}"
            for e in examples
        ]
        meta["rejected_examples"] = dg.MetadataValue.md("\n".join(lines))
    return meta
