"""Quality as data: metrics read back from lineage (per run, shard, section) agree with the stored rows."""

from __future__ import annotations

import json

from lc_assets.lib.corpus.lineage import latest_chunk_config
from lc_assets.lib.generation.quality import N_DECILES, reason_code
from lc_assets.lib.generation.run import grow_sections
from lc_assets.lib.lineage import LineageStore
from lc_assets.lib.lineage.generation import sections_to_grow
from lc_assets.lib.lineage.quality import load_outcomes, load_quality, record_quality, stored_quality
from lc_assets_tests.generation.doubles import Reply, ScriptedBackend, grounded_text
from lc_assets_tests.lineage.run_worker import config, seed_shard


def _grow(catalog: LineageStore, run_id: str, cfg, script=None) -> None:
    from lc_assets.defs.resources import TokenizerResource

    tok = TokenizerResource().load()
    todo, _ = sections_to_grow(catalog, "books", latest_chunk_config(catalog, "books"), cfg.config_hash())
    backend = ScriptedBackend(tokenizer=tok, **({"script": script} if script else {}))
    grow_sections(catalog, todo, backend, cfg, tok, run_id)


def test_quality_from_lineage_matches_the_stored_rows_per_run_shard_and_section(tmp_path):
    catalog = LineageStore(tmp_path / "lineage.duckdb")
    n_sections = seed_shard(catalog, "books", tmp_path / "books", 2, 3)
    first = config().model_copy(update={"max_steps_per_section": 3})
    _grow(catalog, "run-1", first)

    # a second generation config (another seed: its own sections) whose model asks one question again and
    # again: the first step of each section is accepted, the second refused on every attempt
    second = config().model_copy(update={"max_steps_per_section": 2, "seed": 6})

    def repeat(req):
        return Reply(grounded_text(req, question="What does the same question ask?"))

    _grow(catalog, "run-2", second, repeat)

    gen_hash = second.config_hash()
    report = load_quality(catalog, gen_hash)
    assert report.steps == catalog.scalar("SELECT count(*) FROM masked_prompts WHERE config_hash = ?", [gen_hash])
    assert report.steps == 2 * n_sections
    accepted = catalog.scalar("SELECT count(*) FROM qa_pairs WHERE config_hash = ?", [gen_hash])
    assert report.accepted == accepted == n_sections  # step 0 of each section; step 1 repeats its question
    assert report.rejections_by_reason == {"duplicate_question": n_sections}
    # every refused attempt is a row with its code; the retried ones (not the last of a failed step) are counted
    codes = dict(
        catalog.query("SELECT code, count(*) FROM rejected_attempts WHERE config_hash = ? GROUP BY 1", [gen_hash])
    )
    assert codes.pop("duplicate_question") == n_sections * (second.max_retries_per_step + 1)
    # the double's answer to a first step may be refused before a retry is accepted (a slice of its quote that
    # stops mid-sentence): whatever else was refused are retries of accepted steps
    retried_ok = catalog.scalar(
        "SELECT count(*) FROM rejected_attempts r JOIN qa_pairs q USING (prompt_id) WHERE r.config_hash = ?", [gen_hash]
    )
    assert sum(codes.values()) == retried_ok
    assert report.rejected_attempts_by_reason == {
        "duplicate_question": n_sections * second.max_retries_per_step,
        **codes,
    }
    evidence = catalog.scalar(
        "SELECT count(*) FROM qa_evidence e JOIN qa_pairs q USING (pair_id) WHERE q.config_hash = ?", [gen_hash]
    )
    assert sum(report.depth_histogram) == evidence and len(report.depth_histogram) == N_DECILES
    assert report.evidence_verbatim_share == 1.0 and report.empty_answers == 0
    assert set(report.kind_mix) <= {"what", "why", "how", "compare", "list", "numeric", "multi_hop", "yes_no", "other"}

    # per run: the first config's steps belong to run-1 only
    first_hash = first.config_hash()
    assert load_quality(catalog, first_hash, "run-1").steps == 3 * n_sections
    assert load_quality(catalog, first_hash, "run-2").steps == 0
    outcomes, tokens = load_outcomes(catalog, first_hash, shards=["books"])
    assert len(outcomes) == 3 * n_sections and tokens > 0
    assert load_quality(catalog, first_hash, shards=["other"]).steps == 0

    # stored: one row per run, shard and section; shard and section rows are replaced by later runs
    recorded = record_quality(catalog, gen_hash, "run-2", ["books"])
    assert recorded.run.steps == report.steps and recorded.overall.accepted == report.accepted
    assert set(recorded.by_section) == {
        r[0] for r in catalog.query("SELECT section_id FROM sections WHERE config_hash = ?", [gen_hash])
    }
    rows = catalog.query(
        "SELECT scope, count(*) FROM generation_quality WHERE config_hash = ? GROUP BY 1 ORDER BY 1", [gen_hash]
    )
    assert rows == [("run", 1), ("section", n_sections), ("shard", 1)]
    assert stored_quality(catalog, gen_hash, "shard")["books"]["accepted"] == report.accepted
    record_quality(catalog, gen_hash, "run-3", ["books"])
    assert catalog.scalar("SELECT count(*) FROM generation_quality WHERE scope = 'shard'") == 1
    stored = json.loads(catalog.scalar("SELECT metrics FROM generation_quality WHERE scope_key = 'run-3'"))
    assert stored["steps"] == 0  # run-3 made no steps
    assert reason_code("truncated at max_tokens=80: invalid_json: x") == "truncated"
