"""The operations layer loads, its jobs carry the right assets and tags, and every profile validates."""

import dagster as dg
import pytest

from lc_assets.cli import PROFILES
from lc_assets.defs.automation.executor import EXECUTOR_ENV, executor_from_env
from lc_assets.defs.automation.jobs import CORPUS_INGEST_ASSETS, GENERATION_ASSETS, RULER_EVAL_ASSETS
from lc_assets.defs.automation.watched_folders import profile_run_config

JOBS = {
    "corpus_ingest_job": CORPUS_INGEST_ASSETS,
    "generation_job": GENERATION_ASSETS,
    "ruler_eval_job": RULER_EVAL_ASSETS,
}


def test_jobs_sensors_schedules_load(loaded_defs):
    for name, assets in JOBS.items():
        job = loaded_defs.resolve_job_def(name)
        keys = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
        assert keys == set(assets), name
    assert loaded_defs.resolve_job_def("generation_job").tags["lc_assets/gpu"] == "true"
    assert loaded_defs.resolve_job_def("ruler_eval_job").tags["lc_assets/gpu"] == "true"
    assert "lc_assets/gpu" not in loaded_defs.resolve_job_def("corpus_ingest_job").tags
    assert loaded_defs.resolve_job_def("generation_job").partitions_def.name == "corpus_shards"
    sensors = {s.name for s in loaded_defs.sensors}
    assert {"corpus_inbox_sensor", "model_checkpoint_sensor", "corpus_automation_sensor"} <= sensors
    assert {s.name for s in loaded_defs.schedules} == {"ruler_eval_weekly_schedule"}
    # the other stages' assets are still there (a @dg.definitions beside other objects would drop them)
    keys = {k.to_user_string() for k in loaded_defs.resolve_all_asset_keys()}
    assert {"raw_corpus", "chunks", "masked_prompts", "qa_pairs", "packed_documents", "ruler_scores"} <= keys


def test_automation_targets_only_the_corpus_steps(loaded_defs):
    sensor = next(s for s in loaded_defs.sensors if s.name == "corpus_automation_sensor")
    graph = loaded_defs.resolve_asset_graph()
    targeted = {k.to_user_string() for k in sensor.asset_selection.resolve(graph)}
    assert targeted == {"filtered_corpus", "chunks"}
    assert sensor.default_condition is not None


@pytest.mark.parametrize("profile", ["", *PROFILES])
@pytest.mark.parametrize("job_name", sorted(JOBS))
def test_profiles_validate_against_each_job(loaded_defs, job_name, profile):
    job = loaded_defs.resolve_job_def(job_name)
    run_config = profile_run_config(profile, JOBS[job_name])
    result = dg.validate_run_config(job, run_config)
    assert result, (job_name, profile)


@pytest.mark.parametrize("choice", ["", "multiprocess", "in_process"])
def test_executor_variants_load(monkeypatch, choice):
    from lc_assets.definitions import defs

    monkeypatch.setenv(EXECUTOR_ENV, choice)
    d = defs()
    expected = None if choice in ("", "multiprocess") else dg.in_process_executor
    assert d.executor is expected
    assert d.resolve_job_def("generation_job") is not None


def test_k8s_executor_or_install_hint(monkeypatch):
    monkeypatch.setenv(EXECUTOR_ENV, "k8s")
    try:
        import dagster_k8s  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install 'dagster-k8s"):
            executor_from_env()
        return
    assert executor_from_env().name == "k8s"


def test_unknown_executor_is_refused(monkeypatch):
    monkeypatch.setenv(EXECUTOR_ENV, "celery")
    with pytest.raises(ValueError, match="celery"):
        executor_from_env()
