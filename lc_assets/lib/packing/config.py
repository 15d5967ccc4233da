"""The packing step's config: validated, frozen and hashed for lineage."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lc_assets.lib.stepconfig import StepConfig

#: Production bounds for the sample length (tokens).
MIN_SAMPLE_TOKENS = 65_536
MAX_SAMPLE_TOKENS = 2_097_152
#: Floor when `allow_small_samples` is set (tests, demos, toy corpora).
SMALL_SAMPLE_FLOOR = 256


class CurriculumStage(BaseModel):
    """One stage of a length curriculum: samples of `sample_tokens`, at most `max_samples` of them in the pool."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sample_tokens: int = Field(description="Exact length of this stage's samples (tokens).")
    max_samples: int | None = Field(
        None,
        ge=1,
        description="Samples this stage holds over all runs of the pool; None: no limit (the last stage takes the "
        "rest of the pool).",
    )


class PackingConfig(StepConfig):
    """How sections are rendered as chat and packed into fixed-length samples."""

    HASH_EXCLUDE: ClassVar[frozenset[str]] = frozenset(
        # output format and checks only: the packed samples are identical whatever their values
        {
            "store_token_ids",
            "store_text",
            "shard_size",
            "verify_tokenization",
            "allow_small_samples",
            "trainer_columns",
            "curriculum",  # each stage packs with its own config (sample_tokens set), hashed on its own
        }
    )

    sample_tokens: int = Field(
        1_048_576,
        description="Exact length of every packed sample, in target-tokenizer tokens (65,536 .. 2,097,152).",
    )
    seed: int = Field(0, description="Seeds the shuffle among sections of near-equal length.")
    mode: Literal["mixed", "coherent"] = Field(
        "mixed",
        description="mixed: sections of any documents bin-packed together; coherent: consecutive chunks of one "
        "document in reading order fill a sample (a long book becomes whole samples), shorter runs are bin-packed.",
    )
    generation_config_hash: str | None = Field(
        None,
        description="The generation config whose sections are packed (one config per packing run); None: the newest "
        "one with finished sections.",
    )
    pool: str = Field(
        "default",
        min_length=1,
        max_length=64,
        description="Name of the section pool: a section is packed at most once per (pool, generation config, target "
        "tokenizer), whatever the sample length or stage; a new name packs the same sections again.",
    )
    human_reviews: Literal["ignore", "exclude_rejected"] = Field(
        "exclude_rejected",
        description="exclude_rejected: pairs whose newest human verdict (`lc-assets review`) is reject are left out "
        "of the pool and pairs a reviewer fixed are packed with the fixed text; ignore: pack pairs as generated.",
    )
    model_judgements: Literal["ignore", "exclude_rejected"] = Field(
        "exclude_rejected",
        description="exclude_rejected: pairs whose newest model verdict (`judged_qa_pairs`, `pair_judgements`) rejected "
        "them are left out of the pool, unless a person reviewed the pair (a human verdict wins); ignore: pack them.",
    )
    length_bucket_ratio: float = Field(
        0.02,
        ge=0.0,
        le=0.5,
        description="Sections whose lengths differ by less than this ratio count as equal and are ordered by the "
        "seeded shuffle instead of by length.",
    )
    pad_tolerance: float = Field(
        0.001,
        ge=0.0,
        le=0.05,
        description="Slack up to this fraction of sample_tokens is padded instead of being filled by cutting a "
        "section (cuts lose the cut-off tail, padding loses compute).",
    )
    min_fill: float = Field(
        0.99,
        ge=0.5,
        le=1.0,
        description="A sample whose gap no section can close is dissolved, its sections carried to the next run, "
        "if its fill would stay below this ratio; above it the gap is padded.",
    )
    cut_boundaries: Literal["pair_or_text", "pair_or_paragraph", "pair"] = Field(
        "pair_or_text",
        description="Where the last section of a sample may be cut: pair_or_text: after a QA pair or in the chunk "
        "text at a paragraph end, else a line end, a sentence end, a space between words, or a pre-token "
        "boundary (the finer kinds only where no coarser one closes the gap: a pool of N tokens always gives a "
        "sample); pair_or_paragraph: pair or paragraph ends only; pair: after a QA pair only.",
    )
    carry_cut_remainder: bool = Field(
        False,
        description="Return the QA pairs cut off a sample's last section after a pair as a leftover section (it "
        "repeats the chunk text with the remaining pairs) instead of only recording them. A cut in the chunk text "
        "always drops the section's pairs (recorded as dropped_pair_ids).",
    )
    oversize: Literal["split", "reject"] = Field(
        "split",
        description="Sections longer than a sample: split at pair boundaries into parts that each repeat the "
        "chunk text with a run of pairs, or reject them with a recorded reason.",
    )
    train_on_end_of_turn: bool = Field(
        True,
        description="Loss spans include the template's end-of-turn marker after each answer (so the model learns "
        "to stop); target spans always hold exactly the answer text.",
    )
    question_separator: str = Field(
        "\n\n", description="Joins the chunk text and the first question in the first user message."
    )
    pad_token: str | None = Field(
        None, description="Token that fills the slack (masked from loss); None means the tokenizer's eos_token."
    )
    position_ids: Literal["sample", "section"] = Field(
        "sample",
        description="sample: positions 0..N-1 over the whole sample (one long context); section: positions restart "
        "at every section (with seq_lens/cu_seqlens, for trainers that mask attention across sections).",
    )
    trainer_columns: Literal["full", "spans"] = Field(
        "full",
        description="full: write labels (-100 outside the loss spans), position_ids, seq_lens and cu_seqlens next to "
        "input_ids; spans: only the span columns (a trainer builds labels from loss_spans).",
    )
    curriculum: tuple[CurriculumStage, ...] = Field(
        (),
        description="Length curriculum: stages packed in order from one pool, each without replacement and with its "
        "own manifest and metrics; empty: one stage of sample_tokens.",
    )
    store_token_ids: bool = Field(True, description="Write `input_ids` (int32) next to the text.")
    store_text: bool = Field(True, description="Write the rendered text of the real (non-pad) tokens.")
    shard_size: int = Field(16, ge=1, description="Samples per parquet shard.")
    verify_tokenization: bool = Field(
        True,
        description="Check that the ids built per message piece equal the tokenization of the rendered text "
        "(costs one extra tokenization pass).",
    )
    allow_small_samples: bool = Field(
        False, description=f"Allow sample_tokens below {MIN_SAMPLE_TOKENS:,} (down to {SMALL_SAMPLE_FLOOR}) for tests."
    )

    @model_validator(mode="after")
    def _check_sample_tokens(self) -> PackingConfig:
        floor = SMALL_SAMPLE_FLOOR if self.allow_small_samples else MIN_SAMPLE_TOKENS
        lengths = [s.sample_tokens for s in self.curriculum] or [self.sample_tokens]
        for n in lengths:
            if not floor <= n <= MAX_SAMPLE_TOKENS:
                hint = "" if self.allow_small_samples else " (set allow_small_samples=True for tests and demos)"
                raise ValueError(f"sample_tokens={n:,} is outside {floor:,} .. {MAX_SAMPLE_TOKENS:,}{hint}")
        if len(set(lengths)) != len(lengths):
            raise ValueError(f"curriculum stages must have distinct sample_tokens, got {lengths}")
        return self

    @property
    def pad_tolerance_tokens(self) -> int:
        """Slack (tokens) that is padded rather than filled with a cut section."""
        return int(self.sample_tokens * self.pad_tolerance)

    def stages(self) -> list[PackingConfig]:
        """One config per stage (sample_tokens set, no curriculum); the single stage when there is no curriculum."""
        if not self.curriculum:
            return [self]
        return [self.model_copy(update={"sample_tokens": s.sample_tokens, "curriculum": ()}) for s in self.curriculum]

    def stage_limits(self) -> list[int | None]:
        """max_samples per stage (None: unlimited), aligned with `stages()`."""
        return [s.max_samples for s in self.curriculum] or [None]
