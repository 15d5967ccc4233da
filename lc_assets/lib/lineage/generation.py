"""The generation step's queries: which sections to grow, what is already committed, stats, prompt rebuild.

All SQL that generation runs against lineage tables lives here (the Dagster asset and the CLI call
these functions). Reads use the catalog's short-lived connections; the steps themselves are written
by `lineage_sink.LineageStepSink` through a per-run `LineageWriter`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from lc_assets.lib.generation.admission import SectionTask
from lc_assets.lib.generation.config import GenerationConfig
from lc_assets.lib.generation.prompting import rebuild_messages
from lc_assets.lib.generation.prompts import prompt_hash, section_attribution
from lc_assets.lib.generation.records import CommittedStep
from lc_assets.lib.lineage.cross import CROSS_SEPARATOR
from lc_assets.lib.lineage.store import LineageStore, chunk_paragraph_counts, chunk_texts, insert_rows
from lc_assets.lib.sections import QAPair, Section


def section_id_for(chunk_id: str, generation_config_hash: str) -> str:
    return hashlib.sha256(f"{chunk_id}:{generation_config_hash}".encode()).hexdigest()[:32]


def prompt_id_for(section_id: str, step: int) -> str:
    return f"{section_id}:{step}"


def record_generation_config(store: LineageStore, config: GenerationConfig, run_id: str) -> str:
    """Store the config (knobs, generator identity, prompt version) under its hash; returns the hash."""
    config_hash = config.config_hash()
    with store.transaction() as con:
        insert_rows(
            con,
            "generation_configs",
            [dict(config_hash=config_hash, config=json.dumps(config.model_dump(mode="json")), run_id=run_id)],
        )
    return config_hash


@dataclass(frozen=True)
class SectionDescriptor:
    """A section to grow, without its text (loaded page by page when the section is admitted)."""

    section_id: str
    chunk_id: str
    document_id: str
    source: str
    license: str
    shard: str
    chunk_tokens: int  # as `chunks.n_tokens` stores it (target tokenizer): never recounted
    title: str = ""  # the document's title (named in the prompts)


def sections_to_grow(
    store: LineageStore, shard: str, chunk_config_hash: str, generation_hash: str
) -> tuple[list[SectionDescriptor], int]:
    """The shard's sections under this generation config not finished yet, and how many are finished."""
    # the chunks the shard uses (`shard_chunks`: its own and those of documents it shares), without text
    rows = store.query(
        """SELECT c.chunk_id, c.document_id, d.source, d.license, c.n_tokens,
                  s.finish_reason IS NOT NULL AS finished, coalesce(d.title, '')
           FROM shard_chunks m JOIN chunks c ON c.chunk_id = m.chunk_id
           JOIN documents d ON d.document_id = c.document_id
           LEFT JOIN sections s ON s.chunk_id = c.chunk_id AND s.config_hash = ?
           WHERE m.shard = ? AND m.config_hash = ? ORDER BY c.document_id, c.chunk_index, c.chunk_id""",
        [generation_hash, shard, chunk_config_hash],
    )
    todo = [
        SectionDescriptor(section_id_for(cid, generation_hash), cid, did, src, lic, shard, int(n), title)
        for cid, did, src, lic, n, finished, title in rows
        if not finished
    ]
    return todo, sum(1 for r in rows if r[5])


def committed_steps(store: LineageStore, section_ids: Sequence[str]) -> dict[str, list[CommittedStep]]:
    """The steps already stored for these sections, in step order, as resume needs them."""
    rows = store.query(
        """SELECT m.section_id, m.step, m.status, m.prompt_id, q.pair_id, q.question, q.answer
           FROM masked_prompts m LEFT JOIN qa_pairs q ON q.prompt_id = m.prompt_id
           WHERE m.section_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY m.section_id, m.step""",
        [list(section_ids)],
    )
    # the pairs' evidence spans: a resumed section rebuilds its evidence depth (which window each step focuses on)
    spans: dict[str, list[tuple[int, int]]] = {}
    for pair_id, start, end in store.query(
        """SELECT pair_id, char_start, char_end FROM qa_evidence
           WHERE section_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY pair_id, quote_index""",
        [list(section_ids)],
    ):
        spans.setdefault(pair_id, []).append((int(start), int(end)))
    out: dict[str, list[CommittedStep]] = {}
    for sid, step, status, prompt_id, pair_id, question, answer in rows:
        if status == "ok" and pair_id is None:
            raise ValueError(f"lineage is inconsistent: prompt {prompt_id!r} is 'ok' but has no qa_pairs row")
        pair = QAPair(pair_id, step, question, answer) if pair_id is not None else None
        out.setdefault(sid, []).append(CommittedStep(sid, step, pair, tuple(spans.get(pair_id, ()))))
    return out


