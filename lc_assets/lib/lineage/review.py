"""Queries of the quality report and the human review: reviewable items, their shown text, verdicts.

A reviewable item is an accepted pair (`qa_pairs`, id = pair id) or a rejected attempt (id =
`<prompt_id>#<attempt>`, 0-based): a row of `rejected_attempts` where generation stores them, and
the final attempt of every failed step (`failed_steps`). Each comes with the text its prompt showed
(chunk text + `masked_prompts.shown_spans`; older rows without spans: their `paragraph_ids`) and its
evidence quotes: `qa_evidence` spans for pairs, the quotes of the raw output located in the shown
text for rejected attempts. Verdicts go to `pair_reviews`, one per (item, reviewer).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from lc_assets.lib.excerpts import Excerpt, Quote, build_excerpt, locate_quote, shown_ranges
from lc_assets.lib.generation.masking import DEFAULT_SKIP_MARKER
from lc_assets.lib.generation.quality import reason_code
from lc_assets.lib.generation.validate import load_json_object
from lc_assets.lib.lineage.store import LineageStore, chunk_texts, insert_rows

ItemKind = Literal["pair", "rejected_attempt"]
Verdict = Literal["accept", "reject", "fix"]
VERDICTS: tuple[str, ...] = ("accept", "reject", "fix")


def newest_config_with_pairs(store: LineageStore, shard: str | None = None) -> str | None:
    """The generation config whose newest pair (of `shard`'s chunks, when given) is the newest (the default of
    report, review and the model judge); cross section configs only when named (`--generation-config`), as
    packing packs the base config's sections."""
    in_shard = (
        """ AND section_id IN (SELECT section_id FROM sections
             WHERE shard = ? OR chunk_id IN (SELECT chunk_id FROM shard_chunks WHERE shard = ?))"""
        if shard is not None
        else ""
    )
    return store.scalar(
        "SELECT config_hash FROM qa_pairs WHERE config_hash NOT IN (SELECT config_hash FROM cross_sections)"
        f"{in_shard} GROUP BY 1 ORDER BY max(created_at) DESC, 1 LIMIT 1",
        [shard, shard] if shard is not None else None,
    )


def generation_config(store: LineageStore, generation_config_hash: str) -> dict[str, Any]:
    """The stored generation config (knobs, generator identity), or {} for a config stored before configs were."""
    raw = store.scalar("SELECT config FROM generation_configs WHERE config_hash = ?", [generation_config_hash])
    return json.loads(raw) if raw else {}


def _run_filter(alias: str, run_id: str | None) -> tuple[str, list[Any]]:
    return (f" AND {alias}.run_id = ?", [run_id]) if run_id else ("", [])


def _candidates(
    store: LineageStore, kind: ItemKind, generation_config_hash: str, run_id: str | None
) -> tuple[str, list[Any]]:
    """SQL (one column `id`) of the config's accepted pairs, or of its rejected attempts that kept their output."""
    if kind == "pair":
        where, params = _run_filter("q", run_id)
        return f"SELECT q.pair_id AS id FROM qa_pairs q WHERE q.config_hash = ?{where}", [
            generation_config_hash,
            *params,
        ]
    where, params = _run_filter("f", run_id)
    sql = (
        "SELECT f.prompt_id || '#' || CAST(f.attempts - 1 AS VARCHAR) AS id FROM failed_steps f "
        f"WHERE f.config_hash = ?{where}"
    )
    all_params = [generation_config_hash, *params]
    # rejected_attempts holds the failed steps' final attempts too: UNION keeps one
    where_r, params_r = _run_filter("r", run_id)
    sql += (
        " UNION SELECT r.prompt_id || '#' || CAST(r.attempt AS VARCHAR) FROM rejected_attempts r "
        f"WHERE r.config_hash = ?{where_r}"
    )
    all_params += [generation_config_hash, *params_r]
    return sql, all_params


def candidate_ids(
    store: LineageStore, kind: ItemKind, generation_config_hash: str, run_id: str | None = None
) -> list[str]:
    """Every reviewable item of a kind (pairs: pair ids; rejected attempts: `<prompt_id>#<attempt>`), sorted."""
    sql, params = _candidates(store, kind, generation_config_hash, run_id)
    return [r[0] for r in store.query(f"SELECT id FROM ({sql}) ORDER BY id", params)]


