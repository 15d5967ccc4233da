"""What the grounding checks (``lib/generation/grounding_checks.py``) add to one ``validate_output`` call.

Validates the same outputs again and again with every grounding check wrapped in a timer, and prints the time per
``validate_output`` call, the time spent inside the checks, and its share: a share measured in one loop is what
load does not move (an on/off difference of two loops was ±10 µs noise on the 2-core machine). The outputs: the
judge benchmark's labelled pairs and, with a lineage file, every stored attempt of that run against its rebuilt
windows (one ``ShownTextMemo`` per section, as in a run).

    python benchmarks/grounding_checks_cost.py [--lineage LINEAGE.duckdb] [--rounds 20]
"""

from __future__ import annotations

import argparse
import contextlib
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


#: every entry point validate_output calls in grounding_checks
CHECKS = (
    "grounding_failure",
    "unplaced_dotted_names",
    "points_at_shown_code",
    "ordinal_reference",
    "support_without_decoration",
)


@contextmanager
def timed_checks(spent: list[float]):
    """The grounding checks wrapped so that their wall time adds up in ``spent[0]`` (perf_counter: a vDSO read,
    ~50 ns, against checks of microseconds)."""

    def timed(fn: Callable[..., object]) -> Callable[..., object]:
        def run(*args: object, **kwargs: object) -> object:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - start

        return run

    with contextlib.ExitStack() as stack:
        for name in CHECKS:
            stack.enter_context(mock.patch.object(grounding_checks, name, timed(getattr(grounding_checks, name))))
        yield


def measure(calls: list[Callable[[], object]], rounds: int) -> dict[str, float]:
    for call in calls:  # warm caches (stems, memo, regexes) before timing
        call()
    spent = [0.0]
    with timed_checks(spent):
        start = time.perf_counter()
        for _ in range(rounds):
            for call in calls:
                call()
        total = time.perf_counter() - start
    n = rounds * len(calls)
    return {
        "calls": len(calls),
        "validate_us_per_call": round(total / n * 1e6, 1),
        "grounding_checks_us_per_call": round(spent[0] / n * 1e6, 1),
        "grounding_checks_share": round(spent[0] / total, 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lineage", type=Path, help="a lineage DuckDB file: also time every stored attempt of its run")
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    sets = {"labelled_pairs": labelled_calls()}
    if args.lineage:
        sets["lineage"] = lineage_calls(args.lineage)
    print(json.dumps({name: measure(calls, args.rounds) for name, calls in sets.items()}, indent=2))


if __name__ == "__main__":
    main()