def iter_section_tasks(
    store: LineageStore, descriptors: Sequence[SectionDescriptor], page: int = 32
) -> Iterator[SectionTask]:
    """Tasks with chunk text, its stored paragraph counts and committed steps, loaded `page` sections per query
    as they are consumed."""
    for start in range(0, len(descriptors), page):
        batch = descriptors[start : start + page]
        texts = chunk_texts(store, [d.chunk_id for d in batch])
        committed = committed_steps(store, [d.section_id for d in batch])
        counts = chunk_paragraph_counts(store, [d.chunk_id for d in batch])
        for d in batch:
            if d.chunk_id not in texts:
                raise ValueError(f"chunk {d.chunk_id!r} of section {d.section_id!r} is not in the lineage catalog")
            section = Section(d.section_id, d.chunk_id, d.document_id, d.source, d.license, texts.pop(d.chunk_id))
            yield SectionTask(
                section,
                d.chunk_tokens,
                committed.get(d.section_id, ()),
                d.shard,
                d.title,
                paragraph_counts=counts.pop(d.chunk_id, ()),
            )


@dataclass(frozen=True)
class GenerationStats:
    sections: int
    sections_finished: int
    pairs: int
    failed_steps: int
    section_tokens: int
    prompts: int
    sample_pair: tuple[str, str] | None  # the newest pair of the given sections
    sample_evidence: tuple[str, ...] = ()  # its evidence quotes (the chunk's own text), in order


def generation_stats(store: LineageStore, generation_hash: str, section_ids: Sequence[str]) -> GenerationStats:
    """Totals over every section of this generation config, and one recent pair of `section_ids`."""
    with store.connect(read_only=True) as con:
        n, pairs, failed, finished, tokens = con.execute(
            """SELECT count(*), coalesce(sum(n_pairs), 0), coalesce(sum(failed_steps), 0),
                      count(*) FILTER (WHERE finish_reason IS NOT NULL), coalesce(sum(section_tokens), 0)
               FROM sections WHERE config_hash = ?""",
            [generation_hash],
        ).fetchone()
        prompts = con.execute("SELECT count(*) FROM masked_prompts WHERE config_hash = ?", [generation_hash]).fetchone()
        sample = con.execute(
            "SELECT question, answer, pair_id FROM qa_pairs WHERE section_id IN (SELECT unnest(?::VARCHAR[])) "
            "ORDER BY created_at DESC, pair_id LIMIT 1",
            [list(section_ids)],
        ).fetchone()
        evidence = (
            [q for (q,) in con.execute(
                "SELECT quote FROM qa_evidence WHERE pair_id = ? ORDER BY quote_index", [sample[2]]
            ).fetchall()]
            if sample
            else []
        )  # fmt: skip
    return GenerationStats(
        sections=n,
        sections_finished=finished,
        pairs=pairs,
        failed_steps=failed,
        section_tokens=tokens,
        prompts=prompts[0],
        sample_pair=(sample[0], sample[1]) if sample else None,
        sample_evidence=tuple(evidence),
    )


@dataclass(frozen=True)
class SentPrompt:
    prompt_id: str
    context_tokens: int  # generator tokens of the shown paragraphs
    prompt_tokens: int  # as the backend counted the final attempt
    completion_tokens: int  # of the final attempt


def sent_prompts(store: LineageStore, generation_hash: str) -> list[SentPrompt]:
    """Every step of this generation config that sent a request (overflowed steps sent nothing)."""
    rows = store.query(
        """SELECT prompt_id, context_tokens, prompt_tokens,
                  coalesce(CAST(json_extract(record, '$.completion_tokens') AS BIGINT), 0)
           FROM masked_prompts WHERE config_hash = ? AND prompt_hash <> '' ORDER BY section_id, step""",
        [generation_hash],
    )
    return [SentPrompt(*r) for r in rows]


