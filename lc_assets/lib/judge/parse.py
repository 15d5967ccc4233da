"""Reading one judge output: a verdict, or `judge_error` with a code that says why — never a guess.

An output that cannot be read is neither kept nor dropped silently: it is stored as verdict
`judge_error` with its code and raw text, counted in the asset metadata and checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lc_assets.lib.generation.backend import GenerationResult
from lc_assets.lib.generation.validate import NOT_AN_OBJECT, load_json_object
from lc_assets.lib.judge.config import JUDGE_ERROR, MODEL_VERDICTS

#: why a judge output is a judge_error (stable codes, stored in pair_judgements.error_code)
JUDGE_ERROR_CODES: dict[str, str] = {
    "backend_error": "the backend failed the request (server down, engine error); retried on the next run",
    "timeout": "the request was outstanding longer than request_timeout_s and was aborted; retried on the next run",
    "too_long": "the prompt does not fit the judge's context window even without the surrounding text",
    "truncated": "the output hit max_tokens before the JSON closed",
    "refusal": "the model refused or answered in prose instead of JSON",
    "invalid_json": "the output is not a JSON object",
    "missing_field": "a field of the schema (check, verdict, standalone) is missing",
    "bad_value": "a field has a value the schema does not allow (verdict not one of the three, standalone not a "
    "boolean, check not a string)",
}

_REFUSAL = re.compile(
    r"\b(I'?m sorry|I am sorry|I cannot|I can't|I can not|I am unable|I'm unable|as an AI|I won't)\b", re.IGNORECASE
)


@dataclass(frozen=True)
class Judgement:
    """One read judge output."""

    verdict: str  # supported | partly | unsupported | judge_error
    standalone: bool | None = None
    check: str | None = None
    error_code: str | None = None  # JUDGE_ERROR_CODES, when verdict is judge_error
    error_detail: str | None = None

    @property
    def is_error(self) -> bool:
        return self.verdict == JUDGE_ERROR


def judge_error(code: str, detail: str) -> Judgement:
    if code not in JUDGE_ERROR_CODES:
        raise ValueError(f"unknown judge error code {code!r}; known: {sorted(JUDGE_ERROR_CODES)}")
    return Judgement(JUDGE_ERROR, error_code=code, error_detail=detail[:500])


def parse_output(text: str) -> Judgement:
    """The judgement in one raw output text (see JUDGE_ERROR_CODES for what is refused)."""
    obj = load_json_object(text)
    if isinstance(obj, str):
        raw = text.strip()
        if not obj.startswith(NOT_AN_OBJECT) and _REFUSAL.search(raw) and "{" not in raw:
            return judge_error("refusal", raw[:200])
        return judge_error("invalid_json", f"{obj}: {raw[:120]!r}")
    missing = [k for k in ("check", "verdict", "standalone") if k not in obj]
    if missing:
        return judge_error("missing_field", f"no {', '.join(missing)} in {sorted(obj)}")
    check, verdict, standalone = obj["check"], obj["verdict"], obj["standalone"]
    if not isinstance(check, str):
        return judge_error("bad_value", f"check is a {type(check).__name__}, not a string")
    if verdict not in MODEL_VERDICTS:
        return judge_error("bad_value", f"verdict {verdict!r} is not one of {list(MODEL_VERDICTS)}")
    if not isinstance(standalone, bool):
        return judge_error("bad_value", f"standalone {standalone!r} is not a boolean")
    return Judgement(verdict, standalone, check.strip())


def parse_result(result: GenerationResult) -> Judgement:
    """The judgement of one backend result: backend failures and cut-off outputs first, then the text."""
    if result.error is not None or result.finish_reason == "error":
        code = "timeout" if result.error == "timeout" else "backend_error"
        return judge_error(code, result.error or "the backend reported an error")
    if result.finish_reason == "length":
        return judge_error("truncated", f"{result.completion_tokens} tokens, output ends {result.text[-80:]!r}")
    return parse_output(result.text)
