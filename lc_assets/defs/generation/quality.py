"""The qa_pairs asset's quality metadata, plots and checks: a thin layer over lib.generation.quality.

Checks are one per metric (their names are fixed at definition time); their rules — threshold,
WARN or ERROR severity, the fewest pairs a rule needs — come from the run config
(`quality_rules`, default: `lib.generation.quality.DEFAULT_THRESHOLDS`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import create_model

from lc_assets.defs.metadata import png_markdown
from lc_assets.lib.generation.quality import (
    DEFAULT_THRESHOLDS,
    N_DECILES,
    QualityReport,
    QualityThresholds,
    Threshold,
    ThresholdResult,
    evaluate_thresholds,
)
from lc_assets.lib.lineage.store import LineageStore
from lc_assets.lib.quality_report import write_quality_report

#: metric -> asset check name (the checks of qa_pairs)
QUALITY_CHECKS: dict[str, str] = {
    "evidence_verbatim_share": "qa_evidence_verbatim",
    "empty_answers": "qa_no_empty_answers",
    "near_duplicate_share": "qa_near_duplicates",
    "depth_coverage": "qa_evidence_depth_coverage",
    "yield_": "qa_yield",
    "max_kind_share": "qa_kind_mix",
}

# Derived, not copied: the Dagster form of one threshold rule (same fields, types, defaults and descriptions).
QualityRule: Any = create_model(
    "QualityRule",
    __base__=dg.Config,
    **{name: (field.annotation, field) for name, field in Threshold.model_fields.items()},
)


def quality_check_specs() -> list[dg.AssetCheckSpec]:
    descriptions = {t.metric: t.description for t in DEFAULT_THRESHOLDS}
    return [
        dg.AssetCheckSpec(name, asset="qa_pairs", description=f"{metric}: {descriptions.get(metric, metric)}")
        for metric, name in QUALITY_CHECKS.items()
    ]


def thresholds_of(rules: Sequence[Any] | None) -> QualityThresholds:
    """The lib thresholds of the configured rules (None: the defaults); a metric without a check is an error."""
    if rules is None:
        return QualityThresholds()
    parsed = tuple(Threshold(**r.model_dump()) for r in rules)
    unknown = sorted({r.metric for r in parsed} - set(QUALITY_CHECKS))
    if unknown:
        raise dg.Failure(
            f"quality_rules name metrics without a check: {unknown}; checked metrics: {sorted(QUALITY_CHECKS)}",
            allow_retries=False,
        )
    return QualityThresholds(rules=parsed)


def check_results(report: QualityReport, thresholds: QualityThresholds) -> list[dg.AssetCheckResult]:
    """One result per check: failed if any of its metric's rules fails, with the worst failing severity."""
    by_metric: dict[str, list[ThresholdResult]] = {}
    for res in evaluate_thresholds(report, thresholds):
        by_metric.setdefault(res.metric, []).append(res)
    out = []
    for metric, name in QUALITY_CHECKS.items():
        results = by_metric.get(metric, [])
        failed = [r for r in results if not r.passed]
        severity = (
            dg.AssetCheckSeverity.ERROR
            if any(r.severity == "ERROR" for r in failed)
            else dg.AssetCheckSeverity.WARN
            if failed
            else dg.AssetCheckSeverity.ERROR
        )
        out.append(
            dg.AssetCheckResult(
                asset_key="qa_pairs",
                check_name=name,
                passed=not failed,
                severity=severity,
                metadata={
                    "value": float(report.metric(metric)),
                    "rules": "; ".join(
                        f"{r.rule} [{r.severity}]" + (" (skipped: too few pairs)" if r.skipped else "") for r in results
                    )
                    or "no rule configured",
                    "accepted_pairs": report.accepted,
                    "steps": report.steps,
                },
            )
        )
    return out