class PromptNotFoundError(LookupError):
    """No such prompt in this lineage catalog."""


@dataclass(frozen=True)
class RebuiltPrompt:
    prompt_id: str
    messages: tuple[dict[str, str], ...]
    prompt_hash: str  # as recorded when the prompt was sent; the rebuilt messages hash to it


def rebuild_prompt(store: LineageStore, prompt_id: str) -> RebuiltPrompt:
    """The exact messages one step sent, rebuilt from stored ids and spans (verified against its hash)."""
    with store.connect(read_only=True) as con:
        row = con.execute(
            """SELECT m.section_id, m.shown_spans, m.earlier_pair_ids, m.prompt_hash, m.record, m.config_hash,
                      s.n_paragraphs, CASE WHEN x.section_id IS NULL THEN c.text ELSE c.text || ? || c2.text END,
                      g.config, m.kind, coalesce(m.long_range, false), d.title, coalesce(d.source, '')
               FROM masked_prompts m
               LEFT JOIN sections s ON s.section_id = m.section_id
               LEFT JOIN chunks c ON c.chunk_id = s.chunk_id
               LEFT JOIN cross_sections x ON x.section_id = m.section_id  -- two chunks' text, as generation joined it
               LEFT JOIN chunks c2 ON c2.chunk_id = x.cross_chunk_id
               LEFT JOIN documents d ON d.document_id = s.document_id
               LEFT JOIN generation_configs g ON g.config_hash = m.config_hash
               WHERE m.prompt_id = ?""",
            [CROSS_SEPARATOR, prompt_id],
        ).fetchone()
        if row is None:
            raise PromptNotFoundError(
                f"no prompt {prompt_id!r} in {store.path} (if its run is still going or was killed: "
                "`lc-assets lineage merge` first)"
            )
        (
            sid,
            spans,
            earlier_ids,
            recorded_hash,
            record,
            config_hash,
            n_paragraphs,
            text,
            config,
            kind,
            long_range,
            title,
            source,
        ) = row
        pairs = {
            pid: QAPair(pid, step, q, a)
            for pid, step, q, a in con.execute(
                "SELECT pair_id, step, question, answer FROM qa_pairs WHERE pair_id IN (SELECT unnest(?::VARCHAR[]))",
                [list(earlier_ids)],
            ).fetchall()
        }
    if not recorded_hash:
        return RebuiltPrompt(prompt_id, (), "")  # nothing was sent (the step overflowed the context window)
    old: Any = json.loads(record).get("messages") if record else None
    if spans is None and old is not None:  # recorded before spans were stored: the record holds the messages
        return RebuiltPrompt(prompt_id, tuple(old), recorded_hash)
    missing = [
        what for what, value in (("section", n_paragraphs), ("chunk", text), ("config", config)) if value is None
    ]
    missing += [f"pair {p}" for p in earlier_ids if p not in pairs]
    if spans is None or missing:
        raise ValueError(f"prompt {prompt_id!r} cannot be rebuilt: no {', '.join(missing) or 'spans'} in {store.path}")
    settings = json.loads(config)
    span_tuples = [(s["paragraph_index"], s["char_start"], s["char_end"]) for s in spans]
    messages = rebuild_messages(
        text,
        span_tuples,
        n_paragraphs,
        [pairs[p] for p in earlier_ids],
        settings["skip_marker"],
        kind=kind,
        long_range=bool(long_range),
        title=title,
        max_quotes=settings.get("max_quotes", 2),
        focus=json.loads(record).get("focus_window") if record else None,
        # configs from before `attributed_sources` asked no attribution
        attribution=section_attribution(settings.get("attributed_sources", ()), source, title or ""),
    )
    if prompt_hash(messages) != recorded_hash:
        raise ValueError(
            f"prompt {prompt_id!r} rebuilt differently from what was sent (generation config {config_hash}, "
            f"prompt version {json.loads(config).get('prompt_version')}): the prompt templates changed since"
        )
    return RebuiltPrompt(prompt_id, messages, recorded_hash)
