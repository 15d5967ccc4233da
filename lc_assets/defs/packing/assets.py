"""packed_documents: finished sections packed without replacement into exactly-N-token chat samples."""

import json
from collections import Counter

import dagster as dg

from lc_assets.defs.resources import LineageStoreResource, TokenizerResource, data_dir
from lc_assets.lib.lineage import LineageStore, insert_rows
from lc_assets.lib.packing import EmptyPoolError, PackingConfig, base_section_id, pack_sections, write_outputs
from lc_assets.lib.sections import QAPair, Section

CHECK_FILL = "packed_fill_ratio"
CHECK_REUSE = "packed_no_section_reuse"
CHECK_LENGTH = "packed_exact_length"


class PackedDocumentsConfig(dg.Config):
    sample_tokens: int = 1_048_576
    seed: int = 0
    min_mean_fill: float = 0.999  # the fill check's threshold
    store_token_ids: bool = True
    generation_config_hash: str | None = None  # which sections; default: every finished section
    allow_small_samples: bool = False  # below 65,536 tokens: tests and tiny demos only


def section_pool(store: LineageStore, packing_hash: str, generation_hash: str | None) -> list[Section]:
    """Finished sections not yet placed in a sample of this packing config (leftovers carry over by this)."""
    where = "s.finish_reason IS NOT NULL AND s.finish_reason <> 'empty_chunk'"
    params: list = []
    if generation_hash:
        where += " AND s.config_hash = ?"
        params.append(generation_hash)
    rows = store.query(
        f"""SELECT s.section_id, s.chunk_id, s.document_id, d.source, d.license, c.text
            FROM sections s JOIN chunks c USING (chunk_id) JOIN documents d ON d.document_id = s.document_id
            WHERE {where} AND s.section_id NOT IN (
                SELECT base_section_id FROM packed_sample_sections WHERE config_hash = ?)
            ORDER BY s.section_id""",
        [*params, packing_hash],
    )
    pairs: dict[str, list[QAPair]] = {}
    for sid, pid, step, q, a in store.query(
        "SELECT section_id, pair_id, step, question, answer FROM qa_pairs "
        "WHERE section_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY section_id, step",
        [[r[0] for r in rows]],
    ):
        pairs.setdefault(sid, []).append(QAPair(pid, step, q, a))
    return [Section(sid, cid, did, src, lic, text, tuple(pairs.get(sid, ()))) for sid, cid, did, src, lic, text in rows]


