"""Evidence depth coverage by placement: focus windows on vs off, with model doubles that choose their quotes.

Coverage (least-used / most-used chunk decile of the accepted pairs' evidence quotes, `quality.coverage`) is
set by two things: which parts of the chunk a step shows (the masks) and which shown window the pair
quotes. The second is the model's choice unless the step names a focus window (`focus_window`,
lib/generation/focus.py). This benchmark isolates placement from model quality: the production loop
(scheduler, prompt guard, schema, validation) over real chunks of the embedded corpus (the benchmarks'
lineage fixture: Devil's Dictionary, Debian Policy, CPython email and asyncio, PostgreSQL functions;
50k-150k-token chunks) with the demo profile's masks (768-1,024-token budgets), against two doubles
that always write a valid, grounded pair:

- ``first``: quotes the FIRST allowed evidence choice (a model that prefers the first excerpt);
- ``random``: quotes a random allowed choice (a model without a positional preference).

Each runs with focus on and off; every section grows ``--steps`` steps (no token target), so a run has
~sections x steps accepted pairs. The last line:

    first_on=<c> first_off=<c> random_on=<c> random_off=<c> pairs=<n>

    python benchmarks/evidence_coverage.py --seeds 0 1 2      # the fixture's 5 chunks, 46 steps each
    python benchmarks/evidence_coverage.py --chunks 12 --steps 20 --seeds 0 1 2   # 12 sections (copies)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lineage_fixture import SHARD, seeded_catalog, template_chunks  # noqa: E402

from lc_assets.lib.corpus.lineage import latest_chunk_config  # noqa: E402
from lc_assets.lib.generation.config import GenerationConfig  # noqa: E402
from lc_assets.lib.generation.quality import EvidenceRef, StepOutcome, compute_quality  # noqa: E402
from lc_assets.lib.generation.records import MemorySink  # noqa: E402
from lc_assets.lib.generation.scheduler import GenerationScheduler  # noqa: E402
from lc_assets.lib.lineage.generation import iter_section_tasks, sections_to_grow  # noqa: E402
from lc_assets.lib.tokenizer import load_tokenizer  # noqa: E402
from lc_assets_tests.generation.doubles import ScriptedBackend, first_choice_reply, unique_reply  # noqa: E402

DOUBLES = {"first": first_choice_reply, "random": unique_reply}
#: the demo profile's generate_qa knobs (its per-section step cap is replaced by --steps)
_DEMO_PROFILE = yaml.safe_load((Path(__file__).resolve().parents[1] / "lc_assets/profiles/demo.yaml").read_text())
DEMO = {k: v for k, v in _DEMO_PROFILE["ops"]["generate_qa"]["config"].items() if k != "pairs_per_section"}


def run(catalog, tok, double: str, focus: bool, steps: int, seed: int) -> tuple[float, list[int], int]:
    cfg = GenerationConfig(
        **DEMO, seed=seed, focus_window=focus, target_tokens=1 << 40, max_steps_per_section=steps
    )  # fmt: skip
    todo, _ = sections_to_grow(catalog, SHARD, latest_chunk_config(catalog, SHARD), cfg.config_hash())
    tasks = list(iter_section_tasks(catalog, todo))
    chars = {t.section.section_id: len(t.section.text) for t in tasks}
    backend = ScriptedBackend(tokenizer=tok, script=DOUBLES[double], window=4096, in_flight_cap=16)
    sink = MemorySink()
    GenerationScheduler(backend, cfg, sink, tok).run(tasks)
    outcomes = [
        StepOutcome(
            r.section_id, r.step, r.pair is not None, r.failure_reason,
            evidence=tuple(EvidenceRef(s, e) for s, e in r.evidence_spans), chunk_chars=chars[r.section_id],
        )
        for r in sink.records
    ]  # fmt: skip
    q = compute_quality(outcomes)
    return q.depth_coverage, q.depth_histogram, q.accepted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=0, help="sections (0: the fixture's own chunks, no copies)")
    ap.add_argument(
        "--steps", type=int, default=46, help="steps per section (46: >= 200 pairs from the fixture's 5 chunks)"
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "lc_assets_bench"))
    args = ap.parse_args()
    tok = load_tokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        n_chunks = args.chunks or template_chunks(Path(args.cache))
        catalog = seeded_catalog(Path(tmp) / "catalog.duckdb", n_chunks, Path(args.cache))
        figures: dict[str, list[float]] = {}
        pairs = 0
        for double in DOUBLES:
            for focus in (True, False):
                key = f"{double}_{'on' if focus else 'off'}"
                for seed in args.seeds:
                    cov, hist, accepted = run(catalog, tok, double, focus, args.steps, seed)
                    figures.setdefault(key, []).append(cov)
                    pairs = max(pairs, accepted)
                    print(f"{key:10s} seed={seed} pairs={accepted} coverage={cov:.2f} deciles={hist}", flush=True)
    print(" ".join(f"{k}={statistics.median(v):.2f}" for k, v in figures.items()) + f" pairs={pairs}")


if __name__ == "__main__":
    main()
