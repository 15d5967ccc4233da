"""packed_documents: finished sections packed without replacement into exactly-N-token chat samples.

A thin layer over `lc_assets.lib.packing.run.pack_pool`: config, metadata, checks. One run packs
one generation config's sections (default: the newest) for the target tokenizer, stage by stage
when a length curriculum is set; see docs/training.md for what the written dataset holds.
"""

import dagster as dg
import numpy as np
from pydantic import ValidationError

from lc_assets.defs.metadata import png_markdown
from lc_assets.defs.packing.config import PackedDocumentsConfig, packing_config
from lc_assets.defs.resources import LineageStoreResource, TokenizerResource, data_dir
from lc_assets.lib.packing.evidence import dependency_plot_png
from lc_assets.lib.packing.run import NoSectionsError, PackingRun, pack_pool, stage_summary

CHECK_FILL = "packed_fill_ratio"
CHECK_REUSE = "packed_no_section_reuse"
CHECK_LENGTH = "packed_exact_length"
CHECK_ROUNDTRIP = "packed_text_roundtrip"
CHECK_POOL = "packed_pool_used"
CHECKS = {
    CHECK_FILL: "mean fill ratio of the written samples >= min_mean_fill",
    CHECK_REUSE: "no section (pair) placed twice in the pool, in the lineage and in the written files",
    CHECK_LENGTH: "every written sample is exactly sample_tokens long (re-read from disk)",
    CHECK_ROUNDTRIP: "the written text re-tokenizes to the stored ids; labels are -100 outside the loss spans",
    CHECK_POOL: "a pool holding two samples' worth of packable tokens (or one sample's worth of items with no cut "
    "point at all) gave at least one sample; barely one sample's worth whose cuts miss the gap is carried over",
}


@dg.asset(
    deps=["qa_pairs", "judged_qa_pairs"],  # qa_pairs too: a run that does not select the judge still packs after it
    group_name="packing",
    kinds={"parquet", "duckdb"},
    owners=["team:data-pipeline"],
    description="Sections (chunk + its QA pairs) packed without replacement into samples of exactly N tokens "
    "(default 1,048,576) in the target model's chat template, with labels, position_ids and seq_lens; parquet + "
    "HF dataset + manifest per stage, published only after the lineage rows commit. Sections that do not complete "
    "a sample stay in the pool for the next run.",
    check_specs=[dg.AssetCheckSpec(name, asset="packed_documents", description=d) for name, d in CHECKS.items()],
)
def packed_documents(
    context: dg.AssetExecutionContext,
    config: PackedDocumentsConfig,  # type: ignore[valid-type]
    lineage: LineageStoreResource,
    target_tokenizer: TokenizerResource,
):
    try:
        cfg = packing_config(config)
    except ValidationError as exc:
        raise dg.Failure(description=f"invalid packing config: {exc}", allow_retries=False) from exc
    store = lineage.store()
    tok = target_tokenizer.load()
    try:
        run = pack_pool(
            store,
            tok,
            cfg,
            run_id=context.run_id,
            root=data_dir() / "packed",
            log=context.log.info,
            lock_timeout_s=config.lock_timeout_s,
        )
    except NoSectionsError as exc:
        if cfg.generation_config_hash:  # an explicit config that has no finished sections is a config error
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        context.log.warning(str(exc))
        yield dg.MaterializeResult(metadata={"samples": 0, "message": str(exc)})
        for name in CHECKS:
            yield dg.AssetCheckResult(check_name=name, passed=True, metadata={"note": "no finished sections yet"})
        return
    yield dg.MaterializeResult(metadata=_metadata(run))
    yield from _checks(run, config.min_mean_fill)
    failures = [s.failure for s in run.stages if s.failure]
    if failures:
        raise dg.Failure(description="packing made no sample from a pool that could fill one: " + "; ".join(failures))


