"""Packing's lineage queries: the section pool, which generation config, usage rows, evidence spans.

The pool is keyed by (pool name, generation config, target tokenizer identity): a section is packed
at most once per key, whatever the stage or sample length. What an item used is recorded as pair
ids (`used_pair_ids`, `dropped_pair_ids` of `packed_sample_sections`), so the pool read back holds
every section never placed plus the remainder (chunk + pairs not yet used) of sections whose split
parts or carried remainders are still out — nothing placed twice, nothing lost.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lc_assets.lib.lineage import LineageStore, insert_rows
from lc_assets.lib.lineage.judge import effective_judgements
from lc_assets.lib.lineage.review import effective_reviews
from lc_assets.lib.packing.packer import PackedSample, base_section_id
from lc_assets.lib.sections import QAPair, Section

#: claims an item without pairs makes on its section (so a pair-less section is placed once)
_WHOLE_CHUNK = "\x00chunk"


class PackingConflictError(RuntimeError):
    """Another packing run placed some of the same sections first (nothing of this run was stored)."""


def pool_key(pool: str, generation_config_hash: str, tokenizer_identity: str) -> str:
    blob = "\x1f".join([pool, generation_config_hash, tokenizer_identity])
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def generation_configs(store: LineageStore) -> list[tuple[str, int, Any]]:
    """(generation config hash, finished sections, newest finish) for every config with finished sections."""
    return [
        (h, int(n), t)
        for h, n, t in store.query(
            """SELECT config_hash, count(*), max(updated_at) FROM sections
               WHERE finish_reason IS NOT NULL AND finish_reason <> 'empty_chunk'
                 AND config_hash NOT IN (SELECT config_hash FROM cross_sections)  -- packed as pairs, not sections
               GROUP BY 1 ORDER BY 3 DESC, 1"""
        )
    ]


def newest_generation_config(store: LineageStore) -> str | None:
    configs = generation_configs(store)
    return configs[0][0] if configs else None


@dataclass(frozen=True)
class ReviewedPool:
    """The pool after human and model verdicts: its sections, and which of their pairs the verdicts changed."""

    sections: list[Section]
    excluded_pairs: int = 0  # rejected by a reviewer: not in the pool
    fixed_pairs: int = 0  # packed with a reviewer's fixed question/answer
    judge_excluded_pairs: int = 0  # rejected by the model judge (and not reviewed by a person): not in the pool


def load_pool(store: LineageStore, key: str, generation_config_hash: str) -> list[Section]:
    """Finished sections of one generation config, minus what the pool `key` already used.

    A section with no usage row comes whole; one whose used or dropped pairs do not cover all its
    pairs comes back as a remainder `<id>#pairs-<k>` (chunk + the pairs not yet used); the rest is done.
    """
    return load_reviewed_pool(store, key, generation_config_hash, "ignore", "ignore").sections


def load_reviewed_pool(
    store: LineageStore,
    key: str,
    generation_config_hash: str,
    human_reviews: Literal["ignore", "exclude_rejected"],
    model_judgements: Literal["ignore", "exclude_rejected"] = "ignore",
) -> ReviewedPool:
    """`load_pool` honouring human verdicts (`exclude_rejected`: the newest verdict per pair decides —
    reject leaves the pair out, fix packs the fixed text) and the model judge's (`exclude_rejected`: a pair
    whose newest model verdict rejected it is left out — unless a person reviewed it: a human verdict wins,
    whichever `human_reviews` says). A rejected pair is never claimed, so a section whose other pairs are all
    placed is done."""
    rows = store.query(
        """SELECT s.section_id, s.chunk_id, s.document_id, d.source, d.license, c.text, c.chunk_index
           FROM sections s JOIN chunks c USING (chunk_id) JOIN documents d ON d.document_id = s.document_id
           WHERE s.config_hash = ? AND s.finish_reason IS NOT NULL AND s.finish_reason <> 'empty_chunk'
           ORDER BY s.section_id""",
        [generation_config_hash],
    )
    ids = [r[0] for r in rows]
    pairs: dict[str, list[QAPair]] = {}
    for sid, pid, step, q, a in store.query(
        "SELECT section_id, pair_id, step, question, answer FROM qa_pairs "
        "WHERE section_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY section_id, step",
        [ids],
    ):
        pairs.setdefault(sid, []).append(QAPair(pid, step, q, a))
    claimed = _claims(store, key, ids)
    judged = effective_judgements(store, generation_config_hash) if model_judgements == "exclude_rejected" else {}
    # every human verdict is read when it decides something: its own setting, or overruling the judge
    wanted = human_reviews == "exclude_rejected" or bool(judged)
    all_reviews = effective_reviews(store, generation_config_hash) if wanted else {}
    reviews = all_reviews if human_reviews == "exclude_rejected" else {}
    out = []
    excluded = fixed = judge_excluded = 0
    for sid, cid, did, src, lic, text, index in rows:
        kept: list[tuple[int, QAPair]] = []
        for i, p in enumerate(pairs.get(sid, ())):
            if p.pair_id in claimed.get(sid, ()):
                continue
            judgement = judged.get(p.pair_id)
            if judgement is not None and not judgement.kept and p.pair_id not in all_reviews:
                judge_excluded += 1
                continue
            verdict = reviews.get(p.pair_id)
            if verdict is not None and verdict.verdict == "reject":
                excluded += 1
                continue
            if verdict is not None and verdict.verdict == "fix":
                fixed += 1
                p = QAPair(p.pair_id, p.step, verdict.fixed_question or p.question, verdict.fixed_answer or p.answer)
            kept.append((i, p))
        if sid not in claimed:
            out.append(Section(sid, cid, did, src, lic, text, tuple(p for _, p in kept), int(index)))
        elif kept:
            first = kept[0][0]
            out.append(
                Section(f"{sid}#pairs-{first + 1}", cid, did, src, lic, text, tuple(p for _, p in kept), int(index))
            )
    return ReviewedPool(out, excluded, fixed, judge_excluded)


def _claims(store: LineageStore, key: str, base_ids: Sequence[str]) -> dict[str, set[str]]:
    """Per base section: the pair ids (and the whole-chunk marker) that rows of pool `key` used or dropped."""
    claimed: dict[str, set[str]] = {}
    for sid, used, dropped in store.query(
        """SELECT base_section_id, used_pair_ids, dropped_pair_ids FROM packed_sample_sections
           WHERE pool_key = ? AND base_section_id IN (SELECT unnest(?::VARCHAR[]))""",
        [key, list(base_ids)],
    ):
        claimed.setdefault(sid, set()).update(_row_claims(used or [], dropped or []))
    return claimed


def _row_claims(used: Iterable[str], dropped: Iterable[str]) -> set[str]:
    got = set(used) | set(dropped)
    return got or {_WHOLE_CHUNK}


@dataclass(frozen=True)
class StageRecord:
    """What one packing stage stores: identity, where its files are published, its outcome."""

    run_id: str
    pool: str
    pool_key: str
    config_hash: str
    generation_config_hash: str
    tokenizer: str
    mode: str
    sample_tokens: int
    output_dir: str | None
    message: str
    metrics: dict[str, Any]


def record_stage(store: LineageStore, stage: StageRecord, samples: Sequence[PackedSample]) -> None:
    """Commit a stage's samples, their items (with pair usage) and the run row in one transaction.

    Inside the transaction the items' claims are checked against the pool's rows: if another run
    placed any of the same pairs (or pair-less sections) first, nothing is stored and
    PackingConflictError names them.
    """
    sample_rows, member_rows, cross_rows = [], [], []
    for s in samples:
        for pid, sid, (near, far) in zip(s.cross_pair_ids, s.cross_section_ids, s.cross_distances, strict=True):
            cross_rows.append(
                dict(sample_id=s.sample_id, pair_id=pid, section_id=sid, pool_key=stage.pool_key,
                     nearest_tokens=int(near), farthest_tokens=int(far), config_hash=stage.config_hash,
                     run_id=stage.run_id)
            )  # fmt: skip
        sample_rows.append(
            dict(
                sample_id=s.sample_id, config_hash=stage.config_hash, n_tokens=s.num_tokens,
                n_real_tokens=s.num_real_tokens, fill_ratio=s.fill_ratio, n_sections=len(s.section_ids),
                cut_section_id=s.cut.section_id if s.cut else None, sources=json.dumps(sorted(set(s.sources))),
                licenses=json.dumps(sorted(set(s.licenses))), output_dir=stage.output_dir or "", run_id=stage.run_id,
                pool_key=stage.pool_key, generation_config_hash=stage.generation_config_hash,
                tokenizer=stage.tokenizer, n_pairs=s.n_pairs,
                dependency_median=float(_median(s.dependency_distances)),
            )
        )  # fmt: skip
        for i, p in enumerate(s.placed):
            member_rows.append(
                dict(
                    sample_id=s.sample_id, position=i, section_id=p.section.section_id,
                    base_section_id=base_section_id(p.section.section_id), config_hash=stage.config_hash,
                    pool_key=stage.pool_key, used_pair_ids=list(p.used_pair_ids),
                    dropped_pair_ids=list(p.dropped_pair_ids), run_id=stage.run_id,
                )
            )  # fmt: skip
    run_row = dict(
        run_id=stage.run_id, sample_tokens=stage.sample_tokens, pool_key=stage.pool_key, pool=stage.pool,
        config_hash=stage.config_hash, generation_config_hash=stage.generation_config_hash,
        tokenizer=stage.tokenizer, mode=stage.mode, n_samples=len(samples), output_dir=stage.output_dir,
        message=stage.message, metrics=json.dumps(stage.metrics, default=str),
    )  # fmt: skip
    with store.transaction() as con:
        conflicts = _conflicts(con, stage.pool_key, member_rows)
        if conflicts:
            raise PackingConflictError(
                f"another packing run of pool {stage.pool!r} ({stage.pool_key}) already placed "
                f"{len(conflicts)} of these sections: {sorted(conflicts)[:5]}; nothing of run {stage.run_id} was "
                "stored — run packing again to pack the rest of the pool"
            )
        insert_rows(con, "packed_samples", sample_rows)
        insert_rows(con, "packed_sample_sections", member_rows)
        insert_rows(con, "packed_sample_cross_pairs", cross_rows)
        insert_rows(con, "packing_runs", [run_row])


def _conflicts(con, key: str, member_rows: list[dict[str, Any]]) -> set[str]:
    mine: dict[str, set[str]] = {}
    for r in member_rows:
        claims = _row_claims(r["used_pair_ids"], r["dropped_pair_ids"])
        have = mine.setdefault(r["base_section_id"], set())
        if have & claims:
            raise AssertionError(f"section {r['base_section_id']} placed twice within one run")  # packer invariant
        have |= claims
    if not mine:
        return set()
    rows = con.execute(
        """SELECT base_section_id, used_pair_ids, dropped_pair_ids FROM packed_sample_sections
           WHERE pool_key = ? AND base_section_id IN (SELECT unnest(?::VARCHAR[]))""",
        [key, list(mine)],
    ).fetchall()
    return {sid for sid, used, dropped in rows if _row_claims(used or [], dropped or []) & mine[sid]}


def _median(values) -> float:
    import numpy as np

    return float(np.median(values)) if len(values) else -1.0


def samples_in_stage(store: LineageStore, key: str, sample_tokens: int) -> int:
    """Samples of this length the pool already holds (a curriculum stage's quota counts them)."""
    return int(
        store.scalar("SELECT count(*) FROM packed_samples WHERE pool_key = ? AND n_tokens = ?", [key, sample_tokens])
        or 0
    )


def reused_sections(store: LineageStore, key: str) -> list[str]:
    """Base sections of which some pair (or the whole pair-less chunk) was claimed by two rows of the pool."""
    seen: dict[str, set[str]] = {}
    reused = set()
    for sid, used, dropped in store.query(
        "SELECT base_section_id, used_pair_ids, dropped_pair_ids FROM packed_sample_sections WHERE pool_key = ?",
        [key],
    ):
        claims = _row_claims(used or [], dropped or [])
        if seen.setdefault(sid, set()) & claims:
            reused.add(sid)
        seen[sid] |= claims
    return sorted(reused)


def committed_runs(store: LineageStore) -> set[str]:
    """Run ids with committed packing rows (their temporary folders may be published)."""
    return {r[0] for r in store.query("SELECT DISTINCT run_id FROM packing_runs")}


@dataclass(frozen=True)
class SampleMember:
    """One packed item of a sample, walked back to its chunk and document."""

    position: int
    section_id: str
    title: str
    source: str
    license: str
    chunk_index: int
    chunk_tokens: int
    pairs_in_sample: int
    prompts: int


def sample_members(store: LineageStore, sample_id: str) -> list[SampleMember]:
    """A packed sample's items in order, with their documents, licenses, pairs placed and prompts made."""
    rows = store.query(
        """SELECT ps.position, ps.section_id, coalesce(d.title, d.source), d.source, d.license, c.chunk_index,
                  c.n_tokens, coalesce(len(ps.used_pair_ids),
                      (SELECT count(*) FROM qa_pairs q WHERE q.section_id = s.section_id)),
                  (SELECT count(*) FROM masked_prompts m WHERE m.section_id = s.section_id)
           FROM packed_sample_sections ps
           JOIN sections s ON s.section_id = ps.base_section_id
           JOIN chunks c ON c.chunk_id = s.chunk_id
           JOIN documents d ON d.document_id = s.document_id
           WHERE ps.sample_id = ? ORDER BY ps.position""",
        [sample_id],
    )
    return [SampleMember(*r) for r in rows]


def document_samples(store: LineageStore, document_id: str) -> list[tuple[str, str, int]]:
    """(sample id, packing config hash, sample tokens) of every packed sample that used the document."""
    return [
        (sid, cfg, int(n))
        for sid, cfg, n in store.query(
            """SELECT DISTINCT ps.sample_id, ps.config_hash, p.n_tokens FROM sections s
               JOIN packed_sample_sections ps ON ps.base_section_id = s.section_id
               JOIN packed_samples p ON p.sample_id = ps.sample_id
               WHERE s.document_id = ? ORDER BY 1""",
            [document_id],
        )
    ]
