"""The `gpu` pool holds on every launch path: the executor claims the slot (op granularity), so a materialization
started from the CLI, the UI's implicit asset job or a sensor waits like a named job's run."""

from __future__ import annotations

import threading
from pathlib import Path

import dagster as dg
import pytest
import yaml

from lc_assets.lib.generation.vllm_backend import GPU_POOL

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("config", ["dagster.yaml", "docker/dagster.postgres.yaml"])
def test_instance_configs_limit_the_gpu_pool_at_op_granularity(config):
    pools = yaml.safe_load((ROOT / config).read_text())["concurrency"]["pools"]
    assert pools == {"granularity": "op", "default_limit": 1}


def test_gpu_is_the_only_pool(loaded_defs):
    # default_limit applies to every pool: it is the gpu limit only while gpu is the only pool
    assets = [a for a in loaded_defs.assets if isinstance(a, dg.AssetsDefinition) and a.is_executable]
    pools = {a.op.pool for a in assets}
    assert pools - {None} == {GPU_POOL}
    on_gpu = {k.to_user_string() for a in assets if a.op.pool == GPU_POOL for k in a.keys}
    assert {"masked_prompts", "qa_pairs", "ruler_scores"} <= on_gpu


def test_a_plain_materialization_waits_for_the_gpu_slot(tmp_path):
    concurrency = yaml.safe_load((ROOT / "dagster.yaml").read_text())["concurrency"]

    @dg.asset(pool=GPU_POOL)
    def on_gpu() -> int:
        return 1

    with dg.instance_for_test(temp_dir=str(tmp_path), overrides={"concurrency": concurrency}) as instance:
        storage = instance.event_log_storage
        storage.initialize_concurrency_limit_to_default(GPU_POOL)
        assert storage.claim_concurrency_slot(GPU_POOL, "generation-run", "generate_qa", 0).is_claimed
        done = threading.Event()
        worker = threading.Thread(target=lambda: (dg.materialize([on_gpu], instance=instance), done.set()))
        worker.start()
        assert not done.wait(3.0)  # blocked: another run holds the one GPU slot
        storage.free_concurrency_slots_for_run("generation-run")
        assert done.wait(60.0)
        worker.join()
