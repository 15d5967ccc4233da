"""`lc-assets`: register corpus shards and materialize the asset graph through Dagster.

    lc-assets shards                      # known shards and which are registered partitions
    lc-assets shards add demo mybooks     # register shards as partitions of corpus_shards
    lc-assets materialize --shard demo --profile demo   # the whole graph for one shard
    lc-assets lineage sample <id>         # walk lineage (once packed samples exist)
    lc-assets lineage prompt <id> --json  # the exact messages one generation step sent
    lc-assets lineage merge               # merge run lineage files left by killed runs into the catalog
    lc-assets summary                     # what was made, where it is, what to run next
    lc-assets report                      # HTML quality report of the newest generation config
    lc-assets review --include-rejected   # review sampled pairs and rejected attempts; --stats: agreement

`materialize` runs exactly `dagster asset materialize -m lc_assets.definitions --select ...
--partition SHARD -c PROFILE`, after making sure the shard is a registered partition; a selection
of unpartitioned assets only (packed_documents, ruler_*) runs without `--partition`.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from lc_assets.defs.partitions import CORPUS_SHARDS

PROFILES = ("demo", "production")


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME, else ./.dagster_home linked to the project's dagster.yaml (or an empty one)."""
    home = Path(os.environ.get("DAGSTER_HOME") or Path.cwd() / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    if not cfg.exists():
        project_cfg = Path.cwd() / "dagster.yaml"
        if project_cfg.is_file():
            cfg.symlink_to(project_cfg)
        else:
            cfg.write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def profile_path(profile: str) -> Path:
    if profile in PROFILES:
        return Path(str(importlib.resources.files("lc_assets").joinpath("profiles", f"{profile}.yaml")))
    path = Path(profile)
    if not path.is_file():
        raise SystemExit(f"profile {profile!r} is neither one of {PROFILES} nor a run-config file")
    return path


def register_shards(names: list[str]) -> list[str]:
    """Add shards as dynamic partitions; unknown shard names are refused with the known list."""
    import dagster as dg

    from lc_assets.defs.resources import CorpusSourcesResource

    known = CorpusSourcesResource().shard_names()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown shard(s) {unknown}; known: {known} (add yours to LC_ASSETS_SOURCES_FILE)")
    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        have = set(instance.get_dynamic_partitions(CORPUS_SHARDS))
        new = [n for n in names if n not in have]
        if new:
            instance.add_dynamic_partitions(CORPUS_SHARDS, new)
    return new


def _cmd_shards(args: argparse.Namespace) -> int:
    import dagster as dg

    from lc_assets.defs.resources import CorpusSourcesResource

    if args.action == "add":
        new = register_shards(args.names)
        print(f"registered: {new or 'nothing new'}")
        return 0
    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        registered = set(instance.get_dynamic_partitions(CORPUS_SHARDS))
    res = CorpusSourcesResource()
    for name in res.shard_names():
        spec = res.spec(name)
        mark = "registered" if name in registered else "-"
        print(f"{name:<24} {spec.kind:<9} {mark}")
    return 0


def selects_shard_assets(select: str) -> bool:
    """Whether a `--select` string holds any asset partitioned by corpus shard."""
    import warnings

    import dagster as dg

    from lc_assets.definitions import defs

    graph = defs().resolve_asset_graph()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        keys = dg.AssetSelection.from_coercible(select.split(",")).resolve(graph)
    return any(graph.get(key).partitions_def is not None for key in keys)


def _cmd_materialize(args: argparse.Namespace) -> int:
    # `dagster asset materialize` refuses --partition when no selected asset is partitioned (packed_documents, RULER)
    partition = ["--partition", args.shard] if selects_shard_assets(args.select) else []
    if partition:
        register_shards([args.shard])
    cmd = [
        sys.executable, "-m", "dagster", "asset", "materialize",
        "-m", "lc_assets.definitions",
        "--select", args.select,
        *partition,
        "-c", str(profile_path(args.profile)),
    ]  # fmt: skip
    print("+", " ".join(cmd), flush=True)
    env = dict(os.environ, LC_ASSETS_PROGRESS_BAR="1")
    code = call_forwarding_sigterm(cmd, env)
    if code == 0:
        print(summary_text(None), flush=True)
    return code


def call_forwarding_sigterm(cmd: list[str], env: dict[str, str]) -> int:
    """Run ``cmd`` and pass a SIGTERM sent to this process on to it (Ctrl-C already reaches the whole group).

    Without it, `kill` on `lc-assets materialize` ended the CLI alone: the Dagster run under it went on, and its
    step's graceful stop (requests in flight settle, the run file merges) never started.
    """
    proc = subprocess.Popen(cmd, env=env)

    def forward(signum: int, _frame: object) -> None:
        proc.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        return proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _lineage_store(path: str | None):
    from lc_assets.defs.resources import data_dir
    from lc_assets.lib.lineage import LineageStore

    db = Path(path) if path else data_dir() / "lineage.duckdb"
    if not db.is_file():
        raise SystemExit(f"no lineage database at {db} (set --db or LC_ASSETS_DATA_DIR)")
    return LineageStore(db)


def _cmd_lineage(args: argparse.Namespace) -> int:
    from lc_assets.lib.packing.store import document_samples, sample_members

    store = _lineage_store(args.db)
    if args.kind == "merge":
        from lc_assets.lib.lineage.catalog import merge_pending

        results = merge_pending(store, "lc-assets lineage merge")
        for res in results:
            print(f"{res.run_file.name}: " + (f"skipped ({res.skipped})" if res.skipped else f"merged {res.rows}"))
        print(f"{sum(r.skipped is None for r in results)} run file(s) merged into {store.path}")
        return 0
    if not args.id:
        raise SystemExit(f"lc-assets lineage {args.kind} needs an id")
    if args.kind == "prompt":
        from lc_assets.lib.lineage.generation import PromptNotFoundError, rebuild_prompt

        try:
            prompt = rebuild_prompt(store, args.id)
        except (PromptNotFoundError, ValueError) as exc:
            raise SystemExit(str(exc)) from None
        if args.json:
            print(json.dumps(list(prompt.messages), ensure_ascii=False, indent=2))
        else:
            for message in prompt.messages:
                print(f"--- {message['role']} ---\n{message['content']}")
        return 0
    if args.kind == "sample":
        members = sample_members(store, args.id)
        if not members:
            raise SystemExit(f"no packed sample {args.id!r}")
        print(f"sample {args.id}: {len(members)} section(s)")
        for m in members:
            print(
                f"  {m.position:>3} {m.section_id}  {m.title} [chunk {m.chunk_index}, {m.chunk_tokens:,} tok, "
                f"{m.license}]  {m.pairs_in_sample} pairs / {m.prompts} prompts"
            )
        return 0
    rows = document_samples(store, args.id)
    print(f"document {args.id}: used in {len(rows)} packed sample(s)")
    for sample_id, cfg, n_tokens in rows:
        print(f"  {sample_id}  ({n_tokens:,} tokens, packing config {cfg})")
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    print(summary_text(args.db))
    return 0


def summary_text(db: str | None = None) -> str:
    from lc_assets.lib.summary import collect, format_summary

    return format_summary(collect(_lineage_store(db)), os.environ.get("DAGSTER_HOME"))


def _generation_config_or_exit(store, requested: str | None) -> str:
    from lc_assets.lib.lineage.review import newest_config_with_pairs

    chosen = requested or newest_config_with_pairs(store)
    if chosen is None:
        raise SystemExit(f"no QA pairs in {store.path}: run generate_qa (qa_pairs) first")
    return chosen


def _cmd_report(args: argparse.Namespace) -> int:
    from lc_assets.lib.quality_report import write_quality_report

    store = _lineage_store(args.db)
    gen = _generation_config_or_exit(store, args.generation_config)
    name = f"quality_{gen}" + (f"_{args.run}" if args.run else "") + ".html"
    out = Path(args.output) if args.output else store.path.parent / "reports" / name
    path = write_quality_report(store, gen, out, run_id=args.run, sample_pairs=args.sample, seed=args.seed)
    print(f"quality report of generation config {gen}{f' run {args.run}' if args.run else ''}: {path}")
    print(judge_line(store, gen, args.run))
    return 0


def judge_line(store, gen: str, run: str | None) -> str:
    """The model judge's verdict counts of a generation config, in one line."""
    from lc_assets.lib.lineage.judge import generation_judge_counts

    c = generation_judge_counts(store, gen, run)
    if not c.judged:
        return "model judge: no verdicts yet (materialize judged_qa_pairs)"
    verdicts = ", ".join(f"{v} {n}" for v, n in c.by_verdict.items())
    return (
        f"model judge: {c.judged} pair(s) judged ({verdicts}); kept {c.kept}, rejected {c.rejected} "
        f"({c.rejected_share:.1%}), not standalone {c.not_standalone}"
    )


def _cmd_review(args: argparse.Namespace) -> int:
    from datetime import datetime

    from lc_assets.lib.lineage.judge import judge_vs_human
    from lc_assets.lib.lineage.review import review_judgements
    from lc_assets.lib.review import (
        ReviewConfig,
        VerdictFileError,
        agreement,
        apply_verdicts,
        export_items,
        format_agreement,
        read_verdicts,
        review_session,
        sample_items,
    )

    store = _lineage_store(args.db)
    gen = _generation_config_or_exit(store, args.generation_config)
    if args.stats:
        print(f"generation config {gen}{f', run {args.run}' if args.run else ''}")
        print(format_agreement(agreement(review_judgements(store, gen, args.run))))
        print(judge_line(store, gen, args.run))
        both = judge_vs_human(store, gen, args.run)
        if both:
            print("human verdicts against the model judge (accepted = the judge kept the pair):")
            print(format_agreement(agreement(both)))
        return 0
    rejected = {None: 0, -1: args.sample}.get(args.include_rejected, args.include_rejected)
    try:
        config = ReviewConfig(generation_config_hash=gen, run_id=args.run, sample=args.sample, rejected=rejected,
                              seed=args.seed)  # fmt: skip
    except ValueError as exc:  # pydantic's ValidationError names the field and the bound
        raise SystemExit(f"lc-assets review: {exc}") from None
    items = [] if args.verdicts else sample_items(store, config)
    if args.export:
        export_items(items, Path(args.export))
        print(f"wrote {len(items)} item(s) to {args.export}: fill in 'verdict' and run with --verdicts")
        return 0
    reviewer = args.reviewer or os.environ.get("USER")
    if not reviewer:
        raise SystemExit("who is reviewing? set --reviewer NAME (or USER)")
    session = f"review-{reviewer}-{datetime.now():%Y%m%dT%H%M%S}"
    if args.verdicts:
        try:
            done = apply_verdicts(store, read_verdicts(Path(args.verdicts), reviewer), run_id=session,
                                  config_hash=config.config_hash())  # fmt: skip
        except (VerdictFileError, OSError) as exc:
            raise SystemExit(str(exc)) from None
        print(f"recorded {len(done)} verdict(s) from {args.verdicts} into {store.path}")
        return 0
    if not items:
        print(f"nothing left to review in generation config {gen} (every sampled item has a verdict)")
        return 0
    print(f"reviewing {len(items)} item(s) of generation config {gen} as {reviewer}; verdicts are saved at once")
    result = review_session(
        store, items, reviewer, run_id=session, config_hash=config.config_hash(), context_chars=args.context,
        color=sys.stdout.isatty(),
    )  # fmt: skip
    left = " (stopped: run the same command to go on)" if result.stopped else ""
    print(f"recorded {len(result.recorded)} verdict(s), skipped {result.skipped}{left}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lc-assets", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    shards = sub.add_parser("shards", help="list or register corpus shards")
    shards.add_argument("action", nargs="?", choices=["list", "add"], default="list")
    shards.add_argument("names", nargs="*")
    shards.set_defaults(func=_cmd_shards)

    mat = sub.add_parser("materialize", help="materialize assets for one shard through Dagster")
    mat.add_argument("--shard", default="demo")
    mat.add_argument("--profile", default="demo", help=f"{PROFILES} or a run-config YAML file")
    mat.add_argument("--select", default="*")
    mat.set_defaults(func=_cmd_materialize)

    lin = sub.add_parser(
        "lineage",
        help="walk lineage: a packed sample back to documents, a document forward, a step's exact prompt; "
        "merge run lineage files",
    )
    lin.add_argument("kind", choices=["sample", "document", "prompt", "merge"])
    lin.add_argument("id", nargs="?", default=None)
    lin.add_argument("--json", action="store_true", help="prompt: the messages as JSON")
    lin.add_argument("--db", default=None, help="lineage DuckDB file (default: $LC_ASSETS_DATA_DIR/lineage.duckdb)")
    lin.set_defaults(func=_cmd_lineage)

    summ = sub.add_parser("summary", help="what the lineage store holds: counts, quality, samples, RULER, paths")
    summ.add_argument("--db", default=None, help="lineage DuckDB file (default: $LC_ASSETS_DATA_DIR/lineage.duckdb)")
    summ.set_defaults(func=_cmd_summary)

    db_help = "lineage DuckDB file (default: $LC_ASSETS_DATA_DIR/lineage.duckdb)"
    rep = sub.add_parser("report", help="write the HTML quality report of a generation config or run")
    rep.add_argument("--generation-config", default=None, help="generation config hash (default: the newest)")
    rep.add_argument("--run", default=None, help="only steps of this generation run")
    rep.add_argument("-o", "--output", default=None, help="HTML file (default: <lineage dir>/reports/...)")
    rep.add_argument("--sample", type=int, default=20, help="accepted pairs shown with their excerpts")
    rep.add_argument("--seed", type=int, default=0)
    rep.add_argument("--db", default=None, help=db_help)
    rep.set_defaults(func=_cmd_report)

    rev = sub.add_parser(
        "review",
        help="review sampled pairs (and rejected attempts) by hand; verdicts go to pair_reviews; --stats: agreement",
    )
    rev.add_argument("--generation-config", default=None, help="generation config hash (default: the newest)")
    rev.add_argument("--run", default=None, help="only items made by this generation run")
    rev.add_argument("-n", "--sample", type=int, default=20, help="accepted pairs to review")
    rev.add_argument("--seed", type=int, default=0, help="sampling order (the same seed resumes it)")
    rev.add_argument("--reviewer", default=None, help="your name (default: $USER)")
    rev.add_argument(
        "--include-rejected", type=int, nargs="?", const=-1, default=None, metavar="N",
        help="also review N rejected attempts (default: as many as pairs), so agreement is measured both ways",
    )  # fmt: skip
    rev.add_argument("--verdicts", default=None, help="record verdicts from a JSON Lines file instead of asking")
    rev.add_argument("--export", default=None, help="write the sampled items as JSON Lines instead of asking")
    rev.add_argument("--context", type=int, default=600, help="chars shown around the evidence (0: whole excerpt)")
    rev.add_argument("--stats", action="store_true", help="print agreement of the verdicts with the automatic checks")
    rev.add_argument("--db", default=None, help=db_help)
    rev.set_defaults(func=_cmd_review)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
