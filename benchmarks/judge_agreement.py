"""How well does the model judge separate good pairs from bad ones? Real pairs, labelled by reading them.

The fixture (`benchmarks/data/labelled_pairs.jsonl`, built by `benchmarks/data/build_labelled_pairs.py`
from lineage files of real runs) holds pairs the project generated with Qwen2.5-Coder-1.5B, each with its
evidence quotes in the text around them (as the judge prompt shows them), a label (good / weak / bad) and
a one-line reason from reading it. This script runs the judge (`lc_assets.lib.judge`, the production loop and
prompt) with the embedded `local` model on them and prints:

- the confusion matrix verdict x label,
- per keep policy: the share of bad pairs removed, of good pairs lost, of weak ones removed, and the rejected
  share overall — a filter no better than chance removes bad and good pairs at the same rate;
- seconds and CPU seconds per pair, with the load average.

    python benchmarks/judge_agreement.py                       # every labelled pair (prompt frozen before)
    python benchmarks/judge_agreement.py --split dev           # the pairs a prompt change may be tuned on
    python benchmarks/judge_agreement.py --split test          # held out: report these after any tuning
    python benchmarks/judge_agreement.py --verdicts out.jsonl  # also write every verdict with its check
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

from lc_assets.lib.generation.config import GeneratorIdentity
from lc_assets.lib.judge import PairJudgeConfig, judge_pairs
from lc_assets.lib.judge.prompt import JudgeInput
from lc_assets.lib.lineage import LineageStore
from lc_assets.lib.lineage.judge import judgements_of

DATA = Path(__file__).parent / "data" / "labelled_pairs.jsonl"
LABELS = ("good", "weak", "bad")
#: keep policies compared on the same verdicts (the judge is asked once)
POLICIES = {
    "supported + standalone (default)": dict(keep_verdicts=("supported",), require_standalone=True),
    "supported": dict(keep_verdicts=("supported",), require_standalone=False),
    "supported or partly": dict(keep_verdicts=("supported", "partly"), require_standalone=False),
}


def load(path: Path, split: str) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    bad = [r.get("pair_id") for r in rows if r.get("label") not in LABELS]
    if bad:
        raise SystemExit(f"{path}: rows {bad[:5]} have no label in {LABELS}")
    return [r for r in rows if split == "all" or r["split"] == split]


def as_input(row: dict) -> JudgeInput:
    return JudgeInput(
        row["pair_id"], row["title"], row["question"], row["answer"], tuple(row["quotes"]), row["context"]
    )


def rates(rows: Sequence[dict], kept: dict[str, bool]) -> dict[str, float | None]:
    def removed(label: str) -> float | None:
        ids = [r["pair_id"] for r in rows if r["label"] == label]
        return sum(not kept[i] for i in ids) / len(ids) if ids else None

    return {
        "bad_removed": removed("bad"),
        "good_lost": removed("good"),
        "weak_removed": removed("weak"),
        "rejected_share": sum(not k for k in kept.values()) / len(kept) if kept else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--split", choices=["all", "dev", "test"], default="all")
    ap.add_argument("--model", default=None, help="a packaged preset or a GGUF path (default: the local default)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=2, help="llama.cpp slots = judge requests in flight")
    ap.add_argument("--ctx", type=int, default=4096, help="context window per slot")
    ap.add_argument("--max-pairs", type=int, default=None)
    ap.add_argument("--verdicts", type=Path, default=None, help="write every verdict as JSON Lines")
    args = ap.parse_args(argv)

    from lc_assets.lib.generation.local_backend import LocalLlamaBackend

    rows = load(args.data, args.split)[: args.max_pairs]
    by_id = {r["pair_id"]: r for r in rows}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        store = LineageStore(Path(tmp) / "judge.duckdb")  # the verdicts only; the pairs come from the fixture
        kw = {"model_path": args.model} if args.model else {}
        started = time.monotonic()
        with LocalLlamaBackend(n_parallel=args.parallel, n_ctx_per_slot=args.ctx, n_threads=args.threads, **kw) as be:
            cfg = PairJudgeConfig(judge=GeneratorIdentity(backend="local", model=be.model))
            loaded = time.monotonic()
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)

            def inputs(ids: Sequence[str]) -> Iterator[tuple[JudgeInput, str]]:
                return ((as_input(by_id[i]), by_id[i].get("section_id", "")) for i in ids)

            summary = judge_pairs(
                store, be, cfg, list(by_id), run_id="benchmark", generation_config_hash="fixture", inputs=inputs,
                progress=lambda ev: print(f"  {ev}", file=sys.stderr),
            )  # fmt: skip
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        judged = {j.pair_id: j for j in judgements_of(store, cfg.config_hash(), list(by_id))}
        raw = dict(store.query("SELECT pair_id, raw_text FROM pair_judgements"))
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    wall = time.monotonic() - loaded
    load_after = os.getloadavg()

    print(f"\n{len(rows)} labelled pairs ({args.split}), judge {cfg.judge.model if cfg.judge else '?'}, "
          f"judge config {cfg.config_hash()}, prompt version {cfg.prompt_version}")  # fmt: skip
    print(f"labels: {dict(Counter(r['label'] for r in rows))}; labelled from the docs' readings: "
          f"{sum(r['labelled_by'] == 'docs' for r in rows)}, by the benchmark's author: "
          f"{sum(r['labelled_by'] != 'docs' for r in rows)}")  # fmt: skip
    verdicts = ("supported", "partly", "unsupported", "judge_error")
    print(f"\n{'verdict':<14}" + "".join(f"{lab:>7}" for lab in LABELS) + f"{'all':>7}")
    for v in verdicts:
        cells = [sum(1 for r in rows if judged[r["pair_id"]].verdict == v and r["label"] == lab) for lab in LABELS]
        print(f"{v:<14}" + "".join(f"{c:>7}" for c in cells) + f"{sum(cells):>7}")
    ns = [sum(1 for r in rows if judged[r["pair_id"]].standalone is False and r["label"] == lab) for lab in LABELS]
    print(f"{'not standalone':<14}" + "".join(f"{c:>7}" for c in ns) + f"{sum(ns):>7}")
    print(f"\n{'keep policy':<34}{'bad removed':>12}{'good lost':>11}{'weak removed':>14}{'rejected':>10}")
    for name, policy in POLICIES.items():
        p = cfg.model_copy(update=policy)
        kept = {i: p.keeps(j.verdict, j.standalone) for i, j in judged.items()}
        r = rates(rows, kept)
        cells = ["-" if r[k] is None else f"{r[k]:.0%}" for k in ("bad_removed", "good_lost", "weak_removed")]
        print(f"{name:<34}{cells[0]:>12}{cells[1]:>11}{cells[2]:>14}{r['rejected_share']:>10.0%}")
    n = max(1, summary.judged)
    print(f"\nmodel load {loaded - started:.1f} s; {wall:.0f} s wall for {summary.judged} pairs ({wall / n:.1f} s/pair, "
          f"{args.parallel} in flight, {args.threads} threads); {cpu / n:.1f} CPU-s/pair; "
          f"{summary.prompt_tokens / n:.0f} prompt + {summary.completion_tokens / n:.0f} output tokens/pair; "
          f"load average {load_before[0]:.1f} -> {load_after[0]:.1f}")  # fmt: skip
    if summary.errors_by_code:
        print(f"judge errors: {dict(summary.errors_by_code)}")
    if args.verdicts:
        with args.verdicts.open("w", encoding="utf-8") as f:
            for r in rows:
                j = judged[r["pair_id"]]
                f.write(json.dumps({"pair_id": r["pair_id"], "label": r["label"], "verdict": j.verdict,
                                    "standalone": j.standalone, "check": j.check_text, "error": j.error_code,
                                    "raw": raw.get(r["pair_id"]), "question": r["question"]},
                                   ensure_ascii=False) + "\n")  # fmt: skip
        print(f"verdicts written to {args.verdicts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
