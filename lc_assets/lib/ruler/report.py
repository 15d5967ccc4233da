"""Render a RULER score table (task x length) as a markdown table and a PNG heatmap."""

from __future__ import annotations

import io
from collections.abc import Mapping

from lc_assets.lib.ruler.scoring import EFFECTIVE_LENGTH_THRESHOLD, summarize
from lc_assets.lib.ruler.tasks import ALL_TASKS


def _length_label(n: int) -> str:
    return f"{n // 1024}K" if n % 1024 == 0 else str(n)


def _axes(scores: Mapping[tuple[str, int], float]) -> tuple[list[str], list[int]]:
    tasks = {t for t, _ in scores}
    ordered = [t for t in ALL_TASKS if t in tasks] + sorted(tasks - set(ALL_TASKS))
    return ordered, sorted({n for _, n in scores})


#: reasons are cut to this many characters in coverage notes (a full reason stays in ruler_task_builds)
_REASON_CHARS = 160


def task_coverage(scores: Mapping[tuple[str, int], float], not_run: Mapping[tuple[str, int], str] | None = None) -> str:
    """How many of RULER's 13 tasks the averages cover, and why the others are missing.

    `not_run` maps (task, length) to the reason a task was not built at that length; a task with neither a
    score nor a reason was not configured. E.g. "11 of 13 (qa_1, qa_2 not run: SQuAD is not available offline)",
    or per length when lengths differ: "11 of 13 at 4K, 10 of 13 at 1K (vt not run at 1K: ...)".
    """
    not_run = not_run or {}
    lengths = sorted({n for _, n in scores})
    counts = {n: sum(1 for t in ALL_TASKS if (t, n) in scores) for n in lengths}
    if len(set(counts.values())) <= 1:
        head = f"{next(iter(counts.values()), 0)} of {len(ALL_TASKS)}"
    else:
        head = ", ".join(f"{counts[n]} of {len(ALL_TASKS)} at {_length_label(n)}" for n in reversed(lengths))
    # group the missing (task, length) cells by reason, then by the lengths they miss at
    missing: dict[str, dict[str, list[int]]] = {}
    for t in ALL_TASKS:
        for n in lengths:
            if (t, n) not in scores:
                reason = not_run.get((t, n))
                why = f"not run: {reason[:_REASON_CHARS]}" if reason else "not configured"
                missing.setdefault(why, {}).setdefault(t, []).append(n)
    notes = []
    for why, by_task in missing.items():
        by_lengths: dict[tuple[int, ...], list[str]] = {}
        for t, ns in by_task.items():
            by_lengths.setdefault(tuple(ns), []).append(t)
        for ns, tasks in by_lengths.items():
            at = "" if list(ns) == lengths else " at " + ", ".join(_length_label(n) for n in ns)
            verb, _, rest = why.partition(":")
            notes.append(f"{', '.join(tasks)} {verb}{at}{':' + rest if rest else ''}")
    return head + (f" ({'; '.join(notes)})" if notes else "")


def score_table_markdown(
    scores: Mapping[tuple[str, int], float],
    threshold: float = EFFECTIVE_LENGTH_THRESHOLD,
    not_run: Mapping[tuple[str, int], str] | None = None,
) -> str:
    """Markdown: one row per task, one column per length, then the per-length average (with the number of
    tasks it covers) and the aggregates."""
    tasks, lengths = _axes(scores)
    lines = [
        "| task | " + " | ".join(_length_label(n) for n in lengths) + " |",
        "|---|" + "---:|" * len(lengths),
    ]
    for t in tasks:
        cells = [f"{scores[(t, n)]:.2f}" if (t, n) in scores else "–" for n in lengths]
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    if scores:
        summary = summarize(scores, threshold)
        lines.append("| **average** | " + " | ".join(f"**{summary.per_length[n]:.2f}**" for n in lengths) + " |")
        counts = [sum(1 for t in tasks if (t, n) in scores) for n in lengths]
        lines.append(f"| tasks averaged (of {len(ALL_TASKS)}) | " + " | ".join(str(c) for c in counts) + " |")
        eff = _length_label(summary.effective_length) if summary.effective_length else "none"
        lines.append("")
        lines.append(
            f"Avg {summary.avg:.1f} · wAvg(inc) {summary.wavg_inc:.1f} · wAvg(dec) {summary.wavg_dec:.1f} · "
            f"effective length {eff} (threshold {threshold}) · tasks averaged: {task_coverage(scores, not_run)}"
        )
    return "\n".join(lines) + "\n"


def score_heatmap_png(scores: Mapping[tuple[str, int], float], title: str = "RULER", dpi: int = 110) -> bytes:
    """A task x length heatmap (0-100, annotated) with an average row, as PNG bytes (Agg backend, no display)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    tasks, lengths = _axes(scores)
    covered = len({t for t, _ in scores} & set(ALL_TASKS))
    rows = tasks + ([f"avg ({covered}/{len(ALL_TASKS)})"] if scores else [])
    per_length = summarize(scores).per_length if scores else {}
    grid = [[scores.get((t, n), float("nan")) for n in lengths] for t in tasks]
    if scores:
        grid.append([per_length[n] for n in lengths])
    fig = Figure(figsize=(1.2 + 0.9 * max(len(lengths), 1), 1.0 + 0.4 * max(len(rows), 1)))
    ax = fig.add_subplot()
    image = ax.imshow(grid or [[float("nan")]], cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(lengths)), [_length_label(n) for n in lengths])
    ax.set_yticks(range(len(rows)), rows)
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            if value == value:  # not NaN
                ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=8)
    ax.set_title(title)
    ax.set_xlabel("max_seq_length")
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
