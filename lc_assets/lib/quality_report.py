"""The per-run HTML quality report of generated QA data: one self-contained file (inline CSS, inline PNG plots).

It holds the quality metrics of a generation config (or of one run of it) as `generation.quality`
computes them over the stored rows, the threshold verdicts, the agreement of human reviews with the
automatic checks, and a seeded sample of accepted pairs, each with the excerpt its prompt showed and its
evidence quotes highlighted inside it. Everything taken from the data is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

from lc_assets.lib.excerpts import Excerpt
from lc_assets.lib.generation.quality import (
    N_DECILES,
    QualityReport,
    QualityThresholds,
    ThresholdResult,
    evaluate_thresholds,
)
from lc_assets.lib.generation.validate import REJECTION_REASONS
from lc_assets.lib.lineage import LineageStore
from lc_assets.lib.lineage.judge import (
    JudgeCounts,
    StoredJudgement,
    generation_judge_counts,
    judge_vs_human,
    judgements_by_pair,
)
from lc_assets.lib.lineage.quality import load_quality
from lc_assets.lib.lineage.review import (
    PairReview,
    ReviewItem,
    generation_config,
    load_pairs,
    review_judgements,
    reviews_by_item,
    sample_candidate_ids,
)
from lc_assets.lib.review import Agreement, agreement


def write_quality_report(
    store: LineageStore,
    generation_config_hash: str,
    out_path: Path,
    *,
    run_id: str | None = None,
    sample_pairs: int = 20,
    seed: int = 0,
) -> Path:
    """Write the report to `out_path` (replaced atomically) and return the path."""
    page = render_quality_report(store, generation_config_hash, run_id=run_id, sample_pairs=sample_pairs, seed=seed)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out_path)
    return out_path


def render_quality_report(
    store: LineageStore,
    generation_config_hash: str,
    *,
    run_id: str | None = None,
    sample_pairs: int = 20,
    seed: int = 0,
    thresholds: QualityThresholds | None = None,
) -> str:
    """The report as one HTML string (see the module doc)."""
    report = load_quality(store, generation_config_hash, run_id=run_id)
    results = evaluate_thresholds(report, thresholds)
    config = generation_config(store, generation_config_hash)
    agree = agreement(review_judgements(store, generation_config_hash, run_id))
    ids = sample_candidate_ids(store, "pair", generation_config_hash, sample_pairs, seed, run_id)
    items = load_pairs(store, ids)
    reviews = reviews_by_item(store, ids)
    judge_counts = generation_judge_counts(store, generation_config_hash, run_id)
    judge_agree = agreement(judge_vs_human(store, generation_config_hash, run_id))
    judgements = judgements_by_pair(store, ids)
    generator = config.get("generator") or {}
    scope = f"run {run_id}" if run_id else "all runs"
    title = f"QA quality — generation config {generation_config_hash} ({scope})"
    head = [
        ("generation config", generation_config_hash),
        ("scope", scope),
        ("generator", " / ".join(str(generator.get(k)) for k in ("backend", "model") if generator.get(k)) or "?"),
        ("prompt version", config.get("prompt_version", "?")),
        ("lineage file", str(store.path)),
        ("written", datetime.now().isoformat(timespec="seconds")),
    ]
    body = [
        f"<h1>{_e(title)}</h1>",
        _table(["", ""], head, cls="kv"),
        "<h2>Checks</h2>",
        _thresholds_html(results),
        "<h2>Metrics</h2>",
        _metrics_html(report),
        _plots_html(report),
        "<h2>Human review against the automatic checks</h2>",
        _agreement_html(agree),
        "<h2>Model judge</h2>",
        _judge_html(judge_counts, judge_agree),
        f"<h2>Sampled pairs ({len(items)} of {report.accepted}, seed {seed})</h2>",
        "<p class='help'>Each pair with the text its prompt showed; the evidence quotes are highlighted where "
        "they lie (numbered as listed). <span class='skip'>[...]</span> marks chunk text the model did not see."
        "</p>",
        *(
            _pair_html(k, it, reviews.get(it.item_id, []), judgements.get(it.item_id))
            for k, it in enumerate(items, start=1)
        ),
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.4em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}h3{font-size:1.05em;margin-bottom:.3em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;
vertical-align:top}th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.fail td{background:#fde2e2}tr.warn td{background:#fff3cd}tr.skipped td{color:#888}
.kv td:first-child{font-weight:600}.help{color:#555;font-size:.9em}
.plots img{max-width:100%;margin:.3em 0}
.pair{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;margin:1em 0}
.pair .meta{color:#666;font-size:.85em}.qa b{display:inline-block;width:1.4em}
.excerpt{white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:.82em;background:#fafafa;
border:1px solid #eee;padding:.6em;max-height:32em;overflow:auto}
mark.q{background:#ffe066;padding:0 1px}mark.q.completed{background:#c3e6cb}
mark.q sup{font-weight:700;color:#a60;font-size:.75em}
.skip{color:#999;font-style:italic}.review{font-size:.9em}.verdict-reject{color:#b00}.verdict-fix{color:#a60}
.verdict-accept{color:#070}.outside{color:#b00}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], cls: str = "", row_cls: Sequence[str] = ()) -> str:
    out = [f"<table class='{_e(cls)}'>"]
    if any(header):
        out.append("<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>")
    for i, row in enumerate(rows):
        klass = f" class='{_e(row_cls[i])}'" if i < len(row_cls) and row_cls[i] else ""
        cells = "".join(
            f"<td class='num'>{_e(_fmt(c))}</td>" if isinstance(c, int | float) else f"<td>{_e(c)}</td>" for c in row
        )
        out.append(f"<tr{klass}>{cells}</tr>")
    return "".join(out) + "</table>"


def _fmt(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:,.4g}"


def _thresholds_html(results: Sequence[ThresholdResult]) -> str:
    rows, classes = [], []
    for r in results:
        status = "skipped (too few pairs)" if r.skipped else ("pass" if r.passed else f"FAIL ({r.severity})")
        rows.append([r.rule, r.value, status, r.description])
        classes.append("skipped" if r.skipped else "" if r.passed else ("fail" if r.severity == "ERROR" else "warn"))
    return _table(["rule", "value", "result", "what it measures"], rows, row_cls=classes)


def _metrics_html(r: QualityReport) -> str:
    def pct(x: float) -> str:
        return f"{x:.1%}"

    per_1m = "-" if r.generated_per_1m_packed is None else f"{r.generated_per_1m_packed:,.0f}"
    rows = [
        ["steps (attempted)", r.steps, f"generation steps of this scope, over {r.sections:,} section(s)"],
        ["accepted pairs", r.accepted, ""],
        ["yield", pct(r.yield_), "accepted / steps"],
        ["attempts", r.attempts, "steps + retried attempts"],
        ["evidence found verbatim", pct(r.evidence_verbatim_share), "accepted pairs whose every quote is in the "
         "shown text (normalised whitespace/case)"],
        ["evidence completed by the validator", pct(r.completed_evidence_share), "pairs whose quotes did not "
         "cover the answer until shown sentences were added"],
        ["evidence depth coverage", f"{r.depth_coverage:.2f}", f"least-used / most-used chunk decile, over "
         f"{r.pairs_with_depth:,} pairs with evidence spans (1.0 = evenly spread)"],
        ["near-duplicate questions", pct(r.near_duplicate_share), "within ROUGE-L 0.7 of an earlier question of "
         "the section"],
        ["empty answers", r.empty_answers, ""],
        ["most common question kind", pct(r.max_kind_share), ", ".join(f"{k} {v}" for k, v in r.kind_mix.items())],
        ["question chars (mean / p50 / p90 / max)", _lengths(r.question_chars), ""],
        ["answer chars (mean / p50 / p90 / max)", _lengths(r.answer_chars), f"{r.answer_words_mean:g} words on "
         "average"],
        ["generated tokens per 1M packed tokens", per_1m, f"{r.completion_tokens:,} completion tokens over all "
         "attempts; the method's range is 100-300k"],
    ]  # fmt: skip
    out = _table(["metric", "value", "how to read it"], rows)
    reasons = sorted(set(r.rejections_by_reason) | set(r.rejected_attempts_by_reason))
    if reasons:
        rej = [
            [code, r.rejections_by_reason.get(code, 0), r.rejected_attempts_by_reason.get(code, 0),
             REJECTION_REASONS.get(code, "")]
            for code in sorted(reasons, key=lambda c: -(r.rejections_by_reason.get(c, 0)
                                                        + r.rejected_attempts_by_reason.get(c, 0)))
        ]  # fmt: skip
        out += "<h3>Rejections by reason</h3>" + _table(
            ["reason", "failed steps", "retried attempts", "what it means"], rej
        )
    return out


def _lengths(d: Mapping[str, float]) -> str:
    return " / ".join(f"{d.get(k, 0):,.0f}" for k in ("mean", "p50", "p90", "max"))


def _plots_html(r: QualityReport) -> str:
    """Evidence depth, rejections and question kinds as inline PNGs."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.2))
    depth, rejects, kinds = fig.subplots(1, 3, width_ratios=[4, 4, 3])
    labels = [f"{10 * i}" for i in range(N_DECILES)]
    depth.bar(labels, r.depth_histogram, color="#4c72b0")
    depth.set_xlabel("evidence position in its chunk (%)")
    depth.set_ylabel("quotes")
    depth.set_title(f"evidence depth: coverage {r.depth_coverage:.2f}", fontsize=10)
    reasons = sorted(
        set(r.rejections_by_reason) | set(r.rejected_attempts_by_reason),
        key=lambda c: r.rejections_by_reason.get(c, 0) + r.rejected_attempts_by_reason.get(c, 0),
    )
    if reasons:
        failed = [r.rejections_by_reason.get(c, 0) for c in reasons]
        retried = [r.rejected_attempts_by_reason.get(c, 0) for c in reasons]
        rejects.barh(reasons, failed, color="#c44e52", label="failed steps")
        rejects.barh(reasons, retried, left=failed, color="#f0a0a0", label="retried attempts")
        rejects.legend(fontsize=7)
        rejects.tick_params(axis="y", labelsize=7)
    else:
        rejects.text(0.5, 0.5, "no rejections", ha="center", va="center")
    rejects.set_title(f"rejections (yield {r.yield_:.0%})", fontsize=10)
    if r.kind_mix:
        kinds.bar(list(r.kind_mix), list(r.kind_mix.values()), color="#55a868")
        kinds.tick_params(axis="x", labelrotation=45, labelsize=7)
    kinds.set_title("question kinds", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    data = base64.b64encode(buf.getvalue()).decode()
    alt = "evidence depth histogram, rejections by reason, question kinds"
    return f"<div class='plots'><img alt='{_e(alt)}' src='data:image/png;base64,{data}'></div>"


def _agreement_html(a: Agreement, judge: bool = False) -> str:
    """Human verdicts against the automatic checks, or (`judge`) against the model judge's kept/rejected."""
    if not a.n:
        return (
            "<p class='help'>No reviews yet: <code>lc-assets review --include-rejected</code> records verdicts on a "
            "sample of accepted pairs and rejected attempts.</p>"
        )

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.1%}"

    who = "model judge" if judge else "automatic checks"
    kept, dropped = (
        ("pairs the judge kept", "pairs the judge rejected") if judge else ("accepted pairs", "rejected attempts")
    )
    table = _table(
        [who, "human: accept", "human: fix", "human: reject"],
        [[f"{auto} ({acc + fix + rej})", acc, fix, rej] for auto, acc, fix, rej in a.rows()],
    )
    facts = _table(
        ["", ""],
        [
            ["reviews", a.n],
            [f"{kept} the reviewer accepted as is", pct(a.accepted_confirmed)],
            [f"{dropped} the reviewer rejected too", pct(a.rejected_confirmed)],
            [f"agreement (a fix counts as {a.fix_counts_as})", pct(a.agreement)],
            ["Cohen's kappa", "-" if a.kappa is None else f"{a.kappa:.3f}"],
        ],
        cls="kv",
    )
    note = (
        "Only reviewed pairs the judge also judged count; the judge sees every accepted pair, so this mix is the "
        "reviewed sample's."
        if judge
        else "Accepted pairs and rejected attempts are sampled separately: read the two per-row rates; agreement and "
        "kappa describe the reviewed mix."
    )
    return table + facts + f"<p class='help'>{note}</p>"


