"""Why-questions where the text gives a reason: the labelled runs' "why" steps by causal marker, and how often the gate
fires on a generic run (lib/generation/kind_cues.py; docs/qa_quality.md, session 10).

Part A (``labelled``): every step of the labelled real runs (``lc_assets_tests/generation/data/*_attempts.jsonl``)
whose suggested kind was "why". The fixtures do not store the suggested kind: it is the section's cycle
(``prompts.kinds_in_turn``) with the runs' seed and kinds (0 and the default seven, as ``profiles/demo.yaml`` leaves
them; recomputing it gives every kind stored in the demo runs' lineage). A long-range step names no kind and is
left out. For each step: whether the text its question had to come from (the focus window, else every shown window)
has a causal marker, and what the step made (good / weak / bad, or refused). The Rust book's fixture keeps the
shown windows of its test examples only: for its other steps the marker is read in the model's quotes (a quote is
one of the focus window's sentences, so "yes" is certain) and, with ``--rust-book-html``, in an approximate window
rebuilt around the quotes from the book (the quoted paragraph and its neighbours up to ``--approx-chars``).
Also every accepted question that asks "Why ..." whatever the suggestion, and the numeric / compare steps
against a number / comparison cue in their text (to decide whether those kinds need a gate too).

Part B (``generic``): the production loop (scheduler, prompt guard, focus, schema, validation) over the benchmark
fixture's real chunks (``lineage_fixture.py``: Devil's Dictionary, Debian Policy, CPython email and asyncio,
PostgreSQL functions) with the demo profile's masks, against the grounded test double: the share of steps whose
suggested kind the gate changed (the stored kind against the cycle's), and how many focus texts state a reason.

    python benchmarks/why_cues.py labelled [--rust-book-html PATH]
    python benchmarks/why_cues.py generic --steps 46 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lc_assets.lib.generation.kind_cues import causal_markers  # noqa: E402
from lc_assets.lib.generation.prompts import kinds_in_turn, suggest_kind  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "lc_assets_tests" / "generation" / "data"
RUNS = {"pydocs": "Python docs", "node_jargon": "Node.js + Jargon File", "rust_book": "Rust book"}
_NUMBER = re.compile(r"\d|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|hundred|thousand|once|twice)\b", re.I)
_COMPARE = re.compile(
    r"\b(?:than|unlike|whereas|instead|differ\w*|difference|versus|compared|similar\w*|rather)\b", re.I
)


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / f"{name}_attempts.jsonl").read_text().splitlines()]


def _output(row: dict) -> dict:
    try:
        out = json.loads(row["raw_text"])
    except json.JSONDecodeError:
        return {}
    return out if isinstance(out, dict) else {}


def _question_text(row: dict) -> str | None:
    """The text the step's question had to come from (the focus window's, else every shown window's)."""
    if row["windows"] is None:
        return None
    windows = row["windows"] if row["focus_window"] is None else [row["windows"][row["focus_window"]]]
    return "\n\n".join(p[3] for w in windows for p in w)


def _outcome(row: dict) -> str:
    return row["label"] if row["stored_code"] is None else f"refused ({row['label']})"


class _Book:
    """The Rust book's text (as the product reads HTML) cut into paragraphs: an approximate window around quotes."""

    def __init__(self, path: Path, approx_chars: int) -> None:
        from lc_assets.lib.corpus.files import read_html_file
        from lc_assets.lib.generation.masking import paragraph_spans

        text = read_html_file(path, "rust-book")
        if not isinstance(text, str):
            raise SystemExit(f"{path}: {text}")
        self.paras = [text[s:e] for s, e in paragraph_spans(text)]
        self.flat = [re.sub(r"\s+", " ", p) for p in self.paras]
        self.approx_chars = approx_chars

    def around(self, quotes: list[str]) -> str | None:
        hits = [i for q in quotes for i, p in enumerate(self.flat) if re.sub(r"\s+", " ", q).strip() in p]
        if not hits:
            return None
        lo = hi = hits[0]
        size = len(self.paras[lo])
        while size < self.approx_chars and (lo > 0 or hi < len(self.paras) - 1):
            if hi < len(self.paras) - 1:
                hi += 1
                size += len(self.paras[hi])
            if lo > 0 and size < self.approx_chars:
                lo -= 1
                size += len(self.paras[lo])
        return "\n\n".join(self.paras[lo : hi + 1])


