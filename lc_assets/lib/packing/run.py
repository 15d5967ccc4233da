"""One packing run of a pool, stage by stage: read the pool back, pack, write, commit, publish, verify.

The order is what makes a run safe to kill or to run twice at once:

1. under the pool's lock, publish or remove what an earlier killed run left (`publish.recover`);
2. per stage: read the pool from the lineage (sections never placed + remainders of split ones),
   pack, write every file into a temporary folder, commit the rows (refused if another run claimed
   the same pairs), then rename the folder to its published name, then re-read it and check it.

A stage whose rows did not commit leaves no published files; a stage whose files were not
renamed is published by the next run. Each curriculum stage draws from what the earlier stages left.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lc_assets.lib.lineage import LineageStore
from lc_assets.lib.lineage.cross import load_cross_pairs
from lc_assets.lib.packing.config import PackingConfig
from lc_assets.lib.packing.evidence import load_evidence
from lc_assets.lib.packing.packer import EmptyPoolError, PackResult, pack_sections
from lc_assets.lib.packing.publish import VerifyReport, pool_lock, publish, recover, stage_dirs, verify_written
from lc_assets.lib.packing.store import (
    StageRecord,
    committed_runs,
    generation_configs,
    load_reviewed_pool,
    pool_key,
    record_stage,
    reused_sections,
    samples_in_stage,
)
from lc_assets.lib.packing.writers import write_outputs
from lc_assets.lib.tokenizer import TextTokenizer

Log = Callable[[str], None]


class NoSectionsError(LookupError):
    """No generation config has finished sections: there is nothing to pack yet."""


@dataclass
class StageOutcome:
    """What one stage did (result is None when its pool was empty or its quota already full)."""

    config: PackingConfig
    limit: int | None
    pool_sections: int
    result: PackResult | None = None
    output_dir: Path | None = None
    verify: VerifyReport | None = None
    evidence_sources: dict[str, int] = field(default_factory=dict)
    note: str = ""
    reviewed_out: int = 0  # pairs left out of the pool: a reviewer rejected them
    reviewed_fixed: int = 0  # pairs of the pool packed with a reviewer's fixed text
    judged_out: int = 0  # pairs left out of the pool: the model judge rejected them (no human verdict)

    @property
    def sample_tokens(self) -> int:
        return self.config.sample_tokens

    @property
    def message(self) -> str:
        return self.result.message if self.result else self.note

    @property
    def failure(self) -> str:
        return self.result.failure if self.result else ""


@dataclass
class PackingRun:
    """Every stage of one run, the pool it drew from and what the checks need."""

    run_id: str
    config: PackingConfig  # generation_config_hash resolved
    pool_key: str
    tokenizer: str
    stages: list[StageOutcome]
    other_generation_configs: dict[str, int]  # finished sections of configs this run did not pack
    recovered: dict[str, list[str]]
    reused_sections: list[str]


def resolve_generation_config(store: LineageStore, config: PackingConfig) -> tuple[PackingConfig, dict[str, int]]:
    """The config with its generation config made explicit (default: the newest), and the others left out."""
    configs = generation_configs(store)
    if not configs:
        raise NoSectionsError("no finished sections in the lineage store: run generate_qa (qa_pairs) first")
    chosen = config.generation_config_hash or configs[0][0]
    known = {h for h, _, _ in configs}
    if chosen not in known:
        raise NoSectionsError(
            f"generation config {chosen!r} has no finished sections; configs with finished sections: {sorted(known)}"
        )
    others = {h: n for h, n, _ in configs if h != chosen}
    return config.model_copy(update={"generation_config_hash": chosen}), others


def pack_pool(
    store: LineageStore,
    tokenizer: TextTokenizer,
    config: PackingConfig,
    *,
    run_id: str,
    root: Path,
    log: Log = print,
    lock_timeout_s: float = 3600.0,
) -> PackingRun:
    """Pack every stage of `config` from its pool (see the module docstring)."""
    config, others = resolve_generation_config(store, config)
    assert config.generation_config_hash is not None
    key = pool_key(config.pool, config.generation_config_hash, tokenizer.identity)
    if others:
        log(
            f"packing generation config {config.generation_config_hash}; not packing {others} (set generation_config_hash)"
        )
    with pool_lock(root, key, lock_timeout_s, on_wait=log):
        recovered = recover(root, committed_runs(store), key)
        if recovered["published"] or recovered["removed"]:
            log(f"recovered earlier packing folders: {recovered}")
        stages = [
            _pack_stage(store, tokenizer, stage, limit, key=key, run_id=run_id, root=root, log=log)
            for stage, limit in zip(config.stages(), config.stage_limits(), strict=True)
        ]
        reused = reused_sections(store, key)
    return PackingRun(run_id, config, key, tokenizer.identity, stages, others, recovered, reused)


def _pack_stage(
    store: LineageStore,
    tokenizer: TextTokenizer,
    config: PackingConfig,
    limit: int | None,
    *,
    key: str,
    run_id: str,
    root: Path,
    log: Log,
) -> StageOutcome:
    assert config.generation_config_hash is not None
    reviewed = load_reviewed_pool(
        store, key, config.generation_config_hash, config.human_reviews, config.model_judgements
    )
    pool = reviewed.sections
    outcome = StageOutcome(config, limit, len(pool), reviewed_out=reviewed.excluded_pairs,
                           reviewed_fixed=reviewed.fixed_pairs, judged_out=reviewed.judge_excluded_pairs)  # fmt: skip
    if reviewed.judge_excluded_pairs:
        log(
            f"stage {config.sample_tokens:,}: the model judge left out {reviewed.judge_excluded_pairs} rejected pair(s)"
        )
    if reviewed.excluded_pairs or reviewed.fixed_pairs:
        log(
            f"stage {config.sample_tokens:,}: human reviews left out {reviewed.excluded_pairs} rejected pair(s), "
            f"{reviewed.fixed_pairs} pair(s) packed with fixed text"
        )
    remaining = None if limit is None else limit - samples_in_stage(store, key, config.sample_tokens)
    if remaining is not None and remaining <= 0:
        outcome.note = f"stage {config.sample_tokens:,}: quota of {limit} samples already full"
    elif not pool:
        outcome.note = (
            f"stage {config.sample_tokens:,}: the pool {config.pool!r} is empty (every finished section is packed "
            "in it; a new `pool` name packs them again)"
        )
    if outcome.note:
        log(outcome.note)
        return outcome
    log(f"stage {config.sample_tokens:,}: packing a pool of {len(pool)} section(s) ({config.mode} mode)")
    evidence, outcome.evidence_sources = load_evidence(store, pool)
    # pairs about two chunks far apart (generation's cross sections), not yet packed in this pool
    cross = load_cross_pairs(store, config.generation_config_hash, key) if config.mode == "coherent" else []
    try:
        result = pack_sections(pool, tokenizer, config, evidence=evidence, max_samples=remaining, cross_pairs=cross)
    except EmptyPoolError as exc:
        outcome.note = str(exc)
        return outcome
    outcome.result = result
    log(f"stage {config.sample_tokens:,}: {result.message}")
    tmp, final = stage_dirs(root, key, config.sample_tokens, run_id)
    if result.samples:
        shutil.rmtree(tmp, ignore_errors=True)
        write_outputs(result, tmp, config)
    record = StageRecord(
        run_id=run_id,
        pool=config.pool,
        pool_key=key,
        config_hash=result.config_hash,
        generation_config_hash=config.generation_config_hash,
        tokenizer=tokenizer.identity,
        mode=config.mode,
        sample_tokens=config.sample_tokens,
        output_dir=str(final) if result.samples else None,
        message=result.message,
        metrics=result.metrics.as_metadata(),
    )
    try:
        record_stage(store, record, result.samples)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing committed: nothing may be published
        raise
    if result.samples:
        outcome.output_dir = publish(tmp, final)
        outcome.verify = verify_written(final / "hf_dataset", tokenizer, config.sample_tokens, config.min_fill)
    return outcome


def stage_summary(stage: StageOutcome) -> dict[str, Any]:
    """A flat row per stage for metadata tables and the manifest."""
    m = stage.result.metrics if stage.result else None
    dep = m.dependency if m else {}
    return {
        "sample_tokens": stage.sample_tokens,
        "quota": stage.limit,
        "pool_sections": stage.pool_sections,
        "samples": m.n_samples if m else 0,
        "fill_mean": round(m.fill_mean, 6) if m else 0.0,
        "fill_min": round(m.fill_min, 6) if m else 0.0,
        "sections_packed": m.n_sections_packed if m else 0,
        "documents_per_sample": round(m.documents_per_sample, 2) if m else 0.0,
        "main_document_share": round(m.main_document_share, 3) if m else 0.0,
        "cuts_by_kind": m.cuts_by_kind if m else {},
        "leftover_sections": m.n_leftover_sections if m else 0,
        "rejected_by_reason": m.rejected_by_reason if m else {},
        "pairs_rejected_by_reviewers": stage.reviewed_out,
        "pairs_fixed_by_reviewers": stage.reviewed_fixed,
        "pairs_rejected_by_judge": stage.judged_out,
        "pairs": m.n_pairs if m else 0,
        "dependency_median": dep.get("median"),
        "dependency_p90": dep.get("p90"),
        "cross_pairs": m.n_cross_pairs if m else 0,
        "cross_pairs_offered": m.cross_pairs_offered if m else 0,
        "cross_nearest_median": m.cross_nearest.get("median") if m else None,
        "cross_farthest_median": m.cross_farthest.get("median") if m else None,
        "output_dir": str(stage.output_dir) if stage.output_dir else None,
        "message": stage.message,
    }
