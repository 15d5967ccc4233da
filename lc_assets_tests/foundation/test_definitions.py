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
