"""What the grounding checks (``lib/generation/grounding_checks.py``) add to one ``validate_output`` call.

Validates the same outputs with the checks on and off (replaced by no-ops), alternating rounds in one process so
load changes hit both alike, and prints CPU microseconds per call for each and their difference. The outputs: the
judge benchmark's labelled pairs and, with a lineage file, every stored attempt of that run against its rebuilt
windows (one ``ShownTextMemo`` per section, as in a run).

    python benchmarks/grounding_checks_cost.py [--lineage LINEAGE.duckdb] [--rounds 20]
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

from benchmarks.revalidate_run import _MARK
from lc_assets.lib.generation import grounding_checks
from lc_assets.lib.generation.masking import Paragraph, windows_of
from lc_assets.lib.generation.prompts import INSTRUCTION_TEXTS
from lc_assets.lib.generation.validate import QuestionIndex, ShownTextMemo, ValidationConfig, validate_output
from lc_assets.lib.lineage.replay import rejudge, step_language, stored_steps
from lc_assets.lib.lineage.store import LineageStore

LABELLED = Path(__file__).parent / "data" / "labelled_pairs.jsonl"


def labelled_calls() -> list[Callable[[], object]]:
    cfg = ValidationConfig(max_question_chars=200, max_answer_chars=300, max_quote_chars=200)
    calls = []
    for pair in map(json.loads, LABELLED.read_text().splitlines()):
        pieces = [p for p in _MARK.sub("", pair["context"]).split("[…]") if p.strip()]
        paragraphs, pos = [], 0
        for i, text in enumerate(pieces):
            paragraphs.append(Paragraph(2 * i, "", pos, pos + len(text), text, 0))
            pos += len(text) + 1000
        raw = json.dumps({"evidence": pair["quotes"], "question": pair["question"], "answer": pair["answer"]})
        windows = windows_of(paragraphs)
        kwargs = {"instructions": INSTRUCTION_TEXTS, "config": cfg, "title": pair.get("title"), "source_language": "en"}
        calls.append(functools.partial(validate_output, raw, windows, **kwargs))
    return calls


def lineage_calls(path: Path) -> list[Callable[[], object]]:
    calls = []
    memos: dict[str, ShownTextMemo] = {}
    for st in stored_steps(LineageStore(path)):
        memo = memos.setdefault(st.section_id, ShownTextMemo())
        language = step_language(st)
        for attempt in st.attempts:
            calls.append(lambda st=st, raw=attempt.raw_text, memo=memo, language=language: rejudge(
                st, raw, QuestionIndex(), language, memo
            ))  # fmt: skip
    return calls


@contextmanager
def checks_off():
    with (
        mock.patch.object(grounding_checks, "grounding_failure", lambda *a, **k: None),
        mock.patch.object(grounding_checks, "unplaced_dotted_names", lambda *a, **k: []),
        mock.patch.object(grounding_checks, "points_at_shown_code", lambda *a, **k: None),
        mock.patch.object(grounding_checks, "ordinal_reference", lambda *a, **k: None),
        mock.patch.object(grounding_checks, "support_without_decoration", lambda *a, **k: None),
    ):
        yield


def cpu_per_call(calls: list[Callable[[], object]]) -> float:
    start = time.process_time()
    for call in calls:
        call()
    return (time.process_time() - start) / len(calls) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lineage", type=Path, help="a lineage DuckDB file: also time every stored attempt of its run")
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    sets = {"labelled_pairs": labelled_calls()}
    if args.lineage:
        sets["lineage"] = lineage_calls(args.lineage)
    result = {}
    for name, calls in sets.items():
        for call in calls:  # warm caches (stems, memo, regexes) before timing
            call()
        on, off = [], []
        for _ in range(args.rounds):
            on.append(cpu_per_call(calls))
            with checks_off():
                off.append(cpu_per_call(calls))
        on_us, off_us = sorted(on)[len(on) // 2], sorted(off)[len(off) // 2]
        result[name] = {
            "calls": len(calls),
            "us_per_call_checks_on": round(on_us, 1),
            "us_per_call_checks_off": round(off_us, 1),
            "added_us_per_call": round(on_us - off_us, 1),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
