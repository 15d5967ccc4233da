"""Admission: sections enter the loop one by one as in-flight slots free up, prepared ahead on a thread.

Preparing a section (splitting its chunk into paragraphs with exact generator-token counts, one
batched tokenizer call; replaying its committed steps after a resume) costs ~0.1 s of CPU for a
100k-token chunk. Done up front for every section it would keep the engine idle for minutes; here a
background thread prepares the next few sections while the loop keeps the engine busy with the
ones already in flight, and the first request leaves as soon as the first section is ready.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lc_assets.lib.generation.config import GenerationConfig
from lc_assets.lib.generation.focus import EvidenceDepth
from lc_assets.lib.generation.masking import (
    Paragraph,
    SectionMasker,
    TokenCounter,
    paragraph_spans,
    spans_digest,
    split_paragraphs,
)
from lc_assets.lib.generation.prompts import title_line
from lc_assets.lib.generation.records import CommittedStep, FinishReason, SectionResult, StepRecord
from lc_assets.lib.generation.validate import UNDETERMINED_LANGUAGE, QuestionIndex, ShownTextMemo, detect_language
from lc_assets.lib.sections import QAPair, Section
from lc_assets.lib.tokenizer import TextTokenizer


@dataclass(frozen=True)
class SectionTask:
    """A section to grow: its chunk, the chunk's stored target-token count, and what is already committed."""

    section: Section
    chunk_tokens: int | None = None  # target tokens of the chunk as `chunks.n_tokens` stores it; None: count
    committed: Sequence[CommittedStep | StepRecord] = ()
    shard: str = ""
    title: str = ""  # the document's title, named in every prompt of the section
    # builds the section's masker from (section id, paragraphs, config); None: a SectionMasker over the chunk
    # (cross sections show one window in each of two chunks: generation.cross.CrossMasker)
    masker: Callable[[str, tuple[Paragraph, ...], GenerationConfig], Any] | None = None
    # the chunk's paragraph counts stored when it was cut, as (tokenizer counting fingerprint, spans digest,
    # counts): used instead of counting when the generator counts alike (lineage.store.chunk_paragraph_counts)
    paragraph_counts: Sequence[tuple[str, str, Sequence[int]]] = ()


@dataclass
class SectionState:
    """A section in flight: its paragraphs, masker and pairs so far."""

    task: SectionTask
    paragraphs: tuple[Paragraph, ...]
    masker: SectionMasker | None
    chunk_tokens: int
    target_tokens: int
    pairs: list[QAPair] = field(default_factory=list)
    # the chunk's language for the language check (UNDETERMINED_LANGUAGE: no check), detected once
    source_language: str = UNDETERMINED_LANGUAGE
    # quotable pieces of the shown paragraphs, cut once per paragraph (evidence choices, completion)
    memo: ShownTextMemo = field(default_factory=ShownTextMemo)
    section_tokens: int = 0
    next_step: int = 0
    failed_steps: int = 0
    failed_in_a_row: int = 0  # failed steps since the last accepted pair (the stop rule's count)
    finish_reason: FinishReason | None = None
    # pair id -> generator tokens of (question, answer), for the prompt guard's bound
    generator_pair_tokens: dict[str, tuple[int, int]] = field(default_factory=dict)
    title_tokens: int | None = None  # generator tokens of the prompt's title line (counted on first use)
    attribution_tokens: int | None = None  # generator tokens of the attribution sentence (counted on first use)
    # accepted evidence quotes per chunk decile so far (resumed steps too): which window a step focuses on
    evidence_depth: EvidenceDepth = field(init=False)

    # the near-duplicate check's index of `pairs`' questions, built on first use (see question_index)
    _question_index: QuestionIndex | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.evidence_depth = EvidenceDepth(len(self.task.section.text))

    @property
    def question_index(self) -> QuestionIndex:
        """Every question of the section so far (resumed ones too): the near-duplicate check's index. Built on
        first use and brought up to date on each: a section judged in a judge worker (which keeps its own) never
        builds it in the loop's process."""
        index = self._question_index
        if index is None:
            index = self._question_index = QuestionIndex()
        for pair in self.pairs[len(index) :]:
            index.add(pair.question)
        return index

    @property
    def title(self) -> str:
        return self.task.title

    @property
    def section(self) -> Section:
        return self.task.section

    @property
    def section_id(self) -> str:
        return self.task.section.section_id

    def result(self) -> SectionResult:
        s = self.task.section
        return SectionResult(
            section_id=s.section_id,
            chunk_id=s.chunk_id,
            document_id=s.document_id,
            shard=self.task.shard,
            chunk_tokens=self.chunk_tokens,
            target_tokens=self.target_tokens,
            n_paragraphs=len(self.paragraphs),
            steps=self.next_step,
            n_pairs=len(self.pairs),
            failed_steps=self.failed_steps,
            section_tokens=self.section_tokens,
            finish_reason=self.finish_reason,
        )

    def apply(self, step: int, pair: QAPair | None, pair_tokens: int, evidence: Iterable[tuple[int, int]] = ()) -> None:
        """Advance by one finished step (the same path for resumed and live steps); ``evidence``: the accepted
        pair's quotes as chunk spans."""
        if pair is not None:
            self.pairs.append(pair)
            self.evidence_depth.add(evidence)
            self.section_tokens += pair_tokens
            self.failed_in_a_row = 0
        else:
            self.failed_steps += 1
            self.failed_in_a_row += 1
        self.next_step = step + 1

    def check_finished(self, config: GenerationConfig) -> None:
        if self.finish_reason is not None:
            return
        if self.section_tokens >= self.target_tokens:
            self.finish_reason = "target_reached"
        elif self.next_step >= config.max_steps_per_section:
            self.finish_reason = "max_steps"
        elif self.failed_in_a_row >= config.max_consecutive_failed_steps:
            self.finish_reason = "max_failures"