def _judge_html(counts: JudgeCounts, agree: Agreement) -> str:
    """The model judge's newest verdict per pair (`judged_qa_pairs`) and its agreement with human reviews."""
    if not counts.judged:
        return (
            "<p class='help'>No model verdicts yet: materialize <code>judged_qa_pairs</code> (a second model call per "
            "accepted pair; packing leaves the pairs it rejects out).</p>"
        )
    rows = [[v, n, counts.rejected_by_verdict.get(v, 0)] for v, n in counts.by_verdict.items()]
    out = _table(["verdict", "pairs", "rejected (not kept)"], rows)
    facts = [
        ["pairs judged", counts.judged],
        ["kept", counts.kept],
        ["rejected", f"{counts.rejected} ({counts.rejected_share:.1%})"],
        ["questions the judge found not standalone", counts.not_standalone],
        ["judge errors by code", ", ".join(f"{k} {v}" for k, v in counts.errors_by_code.items()) or "none"],
    ]
    out += _table(["", ""], facts, cls="kv")
    out += "<h3>Model judge against human review</h3>"
    if not agree.n:
        return out + "<p class='help'>No pair has both a model verdict and a human review yet.</p>"
    return out + _agreement_html(agree, judge=True)


def _excerpt_html(excerpt: Excerpt, completed: set[int]) -> str:
    out: list[str] = []
    seen: set[int] = set()
    for seg in excerpt.segments:
        if seg.kind == "skip":
            out.append(f"<span class='skip'>\n{_e(seg.text)}\n</span>")
        elif seg.quotes:
            klass = "q completed" if set(seg.quotes) <= completed else "q"
            label = "".join(f"<sup>{n}</sup>" for n in seg.quotes if n not in seen)
            seen.update(seg.quotes)
            numbers = " ".join(map(str, seg.quotes))
            out.append(f"{label}<mark class='{klass}' data-quote='{numbers}'>{_e(seg.text)}</mark>")
        else:
            out.append(_e(seg.text))
    return f"<div class='excerpt'>{''.join(out)}</div>"


