"""The model judge's one config: what it asks, how it decodes, which verdicts keep a pair; hashed for lineage."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from lc_assets.lib.generation.config import GeneratorIdentity
from lc_assets.lib.judge.prompt import judge_prompt_version
from lc_assets.lib.stepconfig import StepConfig

MODEL_VERDICTS: tuple[str, ...] = ("supported", "partly", "unsupported")
#: the verdict stored when the judge's output could not be read (its `error_code` says why)
JUDGE_ERROR = "judge_error"


class PairJudgeConfig(StepConfig):
    """A second model call per accepted pair: does the evidence, read in its context, support the answer?

    `config_hash()` covers what changes a verdict: the judge model (`judge`), the prompt version, the
    context shown, the decoding. The keep policy (`keep_verdicts`, `require_standalone`,
    `keep_judge_errors`) is not in the hash: changing it re-labels stored verdicts without asking the model
    again (`lineage.judge.apply_keep_policy`).
    """

    HASH_EXCLUDE: ClassVar[frozenset[str]] = frozenset(
        {
            "keep_verdicts",
            "require_standalone",
            "keep_judge_errors",
            "max_pairs",
            "max_in_flight",
            "request_timeout_s",
            "commit_every",
            "progress_every_s",
        }
    )

    judge: GeneratorIdentity | None = Field(
        None, description="The judge model (set by the caller from the backend's config): part of the hash."
    )
    prompt_version: str = Field(
        default_factory=judge_prompt_version,
        description="Fingerprint of the judge prompt and schema (set automatically).",
    )
    context_chars: int = Field(
        400,
        ge=0,
        le=20_000,
        description="Characters of the shown text kept on each side of every evidence quote in the judge prompt "
        "(0: the whole shown excerpt).",
    )
    max_check_chars: int = Field(
        300, ge=40, le=2000, description="Longest 'check' (the judge's short reasoning written before its verdict)."
    )
    max_tokens: int = Field(
        192, ge=32, le=4096, description="Completion budget of one judge call (check + verdict + standalone as JSON)."
    )
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="Sampling temperature (0: greedy, reproducible).")
    seed: int = Field(0, ge=0, description="Request seed (matters only when temperature > 0).")
    keep_verdicts: tuple[str, ...] = Field(
        ("supported",),
        min_length=1,
        description="Verdicts (supported, partly, unsupported) that keep a pair in the packed data; the others are "
        "rejected (packing leaves them out with `model_judgements: exclude_rejected`).",
    )
    require_standalone: bool = Field(
        True, description="A pair whose question the judge finds not standalone is rejected whatever its verdict."
    )
    keep_judge_errors: bool = Field(
        True,
        description="Keep pairs whose judge output could not be read (verdict judge_error, counted and checked); "
        "false: leave them out too.",
    )
    max_pairs: int | None = Field(None, ge=0, description="Judge at most this many pairs per run (None: all).")
    max_in_flight: int | None = Field(
        None, ge=1, le=4096, description="Judge requests in flight; default: the backend's max_in_flight."
    )
    request_timeout_s: float = Field(
        600.0, gt=0, description="A judge request outstanding longer than this is aborted (judge_error 'timeout')."
    )
    commit_every: int = Field(
        32, ge=1, le=100_000, description="Verdicts per lineage commit (a killed run keeps every committed group)."
    )
    progress_every_s: float = Field(20.0, gt=0, le=600, description="Seconds between progress lines in the log.")

    @model_validator(mode="after")
    def _check(self) -> PairJudgeConfig:
        unknown = sorted(set(self.keep_verdicts) - set(MODEL_VERDICTS))
        if unknown:
            raise ValueError(f"keep_verdicts {unknown} are not verdicts; known: {list(MODEL_VERDICTS)}")
        # the schema's check length must fit max_tokens (~4 chars/token + the JSON around it)
        needed = self.max_check_chars // 4 + 32
        if self.max_tokens < needed:
            raise ValueError(
                f"max_tokens={self.max_tokens} cannot hold max_check_chars={self.max_check_chars} (needs >= {needed})"
            )
        return self

    def keeps(self, verdict: str, standalone: bool | None) -> bool:
        """Whether a stored verdict keeps its pair under this config's policy."""
        if verdict == JUDGE_ERROR:
            return self.keep_judge_errors
        if self.require_standalone and standalone is False:
            return False
        return verdict in self.keep_verdicts

    @property
    def keep_policy(self) -> str:
        """The keep policy as text, stored with every verdict (e.g. 'supported+standalone,errors')."""
        parts = "|".join(self.keep_verdicts) + ("+standalone" if self.require_standalone else "")
        return parts + (",errors" if self.keep_judge_errors else "")
