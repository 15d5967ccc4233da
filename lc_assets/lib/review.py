"""Human review of generated QA data: sample, show, record verdicts, measure agreement with the checks.

`lc-assets review` is a thin CLI over this module:

- :func:`sample_items` — N accepted pairs (and, optionally, N rejected attempts) of a generation config
  or run, in an order fixed by the seed (a hash of seed and item id), so a session that stops resumes
  with the next unreviewed items of the same order. Pairs and rejected attempts are interleaved and
  the automatic decision is not shown while reviewing: the reviewer judges blind.
- :func:`render_item` — question, answer and the shown excerpt with the evidence quotes marked
  (``[[1 ...]]`` in plain text, colour on a terminal).
- :func:`review_session` / :func:`apply_verdicts` — verdicts typed in or read from a JSON Lines file,
  each committed at once to `pair_reviews`.
- :func:`agreement` — the confusion between human verdicts and the automatic checks, simple agreement
  and Cohen's kappa.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field

from lc_assets.lib.excerpts import Excerpt, trim_excerpt
from lc_assets.lib.lineage import LineageStore
from lc_assets.lib.lineage.review import (
    VERDICTS,
    PairReview,
    ReviewItem,
    load_items,
    record_review,
    sample_candidate_ids,
)
from lc_assets.lib.stepconfig import StepConfig


class ReviewConfig(StepConfig):
    """What one review session samples (its hash is stored with every verdict)."""

    generation_config_hash: str
    run_id: str | None = Field(None, description="Only items made by this generation run.")
    sample: int = Field(20, ge=1, le=10_000, description="Accepted pairs to review.")
    rejected: int = Field(0, ge=0, le=10_000, description="Rejected attempts to review as well (0: none).")
    seed: int = Field(0, description="Fixes the sampling order (the same seed resumes the same order).")


def sample_order(ids: Iterable[str], seed: int) -> list[str]:
    """`ids` in an order that depends only on the seed and each id (stable as items are added or reviewed);
    `lineage.review.sample_candidate_ids` orders by the same key in SQL."""
    return sorted(ids, key=lambda i: (hashlib.sha256(f"{seed}\x1f{i}".encode()).hexdigest(), i))


def sample_items(store: LineageStore, config: ReviewConfig, skip_reviewed: bool = True) -> list[ReviewItem]:
    """The session's items (see module doc): pairs and rejected attempts interleaved in seeded order."""
    gen, run, seed = config.generation_config_hash, config.run_id, config.seed
    chosen = sample_candidate_ids(store, "pair", gen, config.sample, seed, run, skip_reviewed)
    if config.rejected:
        chosen += sample_candidate_ids(store, "rejected_attempt", gen, config.rejected, seed, run, skip_reviewed)
    return load_items(store, sample_order(chosen, seed))


# -- agreement ------------------------------------------------------------------------------------

Automatic = Literal["accepted", "rejected"]


@dataclass(frozen=True)
class Agreement:
    """Human verdicts against the automatic decision, over reviewed items.

    `counts[automatic][verdict]`; for kappa and agreement a "fix" counts as `fix_counts_as` (the
    generated text needed a change, so by default the checks should not have accepted it).
    Accepted pairs and rejected attempts are sampled separately, so the two per-decision rates are
    the figures to read; kappa and agreement are over the reviewed mix, not over all generated output.
    """

    counts: dict[str, dict[str, int]]
    n: int
    agreement: float | None  # share of reviews where human and checks agree
    kappa: float | None  # Cohen's kappa (None when undefined: fewer than two classes seen)
    accepted_confirmed: float | None  # of reviewed accepted pairs: share the human accepted as is
    rejected_confirmed: float | None  # of reviewed rejected attempts: share the human rejected too
    fix_counts_as: Literal["accept", "reject"] = "reject"

    def rows(self) -> list[tuple[str, int, int, int]]:
        """(automatic, human accept, human fix, human reject) per automatic decision."""
        return [
            (a, *(self.counts.get(a, {}).get(v, 0) for v in ("accept", "fix", "reject")))
            for a in ("accepted", "rejected")
        ]


