"""VllmEngineConfig validation, GPU tags and server command line: fast, no vLLM, no GPU."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from lc_assets.lib.generation.vllm_backend import GPU_POOL, VllmEngineConfig, gpu_tags, server_argv


def test_defaults_and_hash() -> None:
    cfg = VllmEngineConfig(model="models/qwen")
    assert cfg.tensor_parallel_size == 1 and cfg.gpu_memory_utilization == 0.9
    assert cfg.tokenizer_path == "models/qwen"
    assert cfg.config_hash() == VllmEngineConfig(model="models/qwen").config_hash()
    # capacity settings do not change generated tokens, the model and seed do
    assert cfg.config_hash() == VllmEngineConfig(model="models/qwen", tensor_parallel_size=4).config_hash()
    assert cfg.config_hash() != VllmEngineConfig(model="models/qwen", seed=1).config_hash()
    assert cfg.config_hash() != VllmEngineConfig(model="models/other").config_hash()
    with pytest.raises(ValidationError):
        cfg.seed = 3  # frozen


@pytest.mark.parametrize(
    "bad",
    [
        {"model": ""},
        {"model": "m", "tensor_parallel_size": 0},
        {"model": "m", "gpu_memory_utilization": 0.0},
        {"model": "m", "gpu_memory_utilization": 1.2},
        {"model": "m", "max_model_len": 8},
        {"model": "m", "kv_cache_memory_gib": 0},
        {"model": "m", "dtype": "int3"},
        {"model": "m", "device": "tpu"},
        {"model": "m", "extra_engine_args": {"max_model_len": 4096}},  # has its own field
        {"model": "m", "structured_output_backend": "outlines"},  # whitespace flag needs xgrammar/guidance
        {"model": "m", "no_such_field": 1},
    ],
)
def test_invalid_configs_are_refused(bad: dict) -> None:
    with pytest.raises(ValidationError):
        VllmEngineConfig(**bad)


def test_gpu_tags_request_tensor_parallel_gpus() -> None:
    tags = gpu_tags(VllmEngineConfig(model="m", tensor_parallel_size=2), node_selector={"gpu": "h100"})
    k8s = tags["dagster-k8s/config"]
    assert k8s["container_config"]["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert k8s["pod_spec_config"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert k8s["pod_spec_config"]["node_selector"] == {"gpu": "h100"}
    assert tags[GPU_POOL] == "1"
    assert gpu_tags(VllmEngineConfig(model="m", device="cpu")) == {}


def test_server_argv() -> None:
    cfg = VllmEngineConfig(model="m", max_model_len=2048, kv_cache_memory_gib=1, enforce_eager=True)
    argv = server_argv(cfg, port=8123, served_model_name="qa")
    assert argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    joined = " ".join(argv)
    for part in ("--model m", "--port 8123", "--max-model-len 2048", "--kv-cache-memory-bytes 1073741824"):
        assert part in joined
    assert "--enforce-eager" in argv and "--served-model-name" in argv


def test_backend_module_imports_neither_vllm_nor_torch() -> None:
    # The Dagster process imports the backend; vLLM and torch belong to the worker process only.
    code = (
        "import sys, lc_assets.lib.generation.vllm_backend\n"
        "bad = [m for m in ('vllm', 'torch', 'dagster') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_engine_batch_holds_the_requests_in_flight() -> None:
    # only max_in_flight: the engine's batch is sized to it, so no request waits in the engine's queue
    cfg = VllmEngineConfig(model="m", max_in_flight=48)
    assert cfg.max_num_seqs == 48
    assert VllmEngineConfig(model="m", max_in_flight=8, max_num_seqs=32).max_num_seqs == 32
    with pytest.raises(ValidationError, match="max_in_flight=64 > max_num_seqs=16"):
        VllmEngineConfig(model="m", max_in_flight=64, max_num_seqs=16)
    # capacity only: the hash (and so lineage) does not change
    assert cfg.config_hash() == VllmEngineConfig(model="m").config_hash()
