"""Every shape a judge output can take becomes a verdict or a judge_error with its code — never a guess."""

from __future__ import annotations

import json

import pytest

from lc_assets.lib.generation.backend import GenerationResult
from lc_assets.lib.judge import JUDGE_ERROR, JUDGE_ERROR_CODES, PairJudgeConfig, parse_output, parse_result


def _result(text: str, finish: str = "stop", error: str | None = None) -> GenerationResult:
    return GenerationResult("r", text, 10, 5, finish, 0.1, error=error)


def test_a_good_output_gives_its_verdict_standalone_and_check():
    j = parse_output('{"check": "Quote 1 says so.", "verdict": "partly", "standalone": false}')
    assert (j.verdict, j.standalone, j.check, j.error_code) == ("partly", False, "Quote 1 says so.", None)
    assert not j.is_error


def test_a_fenced_output_is_read_like_a_bare_one():
    j = parse_output('```json\n{"check": "ok", "verdict": "unsupported", "standalone": true}\n```')
    assert (j.verdict, j.standalone) == ("unsupported", True)


@pytest.mark.parametrize(
    "text, code, detail",
    [
        ('{"check": "ok", "verdict": "supported"', "invalid_json", "Expecting"),
        ("[1, 2]", "invalid_json", "list"),
        ("", "invalid_json", "Expecting value"),
        ('{"verdict": "supported", "standalone": true}', "missing_field", "no check"),
        ('{"check": "x"}', "missing_field", "verdict, standalone"),
        ('{"check": "x", "verdict": "maybe", "standalone": true}', "bad_value", "'maybe'"),
        ('{"check": "x", "verdict": "supported", "standalone": "yes"}', "bad_value", "standalone 'yes'"),
        ('{"check": 3, "verdict": "supported", "standalone": true}', "bad_value", "check is a int"),
        ("I'm sorry, but I cannot judge this answer.", "refusal", "sorry"),
        ("The answer is supported by the quotes.", "invalid_json", "Expecting value"),
    ],
)
def test_unreadable_outputs_are_judge_errors_with_their_code(text, code, detail):
    j = parse_output(text)
    assert j.verdict == JUDGE_ERROR and j.is_error and j.error_code == code
    assert detail in (j.error_detail or ""), j.error_detail
    assert j.standalone is None and j.check is None


def test_backend_failures_and_cut_off_outputs_come_before_the_text():
    assert parse_result(_result("", "error", error="connection refused")).error_code == "backend_error"
    assert parse_result(_result("", "error", error="timeout")).error_code == "timeout"
    cut = parse_result(_result('{"check": "The quote', "length"))
    assert cut.error_code == "truncated" and "The quote" in (cut.error_detail or "")
    good = json.dumps({"check": "c", "verdict": "supported", "standalone": True})
    assert parse_result(_result(good)).verdict == "supported"


def test_every_code_is_described_and_errors_are_kept_or_dropped_by_policy_only():
    assert set(JUDGE_ERROR_CODES) >= {"invalid_json", "missing_field", "bad_value", "refusal", "truncated"}
    keep = PairJudgeConfig()
    drop = PairJudgeConfig(keep_judge_errors=False)
    assert keep.keeps(JUDGE_ERROR, None) and not drop.keeps(JUDGE_ERROR, None)


@pytest.mark.parametrize(
    "verdict, standalone, kept",
    [("supported", True, True), ("supported", False, False), ("partly", True, False), ("unsupported", True, False)],
)
def test_the_default_policy_keeps_supported_standalone_pairs_only(verdict, standalone, kept):
    assert PairJudgeConfig().keeps(verdict, standalone) is kept


def test_the_keep_policy_is_not_in_the_hash_but_the_judge_model_and_context_are():
    from lc_assets.lib.generation.config import GeneratorIdentity

    base = PairJudgeConfig(judge=GeneratorIdentity(backend="local", model="a"))
    assert base.config_hash() == base.model_copy(update={"keep_verdicts": ("supported", "partly")}).config_hash()
    assert base.config_hash() == base.model_copy(update={"max_pairs": 3, "max_in_flight": 2}).config_hash()
    other = PairJudgeConfig(judge=GeneratorIdentity(backend="local", model="b"))
    assert base.config_hash() != other.config_hash()
    assert base.config_hash() != base.model_copy(update={"context_chars": 100}).config_hash()
    assert PairJudgeConfig(keep_verdicts=("supported", "partly"), require_standalone=False).keep_policy == (
        "supported|partly,errors"
    )


def test_a_check_that_cannot_fit_max_tokens_is_a_config_error():
    with pytest.raises(ValueError, match="max_check_chars=1000"):
        PairJudgeConfig(max_check_chars=1000, max_tokens=64)


def test_keep_verdicts_must_be_verdicts():
    with pytest.raises(ValueError, match="'maybe'"):
        PairJudgeConfig(keep_verdicts=("supported", "maybe"))
