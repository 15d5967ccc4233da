import dagster as dg

from lc_assets.definitions import defs


def test_all_definitions_load():
    d = defs()
    keys = {k.to_user_string() for k in d.resolve_all_asset_keys()}
    assert {"raw_corpus", "chunks"} <= keys
    job = d.resolve_implicit_global_asset_job_def()
    assert job is not None
    specs = {s.key.to_user_string(): s for s in d.resolve_all_asset_specs()}
    assert specs["raw_corpus"].group_name == "corpus"
    assert isinstance(specs["chunks"].partitions_def, dg.DynamicPartitionsDefinition)
    checks = {k.name for k in d.resolve_asset_graph().asset_check_keys}
    assert {"chunk_token_bounds", "chunks_reconstruct_documents"} <= checks


def test_asset_keys_checks_and_automation_names_are_stable():
    """Renaming modules must not rename what runs, schedules and the lineage refer to."""
    d = defs()
    assert {k.to_user_string() for k in d.resolve_all_asset_keys()} == {
        "raw_corpus", "filtered_corpus", "chunks", "masked_prompts", "qa_pairs", "judged_qa_pairs", "packed_documents",
        "ruler_tasks", "ruler_scores",
    }  # fmt: skip
    assert {(k.asset_key.to_user_string(), k.name) for k in d.resolve_asset_graph().asset_check_keys} >= {
        ("filtered_corpus", "filter_decisions_cover_shard"), ("chunks", "chunk_token_bounds"),
        ("chunks", "chunks_reconstruct_documents"), ("chunks", "chunk_counts_match_lineage"),
        ("chunks", "chunk_token_counts_exact"), ("chunks", "shards_have_usable_chunks"),
        ("packed_documents", "packed_exact_length"), ("packed_documents", "packed_fill_ratio"),
        ("judged_qa_pairs", "judge_rejected_share"), ("judged_qa_pairs", "judge_errors"),
    }  # fmt: skip
    assert {j.name for j in d.jobs or []} >= {"corpus_ingest_job", "generation_job", "ruler_eval_job"}
    assert {s.name for s in d.sensors or []} == {
        "corpus_inbox_sensor", "model_checkpoint_sensor", "corpus_automation_sensor",
    }  # fmt: skip
    assert {s.name for s in d.schedules or []} == {"ruler_eval_weekly_schedule"}


def test_instance_config_is_valid(tmp_path, monkeypatch):
    import shutil
    from pathlib import Path

    shutil.copy(Path(__file__).parents[2] / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with dg.DagsterInstance.get() as instance:
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
        assert {"key": "lc_assets/gpu", "value": "true", "limit": 1} in limits


def test_profiles_validate_against_the_asset_job():
    import yaml

    from lc_assets.cli import PROFILES, profile_path

    job = defs().resolve_implicit_global_asset_job_def()
    for name in PROFILES:
        run_config = yaml.safe_load(profile_path(name).read_text())
        result = dg.validate_run_config(job, run_config)
        assert result, name