def sample_candidate_ids(
    store: LineageStore,
    kind: ItemKind,
    generation_config_hash: str,
    n: int,
    seed: int,
    run_id: str | None = None,
    skip_reviewed: bool = False,
) -> list[str]:
    """The first `n` items in the seeded order sha256("<seed>\\x1f<id>") (`review.sample_order`), computed in
    DuckDB so that millions of pairs are never loaded; `skip_reviewed`: items with any verdict are passed over."""
    sql, params = _candidates(store, kind, generation_config_hash, run_id)
    skip = ""
    if skip_reviewed:
        skip = " WHERE id NOT IN (SELECT pair_id FROM pair_reviews WHERE generation_config_hash = ?)"
        params = [*params, generation_config_hash]
    rows = store.query(
        f"SELECT id FROM ({sql}){skip} ORDER BY sha256(CAST(? AS VARCHAR) || chr(31) || id), id LIMIT ?",
        [*params, seed, n],
    )
    return [r[0] for r in rows]


@dataclass(frozen=True)
class ReviewItem:
    """One pair or rejected attempt with what a reader needs to judge it."""

    item_id: str
    kind: ItemKind
    prompt_id: str
    section_id: str
    generation_config_hash: str
    generation_run_id: str | None
    question: str | None
    answer: str | None
    quotes: tuple[Quote, ...]
    excerpt: Excerpt
    document: str  # title or source of the chunk's document
    chunk_index: int | None
    question_kind: str | None = None  # classified by validation (pairs)
    automatic_code: str | None = None  # rejected: the code of the check that failed
    automatic_detail: str | None = None
    raw_text: str | None = None  # rejected: the model's output as it came

    @property
    def automatic(self) -> Literal["accepted", "rejected"]:
        return "accepted" if self.kind == "pair" else "rejected"


def split_item_id(item_id: str) -> tuple[str, int] | None:
    """`<prompt_id>#<attempt>` -> (prompt_id, attempt); None for a pair id."""
    head, sep, tail = item_id.rpartition("#")
    return (head, int(tail)) if sep and tail.isdigit() else None


_CONTEXT_SQL = """
    SELECT m.prompt_id, m.shown_spans, m.paragraph_ids, s.chunk_id, c.chunk_index, coalesce(d.title, d.source)
    FROM masked_prompts m LEFT JOIN sections s ON s.section_id = m.section_id
    LEFT JOIN chunks c ON c.chunk_id = s.chunk_id LEFT JOIN documents d ON d.document_id = s.document_id
    WHERE m.prompt_id IN (SELECT unnest(?::VARCHAR[]))
"""


@dataclass(frozen=True)
class _Context:
    chunk_text: str | None
    spans: list[tuple[int, int]]
    chunk_index: int | None
    document: str


def _contexts(store: LineageStore, prompt_ids: Sequence[str]) -> dict[str, _Context]:
    """Per prompt: its chunk text and the chunk spans it showed."""
    from lc_assets.lib.packing.evidence import ChunkParagraphs  # older rows: spans from paragraph ids

    rows = store.query(_CONTEXT_SQL, [list(prompt_ids)])
    texts = chunk_texts(store, sorted({r[3] for r in rows if r[3]}))
    paragraphs: dict[str, ChunkParagraphs] = {}
    out = {}
    for prompt_id, shown, paragraph_ids, chunk_id, chunk_index, document in rows:
        text = texts.get(chunk_id)
        if shown is not None:
            spans = [(int(s["char_start"]), int(s["char_end"])) for s in shown]
        elif text is not None:
            chunk = paragraphs.setdefault(chunk_id, ChunkParagraphs(text))
            spans = chunk.spans(paragraph_ids or []) or []
        else:
            spans = []
        out[prompt_id] = _Context(text, spans, chunk_index, document or "?")
    return out


def _skip_markers(store: LineageStore, config_hashes: set[str]) -> dict[str, str]:
    return {h: generation_config(store, h).get("skip_marker", DEFAULT_SKIP_MARKER) for h in config_hashes}