def agreement(
    judgements: Iterable[tuple[str, str]], fix_counts_as: Literal["accept", "reject"] = "reject"
) -> Agreement:
    """Agreement of (automatic decision, human verdict) pairs; see :class:`Agreement`."""
    counts: dict[str, Counter[str]] = {"accepted": Counter(), "rejected": Counter()}
    for automatic, verdict in judgements:
        if automatic not in counts or verdict not in VERDICTS:
            raise ValueError(f"unknown judgement ({automatic!r}, {verdict!r})")
        counts[automatic][verdict] += 1

    def human_ok(c: Counter[str]) -> int:
        return c["accept"] + (c["fix"] if fix_counts_as == "accept" else 0)

    acc, rej = counts["accepted"], counts["rejected"]
    n_acc, n_rej = sum(acc.values()), sum(rej.values())
    n = n_acc + n_rej
    agree = human_ok(acc) + (n_rej - human_ok(rej))
    kappa = None
    if n:
        p_o = agree / n
        p_human_ok = (human_ok(acc) + human_ok(rej)) / n
        p_e = (n_acc / n) * p_human_ok + (n_rej / n) * (1 - p_human_ok)
        kappa = None if p_e >= 1.0 else round((p_o - p_e) / (1 - p_e), 4)
    return Agreement(
        counts={k: {v: c[v] for v in VERDICTS} for k, c in counts.items()},
        n=n,
        agreement=round(agree / n, 4) if n else None,
        kappa=kappa,
        accepted_confirmed=round(acc["accept"] / n_acc, 4) if n_acc else None,
        rejected_confirmed=round(rej["reject"] / n_rej, 4) if n_rej else None,
        fix_counts_as=fix_counts_as,
    )


def format_agreement(a: Agreement) -> str:
    """A small plain-text table (for `lc-assets review --stats`)."""

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.1%}"

    lines = [
        f"{a.n} review(s); a 'fix' counts as {a.fix_counts_as}",
        f"{'automatic':<10} {'accept':>7} {'fix':>5} {'reject':>7}",
    ]
    lines += [f"{auto:<10} {acc:>7} {fix:>5} {rej:>7}" for auto, acc, fix, rej in a.rows()]
    lines += [
        f"accepted pairs the reviewer accepted as is: {pct(a.accepted_confirmed)}",
        f"rejected attempts the reviewer rejected too: {pct(a.rejected_confirmed)}",
        f"agreement {pct(a.agreement)}, Cohen's kappa {'-' if a.kappa is None else f'{a.kappa:.3f}'}",
    ]
    return "\n".join(lines)


# -- showing an item ------------------------------------------------------------------------------

_ANSI = {"mark": "\x1b[30;43m", "label": "\x1b[1;33m", "dim": "\x1b[2m", "bold": "\x1b[1m", "off": "\x1b[0m"}


def render_excerpt(excerpt: Excerpt, color: bool = False) -> str:
    """The excerpt as text: quotes as ``[[1 ...]]`` (colour on a TTY), skipped text as the skip marker."""
    out: list[str] = []
    open_: tuple[int, ...] = ()
    for seg in excerpt.segments:
        if seg.quotes != open_:
            if open_:
                out.append(_ANSI["off"] if color else "]]")
            if seg.quotes:
                label = ",".join(map(str, seg.quotes))
                out.append(f"{_ANSI['label']}[{label}]{_ANSI['mark']}" if color else f"[[{label} ")
            open_ = seg.quotes
        if seg.kind == "text":
            out.append(seg.text)
        else:
            text = f"\n{seg.text}\n" if seg.kind == "skip" else seg.text
            out.append(f"{_ANSI['dim']}{text}{_ANSI['off']}" if color else text)
    if open_:
        out.append(_ANSI["off"] if color else "]]")
    return "".join(out)


def render_item(item: ReviewItem, position: str = "", context_chars: int = 600, color: bool = False) -> str:
    """What the reviewer reads: question, answer, quotes, then the shown excerpt with the quotes marked."""
    bold, off = (_ANSI["bold"], _ANSI["off"]) if color else ("", "")
    where = f"{item.document}, chunk {item.chunk_index}" if item.chunk_index is not None else item.document
    head = " ".join(x for x in ("===", position, item.item_id) if x)
    lines = [f"{bold}{head}{off}  ({where})"]
    if item.question is None and item.answer is None:
        lines.append("(the output is not a question/answer object; raw output:)")
        lines.append((item.raw_text or "").strip()[:2000])
    else:
        lines.append(f"{bold}Q:{off} {item.question or '(none)'}")
        lines.append(f"{bold}A:{off} {item.answer or '(none)'}")
    if item.quotes:
        lines.append("evidence:")
        for q in item.quotes:
            where_q = "" if q.located and q.number not in item.excerpt.outside else "  (NOT in the shown text)"
            origin = "  (added by the validator)" if q.origin == "completed" else ""
            fuzzy = f"  (fuzzy match {q.score:.0f})" if q.score is not None and q.score < 100 else ""
            lines.append(f"  [{q.number}] {q.text!r}{where_q}{origin}{fuzzy}")
    else:
        lines.append("evidence: none stored" if item.kind == "pair" else "evidence: none in the output")
    shown = trim_excerpt(item.excerpt, context_chars)
    lines.append(f"--- shown to the model{' (trimmed around the evidence)' if shown != item.excerpt else ''} ---")
    lines.append(render_excerpt(shown, color))
    return "\n".join(lines)


# -- recording verdicts ---------------------------------------------------------------------------


@dataclass
class SessionResult:
    recorded: list[PairReview] = field(default_factory=list)
    skipped: int = 0
    stopped: bool = False  # the reviewer quit (or input ended) before the last item