def title_line_tokens(count_text: TokenCounter, title: str) -> int:
    """Generator tokens of the prompt's title line, +2 for its join (0 without a title)."""
    line = title_line(title)
    return count_text([line])[0] + 2 if line else 0


def pair_token_overhead(tokenizer: TextTokenizer) -> int:
    """Tokens the target chat template adds around one user/assistant pair (headers, end-of-turn)."""
    if not tokenizer.chat_template:
        return 0
    q, a = "question", "answer"
    one = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    two = one + one
    # the difference between two pairs and one excludes once-per-sample tokens such as BOS
    return (
        tokenizer.count(tokenizer.apply_chat_template(two))
        - tokenizer.count(tokenizer.apply_chat_template(one))
        - tokenizer.count(q)
        - tokenizer.count(a)
    )


def source_language(text: str, samples: int = 10, sample_chars: int = 2000) -> str | None:
    """The language of a chunk (None when unsure: code, tables), from samples spread over all of it.

    Detected once per section: per step it would cost more than the rest of validation.
    """
    if len(text) <= samples * sample_chars:
        return detect_language(text)
    stride = len(text) // samples
    return detect_language(" ".join(text[i * stride : i * stride + sample_chars] for i in range(samples)))


class SectionPreparer:
    """Turns a task into a state: paragraphs counted in the generator's tokens, committed steps replayed."""

    def __init__(
        self,
        config: GenerationConfig,
        count_text: TokenCounter,
        target_tokenizer: TextTokenizer,
        counting_fingerprint: str | None = None,
    ) -> None:
        self.config = config
        self.count_text = count_text
        self.target_tokenizer = target_tokenizer
        # the generator's tokenizer (`GenerationBackend.counting_fingerprint`); None: unknown, always count
        self.counting_fingerprint = counting_fingerprint
        self.stored_counts_used = 0  # sections whose paragraphs came counted from lineage
        self._pair_overhead: int | None = None
        self._overhead_lock = threading.Lock()

    @property
    def pair_overhead(self) -> int:
        # measured on first use, not up front: rendering the chat template imports transformers (seconds),
        # which would otherwise hold back the run's first request
        with self._overhead_lock:
            if self._pair_overhead is None:
                self._pair_overhead = pair_token_overhead(self.target_tokenizer)
            return self._pair_overhead

    def pair_tokens(self, pairs: Sequence[QAPair]) -> list[int]:
        """Target tokens each pair adds to its section (question + answer + the chat template around them)."""
        if not pairs:
            return []
        counts = self.target_tokenizer.count_batch([t for p in pairs for t in (p.question, p.answer)])
        overhead = self.pair_overhead
        return [counts[2 * i] + counts[2 * i + 1] + overhead for i in range(len(pairs))]

    def stored_counts(self, task: SectionTask) -> tuple[list[tuple[int, int]], Sequence[int]] | None:
        """The section's paragraph spans and their stored counts when the generator counts as the tokenizer
        that stored them, over the same spans; None: count them."""
        if self.counting_fingerprint is None or not task.paragraph_counts:
            return None
        for tokenizer, digest, counts in task.paragraph_counts:
            if tokenizer == self.counting_fingerprint:
                spans = paragraph_spans(task.section.text)
                if digest == spans_digest(spans) and len(counts) == len(spans):
                    self.stored_counts_used += 1
                    return spans, counts
        return None

    def __call__(self, task: SectionTask) -> SectionState:
        cfg, section = self.config, task.section
        chunk_tokens = task.chunk_tokens if task.chunk_tokens is not None else self.target_tokenizer.count(section.text)
        paragraphs = tuple(split_paragraphs(section.text, self.count_text, cfg.paragraph_cap, self.stored_counts(task)))
        masker = (
            task.masker(section.section_id, paragraphs, cfg)
            if task.masker is not None and paragraphs
            else SectionMasker(
                section.section_id,
                paragraphs,
                cfg.seed,
                cfg.min_context_tokens,
                cfg.max_context_tokens,
                min_windows=cfg.min_windows,
                max_windows=cfg.max_windows,
                long_range_share=cfg.long_range_share,
                long_range_min_distance=cfg.long_range_min_distance,
            )
            if paragraphs
            else None
        )
        st = SectionState(task, paragraphs, masker, chunk_tokens, cfg.target_for(chunk_tokens))
        # counted here, beside the loop: a backend that counts over HTTP would stall the loop once per section
        st.title_tokens = title_line_tokens(self.count_text, task.title)
        st.source_language = source_language(section.text) or UNDETERMINED_LANGUAGE
        st.section_tokens = chunk_tokens
        records = sorted(task.committed, key=lambda r: r.step)
        for expected, rec in enumerate(records):
            if rec.step != expected or rec.section_id != section.section_id:
                raise ValueError(
                    f"committed steps of section {section.section_id!r} are not a prefix 0..n-1 "
                    f"(found step {rec.step} of {rec.section_id!r} where {expected} was expected)"
                )
        ok_pairs = [r.pair for r in records if r.status == "ok" and r.pair is not None]
        tokens = dict(zip((p.pair_id for p in ok_pairs), self.pair_tokens(ok_pairs), strict=True))
        for rec in records:
            pair = rec.pair if rec.status == "ok" else None
            st.apply(rec.step, pair, tokens[pair.pair_id] if pair is not None else 0, rec.evidence_spans)
        for pair in section.pairs:  # pairs given on the Section itself (not through records)
            if pair.step >= st.next_step:
                raise ValueError(f"section {section.section_id!r} has pair at step {pair.step} but no record of it")
        if not paragraphs:
            st.finish_reason = "empty_chunk"
        st.check_finished(cfg)
        return st


