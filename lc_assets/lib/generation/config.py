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

from lc_assets.lib.generation.kind_cues import cues_fingerprint
from lc_assets.lib.generation.masking import DEFAULT_SKIP_MARKER, Paragraph
from lc_assets.lib.generation.prompts import KIND_HINTS, PROMPT_VERSION, build_messages, qa_json_schema
from lc_assets.lib.generation.validate import ValidationConfig
from lc_assets.lib.sections import QAPair

#: Section target when neither target_ratio nor target_tokens is set: chunk x 1.3. A 1M-token sample of
#: such sections holds ~230k generated tokens, inside the method's 100-300k (arithmetic: docs/scaling.md).
DEFAULT_TARGET_RATIO = 1.3


@functools.cache
def prompt_version() -> str:
    """Fingerprint of the prompt templates and output schema: fixed steps rendered through the real code.

    Any change to what the model is sent (system prompt, user template, question kinds and the text cues
    a kind needs, the long-range task, the title line, earlier-pair rendering, skip marker placement,
    schema with evidence choices) changes it; edits to comments or code layout do not.
    """
    paras = [Paragraph(i, f"p{i}", 0, 0, f"Paragraph {i} text.", 4) for i in (0, 2, 3)]
    pairs = [QAPair("x:0", 0, "Which paragraph comes first?", "Paragraph 0.")]
    messages = [build_messages(paras, 5, pairs, DEFAULT_SKIP_MARKER)]
    messages += [
        build_messages(paras, 5, pairs, DEFAULT_SKIP_MARKER, kind=kind, title="A title") for kind in KIND_HINTS
    ]
    messages.append(build_messages(paras, 5, pairs, DEFAULT_SKIP_MARKER, long_range=True, title="A title"))
    messages.append(build_messages(paras, 5, pairs, DEFAULT_SKIP_MARKER, kind="what", title="A title", focus=1))
    schemas = [
        qa_json_schema(100, 200),
        qa_json_schema(100, 200, quote_choices=["A quote."]),
        qa_json_schema(100, 200, quote_choices_per_window=[["A quote."], ["Another quote."]]),
    ]
    # which kind a step is sent depends on the text's cues (kind_cues): a changed marker list changes it too
    cues = cues_fingerprint()
    blob = json.dumps(
        {"version": PROMPT_VERSION, "messages": messages, "schemas": schemas, "cues": cues}, sort_keys=True
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


class GenerationConfig(ValidationConfig):
    """How QA pairs are generated and checked. `config_hash()` covers every field except throughput knobs.

    The validation bounds and thresholds (question/answer/quote lengths, fuzzy match, duplicate and
    support thresholds) are inherited from :class:`validate.ValidationConfig`: one field each, the
    schema's ``maxLength``s and the checks read the same values.
    """

    HASH_EXCLUDE: ClassVar[frozenset[str]] = frozenset(
        {"max_in_flight", "request_timeout_s", "stop_grace_s", "commit_every_steps", "commit_every_ms", "judge_workers"}
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
    min_windows: int = Field(2, ge=1, le=8, description="Fewest windows of consecutive paragraphs a step shows.")
    max_windows: int = Field(3, ge=1, le=8, description="Most windows of consecutive paragraphs a step shows.")
    long_range_share: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Share of steps that show two windows far apart and require evidence from both "
        "(answers that need the whole chunk).",
    )
    long_range_min_distance: float = Field(
        0.5, gt=0.0, lt=1.0, description="Least distance of a long-range step's two windows, as a share of the chunk."
    )
    earlier_pairs: int = Field(
        3, ge=0, le=32, description="K: earlier pairs of the section shown so the model does not repeat them."
    )
    max_tokens: int = Field(
        512, ge=16, le=8192, description="Completion budget per step (evidence + question + answer as JSON)."
    )
    max_quotes: int = Field(2, ge=1, le=8, description="Most evidence quotes per pair (the schema's maxItems).")
    evidence_choices: bool = Field(
        True,
        description="Evidence items are constrained to the shown sentences/lines (a JSON-schema enum), so grammar-"
        "constrained decoding can only copy real text; off: free quotes, found fuzzily.",
    )
    focus_window: bool = Field(
        True,
        description="Each ordinary step asks about one shown window, the one in the chunk deciles with the fewest "
        "accepted evidence quotes of the section so far (its sentences are the evidence choices; the other windows "
        "are context), so evidence covers the chunk evenly by construction; off: the model picks the window.",
    )
    question_kinds: list[str] = Field(
        list(KIND_HINTS),
        description="Question kinds suggested in turn (a shuffled cycle per section; one template must not "
        "dominate); empty: any question.",
    )
    attributed_sources: list[str] = Field(
        ["embedded:devils-dictionary", "embedded:jargon-file"],
        description="Documents that speak for their author (satire, fiction, opinion, a humorous glossary), by "
        "source (fnmatch patterns such as 'local:novels/*'): their questions must name the document ('In The "
        "Devil's Dictionary, ...'; the prompt asks it, the schema and a check enforce it), so that an answer reads "
        "as what the document says, not as a fact.",
    )
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
    max_consecutive_failed_steps: int = Field(
        20,
        ge=1,
        description="A section stops after this many failed steps in a row (the model has nothing more to ask of "
        "its chunk); failures between accepted pairs do not add up: a small model failing 70% of its steps "
        "would otherwise end every section after a few pairs.",
    )
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
    judge_workers: int = Field(
        0,
        ge=0,
        le=64,
        description="Processes that judge outputs beside the loop (0: in the loop thread). One process judges "
        "~200 steps/s in the loop; a worker frees the loop for prompts and records (docs/scaling.md).",
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
        if self.min_windows > self.max_windows:
            raise ValueError(f"min_windows={self.min_windows} > max_windows={self.max_windows}")
        unknown = sorted(set(self.question_kinds) - set(KIND_HINTS))
        if unknown:
            raise ValueError(f"unknown question_kinds {unknown}; known: {sorted(KIND_HINTS)}")
        # the schema's length bounds must fit max_tokens (~4 chars/token + JSON syntax), or valid
        # outputs get cut off and every attempt fails as truncated; the evidence comes first
        needed = self.output_chars // 4 + 24 + 4 * self.max_quotes
        if self.max_tokens < needed:
            raise ValueError(
                f"max_tokens={self.max_tokens} cannot hold max_question_chars={self.max_question_chars} + "
                f"max_answer_chars={self.max_answer_chars} + max_quotes={self.max_quotes} x "
                f"max_quote_chars={self.max_quote_chars} (needs >= {needed}); raise max_tokens or lower the bounds"
            )
        if self.target_ratio is not None and self.target_tokens is not None:
            raise ValueError(
                f"set exactly one of target_ratio ({self.target_ratio}) and target_tokens ({self.target_tokens})"
            )
        return self

    @property
    def output_chars(self) -> int:
        """The longest output the schema allows, in characters of its strings."""
        return self.max_question_chars + self.max_answer_chars + self.max_quotes * self.max_quote_chars

    @property
    def paragraph_cap(self) -> int:
        """Paragraph pieces never exceed the smallest budget, so every step can show something."""
        return min(self.max_paragraph_tokens, self.min_context_tokens)

    def target_for(self, chunk_tokens: int) -> int:
        if self.target_tokens is not None:
            return self.target_tokens
        assert self.target_ratio is not None
        return -(-int(chunk_tokens * self.target_ratio * 1000) // 1000)  # ceil without float noise
