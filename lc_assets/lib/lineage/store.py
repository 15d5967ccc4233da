"""DuckDB lineage store: one row per document, chunk, prompt, pair, sample and score.

Every row carries its parent ids, the Dagster run id and the hash of the step config
that made it. Writes go through `transaction()`: one batch per transaction, so a run
killed midway leaves whole batches or nothing. Connections are short-lived and retried
on DuckDB's file lock, so several processes (multiprocess executor, concurrent runs)
take turns instead of failing. Generation, which commits hundreds of steps a second, writes
its own per-run file instead (`lineage.writer`, `lineage.catalog`) and merges it here.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_info (version INTEGER NOT NULL);

CREATE TABLE IF NOT EXISTS documents (
    document_id VARCHAR PRIMARY KEY,       -- sha256 of the exact text (dedup key)
    source VARCHAR NOT NULL,               -- first source seen
    title VARCHAR,
    license VARCHAR NOT NULL,
    byte_size BIGINT NOT NULL,
    n_tokens BIGINT NOT NULL,
    tokenizer VARCHAR NOT NULL,
    text VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    config_hash VARCHAR NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp
);

-- which shard (partition) saw which document; a document in two shards is stored once
CREATE TABLE IF NOT EXISTS shard_documents (
    shard VARCHAR NOT NULL,
    document_id VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    config_hash VARCHAR NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (shard, document_id)
);

CREATE TABLE IF NOT EXISTS ingest_skips (
    shard VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    detail VARCHAR,
    run_id VARCHAR NOT NULL,
    config_hash VARCHAR NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (shard, source, config_hash)
);

-- one row per (document, chunking config): done marker written with the chunks
CREATE TABLE IF NOT EXISTS chunked_documents (
    document_id VARCHAR NOT NULL,
    config_hash VARCHAR NOT NULL,
    shard VARCHAR NOT NULL,
    n_tokens BIGINT NOT NULL,
    n_chunks INTEGER NOT NULL,
    filtered_reason VARCHAR,               -- e.g. below_min_tokens (then n_chunks = 0)
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (document_id, config_hash)
);

CREATE TABLE IF NOT EXISTS chunks (
    chunk_id VARCHAR PRIMARY KEY,
    document_id VARCHAR NOT NULL,
    config_hash VARCHAR NOT NULL,
    shard VARCHAR NOT NULL,
    chunk_index INTEGER NOT NULL,
    char_start BIGINT NOT NULL,
    char_end BIGINT NOT NULL,
    token_start BIGINT NOT NULL,
    token_end BIGINT NOT NULL,
    n_tokens BIGINT NOT NULL,
    cut_kind VARCHAR NOT NULL,
    tokenizer VARCHAR NOT NULL,
    text VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp
);
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS recount_reason VARCHAR;  -- NULL: counted from the document's encoding

-- one row per raw_corpus run of a shard: every input of its source is a document or a skip
CREATE TABLE IF NOT EXISTS shard_ingests (
    shard VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    config_hash VARCHAR NOT NULL,          -- the source spec
    inputs BIGINT NOT NULL,                -- files, records and catalog entries read
    documents BIGINT NOT NULL,             -- distinct documents among them (inputs = documents + skips)
    new_documents BIGINT NOT NULL,
    skips BIGINT NOT NULL,
    skips_by_reason JSON NOT NULL,         -- duplicate_content included
    complete BOOLEAN NOT NULL,             -- false when max_documents ended the read early
    created_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (shard, run_id)
);

-- quality and near-duplicate filters: one decision per (document, filter config), shared by shards
CREATE TABLE IF NOT EXISTS filter_decisions (
    document_id VARCHAR NOT NULL,
    config_hash VARCHAR NOT NULL,
    shard VARCHAR NOT NULL,                -- the shard whose run decided
    kept BOOLEAN NOT NULL,
    reason VARCHAR,                        -- the first rule that fired (NULL when kept)
    detail VARCHAR,                        -- every rule that fired: measured value vs threshold
    duplicate_of VARCHAR,                  -- near_duplicate: the kept document it resembles
    stats JSON NOT NULL,                   -- every measured value (kept documents too)
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (document_id, config_hash)
);

CREATE TABLE IF NOT EXISTS document_minhashes (
    document_id VARCHAR NOT NULL,
    config_hash VARCHAR NOT NULL,          -- the MinHash parameters
    signature BLOB NOT NULL,               -- num_perm uint64 hash values
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (document_id, config_hash)
);

-- the filter config each shard was last filtered with: chunks reads the shard's kept documents under it
CREATE TABLE IF NOT EXISTS shard_filters (
    shard VARCHAR PRIMARY KEY,
    config_hash VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    updated_at TIMESTAMP DEFAULT current_timestamp
);

-- which shard uses which chunk: chunks are per document, a document in two shards is chunked once
CREATE TABLE IF NOT EXISTS shard_chunks (
    shard VARCHAR NOT NULL,
    config_hash VARCHAR NOT NULL,          -- chunking config
    chunk_id VARCHAR NOT NULL,
    document_id VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (shard, config_hash, chunk_id)
);
-- lineage files from before shard_chunks: a chunk belongs to the shard that cut it
INSERT OR IGNORE INTO shard_chunks (shard, config_hash, chunk_id, document_id, run_id)
    SELECT shard, config_hash, chunk_id, document_id, run_id FROM chunks WHERE NOT EXISTS (SELECT 1 FROM shard_chunks);

-- one row per (chunk, generation config): the section that grows from the chunk
CREATE TABLE IF NOT EXISTS sections (
    section_id VARCHAR PRIMARY KEY,
    chunk_id VARCHAR NOT NULL,
    document_id VARCHAR NOT NULL,
    shard VARCHAR NOT NULL,
    config_hash VARCHAR NOT NULL,          -- generation config
    chunk_tokens BIGINT NOT NULL,
    target_tokens BIGINT NOT NULL,
    section_tokens BIGINT NOT NULL,
    n_pairs INTEGER NOT NULL,
    steps INTEGER NOT NULL,
    failed_steps INTEGER NOT NULL,
    finish_reason VARCHAR,                 -- NULL while growing
    model VARCHAR,
    backend VARCHAR,
    run_id VARCHAR NOT NULL,
    updated_at TIMESTAMP DEFAULT current_timestamp
);

-- every generation step: what the prompt showed (ids and spans; `lc-assets lineage prompt` rebuilds the messages)
CREATE TABLE IF NOT EXISTS masked_prompts (
    prompt_id VARCHAR PRIMARY KEY,         -- section_id:step
    section_id VARCHAR NOT NULL,
    step INTEGER NOT NULL,
    status VARCHAR NOT NULL,               -- ok | failed
    prompt_hash VARCHAR NOT NULL,
    paragraph_ids VARCHAR[] NOT NULL,
    earlier_pair_ids VARCHAR[] NOT NULL,
    budget_tokens INTEGER NOT NULL,
    context_tokens INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    config_hash VARCHAR NOT NULL,
    record JSON NOT NULL,                  -- the StepRecord's other fields (timings, attempts, dropped ids)
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS qa_pairs (
    pair_id VARCHAR PRIMARY KEY,
    section_id VARCHAR NOT NULL,
    step INTEGER NOT NULL,
    prompt_id VARCHAR NOT NULL,
    question VARCHAR NOT NULL,
    answer VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    backend VARCHAR NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    seconds DOUBLE NOT NULL,
    config_hash VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS failed_steps (
    prompt_id VARCHAR PRIMARY KEY,
    section_id VARCHAR NOT NULL,
    step INTEGER NOT NULL,
    reason VARCHAR NOT NULL,
    raw_text VARCHAR NOT NULL,
    attempts INTEGER NOT NULL,
    model VARCHAR NOT NULL,
    backend VARCHAR NOT NULL,
    config_hash VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS packed_samples (
    sample_id VARCHAR PRIMARY KEY,
    config_hash VARCHAR NOT NULL,
    n_tokens BIGINT NOT NULL,
    n_real_tokens BIGINT NOT NULL,
    fill_ratio DOUBLE NOT NULL,
    n_sections INTEGER NOT NULL,
    cut_section_id VARCHAR,
    sources JSON NOT NULL,
    licenses JSON NOT NULL,
    output_dir VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS packed_sample_sections (
    sample_id VARCHAR NOT NULL,
    position INTEGER NOT NULL,
    section_id VARCHAR NOT NULL,           -- the packed item: a section, a split part or a pair remainder
    base_section_id VARCHAR NOT NULL,      -- the section it came from (joins `sections`)
    config_hash VARCHAR NOT NULL,
    PRIMARY KEY (sample_id, position)
);
-- packing (issue 13): which pool a row belongs to, which pairs of a section an item used or dropped
ALTER TABLE packed_samples ADD COLUMN IF NOT EXISTS pool_key VARCHAR;
ALTER TABLE packed_samples ADD COLUMN IF NOT EXISTS generation_config_hash VARCHAR;
ALTER TABLE packed_samples ADD COLUMN IF NOT EXISTS tokenizer VARCHAR;
ALTER TABLE packed_samples ADD COLUMN IF NOT EXISTS n_pairs INTEGER;
ALTER TABLE packed_samples ADD COLUMN IF NOT EXISTS dependency_median DOUBLE;
ALTER TABLE packed_sample_sections ADD COLUMN IF NOT EXISTS pool_key VARCHAR;
ALTER TABLE packed_sample_sections ADD COLUMN IF NOT EXISTS used_pair_ids VARCHAR[];
ALTER TABLE packed_sample_sections ADD COLUMN IF NOT EXISTS dropped_pair_ids VARCHAR[];
ALTER TABLE packed_sample_sections ADD COLUMN IF NOT EXISTS run_id VARCHAR;

-- one row per packing run and stage: what it packed from which pool, where the files are
CREATE TABLE IF NOT EXISTS packing_runs (
    run_id VARCHAR NOT NULL,
    sample_tokens BIGINT NOT NULL,         -- the stage
    pool_key VARCHAR NOT NULL,             -- (pool name, generation config, target tokenizer)
    pool VARCHAR NOT NULL,
    config_hash VARCHAR NOT NULL,          -- packing config of the stage
    generation_config_hash VARCHAR NOT NULL,
    tokenizer VARCHAR NOT NULL,            -- vocabulary + chat template identity
    mode VARCHAR NOT NULL,
    n_samples INTEGER NOT NULL,
    output_dir VARCHAR,                    -- published folder (NULL when no sample was made)
    message VARCHAR NOT NULL,
    metrics JSON NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (run_id, sample_tokens)
);

CREATE TABLE IF NOT EXISTS ruler_samples (
    sample_key VARCHAR PRIMARY KEY,        -- tasks_config_hash:task:length:index
    config_hash VARCHAR NOT NULL,
    task VARCHAR NOT NULL,
    max_seq_length INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    length INTEGER NOT NULL,               -- exact prompt tokens (evaluated model's tokenizer)
    sample JSON NOT NULL,                  -- the whole RulerSample (input, answer prefix, golds, needles)
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS ruler_task_builds (
    config_hash VARCHAR NOT NULL,
    task VARCHAR NOT NULL,
    max_seq_length INTEGER NOT NULL,
    status VARCHAR NOT NULL,               -- ok | not_run
    reason VARCHAR,
    n_samples INTEGER NOT NULL,
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (config_hash, task, max_seq_length)
);

CREATE TABLE IF NOT EXISTS ruler_predictions (
    sample_key VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    backend VARCHAR NOT NULL,
    prediction VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (sample_key, model)
);

CREATE TABLE IF NOT EXISTS ruler_scores (
    model VARCHAR NOT NULL,
    backend VARCHAR NOT NULL,
    tasks_config_hash VARCHAR NOT NULL,
    task VARCHAR NOT NULL,
    max_seq_length INTEGER NOT NULL,
    score DOUBLE NOT NULL,
    nulls INTEGER NOT NULL,
    num_samples INTEGER NOT NULL,
    metric VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (model, tasks_config_hash, task, max_seq_length)
);
"""