def labelled(args: argparse.Namespace) -> None:
    book = _Book(Path(args.rust_book_html), args.approx_chars) if args.rust_book_html else None
    table: Counter[tuple[str, str]] = Counter()
    print("A1. steps suggested 'why' (not long-range): marker in the text the question had to come from")
    for name, run in RUNS.items():
        for row in _rows(name):
            section, step = row["prompt_id"].rsplit(":", 1)
            turn = kinds_in_turn(0, section, int(step))
            if turn[0] != "why" or row["long_range"]:
                continue
            out = _output(row)
            text, where = _question_text(row), "focus" if row["focus_window"] is not None else "shown"
            if text is None:  # Rust book: windows not stored
                quoted = causal_markers(" ".join(q for q in out.get("evidence", []) if isinstance(q, str)))
                approx = book.around([q for q in out.get("evidence", []) if isinstance(q, str)]) if book else None
                if quoted:
                    markers, where = quoted, "quotes"
                elif approx is not None:
                    markers, where = causal_markers(approx), "approx."
                    text = approx
                else:
                    markers, where = [], "unknown"
            else:
                markers = causal_markers(text)
            marker = "unknown" if where == "unknown" else ("yes" if markers else "no")
            if where == "approx.":
                marker += " (approx.)"
            table[(marker, _outcome(row))] += 1
            gated = suggest_kind(0, section, int(step), text=text) if text is not None and not markers else "why"
            print(
                f"  {run:22s} {row['prompt_id'][-6:]:>7s} marker={marker:14s} ({where}: {', '.join(markers) or '-'})"
                f" -> {_outcome(row):16s} gate: {gated:9s} Q: {str(out.get('question', '?'))[:80]}"
            )
    outcomes = sorted({o for _, o in table}, key=lambda o: (o.startswith("refused"), o))
    print("\n  " + f"{'marker':14s}" + "".join(f"{o:>17s}" for o in outcomes))
    for marker in sorted({m for m, _ in table}):
        print(f"  {marker:14s}" + "".join(f"{table[(marker, o)]:17d}" for o in outcomes))

    print("\nA2. accepted pairs asking 'Why ...' (any suggested kind): marker in their question's text")
    for name, run in RUNS.items():
        for row in _rows(name):
            out = _output(row)
            question = str(out.get("question", ""))
            if row["stored_code"] is not None or not question.lower().startswith("why"):
                continue
            section, step = row["prompt_id"].rsplit(":", 1)
            text = _question_text(row)
            markers = causal_markers(text) if text is not None else None
            print(
                f"  {run:22s} {row['prompt_id'][-6:]:>7s} suggested={kinds_in_turn(0, section, int(step))[0]:9s}"
                f" long_range={row['long_range']!s:5s} markers={markers} -> {row['label']}: {question[:70]}"
            )

    print("\nA3. steps suggested 'numeric' / 'compare' (not long-range, windows stored): a cue in the question's text")
    cue_table: Counter[tuple[str, bool, str]] = Counter()
    for name in RUNS:
        for row in _rows(name):
            section, step = row["prompt_id"].rsplit(":", 1)
            kind = kinds_in_turn(0, section, int(step))[0]
            text = _question_text(row)
            if kind not in ("numeric", "compare") or row["long_range"] or text is None:
                continue
            cue = bool((_NUMBER if kind == "numeric" else _COMPARE).search(text))
            cue_table[(kind, cue, _outcome(row))] += 1
    for (kind, cue, outcome), n in sorted(cue_table.items()):
        print(f"  {kind:8s} cue={'yes' if cue else 'no':3s} {outcome:16s} {n}")

    print("\nA4. every step with stored windows (not long-range): how often its question's text states a reason")
    for name, run in RUNS.items():
        texts = [_question_text(r) for r in _rows(name) if not r["long_range"]]
        stored = [t for t in texts if t is not None]
        with_reason = sum(1 for t in stored if causal_markers(t))
        print(f"  {run:22s} {with_reason} of {len(stored)} state a reason")


