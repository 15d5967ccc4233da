"""ruler_tasks -> ruler_scores through the `openai` backend against a real llama.cpp server.

The server is llama.cpp's own (xllamacpp) serving the packaged SmolLM2-135M-Instruct GGUF on 127.0.0.1,
started here; nothing is faked between the asset and the model. Kept small: three tasks at 1K, one sample.
"""

from pathlib import Path

import dagster as dg
import pytest

from lc_assets.defs.generation.resources import GeneratorResource
from lc_assets.defs.resources import LineageStoreResource
from lc_assets.defs.ruler.assets import ruler_scores, ruler_tasks
from lc_assets.lib.generation.local_backend import LocalLlamaBackend
from lc_assets.lib.lineage import LineageStore

pytestmark = pytest.mark.slow

TASKS = ["niah_single_1", "vt", "fwe", "qa_1", "qa_2"]


@pytest.fixture(scope="module")
def llamacpp_server():
    # llama.cpp's HTTP server in this process; 2 slots of 2K (the prompts are counted with Llama-3's tokenizer,
    # which needs fewer tokens than SmolLM2's for the same text: room for the difference)
    server = LocalLlamaBackend(model="smollm2-135m", n_parallel=2, n_ctx_per_slot=2048, n_threads=1)
    yield server
    server.close()


def test_ruler_scores_through_the_openai_backend(llamacpp_server: LocalLlamaBackend, tmp_path: Path) -> None:
    generator = GeneratorResource(backend="openai", base_url=llamacpp_server.openai_base_url, max_concurrency=2)
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [ruler_tasks, ruler_scores],
        resources={"lineage": LineageStoreResource(path=str(tmp_path / "lineage.duckdb")), "generator": generator},
        instance=instance,
        run_config={
            "ops": {
                "ruler_tasks": {
                    "config": {
                        "tasks": TASKS,
                        "lengths": [1024],
                        "num_samples": 1,
                        "squad_source": str(tmp_path / "no_squad.json"),  # offline: the QA tasks are not run
                        "hotpotqa_source": str(tmp_path / "no_hotpot.json"),
                    }
                },
                "ruler_scores": {"config": {}},
            }
        },
    )
    assert result.success
    store = LineageStore(tmp_path / "lineage.duckdb")
    predictions = store.query("SELECT backend, prediction FROM ruler_predictions")
    assert len(predictions) == 3 and {b for b, _ in predictions} == {"openai"}
    assert all(p.strip() for _, p in predictions)  # the model answered every prompt (right or wrong)
    scores = dict(store.query("SELECT task, score FROM ruler_scores"))
    assert set(scores) == {"niah_single_1", "vt", "fwe"} and all(0.0 <= s <= 100.0 for s in scores.values())
    mat = next(m for m in result.get_asset_materialization_events() if m.asset_key.to_user_string() == "ruler_scores")
    meta = {k: v.value for k, v in mat.materialization.metadata.items()}
    assert meta["backend"] == "openai" and "SmolLM2" in meta["model"]
    coverage = meta["average_over_tasks"]
    assert coverage.startswith("3 of 13 (") and "qa_1 not run: " in coverage and "qa_2 not run: " in coverage
    logs = [e.user_message for e in instance.all_logs(result.run_id)]
    progress = [m for m in logs if m.startswith("RULER predictions: ")]
    assert len(progress) >= 3 and progress[-1].startswith("RULER predictions: 3/3 samples")  # 5% of 3 = each