def quality_plot_png(report: QualityReport, title: str) -> bytes:
    """Evidence depth over chunk deciles, question kinds, rejections by reason (failed steps + retries)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (depth, kinds, rejected) = plt.subplots(1, 3, figsize=(12, 3.2), dpi=80)
    depth.bar(range(N_DECILES), report.depth_histogram, color="#4f6bed")
    depth.set_xticks(range(N_DECILES), [f"{10 * i}" for i in range(N_DECILES)], fontsize=7)
    depth.set_xlabel("chunk decile (% of its characters)")
    depth.set_ylabel("evidence quotes")
    depth.set_title(f"evidence depth (coverage {report.depth_coverage:.2f})", fontsize=9)
    names = list(report.kind_mix)
    kinds.barh(names, [report.kind_mix[k] for k in names], color="#3aa17e")
    kinds.invert_yaxis()
    kinds.set_title(f"question kinds ({report.accepted} pairs)", fontsize=9)
    reasons: dict[str, int] = dict(report.rejections_by_reason)
    for code, n in report.rejected_attempts_by_reason.items():
        reasons[code] = reasons.get(code, 0) + n
    codes = sorted(reasons, key=lambda c: -reasons[c])[:12]
    rejected.barh(codes or ["none"], [reasons[c] for c in codes] or [0], color="#d9534f")
    rejected.invert_yaxis()
    rejected.set_title(f"rejected attempts by reason ({sum(reasons.values())})", fontsize=9)
    for ax in (kinds, rejected):
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def quality_metadata(run: QualityReport, overall: QualityReport, by_shard: dict[str, QualityReport]) -> dict[str, Any]:
    """The figures users read in the UI: this run's and all steps' so far, per shard as a table, plots."""
    rows = [
        "| shard | steps | pairs | yield | verbatim evidence | near-dup. | empty | depth coverage (pairs) | top kind |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for shard, r in by_shard.items():
        rows.append(
            f"| {shard} | {r.steps} | {r.accepted} | {r.yield_:.2f} | {r.evidence_verbatim_share:.2f} | "
            f"{r.near_duplicate_share:.3f} | {r.empty_answers} | {r.depth_coverage:.2f} ({r.pairs_with_depth}) | "
            f"{r.max_kind_share:.2f} |"
        )
    return {
        "quality_yield": overall.yield_,
        "quality_evidence_verbatim_share": overall.evidence_verbatim_share,
        "quality_completed_evidence_share": overall.completed_evidence_share,
        "quality_near_duplicate_share": overall.near_duplicate_share,
        "quality_empty_answers": overall.empty_answers,
        "quality_depth_coverage": overall.depth_coverage,
        "quality_pairs_with_depth": overall.pairs_with_depth,
        "quality_max_kind_share": overall.max_kind_share,
        "generated_tokens_per_1m_packed": overall.generated_per_1m_packed or 0.0,
        "kind_mix": dg.MetadataValue.json(overall.kind_mix),
        "rejections_by_reason": dg.MetadataValue.json(
            {"failed_steps": overall.rejections_by_reason, "retried_attempts": overall.rejected_attempts_by_reason}
        ),
        "quality_this_run": dg.MetadataValue.json(run.to_metadata()),
        "quality_by_shard": dg.MetadataValue.md("\n".join(rows)),
        "quality_plots": png_markdown(
            quality_plot_png(overall, f"all {overall.steps} steps of this generation config in these shards"),
            "evidence depth, question kinds, rejections",
        ),
    }


def write_report(
    store: LineageStore, generation_config_hash: str, run_id: str, sample_pairs: int, log: Any
) -> dict[str, Any]:
    """The per-run HTML quality report (lc_assets.lib.quality_report), linked in the metadata."""
    out = Path(store.path).parent / "reports" / f"qa_quality-{generation_config_hash}-{run_id}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    path = write_quality_report(store, generation_config_hash, out, run_id=run_id, sample_pairs=sample_pairs)
    return {"quality_report": dg.MetadataValue.path(str(path))}
