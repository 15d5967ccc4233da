"""What a run made, for a person: counts and quality figures from the lineage store, paths, next commands.

`lc-assets summary` prints it, and `lc-assets materialize` after a successful run.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lc_assets.lib.lineage import LineageStore
from lc_assets.lib.lineage.quality import load_quality


@dataclass
class RunSummary:
    db: Path
    documents: int = 0
    document_tokens: int = 0
    chunks: int = 0
    chunk_tokens: int = 0
    sections_finished: int = 0
    pairs: int = 0
    failed_steps: int = 0
    failures_by_reason: dict[str, int] = field(default_factory=dict)
    empty_answers: int = 0
    duplicate_questions: int = 0
    median_question_chars: float = 0.0
    median_answer_chars: float = 0.0
    quality: dict[str, Any] = field(default_factory=dict)  # the newest generation config's figures, all shards
    quality_reports: list[str] = field(default_factory=list)  # HTML quality reports, newest first
    samples_by_length: dict[int, int] = field(default_factory=dict)
    fill_mean: float = 0.0
    dependency_median: float | None = None
    packed_dirs: list[str] = field(default_factory=list)
    example_sample: str | None = None
    example_document: str | None = None
    ruler_model: str | None = None
    ruler: dict[str, dict[int, float]] = field(default_factory=dict)  # task -> length -> score

    @property
    def pair_yield(self) -> float:
        steps = self.pairs + self.failed_steps
        return self.pairs / steps if steps else 0.0


def _one(store: LineageStore, sql: str, params: list[Any] | None = None) -> tuple[Any, ...]:
    rows = store.query(sql, params)
    return rows[0] if rows else ()


def collect(store: LineageStore) -> RunSummary:
    """Everything the lineage store holds, summarised (all shards and configs)."""
    s = RunSummary(db=store.path)
    s.documents, s.document_tokens = _one(store, "SELECT count(*), coalesce(sum(n_tokens), 0) FROM documents")
    s.chunks, s.chunk_tokens = _one(store, "SELECT count(*), coalesce(sum(n_tokens), 0) FROM chunks")
    s.sections_finished = store.scalar("SELECT count(*) FROM sections WHERE finish_reason IS NOT NULL") or 0
    s.pairs, s.empty_answers, s.median_question_chars, s.median_answer_chars = _one(
        store,
        """SELECT count(*), count(*) FILTER (WHERE trim(answer) = ''),
                  coalesce(median(length(question)), 0), coalesce(median(length(answer)), 0) FROM qa_pairs""",
    )
    s.duplicate_questions = (
        store.scalar(
            """SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM qa_pairs
               GROUP BY section_id, lower(trim(question)) HAVING n > 1)"""
        )
        or 0
    )
    s.failed_steps = store.scalar("SELECT count(*) FROM failed_steps") or 0
    s.failures_by_reason = {
        r: int(n)
        for r, n in store.query(
            "SELECT split_part(reason, ':', 1), count(*) FROM failed_steps GROUP BY 1 ORDER BY 2 DESC LIMIT 6"
        )
    }
    newest = store.scalar("SELECT config_hash FROM generation_quality ORDER BY created_at DESC LIMIT 1")
    if newest:
        s.quality = load_quality(store, newest).to_metadata() | {"config_hash": newest}
    reports = store.path.parent / "reports"
    if reports.is_dir():
        s.quality_reports = [str(p) for p in sorted(reports.glob("*.html"), key=lambda p: -p.stat().st_mtime)[:2]]
    s.samples_by_length = {
        int(n): int(c) for n, c in store.query("SELECT n_tokens, count(*) FROM packed_samples GROUP BY 1 ORDER BY 1")
    }
    s.fill_mean = float(store.scalar("SELECT coalesce(avg(fill_ratio), 0) FROM packed_samples") or 0.0)
    s.dependency_median = store.scalar(
        "SELECT median(dependency_median) FROM packed_samples WHERE dependency_median >= 0"
    )
    s.packed_dirs = [
        r[0]
        for r in store.query(
            "SELECT output_dir FROM packing_runs WHERE output_dir IS NOT NULL ORDER BY created_at DESC LIMIT 4"
        )
    ]
    s.example_sample = store.scalar("SELECT sample_id FROM packed_samples ORDER BY created_at DESC LIMIT 1")
    if s.example_sample:
        s.example_document = store.scalar(
            """SELECT s.document_id FROM packed_sample_sections ps JOIN sections s ON s.section_id = ps.base_section_id
               WHERE ps.sample_id = ? ORDER BY ps.position LIMIT 1""",
            [s.example_sample],
        )
    s.ruler_model = store.scalar("SELECT model FROM ruler_scores ORDER BY created_at DESC LIMIT 1")
    if s.ruler_model:
        table: dict[str, dict[int, float]] = defaultdict(dict)
        for task, length, score in store.query(
            "SELECT task, max_seq_length, score FROM ruler_scores WHERE model = ? ORDER BY task, max_seq_length",
            [s.ruler_model],
        ):
            table[task][int(length)] = float(score)
        s.ruler = dict(table)
    return s


def format_summary(s: RunSummary, dagster_home: str | None = None) -> str:
    """A short plain-text report: what was made, where it is, what to run next."""
    lines = ["", "== lc_assets: what the lineage store holds (every run so far) =="]
    lines.append(f"documents  {s.documents:>8,}   {s.document_tokens:,} tokens")
    lines.append(f"chunks     {s.chunks:>8,}   {s.chunk_tokens:,} tokens")
    lines.append(
        f"QA pairs   {s.pairs:>8,}   from {s.sections_finished:,} finished sections; yield {s.pair_yield:.0%} "
        f"({s.failed_steps:,} failed steps{_reasons(s.failures_by_reason)})"
    )
    if s.pairs:
        lines.append(
            f"           median question {s.median_question_chars:.0f} chars, answer {s.median_answer_chars:.0f} chars; "
            f"{s.empty_answers} empty answers, {s.duplicate_questions} repeated questions within a section"
        )
    if s.quality.get("accepted"):
        q = s.quality
        lines.append(
            f"           evidence: {q['evidence_verbatim_share']:.0%} of pairs quoted verbatim from the shown text "
            f"({q['completed_evidence_share']:.0%} completed by validation); depth coverage {q['depth_coverage']:.2f} "
            f"over {q['pairs_with_depth']} pairs; near-duplicates {q['near_duplicate_share']:.1%}; kinds "
            + ", ".join(f"{k} {n}" for k, n in list(q["kind_mix"].items())[:4])
            + f" (generation config {q['config_hash']})"
        )
    if s.samples_by_length:
        per = ", ".join(f"{c} x {n:,}" for n, c in s.samples_by_length.items())
        dep = f"; median dependency {s.dependency_median:,.0f} tokens" if s.dependency_median is not None else ""
        lines.append(f"samples    {sum(s.samples_by_length.values()):>8,}   {per} tokens; fill {s.fill_mean:.5f}{dep}")
    else:
        lines.append("samples           0   (none packed yet; packed_documents says why in its metadata)")
    if s.ruler:
        lengths = sorted({n for row in s.ruler.values() for n in row})
        lines.append(f"RULER      model {s.ruler_model}")
        lines.append("           " + f"{'task':<18}" + "".join(f"{n:>9,}" for n in lengths))
        for task, row in sorted(s.ruler.items()):
            lines.append("           " + f"{task:<18}" + "".join(_score(row.get(n)) for n in lengths))
        means = [
            sum(r[n] for r in s.ruler.values() if n in r) / sum(1 for r in s.ruler.values() if n in r) for n in lengths
        ]
        lines.append("           " + f"{'average':<18}" + "".join(_score(m) for m in means))
    lines.append("")
    lines.append("== where ==")
    lines.append(f"lineage    {s.db}")
    for d in s.packed_dirs:
        lines.append(f"packed     {d}   (hf_dataset/, parquet/, manifest.json)")
    for report in s.quality_reports:
        lines.append(f"quality    {report}   (QA quality report: metrics, pairs with their evidence)")
    if dagster_home:
        lines.append(f"dagster    {dagster_home}   (runs, logs, asset metadata)")
    lines.append("")
    lines.append("== next ==")
    lines.append("make dev                                   # the Dagster UI at http://127.0.0.1:3000")
    if s.example_sample:
        lines.append(f"lc-assets lineage sample {s.example_sample}   # its sections, documents, pairs")
    if s.example_document:
        lines.append(f"lc-assets lineage document {s.example_document}   # every sample that used it")
    lines.append(f"duckdb {s.db}                 # SQL over every row (README: Lineage)")
    lines.append("docs/training.md                           # train on the packed dataset")
    return "\n".join(lines)


def _reasons(by_reason: dict[str, int]) -> str:
    return (": " + ", ".join(f"{r} {n}" for r, n in by_reason.items())) if by_reason else ""


def _score(value: float | None) -> str:
    return f"{value:>9.1f}" if value is not None else f"{'-':>9}"