# Additions to tables created by older versions: new columns go here (never into the CREATE above,
# which an existing file skips), so every lineage file upgrades in place.
_UPGRADES = """
ALTER TABLE masked_prompts ADD COLUMN IF NOT EXISTS
    shown_spans STRUCT(paragraph_index INTEGER, char_start INTEGER, char_end INTEGER)[];
ALTER TABLE sections ADD COLUMN IF NOT EXISTS n_paragraphs INTEGER;

-- the generation configs (knobs + generator identity + prompt version) that section ids are keyed by
CREATE TABLE IF NOT EXISTS generation_configs (
    config_hash VARCHAR PRIMARY KEY,
    config JSON NOT NULL,
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp
);

-- grounded QA (issue 10): the kind a prompt suggested, whether it was long-range, the accepted question's kind
ALTER TABLE masked_prompts ADD COLUMN IF NOT EXISTS kind VARCHAR;
ALTER TABLE masked_prompts ADD COLUMN IF NOT EXISTS long_range BOOLEAN;
ALTER TABLE qa_pairs ADD COLUMN IF NOT EXISTS kind VARCHAR;

-- every accepted pair's evidence: verbatim quotes as exact chunk spans (pair -> source span); written with the pair
CREATE TABLE IF NOT EXISTS qa_evidence (
    pair_id VARCHAR NOT NULL,
    section_id VARCHAR NOT NULL,
    chunk_id VARCHAR NOT NULL,
    quote_index INTEGER NOT NULL,
    char_start BIGINT NOT NULL,            -- chunk-relative, end exclusive
    char_end BIGINT NOT NULL,
    quote VARCHAR NOT NULL,                -- the chunk's own text of the span
    origin VARCHAR NOT NULL,               -- model: quoted by the model | completed: a shown sentence validation added
    score DOUBLE NOT NULL,                 -- 100: found verbatim (whitespace/case normalised); else the fuzzy score
    window_index INTEGER NOT NULL,         -- which shown window (document order)
    run_id VARCHAR NOT NULL,
    config_hash VARCHAR NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (pair_id, quote_index)
);

-- every attempt the checks refused (retried ones and the last of a failed step), with its code: never a pair
CREATE TABLE IF NOT EXISTS rejected_attempts (
    prompt_id VARCHAR NOT NULL,
    section_id VARCHAR NOT NULL,
    attempt INTEGER NOT NULL,              -- 0 = the step's first request
    code VARCHAR NOT NULL,                 -- validate.REJECTION_REASONS, backend_error, truncated
    detail VARCHAR NOT NULL,
    raw_text VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    config_hash VARCHAR NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (prompt_id, attempt)
);

-- quality of generated pairs as data (lineage.quality): per run, shard and section of a generation config
CREATE TABLE IF NOT EXISTS generation_quality (
    config_hash VARCHAR NOT NULL,          -- generation config
    scope VARCHAR NOT NULL,                -- run: the steps one run made | shard, section: all steps so far
    scope_key VARCHAR NOT NULL,            -- the run id, shard name or section id
    steps INTEGER NOT NULL,
    accepted INTEGER NOT NULL,
    yield_share DOUBLE NOT NULL,           -- accepted / steps
    evidence_verbatim_share DOUBLE NOT NULL,
    empty_answers INTEGER NOT NULL,
    near_duplicate_share DOUBLE NOT NULL,
    depth_coverage DOUBLE NOT NULL,
    metrics JSON NOT NULL,                 -- the whole QualityReport
    run_id VARCHAR NOT NULL,               -- the run that computed the row
    created_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (config_hash, scope, scope_key)
);

-- cross sections (issue 13): pairs about two chunks of one document far apart; the section's text is chunk_id's
-- text + a separator + cross_chunk_id's text (their qa_evidence rows name the chunk each span lies in)
CREATE TABLE IF NOT EXISTS cross_sections (
    section_id VARCHAR PRIMARY KEY,
    document_id VARCHAR NOT NULL,
    chunk_id VARCHAR NOT NULL,             -- the earlier chunk (its text comes first)
    cross_chunk_id VARCHAR NOT NULL,       -- the later chunk
    distance_tokens BIGINT NOT NULL,       -- chunk tokens from the start of chunk_id to the start of cross_chunk_id
    cross_char_offset BIGINT NOT NULL,     -- where cross_chunk_id's text starts in the section text
    base_config_hash VARCHAR NOT NULL,     -- the generation config whose sections the pairs are packed with
    config_hash VARCHAR NOT NULL,          -- the cross generation config (sections.config_hash)
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp
);

-- cross pairs appended to packed samples, with their distances back to the nearest and farthest evidence
CREATE TABLE IF NOT EXISTS packed_sample_cross_pairs (
    sample_id VARCHAR NOT NULL,
    pair_id VARCHAR NOT NULL,
    section_id VARCHAR NOT NULL,           -- the cross section
    pool_key VARCHAR NOT NULL,
    nearest_tokens BIGINT NOT NULL,        -- answer start -> start of the latest evidence quote
    farthest_tokens BIGINT NOT NULL,       -- answer start -> start of the earliest evidence quote
    config_hash VARCHAR NOT NULL,          -- packing config
    run_id VARCHAR NOT NULL,
    PRIMARY KEY (sample_id, pair_id)
);

-- target tokens of each blank-line paragraph of a chunk (masking.paragraph_spans of its text), taken from the
-- document's encoding when the chunk is cut; generation uses them when its tokenizer counts alike (same
-- counting fingerprint) and the spans match (spans_digest), instead of encoding the chunk's paragraphs again
CREATE TABLE IF NOT EXISTS chunk_paragraph_counts (
    chunk_id VARCHAR NOT NULL,
    document_id VARCHAR NOT NULL,
    tokenizer VARCHAR NOT NULL,            -- TextTokenizer.counting_fingerprint
    spans_digest VARCHAR NOT NULL,         -- masking.spans_digest of the paragraphs counted
    counts INTEGER[] NOT NULL,             -- one per paragraph, in order
    run_id VARCHAR NOT NULL,
    config_hash VARCHAR NOT NULL,          -- chunking config
    created_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (chunk_id, tokenizer)
);

-- per-run lineage files merged into this catalog (lineage.catalog)
CREATE TABLE IF NOT EXISTS lineage_merges (
    run_file VARCHAR NOT NULL,
    rows JSON NOT NULL,                    -- rows inserted per table
    run_id VARCHAR NOT NULL,               -- who merged
    merged_at TIMESTAMP DEFAULT current_timestamp
);

-- human review (`lc-assets review`): one verdict per (reviewed item, reviewer); the newest verdict on a pair
-- is what packing honours (`human_reviews: exclude_rejected` drops rejected pairs, uses fixed text)
CREATE TABLE IF NOT EXISTS pair_reviews (
    pair_id VARCHAR NOT NULL,              -- qa_pairs.pair_id, or '<prompt_id>#<attempt>' for a rejected attempt
    reviewer VARCHAR NOT NULL,
    verdict VARCHAR NOT NULL,              -- accept | reject | fix
    fixed_question VARCHAR,                -- fix: the corrected text (NULL keeps the generated one)
    fixed_answer VARCHAR,
    note VARCHAR,
    reviewed_at TIMESTAMP DEFAULT current_timestamp,
    item_kind VARCHAR NOT NULL,            -- pair | rejected_attempt
    automatic VARCHAR NOT NULL,            -- what the automatic checks decided: accepted | rejected
    automatic_code VARCHAR,                -- rejected: the rejection code
    prompt_id VARCHAR NOT NULL,
    section_id VARCHAR NOT NULL,
    generation_config_hash VARCHAR NOT NULL,
    generation_run_id VARCHAR,             -- the run that made the pair or attempt
    run_id VARCHAR NOT NULL,               -- the review session
    config_hash VARCHAR NOT NULL,          -- the review config (sample, seed, what was sampled)
    PRIMARY KEY (pair_id, reviewer)
);

-- the model judge (`judged_qa_pairs`, lib.judge): one verdict per (accepted pair, judge config); packing honours
-- the newest verdict per pair (`model_judgements: exclude_rejected`) unless a person reviewed the pair
CREATE TABLE IF NOT EXISTS pair_judgements (
    pair_id VARCHAR NOT NULL,
    section_id VARCHAR NOT NULL,
    verdict VARCHAR NOT NULL,              -- supported | partly | unsupported | judge_error
    standalone BOOLEAN,                    -- the judge's reading of the question; NULL on judge_error
    kept BOOLEAN NOT NULL,                 -- under keep_policy: false = rejected, left out of packing
    keep_policy VARCHAR NOT NULL,          -- the verdicts that kept a pair when `kept` was set
    check_text VARCHAR,                    -- the judge's short comparison, written before its verdict
    error_code VARCHAR,                    -- judge_error: parse.JUDGE_ERROR_CODES
    error_detail VARCHAR,
    raw_text VARCHAR NOT NULL,             -- the judge's output as it came
    judge_model VARCHAR NOT NULL,
    backend VARCHAR NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    seconds DOUBLE NOT NULL,
    config_hash VARCHAR NOT NULL,          -- the judge config (model, prompt version, context, decoding)
    generation_config_hash VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (pair_id, config_hash)
);

-- the judge configs pair_judgements rows are keyed by (knobs + judge model identity + prompt version)
CREATE TABLE IF NOT EXISTS judge_configs (
    config_hash VARCHAR PRIMARY KEY,
    config JSON NOT NULL,
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp
);
"""


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the lineage tables a file does not have yet, and add columns older files lack."""
    con.execute(_SCHEMA)
    con.execute(_UPGRADES)
    if con.execute("SELECT count(*) FROM schema_info").fetchone()[0] == 0:
        con.execute("INSERT INTO schema_info VALUES (?)", [SCHEMA_VERSION])


def is_lock_error(exc: Exception) -> bool:
    msg = str(exc).lower()
    return "lock" in msg and ("could not set" in msg or "conflicting" in msg or "resource temporarily" in msg)


class LineageStore:
    """A DuckDB file with the lineage schema."""

    def __init__(self, path: str | os.PathLike[str], lock_timeout_s: float = 120.0) -> None:
        if str(path) == ":memory:":
            raise ValueError("the lineage store must be a file; ':memory:' would lose lineage at the end of a step")
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as con:
            ensure_schema(con)

    @property
    def runs_dir(self) -> Path:
        """Where per-run lineage files of this catalog live (`<catalog>.runs/`)."""
        return self.path.parent / f"{self.path.name}.runs"

    def run_file(self, run_id: str) -> Path:
        """The lineage file one run writes while it runs (merged into this catalog when it ends)."""
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in run_id)
        return self.runs_dir / f"{safe}.duckdb"

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection; waits (with jittered backoff) while another process holds the file."""
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only and self.path.exists())
                break
            except duckdb.IOException as exc:
                if not is_lock_error(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 2.0)
        try:
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All writes inside commit together or not at all."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        with self.connect(read_only=True) as con:
            return con.execute(sql, params or []).fetchall()

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        rows = self.query(sql, params)
        return rows[0][0] if rows else None

    def has_table(self, table: str) -> bool:
        """Whether the file has this table (tables other stages add may be missing from older files)."""
        return bool(self.scalar("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [table]))

    def has_column(self, table: str, column: str) -> bool:
        return bool(
            self.scalar(
                "SELECT count(*) FROM duckdb_columns() WHERE table_name = ? AND column_name = ?", [table, column]
            )
        )

    def existing_ids(self, table: str, column: str, ids: Sequence[str]) -> set[str]:
        """Which of `ids` are already stored (for idempotent re-runs)."""
        if not ids:
            return set()
        with self.connect(read_only=True) as con:
            rows = con.execute(
                f"SELECT {column} FROM {table} WHERE {column} IN (SELECT unnest(?::VARCHAR[]))", [list(ids)]
            ).fetchall()
        return {r[0] for r in rows}


def chunk_texts(store: LineageStore, chunk_ids: Sequence[str]) -> dict[str, str]:
    """chunk id -> its stored text (unknown ids left out)."""
    return dict(
        store.query(
            "SELECT chunk_id, text FROM chunks WHERE chunk_id IN (SELECT unnest(?::VARCHAR[]))", [list(chunk_ids)]
        )
    )


def chunk_paragraph_counts(
    store: LineageStore, chunk_ids: Sequence[str]
) -> dict[str, list[tuple[str, str, list[int]]]]:
    """chunk id -> its stored paragraph counts as (tokenizer counting fingerprint, spans digest, counts)."""
    out: dict[str, list[tuple[str, str, list[int]]]] = {}
    for cid, tokenizer, digest, counts in store.query(
        """SELECT chunk_id, tokenizer, spans_digest, counts FROM chunk_paragraph_counts
           WHERE chunk_id IN (SELECT unnest(?::VARCHAR[]))""",
        [list(chunk_ids)],
    ):
        out.setdefault(cid, []).append((tokenizer, digest, counts))
    return out


def chunk_lengths(store: LineageStore, chunk_ids: Sequence[str]) -> dict[str, int]:
    """chunk id -> characters of its stored text, without reading the text into Python."""
    rows = store.query(
        "SELECT chunk_id, length(text) FROM chunks WHERE chunk_id IN (SELECT unnest(?::VARCHAR[]))", [list(chunk_ids)]
    )
    return {cid: int(n) for cid, n in rows}


def insert_rows(
    con: duckdb.DuckDBPyConnection,
    table: str,
    rows: Sequence[Mapping[str, Any]] | Sequence[tuple[Any, ...]],
    replace: bool = False,
    *,
    columns: Sequence[str] | None = None,
    types: Mapping[str, pa.DataType] | None = None,
    new_keys: bool = False,
) -> int:
    """Insert rows (dicts with the same keys, or tuples in the order of ``columns``) as one Arrow batch; rows
    whose primary key exists are skipped (``replace=True``: replace them with the new row instead).

    ``types``: Arrow types of some columns (needed for a list of structs given as tuples; others are inferred).
    ``new_keys``: the caller knows no row's key is stored yet (nor twice among ``rows``): a plain INSERT, which
    DuckDB runs in a third to a half of the time of ``INSERT OR IGNORE``; a key that is stored raises.
    Returns the number of rows actually written: fewer than len(rows) when another run stored some first.
    """
    if not rows:
        return 0
    if columns is None:
        cols = list(rows[0])  # type: ignore[arg-type]
        values: Sequence[Sequence[Any]] = [[row[c] for row in rows] for c in cols]  # type: ignore[call-overload]
    else:
        cols = list(columns)
        values = list(zip(*rows, strict=True))  # type: ignore[arg-type]
    types = types or {}
    batch = pa.Table.from_arrays([pa.array(v, type=types.get(c)) for c, v in zip(cols, values, strict=True)], cols)
    view = f"_insert_{table}"
    con.register(view, batch)
    verb = "INSERT OR REPLACE" if replace else "INSERT" if new_keys else "INSERT OR IGNORE"
    try:
        written = con.execute(
            f"{verb} INTO {table} ({', '.join(cols)}) SELECT {', '.join(cols)} FROM {view}"
        ).fetchone()
    finally:
        con.unregister(view)
    return int(written[0]) if written else 0
