"""Scoring and aggregates, checked against RULER's formulas and the README row."""

from __future__ import annotations

import pytest

from lc_assets.lib.ruler import (
    Prediction,
    RulerSample,
    average,
    effective_length,
    postprocess_pred,
    score_heatmap_png,
    score_predictions,
    score_table_markdown,
    score_task,
    string_match_all,
    string_match_part,
    summarize,
    weighted_average,
)


def test_postprocess_only_strips_and_maps_control_chars() -> None:
    assert postprocess_pred("  Answer\tX\r\n ") == "Answer\nX"
    assert postprocess_pred("MiXeD Case.") == "MiXeD Case."  # no lower-casing, no punctuation removal
    assert postprocess_pred("\x00\x1f") == ""


def test_string_match_all_partial_credit_and_rounding() -> None:
    refs = [["a1", "b2", "c3"], ["x"], ["y"]]
    preds = ["A1 and c3", "nothing", "Y"]
    # (2/3 + 0 + 1) / 3 * 100 = 55.555... -> 55.56
    assert string_match_all(preds, refs) == 55.56


def test_string_match_part_any_reference() -> None:
    assert string_match_part(["the Eiffel tower", "no idea", "Paris"], [["eiffel", "x"], ["y"], ["paris"]]) == 66.67


@pytest.mark.parametrize(
    ("pred", "refs", "expected"),
    [
        ("94826913", ["4826913"], 100.0),  # superstring counts
        ("party", ["art"], 100.0),
        ("I do not know", ["no"], 100.0),
        ("4826913 4826913", ["4826913", "4826913"], 100.0),  # duplicate refs each count
        ("4826913", ["4826913", "1111111"], 50.0),
        ("anything", [""], 100.0),  # an empty gold matches everything
        ("", [""], 100.0),
    ],
)
def test_documented_edge_cases(pred: str, refs: list[str], expected: float) -> None:
    assert string_match_all([pred], [refs]) == expected


def test_repeated_answer_counts_once_per_reference() -> None:
    assert string_match_all(["abc abc abc"], [["abc", "def"]]) == 50.0


def test_empty_reference_list_is_rejected() -> None:
    with pytest.raises(ValueError, match="empty reference list"):
        string_match_all(["x"], [[]])


def test_score_task_uses_the_task_metric_and_counts_nulls() -> None:
    refs = [["q1", "q2"], ["q3", "zz"]]
    preds = ["q1", "  \n"]
    assert score_task("niah_multivalue", 4096, preds, refs).score == 25.0  # all: (1/2 + 0)/2
    qa = score_task("qa_1", 4096, preds, refs)
    assert qa.score == 50.0 and qa.nulls == 1 and qa.metric == "string_match_part"


def test_readme_row_aggregates() -> None:
    per_length = dict(zip([4096, 8192, 16384, 32768, 65536, 131072], [95.5, 93.8, 91.6, 87.4, 84.7, 77.0], strict=True))
    assert round(average(per_length), 1) == 88.3
    assert round(weighted_average(per_length, increasing=True), 1) == 85.4
    assert round(weighted_average(per_length, increasing=False), 1) == 91.3
    assert effective_length(per_length) == 32768
    assert effective_length({4096: 80.0, 8192: 90.0}) == 8192
    assert effective_length({4096: 80.0, 8192: 90.0}, contiguous=True) is None
    assert effective_length({4096: 85.6}) is None  # must exceed, not equal


def test_summary_and_reports() -> None:
    table = {("niah_single_1", 4096): 100.0, ("qa_1", 4096): 50.0, ("niah_single_1", 8192): 90.0, ("qa_1", 8192): 40.0}
    summary = summarize(table)
    assert summary.per_length == {4096: 75.0, 8192: 65.0}
    md = score_table_markdown(table)
    assert "| niah_single_1 | 100.00 | 90.00 |" in md and "**75.00**" in md and "effective length none" in md
    png = score_heatmap_png(table, title="test")
    assert png.startswith(b"\x89PNG") and len(png) > 1000


def _sample(task: str, index: int, outputs: list[str]) -> RulerSample:
    return RulerSample(index, task, 4096, "in", " Answer:", outputs, 10, 32, 1)


def test_score_predictions_over_stored_records() -> None:
    samples = [_sample("qa_2", 0, ["Paris"]), _sample("qa_2", 1, ["Rome"]), _sample("vt", 0, ["AAAAA", "BBBBB"])]
    preds = [Prediction("qa_2", 4096, 0, " paris!"), Prediction("vt", 4096, 0, "AAAAA")]
    scores = score_predictions(samples, preds)
    assert scores[("qa_2", 4096)].score == 50.0 and scores[("qa_2", 4096)].nulls == 1  # missing -> null
    assert scores[("vt", 4096)].score == 50.0