def _pair_html(
    k: int, item: ReviewItem, reviews: Sequence[PairReview], judgement: StoredJudgement | None = None
) -> str:
    where = f"{item.document}, chunk {item.chunk_index}" if item.chunk_index is not None else item.document
    meta = f"{where} · section {item.section_id} · kind {item.question_kind or '?'} · run {item.generation_run_id}"
    quotes = []
    for q in item.quotes:
        flags = []
        if not q.located or q.number in item.excerpt.outside:
            flags.append("<span class='outside'>not inside the shown text</span>")
        if q.origin == "completed":
            flags.append("added by the validator")
        if q.score is not None and q.score < 100:
            flags.append(f"fuzzy match {q.score:.0f}")
        suffix = f" <i>({'; '.join(flags)})</i>" if flags else ""
        quotes.append(f"<li value='{q.number}'>{_e(q.text)}{suffix}</li>")
    evidence = f"<ol class='evidence'>{''.join(quotes)}</ol>" if quotes else "<p class='help'>no evidence stored</p>"
    review = "".join(
        f"<div class='review'>reviewed by {_e(r.reviewer)}: <b class='verdict-{_e(r.verdict)}'>{_e(r.verdict)}</b>"
        + (f" — Q: {_e(r.fixed_question)}" if r.fixed_question else "")
        + (f" — A: {_e(r.fixed_answer)}" if r.fixed_answer else "")
        + (f" — {_e(r.note)}" if r.note else "")
        + "</div>"
        for r in reviews
    )
    if judgement is not None:
        standalone = ", not standalone" if judgement.standalone is False else ""
        decision = "kept" if judgement.kept else "rejected"
        review += (
            f"<div class='review'>model judge ({_e(judgement.judge_model)}): <b class='verdict-"
            f"{'accept' if judgement.kept else 'reject'}'>{_e(judgement.verdict)}{_e(standalone)}, {decision}</b>"
            f" — {_e(judgement.check_text or judgement.error_code or '')}</div>"
        )
    completed = {q.number for q in item.quotes if q.origin == "completed"}
    return (
        f"<section class='pair' id='pair-{_e(item.item_id)}'><h3>{k}. {_e(item.item_id)}</h3>"
        f"<div class='meta'>{_e(meta)}</div>"
        f"<div class='qa'><p><b>Q</b>{_e(item.question)}</p><p><b>A</b>{_e(item.answer)}</p></div>"
        f"{evidence}{review}{_excerpt_html(item.excerpt, completed)}</section>"
    )
