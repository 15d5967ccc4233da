"""Re-judge a run's stored outputs with the current validation, on exactly the text each prompt showed.

No model runs: every attempt stored in a lineage file (the accepted output in ``masked_prompts.record``, each
refused one in ``rejected_attempts``) is validated again against its step's rebuilt windows, the earlier pairs
its prompt listed, its focus window and the run's own validation settings; the section's question index holds
the questions accepted so far *in the replay* (a pair the new checks accept is a duplicate target for later
steps, as in a run). A real run with the new checks would differ after the first changed verdict (the model
sees other earlier questions); the replay measures the checks, not that.

    python benchmarks/revalidate_run.py LINEAGE.duckdb [--labels lc_assets_tests/generation/data/rust_book_attempts.jsonl]
    python benchmarks/revalidate_run.py --labelled-pairs benchmarks/data/labelled_pairs.jsonl

Prints JSON: attempts, accepted (stored / now), refusals by code (stored / now), every changed verdict, and with
``--labels`` how each label fared (``right`` refusals that are now accepted must be ~0; ``wrong`` ones should
flip; accepted ``bad`` pairs now refused are a gain). ``--labelled-pairs`` runs the judge benchmark's labelled
pairs (question, answer, quotes and the text around them) through validation: the context the judge saw stands
in for the shown window (narrower than the prompt's, so completion finds less), one pair at a time.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from lc_assets.lib.generation.masking import Paragraph, windows_of
from lc_assets.lib.generation.prompts import INSTRUCTION_TEXTS
from lc_assets.lib.generation.validate import QuestionIndex, ShownTextMemo, ValidationConfig, validate_output
from lc_assets.lib.lineage.replay import rejudge, step_language, stored_steps
from lc_assets.lib.lineage.store import LineageStore


def revalidate_lineage(path: Path, labels: dict[str, dict[str, Any]]) -> dict[str, Any]:
    indexes: dict[str, QuestionIndex] = {}
    memos: dict[str, ShownTextMemo] = {}
    languages: dict[str, str] = {}
    rows = []
    for st in stored_steps(LineageStore(path)):
        index = indexes.setdefault(st.section_id, QuestionIndex())
        language = languages.setdefault(st.section_id, step_language(st))
        for attempt in st.attempts:
            verdict = rejudge(st, attempt.raw_text, index, language, memos.setdefault(st.section_id, ShownTextMemo()))
            if verdict.ok:
                assert verdict.question is not None
                index.add(verdict.question)
            label = labels.get(st.prompt_id, {}).get("label") if attempt is st.attempts[-1] else None
            rows.append(
                {
                    "prompt_id": st.prompt_id,
                    "stored": attempt.code or "accepted",
                    "now": verdict.reason or "accepted",
                    "detail": verdict.detail,
                    "label": label,
                    "question": verdict.question,
                    "completed": [s.source_text for s in verdict.spans if s.origin == "completed"],
                }
            )
    return summarize(rows)


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_label: dict[str, Counter[str]] = {}
    for r in rows:
        if r["label"]:
            by_label.setdefault(r["label"], Counter())[r["now"] if r["now"] == "accepted" else "refused"] += 1
    return {
        "attempts": len(rows),
        "accepted": {
            "stored": sum(r["stored"] == "accepted" for r in rows),
            "now": sum(r["now"] == "accepted" for r in rows),
        },
        "refusals": {
            "stored": dict(Counter(r["stored"] for r in rows if r["stored"] != "accepted").most_common()),
            "now": dict(Counter(r["now"] for r in rows if r["now"] != "accepted").most_common()),
        },
        "labels_now": {k: dict(v) for k, v in sorted(by_label.items())},
        "changed": [
            {k: r[k] for k in ("prompt_id", "label", "stored", "now", "detail", "question", "completed")}
            for r in rows
            if r["stored"] != r["now"]
        ],
    }


_MARK = re.compile(r"\[\[\d+ |\]\]")


def revalidate_labelled_pairs(path: Path) -> dict[str, Any]:
    """The judge benchmark's labelled pairs: verdict by label (good / weak / bad)."""
    cfg = ValidationConfig(max_question_chars=200, max_answer_chars=300, max_quote_chars=200)
    out: dict[str, Counter[str]] = {}
    accepted = []
    for line in path.read_text().splitlines():
        pair = json.loads(line)
        # the judge's context marks each quote "[[n ...]]" and elides the rest with "[…]": one window per piece
        pieces = [p for p in _MARK.sub("", pair["context"]).split("[…]") if p.strip()]
        paragraphs, pos = [], 0
        for i, text in enumerate(pieces):
            paragraphs.append(Paragraph(2 * i, "", pos, pos + len(text), text, 0))
            pos += len(text) + 1000  # far apart: separate windows
        raw = json.dumps({"evidence": pair["quotes"], "question": pair["question"], "answer": pair["answer"]})
        verdict = validate_output(
            raw, windows_of(paragraphs), instructions=INSTRUCTION_TEXTS, config=cfg, title=pair.get("title")
        )
        out.setdefault(pair["label"], Counter())[verdict.reason or "accepted"] += 1
        if verdict.ok:
            accepted.append(pair["pair_id"])
    return {"by_label": {k: dict(v.most_common()) for k, v in sorted(out.items())}, "accepted": sorted(accepted)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("lineage", nargs="?", type=Path, help="a lineage DuckDB file (opened read-only)")
    ap.add_argument("--labels", type=Path, help="JSON Lines of {prompt_id, label}: how each label fares")
    ap.add_argument("--labelled-pairs", type=Path, help="benchmarks/data/labelled_pairs.jsonl")
    args = ap.parse_args()
    result: dict[str, Any] = {}
    if args.lineage:
        labels = {}
        if args.labels:
            labels = {r["prompt_id"]: r for r in map(json.loads, args.labels.read_text().splitlines())}
        result["lineage"] = revalidate_lineage(args.lineage, labels)
    if args.labelled_pairs:
        result["labelled_pairs"] = revalidate_labelled_pairs(args.labelled_pairs)
    if not result:
        ap.error("give a lineage file, --labelled-pairs, or both")
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