def _metadata(run: PackingRun) -> dict:
    rows = [stage_summary(s) for s in run.stages]
    samples = sum(r["samples"] for r in rows)
    meta: dict = {
        "samples": samples,
        "stages": dg.MetadataValue.md(_stage_table(rows)),
        "sections_in_pool": rows[0]["pool_sections"],  # of the first stage; later stages draw from what it left
        "sections_packed": sum(r["sections_packed"] for r in rows),
        "section_reuse": len(run.reused_sections),
        "fill_mean": min((r["fill_mean"] for r in rows if r["samples"]), default=0.0),
        "generation_config_hash": run.config.generation_config_hash,
        "generation_configs_not_packed": dg.MetadataValue.json(run.other_generation_configs),
        "packing_config_hash": run.config.config_hash(),
        "pool": run.config.pool,
        "pool_key": run.pool_key,
        "mode": run.config.mode,
        "tokenizer": run.tokenizer,
        "message": " | ".join(s.message for s in run.stages),
        "evidence_sources": dg.MetadataValue.json([s.evidence_sources for s in run.stages]),
        "human_reviews": run.config.human_reviews,
        "pairs_rejected_by_reviewers": sum(r["pairs_rejected_by_reviewers"] for r in rows),
        "pairs_fixed_by_reviewers": sum(r["pairs_fixed_by_reviewers"] for r in rows),
        "model_judgements": run.config.model_judgements,
        "pairs_rejected_by_judge": sum(r["pairs_rejected_by_judge"] for r in rows),
    }
    published = [s for s in run.stages if s.output_dir is not None]
    if published:
        meta["output_dir"] = dg.MetadataValue.path(str(published[-1].output_dir))
    for s in published:
        meta[f"output_dir_{s.sample_tokens}"] = dg.MetadataValue.path(str(s.output_dir))
    all_samples = [x for s in run.stages if s.result for x in s.result.samples]
    per_sample = {x.sample_id: x.dependency_distances for x in all_samples}
    if any(len(v) for v in per_sample.values()):
        distances = np.concatenate(list(per_sample.values()))
        meta["dependency_median"] = float(np.median(distances))
        meta["dependency_p90"] = float(np.quantile(distances, 0.9))
        cross = np.concatenate([x.cross_distances for x in all_samples])
        if len(cross):
            meta["cross_pairs"] = int(len(cross))
            meta["cross_pairs_offered"] = sum(r["cross_pairs_offered"] for r in rows)
            meta["cross_nearest_median"] = float(np.median(cross[:, 0]))
            meta["cross_farthest_median"] = float(np.median(cross[:, 1]))
        png = dependency_plot_png(per_sample, f"dependency distance, {run.config.mode} mode", cross[:, 1])
        if png:
            meta["dependency_distance"] = png_markdown(png, "dependency distance per sample")
    if all_samples:
        first = all_samples[0]
        meta["first_sample"] = dg.MetadataValue.md(
            f"`{first.sample_id}`: {len(first.section_ids)} sections from {len(set(first.document_ids))} "
            f"document(s), fill {first.fill_ratio:.5f}, {first.n_pairs} pairs\n\n```\n{first.text[:600]}\n```"
        )
    return meta


def _stage_table(rows: list[dict]) -> str:
    head = (
        "| tokens | quota | pool | samples | fill mean | fill min | sections | docs/sample | main doc share | pairs "
        "| dep. median |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        median = f"{r['dependency_median']:,.0f}" if r["dependency_median"] is not None else "-"
        lines.append(
            f"| {r['sample_tokens']:,} | {r['quota'] or '-'} | {r['pool_sections']} | {r['samples']} | "
            f"{r['fill_mean']:.5f} | {r['fill_min']:.5f} | {r['sections_packed']} | {r['documents_per_sample']} | "
            f"{r['main_document_share']} | {r['pairs']} | {median} |"
        )
    return "\n".join(lines)


def _checks(run: PackingRun, min_mean_fill: float):
    verified = [s for s in run.stages if s.verify is not None]
    fills = {s.sample_tokens: s.verify.fill_mean for s in verified}  # type: ignore[union-attr]
    yield dg.AssetCheckResult(
        check_name=CHECK_FILL,
        passed=all(f >= min_mean_fill for f in fills.values()),
        metadata={"fill_mean_by_stage": fills, "threshold": min_mean_fill},
    )
    reused = sorted({*run.reused_sections, *(x for s in verified for x in s.verify.reused_sections)})  # type: ignore[union-attr]
    yield dg.AssetCheckResult(
        check_name=CHECK_REUSE, passed=not reused, metadata={"reused_sections": len(reused), "examples": reused[:10]}
    )
    wrong = [x for s in verified for x in s.verify.wrong_length + s.verify.low_fill]  # type: ignore[union-attr]
    yield dg.AssetCheckResult(
        check_name=CHECK_LENGTH,
        passed=not wrong,
        metadata={"samples_read_back": sum(s.verify.n_samples for s in verified), "wrong": wrong[:10]},  # type: ignore[union-attr]
    )
    bad = [x for s in verified for x in s.verify.tokenization_mismatch + s.verify.label_mismatch]  # type: ignore[union-attr]
    yield dg.AssetCheckResult(check_name=CHECK_ROUNDTRIP, passed=not bad, metadata={"mismatched": bad[:10]})
    failures = {s.sample_tokens: s.failure for s in run.stages if s.failure}
    yield dg.AssetCheckResult(
        check_name=CHECK_POOL,
        passed=not failures,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"failures": dg.MetadataValue.json({str(k): v for k, v in failures.items()})},
    )
