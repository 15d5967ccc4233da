"""Quality metrics over step outcomes: yield, reasons, depth coverage, duplicates, kinds, thresholds."""

from __future__ import annotations

import json

import pytest

from lc_assets.lib.generation.masking import split_paragraphs, windows_of
from lc_assets.lib.generation.quality import (
    EvidenceRef,
    QualityThresholds,
    StepOutcome,
    Threshold,
    compute_quality,
    coverage,
    decile_histogram,
    evaluate_thresholds,
    near_duplicate_flags,
    outcome_of,
    quality_by,
    reason_code,
)
from lc_assets.lib.generation.validate import validate_output

CHUNK = 10_000


def ok(section, step, question, answer="An answer with content.", at=0, kind="what", score=100.0, tokens=50):
    return StepOutcome(
        section, step, True, None, (), question, answer, kind, (EvidenceRef(at, at + 80, score),), CHUNK, tokens
    )


def failed(section, step, failure, retries=(), tokens=50):
    return StepOutcome(section, step, False, failure, tuple(retries), completion_tokens=tokens)


def test_reason_codes_of_stored_failures():
    assert reason_code("evidence_not_found: quote 0 'x' is not in the shown text") == "evidence_not_found"
    assert reason_code("truncated at max_tokens=256: invalid_json: Unterminated string") == "truncated"
    assert reason_code("backend_error: request timed out") == "backend_error"
    assert reason_code(None) is None


def test_deciles_and_coverage():
    assert decile_histogram([(0, 10), (995, 1000), (500, 520)], 1000) == [1, 0, 0, 0, 0, 1, 0, 0, 0, 1]
    assert coverage([5] * 10) == 1.0 and coverage([0] + [5] * 9) == 0.0 and coverage([]) == 0.0
    assert coverage([2, 4, 4, 4, 4, 4, 4, 4, 4, 4]) == 0.5


def test_report_over_a_run():
    outcomes = [
        # evidence spread over the whole chunk: 20 pairs, two per decile
        *(ok("s1", i, f"Question number {i} about topic {i * 7}?", at=(i % 10) * 1000 + 10) for i in range(20)),
        ok("s2", 0, "What is the purpose of the `close` method?", kind="why"),
        ok("s2", 1, "What is the purpose of the `drain` method?", kind="why", score=93.0),  # near-duplicate
        failed("s2", 2, "evidence_not_found: quote 0", retries=["not_standalone: q", "invalid_json: x"]),
        failed("s2", 3, "truncated at max_tokens=256: invalid_json: y"),
    ]
    rep = compute_quality(outcomes, section_tokens=1_048_576)
    assert rep.steps == 24 and rep.accepted == 22 and rep.yield_ == round(22 / 24, 4)
    assert rep.attempts == 26
    assert rep.rejections_by_reason == {"evidence_not_found": 1, "truncated": 1}
    assert rep.rejected_attempts_by_reason == {"not_standalone": 1, "invalid_json": 1}
    assert sum(rep.depth_histogram) == 22 and rep.depth_histogram[0] == 4  # s2's two pairs quote decile 0
    assert rep.depth_coverage == 0.5 and rep.pairs_with_depth == 22
    assert rep.near_duplicate_share == round(1 / 22, 4)
    assert rep.evidence_verbatim_share == round(21 / 22, 4) and rep.completed_evidence_share == 0.0
    assert rep.kind_mix == {"what": 20, "why": 2} and rep.max_kind_share == round(20 / 22, 4)
    assert rep.empty_answers == 0 and rep.question_chars["max"] > 0
    assert rep.completion_tokens == 24 * 50 and rep.generated_per_1m_packed == 1200.0
    assert rep.sections == 2
    json.dumps(rep.to_metadata())
    per_section = quality_by(outcomes, key=lambda o: o.section_id)
    assert set(per_section) == {"s1", "s2"} and per_section["s1"].near_duplicate_share == 0.0


def test_near_duplicate_flags_follow_step_order():
    flags = near_duplicate_flags(
        [
            "What is the purpose of the `close` method in the given code snippet?",
            "What is the purpose of the `drain` method in the given code snippet?",
            "How many steps lead to the lantern room?",
        ]
    )
    assert flags == [False, True, False]


def test_thresholds_warn_and_error_with_minimum_pairs():
    few = compute_quality([ok("s", i, f"Distinct question {i} about item {i}?", at=0) for i in range(5)])
    results = {r.metric: r for r in evaluate_thresholds(few)}
    assert results["depth_coverage"].skipped and results["depth_coverage"].passed  # < 200 pairs: not judged
    assert results["evidence_verbatim_share"].passed and results["empty_answers"].passed
    strict = QualityThresholds(rules=(Threshold(metric="depth_coverage", op=">=", value=0.6, severity="WARN"),))
    (cov,) = evaluate_thresholds(few, strict)
    assert not cov.passed and cov.severity == "WARN" and cov.value == 0.0 and cov.rule == "depth_coverage >= 0.6"
    bad = compute_quality([ok("s", 0, "What is it?", answer=",")])
    assert {r.metric for r in evaluate_thresholds(bad) if not r.passed} == {"empty_answers"}
    with pytest.raises(KeyError):
        few.metric("kind_mix")
    assert QualityThresholds().config_hash() != strict.config_hash()


def test_outcome_from_a_validation_verdict():
    chunk = "Alpha paragraph says the port is 5432.\n\nBeta paragraph says the user is postgres."
    paras = split_paragraphs(chunk, lambda ts: [len(t) // 4 for t in ts], 512)
    text = json.dumps(
        {
            "evidence": ["the user is postgres"],
            "question": "Which user does the Beta paragraph name for PostgreSQL?",
            "answer": "The user is postgres.",
        }
    )
    verdict = validate_output(text, windows_of(paras))
    assert verdict.ok, verdict.failure
    o = outcome_of("s", 4, verdict, attempt_failures=["invalid_json: x"], chunk_chars=len(chunk), completion_tokens=30)
    rep = compute_quality([o])
    start = chunk.index("the user is postgres")
    assert o.evidence[0].char_start == start and o.evidence[0].char_end == start + len("the user is postgres")
    mid_decile = int(10 * (start + len("the user is postgres") / 2) / len(chunk))
    assert rep.depth_histogram[mid_decile] == 1 and sum(rep.depth_histogram) == 1
    assert rep.rejected_attempts_by_reason == {"invalid_json": 1}