_HELP = "[a]ccept  [r]eject  [f]ix  [s]kip  [q]uit"


def review_session(
    store: LineageStore,
    items: Sequence[ReviewItem],
    reviewer: str,
    *,
    run_id: str,
    config_hash: str,
    ask: Callable[[str], str] | None = None,
    show: Callable[[str], None] = print,
    context_chars: int = 600,
    color: bool = False,
) -> SessionResult:
    """Ask for a verdict on each item and commit it at once; end of input or 'q' stops (resumable)."""
    ask = ask or input  # looked up at call time: tests and callers may replace builtins.input
    result = SessionResult()
    for i, item in enumerate(items, start=1):
        show(render_item(item, f"{i}/{len(items)}", context_chars, color))
        try:
            review = _ask_verdict(item, reviewer, ask, show)
        except (EOFError, KeyboardInterrupt):  # end of input or Ctrl-C: what was recorded stays
            review = None
        if review is None:
            result.stopped = True
            break
        if review == "skip":
            result.skipped += 1
            continue
        record_review(store, item, review, run_id=run_id, config_hash=config_hash)
        result.recorded.append(review)
    return result


def _ask_verdict(
    item: ReviewItem, reviewer: str, ask: Callable[[str], str], show: Callable[[str], None]
) -> PairReview | Literal["skip"] | None:
    while True:
        key = ask(f"{_HELP} > ").strip().lower()[:1]
        if key == "q":
            return None
        if key == "s":
            return "skip"
        if key in ("a", "r", "f"):
            break
        show(f"type one of {_HELP}")
    fixed_q = fixed_a = None
    if key == "f":
        fixed_q = ask("fixed question (Enter keeps it) > ").strip() or None
        fixed_a = ask("fixed answer (Enter keeps it) > ").strip() or None
        if fixed_q is None and fixed_a is None:
            show("nothing fixed: recorded as accept")
            key = "a"
    note = ask("note (optional) > ").strip() or None
    verdict = {"a": "accept", "r": "reject", "f": "fix"}[key]
    return PairReview(item.item_id, reviewer, verdict, fixed_q, fixed_a, note)  # type: ignore[arg-type]


class VerdictFileError(ValueError):
    """A line of a verdicts file is not a valid verdict (the message names file and line)."""


def read_verdicts(path: Path, reviewer: str) -> list[PairReview]:
    """Verdicts from JSON Lines: ``{"pair_id": ..., "verdict": "accept|reject|fix", "fixed_question": ...,
    "fixed_answer": ..., "note": ..., "reviewer": ...}`` (reviewer defaults to `reviewer`)."""
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise VerdictFileError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise VerdictFileError(f"{where}: expected an object")
        item_id, verdict = obj.get("pair_id") or obj.get("item_id"), obj.get("verdict")
        if not isinstance(item_id, str) or not item_id:
            raise VerdictFileError(f"{where}: no pair_id")
        if verdict not in VERDICTS:
            raise VerdictFileError(f"{where}: verdict {verdict!r} is not one of {list(VERDICTS)}")
        fixed_q, fixed_a = obj.get("fixed_question"), obj.get("fixed_answer")
        if verdict == "fix" and not (fixed_q or fixed_a):
            raise VerdictFileError(f"{where}: a 'fix' needs fixed_question or fixed_answer")
        out.append(
            PairReview(
                item_id, obj.get("reviewer") or reviewer, verdict, fixed_q or None, fixed_a or None, obj.get("note")
            )
        )
    return out


def apply_verdicts(
    store: LineageStore, verdicts: Sequence[PairReview], *, run_id: str, config_hash: str
) -> list[PairReview]:
    """Record verdicts for the items they name (a verdict for an unknown item fails before anything is stored)."""
    items = {i.item_id: i for i in load_items(store, [v.item_id for v in verdicts])}
    unknown = [v.item_id for v in verdicts if v.item_id not in items]
    if unknown:
        raise VerdictFileError(f"no pair or rejected attempt {unknown[:5]} in {store.path} ({len(unknown)} unknown)")
    for v in verdicts:
        record_review(store, items[v.item_id], v, run_id=run_id, config_hash=config_hash)
    return list(verdicts)


def export_items(items: Sequence[ReviewItem], path: Path) -> None:
    """The sampled items as JSON Lines to review elsewhere; add "verdict" (and fixes) and read back with --verdicts."""
    with Path(path).open("w", encoding="utf-8") as f:
        for it in items:
            f.write(
                json.dumps(
                    {
                        "pair_id": it.item_id,
                        "question": it.question,
                        "answer": it.answer,
                        "evidence": [q.text for q in it.quotes],
                        "shown_text": render_excerpt(it.excerpt),
                        "verdict": None,
                    },
                    ensure_ascii=False,
                )  # fmt: skip
                + "\n"
            )