def load_pairs(store: LineageStore, ids: Sequence[str]) -> list[ReviewItem]:
    """Accepted pairs with their shown text and evidence quotes, in the order of `ids` (unknown ids left out)."""
    if not ids:
        return []
    rows = store.query(
        """SELECT q.pair_id, q.prompt_id, q.section_id, q.config_hash, q.run_id, q.question, q.answer, q.kind
            FROM qa_pairs q WHERE q.pair_id IN (SELECT unnest(?::VARCHAR[]))""",
        [list(ids)],
    )
    quotes: dict[str, list[Quote]] = {}
    for pid, index, start, end, text, origin, score in store.query(
        """SELECT pair_id, quote_index, char_start, char_end, quote, origin, score FROM qa_evidence
           WHERE pair_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY pair_id, quote_index""",
        [list(ids)],
    ):
        quotes.setdefault(pid, []).append(Quote(int(index) + 1, text or "", start, end, origin, score))
    contexts = _contexts(store, [r[1] for r in rows])
    markers = _skip_markers(store, {r[3] for r in rows})
    by_id = {}
    for pid, prompt_id, sid, cfg, run, question, answer, kind in rows:
        ctx = contexts.get(prompt_id, _Context(None, [], None, "?"))
        pair_quotes = tuple(quotes.get(pid, ()))
        excerpt = build_excerpt(ctx.chunk_text or "", ctx.spans, pair_quotes, markers[cfg])
        by_id[pid] = ReviewItem(
            pid, "pair", prompt_id, sid, cfg, run, question, answer, pair_quotes, excerpt, ctx.document,
            ctx.chunk_index, question_kind=kind,
        )  # fmt: skip
    return [by_id[i] for i in ids if i in by_id]


def _raw_fields(raw_text: str) -> tuple[str | None, str | None, list[str]]:
    """Question, answer and evidence of a raw output, when it is a JSON object at all (no judging)."""
    obj = load_json_object(raw_text)
    if isinstance(obj, str):
        return None, None, []
    evidence = obj.get("evidence")
    if isinstance(evidence, str):
        evidence = [evidence]
    quotes = [q for q in evidence or [] if isinstance(q, str)] if isinstance(evidence, list) else []
    q, a = obj.get("question"), obj.get("answer")
    return (q if isinstance(q, str) else None), (a if isinstance(a, str) else None), quotes


def load_rejected(store: LineageStore, ids: Sequence[str]) -> list[ReviewItem]:
    """Rejected attempts (`<prompt_id>#<attempt>`) with their shown text, in the order of `ids`."""
    keys = [k for k in (split_item_id(i) for i in ids) if k is not None]
    if not keys:
        return []
    wanted = [f"{p}#{a}" for p, a in keys]
    found: dict[str, tuple[Any, ...]] = {}  # id -> (prompt, section, config, run, code, detail, raw)
    for item_id, prompt_id, sid, cfg, run, code, detail, raw in store.query(
        """SELECT r.prompt_id || '#' || CAST(r.attempt AS VARCHAR), r.prompt_id, m.section_id, r.config_hash,
                  r.run_id, r.code, r.detail, r.raw_text
           FROM rejected_attempts r JOIN masked_prompts m USING (prompt_id)
           WHERE r.prompt_id || '#' || CAST(r.attempt AS VARCHAR) IN (SELECT unnest(?::VARCHAR[]))""",
        [wanted],
    ):
        found[item_id] = (prompt_id, sid, cfg, run, code, detail, raw)
    for item_id, prompt_id, sid, cfg, run, reason, raw in store.query(
        """SELECT prompt_id || '#' || CAST(attempts - 1 AS VARCHAR), prompt_id, section_id, config_hash, run_id,
                  reason, raw_text
           FROM failed_steps WHERE prompt_id || '#' || CAST(attempts - 1 AS VARCHAR) IN (SELECT unnest(?::VARCHAR[]))""",
        [wanted],
    ):
        if item_id not in found:
            detail = reason.split(":", 1)[1].strip() if ":" in reason else reason
            found[item_id] = (prompt_id, sid, cfg, run, reason_code(reason), detail, raw)
    contexts = _contexts(store, sorted({v[0] for v in found.values()}))
    markers = _skip_markers(store, {v[2] for v in found.values()})
    out = []
    for item_id in wanted:
        if item_id not in found:
            continue
        prompt_id, sid, cfg, run, code, detail, raw = found[item_id]
        ctx = contexts.get(prompt_id, _Context(None, [], None, "?"))
        question, answer, raw_quotes = _raw_fields(raw or "")
        ranges = shown_ranges(ctx.chunk_text or "", ctx.spans)
        quotes = []
        for n, text in enumerate(raw_quotes, start=1):
            at = locate_quote(ctx.chunk_text or "", ranges, text)
            quotes.append(Quote(n, text, *(at or (None, None))))
        excerpt = build_excerpt(ctx.chunk_text or "", ctx.spans, quotes, markers[cfg])
        out.append(
            ReviewItem(
                item_id, "rejected_attempt", prompt_id, sid, cfg, run, question, answer, tuple(quotes), excerpt,
                ctx.document, ctx.chunk_index, automatic_code=code, automatic_detail=detail, raw_text=raw,
            )
        )  # fmt: skip
    return out


