"""The judge's run loop: one request per pair over any `GenerationBackend`, many in flight, verdicts group-committed.

Resume is by key: a pair already judged under the same judge config hash is not asked again (a serving
error is). Verdicts are committed every `commit_every` results (and every few seconds), so a killed run
keeps every committed group and the next run asks only for the rest. On a stop the requests in flight
are aborted and not recorded: they are asked again next time.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from lc_assets.lib.generation.backend import GenerationBackend, GenerationRequest, GenerationResult
from lc_assets.lib.judge.config import PairJudgeConfig
from lc_assets.lib.judge.parse import Judgement, judge_error, parse_result
from lc_assets.lib.judge.prompt import JudgeInput, build_messages, judge_input, judge_json_schema
from lc_assets.lib.lineage import LineageStore
from lc_assets.lib.lineage.judge import judgements_of, record_judgements, set_kept
from lc_assets.lib.lineage.review import load_pairs

#: pairs read from lineage at a time (their chunk texts are loaded with them)
LOAD_BATCH = 64
#: a group of verdicts is committed at least this often (seconds), however few it holds
COMMIT_EVERY_S = 5.0


@dataclass(frozen=True)
class JudgeProgress:
    done: int
    total: int
    kept: int
    errors: int
    in_flight: int
    elapsed_s: float

    def __str__(self) -> str:
        rate = self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return (
            f"judged {self.done}/{self.total} pairs ({rate:.2f}/s), kept {self.kept}, "
            f"rejected {self.done - self.kept}, judge errors {self.errors}, requests in flight {self.in_flight}"
        )


@dataclass
class JudgeRunSummary:
    """What one run asked and decided (pairs resumed from earlier runs are not in it)."""

    total: int = 0  # pairs this run had to judge
    judged: int = 0
    kept: int = 0
    by_verdict: Counter[str] = field(default_factory=Counter)
    errors_by_code: Counter[str] = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    context_dropped: int = 0  # prompts sent with the quotes only: the context did not fit the judge's window
    elapsed_s: float = 0.0
    stopped: bool = False


@dataclass(frozen=True)
class _Pending:
    item: JudgeInput
    section_id: str
    sent_at: float


def iter_inputs(store: LineageStore, pair_ids: Sequence[str], context_chars: int) -> Iterator[tuple[JudgeInput, str]]:
    """(judge input, section id) of each stored pair, read in batches (pairs missing from lineage are skipped)."""
    for start in range(0, len(pair_ids), LOAD_BATCH):
        for item in load_pairs(store, pair_ids[start : start + LOAD_BATCH]):
            yield judge_input(item, context_chars), item.section_id


def fit_prompt(
    backend: GenerationBackend, item: JudgeInput, max_tokens: int
) -> tuple[list[dict[str, str]] | None, bool]:
    """The messages that fit the backend's window with `max_tokens` to spare: with the context, else the quotes
    only (second value True); (None, True) when even those do not fit."""
    limit = backend.context_window - max_tokens
    for candidate, dropped in ((item, False), (replace(item, context=""), True)):
        messages = build_messages(candidate)
        if backend.count_prompt_tokens(messages) <= limit:
            return messages, dropped
    return None, True


def judge_pairs(
    store: LineageStore,
    backend: GenerationBackend,
    config: PairJudgeConfig,
    pair_ids: Sequence[str],
    *,
    run_id: str,
    generation_config_hash: str,
    progress: Callable[[JudgeProgress], None] | None = None,
    stop: threading.Event | None = None,
    inputs: Callable[[Sequence[str]], Iterator[tuple[JudgeInput, str]]] | None = None,
) -> JudgeRunSummary:
    """Judge `pair_ids` (callers pass the ones not judged yet: `lineage.judge.pairs_to_judge`); see the module doc.

    `inputs` replaces reading the pairs from lineage (a labelled fixture in the benchmark)."""
    stop = stop or threading.Event()
    ids = list(pair_ids)[: config.max_pairs] if config.max_pairs is not None else list(pair_ids)
    source = inputs(ids) if inputs else iter_inputs(store, ids, config.context_chars)
    summary = JudgeRunSummary(total=len(ids))
    config_hash = config.config_hash()
    judge_model = config.judge.model if config.judge else backend.model
    schema = judge_json_schema(config.max_check_chars)
    cap = max(1, config.max_in_flight or backend.max_in_flight)
    nonce = uuid.uuid4().hex[:8]  # late results of an earlier run's requests never match this run's ids
    in_flight: dict[str, _Pending] = {}
    rows: list[dict[str, Any]] = []
    start = last_commit = last_progress = time.monotonic()

    def record(pending: _Pending, judgement: Judgement, result: GenerationResult | None) -> None:
        kept = config.keeps(judgement.verdict, judgement.standalone)
        summary.judged += 1
        summary.kept += kept
        summary.by_verdict[judgement.verdict] += 1
        if judgement.error_code:
            summary.errors_by_code[judgement.error_code] += 1
        if result is not None:
            summary.prompt_tokens += result.prompt_tokens
            summary.completion_tokens += result.completion_tokens
        rows.append(
            dict(
                pair_id=pending.item.pair_id, section_id=pending.section_id, verdict=judgement.verdict,
                standalone=judgement.standalone, kept=kept, keep_policy=config.keep_policy,
                check_text=judgement.check, error_code=judgement.error_code, error_detail=judgement.error_detail,
                raw_text=result.text if result else "", judge_model=judge_model, backend=backend.name,
                prompt_tokens=result.prompt_tokens if result else 0,
                completion_tokens=result.completion_tokens if result else 0,
                seconds=round(result.seconds if result else time.monotonic() - pending.sent_at, 3),
                config_hash=config_hash, generation_config_hash=generation_config_hash, run_id=run_id,
            )
        )  # fmt: skip

    def commit(force: bool = False) -> None:
        nonlocal last_commit
        if rows and (force or len(rows) >= config.commit_every or time.monotonic() - last_commit >= COMMIT_EVERY_S):
            record_judgements(store, rows)
            rows.clear()
            last_commit = time.monotonic()

    def report(force: bool = False) -> None:
        nonlocal last_progress
        now = time.monotonic()
        if progress and (force or now - last_progress >= config.progress_every_s):
            last_progress = now
            errors = sum(summary.errors_by_code.values())
            progress(JudgeProgress(summary.judged, summary.total, summary.kept, errors, len(in_flight), now - start))

    exhausted = False
    try:
        while not stop.is_set():
            while not exhausted and len(in_flight) < cap:
                nxt = next(source, None)
                if nxt is None:
                    exhausted = True
                    break
                item, section_id = nxt
                pending = _Pending(item, section_id, time.monotonic())
                messages, dropped = fit_prompt(backend, item, config.max_tokens)
                if messages is None:
                    record(pending, judge_error("too_long", "the quotes alone exceed the judge's window"), None)
                    continue
                summary.context_dropped += dropped
                request_id = f"judge/{item.pair_id}/{nonce}"
                backend.submit(
                    GenerationRequest(request_id, tuple(messages), config.max_tokens, config.temperature, schema,
                                      config.seed)
                )  # fmt: skip
                in_flight[request_id] = pending
            if not in_flight:
                break
            for result in backend.wait(timeout=min(1.0, config.progress_every_s)):
                pending = in_flight.pop(result.request_id, None)
                if pending is not None:  # else: an aborted request's late result
                    record(pending, parse_result(result), result)
            now = time.monotonic()
            for request_id, pending in list(in_flight.items()):
                if now - pending.sent_at > config.request_timeout_s:
                    backend.abort(request_id)
                    del in_flight[request_id]
                    record(pending, judge_error("timeout", f"no result after {config.request_timeout_s:.0f} s"), None)
            commit()
            report()
    finally:
        summary.stopped = stop.is_set() and (bool(in_flight) or not exhausted)
        for request_id in in_flight:  # not recorded: asked again by the next run
            backend.abort(request_id)
        commit(force=True)
        summary.elapsed_s = time.monotonic() - start
    report(force=True)
    return summary


def apply_keep_policy(store: LineageStore, config: PairJudgeConfig, pair_ids: Sequence[str]) -> int:
    """Re-label this judge config's stored verdicts on `pair_ids` under the config's keep policy (a policy
    changed since they were judged); returns how many rows changed. No model call."""
    config_hash = config.config_hash()
    stored = judgements_of(store, config_hash, pair_ids)
    return set_kept(store, config_hash, {j.pair_id: config.keeps(j.verdict, j.standalone) for j in stored},
                    config.keep_policy)  # fmt: skip