@dg.asset(
    deps=["qa_pairs"],
    group_name="packing",
    kinds={"parquet", "duckdb"},
    owners=["team:data-pipeline"],
    description="Sections (chunk + its QA pairs) packed without replacement into samples of exactly N tokens "
    "(default 1,048,576) in the target model's chat template, with loss spans; parquet + HF dataset + manifest. "
    "Sections that do not complete a sample stay in the pool for the next run.",
    check_specs=[
        dg.AssetCheckSpec(CHECK_FILL, asset="packed_documents", description="mean fill ratio >= threshold"),
        dg.AssetCheckSpec(CHECK_REUSE, asset="packed_documents", description="no section used twice per config"),
        dg.AssetCheckSpec(CHECK_LENGTH, asset="packed_documents", description="every sample is exactly N tokens"),
    ],
)
def packed_documents(
    context: dg.AssetExecutionContext,
    config: PackedDocumentsConfig,
    lineage: LineageStoreResource,
    target_tokenizer: TokenizerResource,
):
    store = lineage.store()
    tok = target_tokenizer.load()
    cfg = PackingConfig(
        sample_tokens=config.sample_tokens,
        seed=config.seed,
        store_token_ids=config.store_token_ids,
        allow_small_samples=config.allow_small_samples,
    )
    packing_hash = cfg.config_hash()
    pool = section_pool(store, packing_hash, config.generation_config_hash)
    context.log.info(f"packing {len(pool)} unused finished section(s) into {config.sample_tokens:,}-token samples")
    out_dir = data_dir() / "packed" / packing_hash / context.run_id
    try:
        result = pack_sections(pool, tok, cfg)
    except EmptyPoolError as exc:
        context.log.warning(str(exc))
        yield dg.MaterializeResult(metadata={"samples": 0, "message": str(exc), "packing_config_hash": packing_hash})
        yield dg.AssetCheckResult(check_name=CHECK_FILL, passed=True, metadata={"note": "no samples"})
        yield dg.AssetCheckResult(check_name=CHECK_REUSE, passed=True, metadata={"note": "no samples"})
        yield dg.AssetCheckResult(check_name=CHECK_LENGTH, passed=True, metadata={"note": "no samples"})
        return
    files = write_outputs(result, out_dir, cfg) if result.samples else {}
    sample_rows, member_rows = [], []
    for s in result.samples:
        sample_rows.append(
            dict(
                sample_id=s.sample_id, config_hash=packing_hash, n_tokens=len(s.input_ids),
                n_real_tokens=s.num_real_tokens, fill_ratio=s.fill_ratio, n_sections=len(s.section_ids),
                cut_section_id=s.cut.section_id if s.cut else None, sources=json.dumps(sorted(set(s.sources))),
                licenses=json.dumps(sorted(set(s.licenses))), output_dir=str(out_dir), run_id=context.run_id,
            )
        )  # fmt: skip
        member_rows += [
            dict(
                sample_id=s.sample_id,
                position=i,
                section_id=sid,
                base_section_id=base_section_id(sid),
                config_hash=packing_hash,
            )
            for i, sid in enumerate(s.section_ids)
        ]
    with store.transaction() as con:
        insert_rows(con, "packed_samples", sample_rows)
        insert_rows(con, "packed_sample_sections", member_rows)

    m = result.metrics
    meta = {
        "packing_config_hash": packing_hash,
        "samples": m.n_samples,
        "sample_tokens": cfg.sample_tokens,
        "fill_mean": round(m.fill_mean, 6),
        "fill_min": round(m.fill_min, 6),
        "sections_in_pool": len(pool),
        "sections_packed": m.n_sections_packed,
        "cut_sections": m.n_cut_sections,
        "section_reuse": m.section_reuse_count,
        "ks_length_bias": round(m.ks_length_bias, 4),
        "leftover_sections": m.n_leftover_sections,
        "leftover_tokens": m.leftover_tokens,
        "rejected_by_reason": dg.MetadataValue.json(m.rejected_by_reason),
        "source_tokens": dg.MetadataValue.json(m.source_tokens),
        "message": result.message,
        "output_dir": dg.MetadataValue.path(str(out_dir)),
        "files": dg.MetadataValue.json({k: str(v) for k, v in files.items() if k != "parquet"}),
    }
    if result.samples:
        first = result.samples[0]
        mix = Counter(first.sources)
        meta["first_sample"] = dg.MetadataValue.md(
            f"`{first.sample_id}`: {len(first.section_ids)} sections, fill {first.fill_ratio:.5f}, "
            f"sources {dict(mix)}\n\n```\n{first.text[:600] if first.text else ''}\n```"
        )
    yield dg.MaterializeResult(metadata=meta)
    yield dg.AssetCheckResult(
        check_name=CHECK_FILL,
        passed=not result.samples or m.fill_mean >= config.min_mean_fill,
        metadata={"fill_mean": m.fill_mean, "threshold": config.min_mean_fill},
    )
    reused = store.scalar(
        """SELECT count(*) FROM (SELECT base_section_id AS sid, count(DISTINCT sample_id) AS n
           FROM packed_sample_sections WHERE config_hash = ? GROUP BY 1 HAVING n > 1)""",
        [packing_hash],
    )
    yield dg.AssetCheckResult(check_name=CHECK_REUSE, passed=reused == 0, metadata={"reused_sections": reused})
    wrong = [s.sample_id for s in result.samples if len(s.input_ids) != cfg.sample_tokens]
    yield dg.AssetCheckResult(
        check_name=CHECK_LENGTH, passed=not wrong, metadata={"samples": len(result.samples), "wrong_length": len(wrong)}
    )
