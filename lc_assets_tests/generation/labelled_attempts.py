"""Real model outputs with their labels and shown windows (``data/*_attempts.jsonl``), validated without a lineage
file: the fixtures of ``benchmarks/data/build_rust_book_labels.py`` and ``build_pydocs_labels.py``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lc_assets.lib.generation.masking import Paragraph, windows_of
from lc_assets.lib.generation.prompts import INSTRUCTION_TEXTS
from lc_assets.lib.generation.validate import QuestionIndex, ValidatedQA, ValidationConfig, validate_output

DATA = Path(__file__).parent / "data"
#: the validation bounds of the labelled runs (run.yaml of the Rust book and Python-docs runs)
RUN_CONFIG = ValidationConfig(max_question_chars=200, max_answer_chars=300, max_quote_chars=200)


def load_attempts(name: str) -> dict[str, dict[str, Any]]:
    """``data/{name}_attempts.jsonl`` by prompt id."""
    return {r["prompt_id"]: r for r in map(json.loads, (DATA / f"{name}_attempts.jsonl").read_text().splitlines())}


def judge_attempt(row: dict[str, Any], config: ValidationConfig = RUN_CONFIG) -> ValidatedQA:
    """The row's raw output validated against its stored windows, as its step was (earlier questions, long-range
    flag, focus window, title)."""
    windows = tuple(
        w for shown in row["windows"] for w in windows_of([Paragraph(i, "", s, e, text, 0) for i, s, e, text in shown])
    )
    return validate_output(
        row["raw_text"],
        windows,
        question_index=QuestionIndex(row["earlier_questions"]),
        long_range=row["long_range"],
        instructions=INSTRUCTION_TEXTS,
        source_language="en",
        config=config,
        title=row["title"],
        focus_window=row["focus_window"],
    )
