"""Step configs for the ``ruler_tasks`` and ``ruler_scores`` assets (validated, frozen, hashed)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from lc_assets.lib.ruler.scoring import EFFECTIVE_LENGTH_THRESHOLD
from lc_assets.lib.ruler.tasks import ALL_TASKS, DEFAULT_LENGTHS, TASKS
from lc_assets.lib.ruler.templates import MODEL_TEMPLATES
from lc_assets.lib.stepconfig import StepConfig

#: Shortest length we accept: the largest generation budget (128) plus room for a prompt.
MIN_LENGTH = 512


class RulerTasksConfig(StepConfig):
    """What RULER samples to make: tasks x lengths x samples, for one tokenizer and model template."""

    HASH_EXCLUDE: ClassVar[frozenset[str]] = frozenset({"batch_size"})

    tasks: tuple[str, ...] = Field(default=ALL_TASKS, description="RULER task names (default: all 13)")
    lengths: tuple[int, ...] = Field(default=DEFAULT_LENGTHS, description="max_seq_length values (prompt + answer)")
    num_samples: int = Field(default=500, ge=1, description="samples per task and length (RULER: 500)")
    seed: int = Field(default=42, description="base seed; each (task, length, sample) derives its own RNG")
    model_template_type: str = Field(default="base", description="RULER model wrapper, e.g. base, meta-llama3")
    tokenizer: str = Field(
        default="llama3",
        description="the EVALUATED model's tokenizer: llama3 or a local tokenizer dir (lc_assets.lib.tokenizer)",
    )
    essay_source: str = Field(
        default="default_corpus", description="which corpus text the essay haystack comes from (resolved by the asset)"
    )
    squad_source: str = Field(
        default="rajpurkar/squad_v2", description="SQuAD v2 dev: a local dev-v2.0.json or an HF dataset name"
    )
    hotpotqa_source: str = Field(
        default="hotpotqa/hotpot_qa:distractor",
        description="HotpotQA dev distractor: a local hotpot_dev_distractor_v1.json or an HF name[:config]",
    )
    batch_size: int = Field(default=16, ge=1, description="prompts counted per tokenizer batch (speed only)")

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, tasks: tuple[str, ...]) -> tuple[str, ...]:
        if not tasks:
            raise ValueError("tasks must not be empty")
        unknown = [t for t in tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"unknown RULER task(s) {unknown}; known tasks: {', '.join(ALL_TASKS)}")
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"duplicate task names in {list(tasks)}")
        return tasks

    @field_validator("lengths")
    @classmethod
    def _good_lengths(cls, lengths: tuple[int, ...]) -> tuple[int, ...]:
        if not lengths:
            raise ValueError("lengths must not be empty")
        bad = [n for n in lengths if n < MIN_LENGTH]
        if bad:
            raise ValueError(f"lengths must be >= {MIN_LENGTH} tokens (prompt + 128 generated); got {bad}")
        if len(set(lengths)) != len(lengths):
            raise ValueError(f"duplicate lengths in {list(lengths)}")
        return tuple(sorted(lengths))

    @field_validator("model_template_type")
    @classmethod
    def _known_template(cls, name: str) -> str:
        if name not in MODEL_TEMPLATES:
            raise ValueError(f"unknown model_template_type {name!r}; known: {', '.join(MODEL_TEMPLATES)}")
        return name


class RulerScoresConfig(StepConfig):
    """How to run and score a model on RULER samples."""

    model: str = Field(
        description="the evaluated model's name (lineage / table title); a checkpoint dir for the vllm backend, a "
        "GGUF or packaged preset for local; the ruler_scores asset takes the backend's model when it is empty"
    )
    effective_length_threshold: float = Field(
        default=EFFECTIVE_LENGTH_THRESHOLD, gt=0, le=100, description="Llama-2-7B's score at 4k, as RULER reports"
    )
    temperature: float = Field(default=0.0, ge=0.0, description="RULER decodes greedily")
    max_new_tokens_override: int | None = Field(
        default=None, ge=1, description="None: each task's RULER budget (128/30/120/50/32)"
    )

    @model_validator(mode="after")
    def _greedy(self) -> RulerScoresConfig:
        if self.temperature != 0.0:
            raise ValueError(f"RULER scores use greedy decoding; temperature={self.temperature} would not compare")
        return self