def generic(args: argparse.Namespace) -> None:
    import yaml
    from lineage_fixture import SHARD, seeded_catalog, template_chunks

    from lc_assets.lib.corpus.lineage import latest_chunk_config
    from lc_assets.lib.generation.config import GenerationConfig
    from lc_assets.lib.generation.masking import Paragraph, windows_of
    from lc_assets.lib.generation.prompts import question_text
    from lc_assets.lib.generation.records import MemorySink
    from lc_assets.lib.generation.scheduler import GenerationScheduler
    from lc_assets.lib.lineage.generation import iter_section_tasks, sections_to_grow
    from lc_assets.lib.tokenizer import load_tokenizer
    from lc_assets_tests.generation.doubles import ScriptedBackend, unique_reply

    profile = yaml.safe_load((Path(__file__).resolve().parents[1] / "lc_assets/profiles/demo.yaml").read_text())
    demo = {k: v for k, v in profile["ops"]["generate_qa"]["config"].items() if k != "pairs_per_section"}
    tok = load_tokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        n_chunks = args.chunks or template_chunks(Path(args.cache))
        catalog = seeded_catalog(Path(tmp) / "catalog.duckdb", n_chunks, Path(args.cache))
        for seed in args.seeds:
            cfg = GenerationConfig(**demo, seed=seed, target_tokens=1 << 40, max_steps_per_section=args.steps)
            todo, _ = sections_to_grow(catalog, SHARD, latest_chunk_config(catalog, SHARD), cfg.config_hash())
            tasks = list(iter_section_tasks(catalog, todo))
            texts = {t.section.section_id: t.section.text for t in tasks}
            backend = ScriptedBackend(tokenizer=tok, script=unique_reply, window=4096, in_flight_cap=16)
            sink = MemorySink()
            GenerationScheduler(backend, cfg, sink, tok).run(tasks)
            counts: Counter[str] = Counter()
            for r in sink.records:
                if not r.prompt_hash:
                    continue  # sent nothing
                counts["steps"] += 1
                cycle = kinds_in_turn(cfg.seed, r.section_id, r.step, cfg.question_kinds)[0]
                if r.long_range:
                    counts["long-range"] += 1
                    continue
                text = texts[r.section_id]
                shown = [Paragraph(i, "", s, e, text[s:e], 0) for i, s, e in r.shown_spans]
                reason = bool(causal_markers(question_text(windows_of(shown), r.focus_window)))
                counts["ordinary"] += 1
                counts["ordinary, text states a reason"] += reason
                counts["cycle 'why'"] += cycle == "why"
                counts["cycle 'why', text states a reason"] += cycle == "why" and reason
                if r.suggested_kind != cycle:
                    counts["changed"] += 1
                    counts[f"changed to {r.suggested_kind}"] += 1
            steps = counts["steps"]
            print(f"seed={seed} sections={len(tasks)} " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
            print(
                f"  share of steps whose suggestion changed: {counts['changed'] / steps:.3f}; focus/shown texts "
                f"stating a reason: {counts['ordinary, text states a reason'] / max(1, counts['ordinary']):.3f}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="part", required=True)
    a = sub.add_parser("labelled")
    a.add_argument("--rust-book-html", help="the toolchain's share/doc/rust/html/book/print.html (approximate windows)")
    a.add_argument("--approx-chars", type=int, default=1400, help="approximate window size (the fixtures' median)")
    b = sub.add_parser("generic")
    b.add_argument("--chunks", type=int, default=0, help="sections (0: the fixture's own chunks)")
    b.add_argument("--steps", type=int, default=46)
    b.add_argument("--seeds", type=int, nargs="+", default=[0])
    b.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "lc_assets_bench"))
    args = ap.parse_args()
    labelled(args) if args.part == "labelled" else generic(args)


if __name__ == "__main__":
    main()