def load_items(store: LineageStore, ids: Sequence[str]) -> list[ReviewItem]:
    """Pairs and rejected attempts by id, in the order of `ids`."""
    loaded = {i.item_id: i for i in load_pairs(store, ids)}
    loaded |= {i.item_id: i for i in load_rejected(store, [i for i in ids if i not in loaded])}
    return [loaded[i] for i in ids if i in loaded]


# -- verdicts -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairReview:
    """One reviewer's verdict on one item."""

    item_id: str
    reviewer: str
    verdict: Verdict
    fixed_question: str | None = None
    fixed_answer: str | None = None
    note: str | None = None
    reviewed_at: datetime | None = None


def record_review(store: LineageStore, item: ReviewItem, review: PairReview, *, run_id: str, config_hash: str) -> None:
    """Store (or replace) one reviewer's verdict on one item, committed at once (a review session resumes)."""
    if review.verdict not in VERDICTS:
        raise ValueError(f"verdict {review.verdict!r} for {item.item_id!r} is not one of {VERDICTS}")
    row = dict(
        pair_id=item.item_id, reviewer=review.reviewer, verdict=review.verdict,
        fixed_question=review.fixed_question, fixed_answer=review.fixed_answer, note=review.note,
        reviewed_at=review.reviewed_at or datetime.now(), item_kind=item.kind,
        automatic=item.automatic, automatic_code=item.automatic_code, prompt_id=item.prompt_id,
        section_id=item.section_id, generation_config_hash=item.generation_config_hash,
        generation_run_id=item.generation_run_id, run_id=run_id, config_hash=config_hash,
    )  # fmt: skip
    with store.transaction() as con:
        insert_rows(con, "pair_reviews", [row], replace=True)


def effective_reviews(store: LineageStore, generation_config_hash: str) -> dict[str, PairReview]:
    """The newest verdict on each reviewed pair of a generation config (by any reviewer): what packing honours."""
    rows = store.query(
        """SELECT pair_id, reviewer, verdict, fixed_question, fixed_answer, note, reviewed_at FROM pair_reviews
           WHERE item_kind = 'pair' AND generation_config_hash = ?
           QUALIFY row_number() OVER (PARTITION BY pair_id ORDER BY reviewed_at DESC, reviewer) = 1""",
        [generation_config_hash],
    )
    return {r[0]: PairReview(*r) for r in rows}


def review_judgements(
    store: LineageStore, generation_config_hash: str, run_id: str | None = None
) -> list[tuple[str, str]]:
    """(automatic decision, human verdict) of every review of the config's items (of items made in `run_id`)."""
    sql = "SELECT automatic, verdict FROM pair_reviews WHERE generation_config_hash = ?"
    params: list[Any] = [generation_config_hash]
    if run_id:
        sql += " AND generation_run_id = ?"
        params.append(run_id)
    return [(a, v) for a, v in store.query(sql + " ORDER BY pair_id, reviewer", params)]


def reviews_by_item(store: LineageStore, ids: Sequence[str]) -> dict[str, list[PairReview]]:
    """Every verdict on these items, oldest first."""
    out: dict[str, list[PairReview]] = {}
    if not ids:
        return out
    for row in store.query(
        """SELECT pair_id, reviewer, verdict, fixed_question, fixed_answer, note, reviewed_at FROM pair_reviews
           WHERE pair_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY reviewed_at, reviewer""",
        [list(ids)],
    ):
        out.setdefault(row[0], []).append(PairReview(*row))
    return out