class _End:
    pass


@dataclass
class _Failed:
    error: BaseException


class Admission:
    """Prepares the next few sections of `tasks` on a background thread; the loop takes them as slots free up.

    Tasks are consumed lazily (a paging source never loads more than `ahead` sections beyond those in
    flight), so memory stays flat in the number of sections.
    """

    def __init__(self, tasks: Iterable[SectionTask], prepare: Callable[[SectionTask], SectionState], ahead: int = 4):
        self._queue: queue.Queue[SectionState | _End | _Failed] = queue.Queue(maxsize=max(1, ahead))
        self._closed = threading.Event()
        self.exhausted = False
        self.prepared = 0
        self.prepare_seconds = 0.0  # on the admission thread, beside the loop
        # its CPU time: the Python work (paragraph split, ids, replay), under the interpreter lock the loop needs;
        # a backend's batched counts run on the tokenizer's own threads and are not in it
        self.prepare_cpu_seconds = 0.0
        self._thread = threading.Thread(target=self._run, args=(tasks, prepare), name="section-admission", daemon=True)
        self._thread.start()

    def _put(self, item: SectionState | _End | _Failed) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, tasks: Iterable[SectionTask], prepare: Callable[[SectionTask], SectionState]) -> None:
        try:
            for task in tasks:
                if self._closed.is_set():
                    return
                start, cpu = time.perf_counter(), time.thread_time()
                state = prepare(task)
                self.prepare_seconds += time.perf_counter() - start
                self.prepare_cpu_seconds += time.thread_time() - cpu
                self.prepared += 1
                if not self._put(state):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the loop, which raises it
            self._put(_Failed(exc))
            return
        self._put(_End())

    def take(self, timeout: float = 0.0) -> SectionState | None:
        """The next prepared section; None if none is ready within `timeout` s or none are left."""
        if self.exhausted:
            return None
        try:
            item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None
        if isinstance(item, _End):
            self.exhausted = True
            return None
        if isinstance(item, _Failed):
            self.exhausted = True
            raise item.error
        return item

    def close(self) -> None:
        """Admit nothing more (graceful stop, end of run)."""
        self._closed.set()
        self.exhausted = True
        while True:  # unblock a put in progress
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=5.0)
