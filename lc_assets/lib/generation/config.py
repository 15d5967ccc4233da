"""The one config of the generation step: knobs, the generator's identity and the prompt version, hashed.

Sections are keyed by ``config_hash()`` (see ``lineage.generation.section_id_for``): a different model,
engine setting or prompt template gives different section ids, so a run never resumes, and packing
never mixes in, sections another generator made.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lc_assets.lib.generation.masking import DEFAULT_SKIP_MARKER, Paragraph
from lc_assets.lib.generation.prompts import build_messages, qa_json_schema
from lc_assets.lib.sections import QAPair
from lc_assets.lib.stepconfig import StepConfig

#: Section target when neither target_ratio nor target_tokens is set: chunk x 1.3. A 1M-token sample of
#: such sections holds ~230k generated tokens, inside the method's 100-300k (arithmetic: docs/scaling.md).
DEFAULT_TARGET_RATIO = 1.3


@functools.cache
def prompt_version() -> str:
    """Fingerprint of the prompt templates and output schema: a fixed step rendered through the real code.

    Any change to what the model is sent (system prompt, user template, earlier-pair rendering, skip
    marker placement, schema) changes it; edits to comments or code layout do not.
    """
    paras = [Paragraph(i, f"p{i}", 0, 0, f"Paragraph {i} text.", 4) for i in (0, 2, 3)]
    pairs = [QAPair("x:0", 0, "Which paragraph comes first?", "Paragraph 0.")]
    blob = json.dumps(
        {"messages": build_messages(paras, 5, pairs, DEFAULT_SKIP_MARKER), "schema": qa_json_schema(100, 200)},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


class GeneratorIdentity(BaseModel):
    """What makes one generator's output differ from another's: part of the generation config hash."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: str = Field(description="local | openai | vllm")
    model: str = Field(description="Model file, directory or served model id.")
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Engine settings that change outputs (dtype, context length, quantization)."
    )


class GenerationConfig(StepConfig):
    """How QA pairs are generated. `config_hash()` covers every field except throughput knobs."""

    HASH_EXCLUDE: ClassVar[frozenset[str]] = frozenset(
        {"max_in_flight", "request_timeout_s", "stop_grace_s", "commit_every_steps", "commit_every_ms"}
    )

    seed: int = Field(0, ge=0, description="Root of every derived RNG (masks, pair samples, request seeds).")
    min_context_tokens: int = Field(
        1024, ge=32, le=131072, description="Smallest masked-context budget (generator tokens)."
    )
    max_context_tokens: int = Field(
        4096, ge=32, le=131072, description="Largest masked-context budget (generator tokens)."
    )
    max_paragraph_tokens: int = Field(
        512,
        ge=16,
        description="Longer paragraphs are split at line/sentence/word boundaries (capped at min_context_tokens).",
    )
    earlier_pairs: int = Field(
        3, ge=0, le=32, description="K: earlier pairs of the section shown so the model does not repeat them."
    )
    max_tokens: int = Field(320, ge=16, le=8192, description="Completion budget per step (also bounds the answer).")
    max_question_chars: int = Field(250, ge=16, le=4000, description="Schema maxLength of the question.")
    max_answer_chars: int = Field(900, ge=16, le=20000, description="Schema maxLength of the answer.")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Sampling temperature of the first attempt.")
    retry_temperature: float = Field(
        0.9, ge=0.0, le=2.0, description="Temperature of retries (greedy retries would repeat the failure)."
    )
    target_ratio: float | None = Field(
        None,
        gt=1.0,
        le=100.0,
        description=f"Section target = ceil(ratio x chunk tokens) in target tokens (default {DEFAULT_TARGET_RATIO} "
        "when target_tokens is not set either).",
    )
    target_tokens: int | None = Field(None, ge=1, description="Absolute section target (chunk + pairs, target tokens).")
    max_steps_per_section: int = Field(2000, ge=1, description="Hard cap on steps (ok + failed) of one section.")
    max_retries_per_step: int = Field(2, ge=0, le=10, description="Extra attempts for invalid or duplicate output.")
    max_failed_steps_per_section: int = Field(20, ge=1, description="A section stops after this many failed steps.")
    skip_marker: str = Field(
        DEFAULT_SKIP_MARKER, min_length=1, max_length=16, description="Stands where text was skipped."
    )
    max_in_flight: int | None = Field(
        None, ge=1, le=4096, description="Sections in flight (one request each); default: backend.max_in_flight."
    )
    request_timeout_s: float = Field(
        600.0, gt=0, description="A request outstanding longer than this is aborted and counts as a failed attempt."
    )
    stop_grace_s: float = Field(
        60.0, ge=0, description="On a stop (SIGTERM, run terminated): how long requests in flight may still finish."
    )
    commit_every_steps: int = Field(
        256,
        ge=1,
        le=100_000,
        description="Lineage group commit after this many steps (a kill loses at most one group).",
    )
    commit_every_ms: float = Field(
        500.0, gt=0, le=600_000, description="... or after this many milliseconds, whichever comes first."
    )
    generator: GeneratorIdentity | None = Field(
        None, description="The generator (set by the caller from the backend's config): part of the hash."
    )
    prompt_version: str = Field(
        default_factory=prompt_version, description="Fingerprint of the prompt templates (set automatically)."
    )

    @model_validator(mode="before")
    @classmethod
    def _default_target(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("target_ratio") is None and data.get("target_tokens") is None:
            return {**data, "target_ratio": DEFAULT_TARGET_RATIO}
        return data

    @model_validator(mode="after")
    def _check(self) -> GenerationConfig:
        if self.min_context_tokens > self.max_context_tokens:
            raise ValueError(
                f"min_context_tokens={self.min_context_tokens} > max_context_tokens={self.max_context_tokens}"
            )
        # the schema's length bounds must fit max_tokens (~4 chars/token + JSON syntax), or valid
        # answers get cut off and every attempt fails as truncated
        needed = (self.max_question_chars + self.max_answer_chars) // 4 + 16
        if self.max_tokens < needed:
            raise ValueError(
                f"max_tokens={self.max_tokens} cannot hold max_question_chars={self.max_question_chars} + "
                f"max_answer_chars={self.max_answer_chars} (needs >= {needed}); raise max_tokens or lower the bounds"
            )
        if self.target_ratio is not None and self.target_tokens is not None:
            raise ValueError(
                f"set exactly one of target_ratio ({self.target_ratio}) and target_tokens ({self.target_tokens})"
            )
        return self

    @property
    def paragraph_cap(self) -> int:
        """Paragraph pieces never exceed the smallest budget, so every step can show something."""
        return min(self.max_paragraph_tokens, self.min_context_tokens)

    def target_for(self, chunk_tokens: int) -> int:
        if self.target_tokens is not None:
            return self.target_tokens
        assert self.target_ratio is not None
        return -(-int(chunk_tokens * self.target_ratio * 1000) // 1000)  # ceil without float noise
