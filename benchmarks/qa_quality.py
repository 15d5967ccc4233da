"""QA quality of candidate generator models on fixed masks of the embedded demo corpus.

Runs the real local backend (llama.cpp through xllamacpp, JSON-schema grammar) with the product's
masks (windows of consecutive paragraphs), prompts (evidence first) and validation, one attempt per
mask, and reports per model: accepted share, rejections by reason, seconds and CPU-seconds per
accepted pair. The masks are the same for every model (paragraph budgets counted with the target
tokenizer), so models are compared on identical excerpts.

It also writes a reading sheet (markdown): every accepted pair with its evidence shown inside the
chunk text around it, so a person can judge each pair (a real, standalone question; an answer fully
supported by the excerpt). The figures and the reading are in docs/qa_quality.md.

    python benchmarks/qa_quality.py --quote-enum --model qwen=qwen2.5-coder-1.5b --model smol=smollm2-135m
    python benchmarks/qa_quality.py --model mine=/path/to/any.gguf       # NAME=packaged preset or GGUF path

CPU time is the process's (llama.cpp threads run in-process): on an unloaded machine the wall time
per pair is about CPU time / threads; under load, wall time is longer and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path

from lc_assets.lib.corpus.documents import RawDocument
from lc_assets.lib.corpus.embedded import iter_embedded
from lc_assets.lib.generation.backend import GenerationRequest
from lc_assets.lib.generation.local_backend import LocalBackendConfig, LocalLlamaBackend
from lc_assets.lib.generation.masking import (
    Mask,
    Paragraph,
    SectionMasker,
    sample_earlier_pairs,
    split_paragraphs,
    windows_of,
)
from lc_assets.lib.generation.prompts import (
    INSTRUCTION_TEXTS,
    evidence_choices,
    fit_prompt,
    kinds_in_turn,
    qa_json_schema,
)
from lc_assets.lib.generation.validate import ValidationConfig, validate_output
from lc_assets.lib.sections import QAPair
from lc_assets.lib.tokenizer import load_tokenizer

#: prose and code documents of the demo shard (lc_assets/default_sources.yaml)
DEFAULT_DOCS = ("postgresql-functions", "debian-policy", "devils-dictionary", "cpython-asyncio", "cpython-email")


def load_chunks(names: list[str], chunk_chars: int) -> list[tuple[RawDocument, str]]:
    """The first ``chunk_chars`` of each document, cut at a paragraph break (a chunk-sized slice)."""
    out = []
    for doc in iter_embedded(names):
        if not isinstance(doc, RawDocument):
            raise SystemExit(f"embedded document missing: {doc}")
        text = doc.text
        if len(text) > chunk_chars:
            cut = text.rfind("\n\n", 0, chunk_chars)
            text = text[: cut if cut > chunk_chars // 2 else chunk_chars]
        out.append((doc, text))
    return out


def fixed_masks(
    chunks: list[tuple[RawDocument, str]], steps: int, args: argparse.Namespace
) -> list[tuple[RawDocument, str, list[Paragraph], list[Mask]]]:
    tok = load_tokenizer()
    out = []
    for doc, text in chunks:
        paras = split_paragraphs(text, tok.count_batch, min(512, args.min_context))
        masker = SectionMasker(
            f"bench-{doc.source}",
            paras,
            seed=args.seed,
            min_tokens=args.min_context,
            max_tokens=args.max_context,
            min_windows=args.min_windows,
            max_windows=args.max_windows,
            long_range_share=args.long_range_share,
        )
        out.append((doc, text, paras, [masker.mask(s) for s in range(args.first_step, args.first_step + steps)]))
    return out


def run_model(name: str, path: str | None, masks, args: argparse.Namespace, out_dir: Path) -> dict:
    backend = LocalLlamaBackend(
        LocalBackendConfig(model_path=path, n_parallel=1, n_ctx_per_slot=args.ctx, n_threads=args.threads)
    )
    vcfg = ValidationConfig(max_question_chars=args.max_question_chars, max_answer_chars=args.max_answer_chars)
    rows = []
    sink = (out_dir / f"{name}.jsonl").open("w")  # row by row: a long run can be read while it goes
    load_before = os.getloadavg()
    t_start, cpu_start = time.monotonic(), time.process_time()
    try:
        for doc, _text, paras, doc_masks in masks:
            section = f"bench-{doc.source}"
            accepted: list[QAPair] = []
            for mask in doc_masks:
                # the cycle's kind, falling back along the cycle where the shown text cannot support it (kind_cues)
                kind, *fallbacks = kinds_in_turn(args.seed, section, mask.step)
                earlier = sample_earlier_pairs(accepted, 3, args.seed, section, mask.step)
                fitted = fit_prompt(
                    mask,
                    len(paras),
                    earlier,
                    backend.count_prompt_tokens,
                    backend.context_window,
                    args.max_tokens,
                    kind=kind,
                    title=doc.title,
                    kind_fallbacks=fallbacks,
                )
                schema = qa_json_schema(
                    args.max_question_chars,
                    args.max_answer_chars,
                    max_quote_chars=args.max_quote_chars,
                    min_quotes=2 if fitted.long_range else 1,
                    max_quotes=2,
                    quote_choices=evidence_choices(fitted.windows, args.max_quote_chars) if args.quote_enum else None,
                    quote_choices_per_window=[evidence_choices([w], args.max_quote_chars) for w in fitted.windows]
                    if args.quote_enum and fitted.long_range
                    else None,
                )
                req = GenerationRequest(
                    f"{section}/{mask.step}", fitted.messages, args.max_tokens, args.temperature, schema, seed=mask.step
                )
                wall0, cpu0 = time.monotonic(), time.process_time()
                (res,) = backend.generate_batch([req])
                wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
                verdict = validate_output(
                    res.text,
                    fitted.windows,
                    earlier=accepted,
                    long_range=fitted.long_range,
                    instructions=INSTRUCTION_TEXTS,
                    config=vcfg,
                )
                if verdict.ok:
                    accepted.append(verdict.to_pair(f"{section}:{mask.step}", mask.step))
                rows.append(
                    {
                        "model": name,
                        "doc": doc.source,
                        "title": doc.title,
                        "step": mask.step,
                        "kind_suggested": kind,
                        "long_range": fitted.long_range,
                        "windows": [[w.char_start, w.char_end] for w in fitted.windows],
                        "context_tokens": sum(p.n_tokens for p in fitted.shown),
                        "prompt_tokens": res.prompt_tokens,
                        "completion_tokens": res.completion_tokens,
                        "finish_reason": res.finish_reason,
                        "wall_s": round(wall, 2),
                        "cpu_s": round(cpu, 2),
                        "raw": res.text,
                        "ok": verdict.ok,
                        "reason": verdict.reason,
                        "detail": verdict.detail,
                        "question": verdict.question,
                        "answer": verdict.answer,
                        "kind": verdict.kind,
                        "support": verdict.support,
                        "spans": [[s.char_start, s.char_end, s.score] for s in verdict.spans],
                    }
                )
                sink.write(json.dumps(rows[-1], ensure_ascii=False) + "\n")
                sink.flush()
                print(
                    f"[{name}] {doc.source} step {mask.step}: {'OK ' if verdict.ok else verdict.reason} "
                    f"{wall:.1f}s wall {cpu:.1f}s cpu | {verdict.detail[:160]} | {res.text[:400]!r}",
                    flush=True,
                )
    finally:
        backend.close()
        sink.close()
    wall_total, cpu_total = time.monotonic() - t_start, time.process_time() - cpu_start
    ok = [r for r in rows if r["ok"]]
    summary = {
        "model": name,
        "model_name": backend.model,
        "attempts": len(rows),
        "accepted": len(ok),
        "accepted_share": round(len(ok) / len(rows), 3) if rows else 0.0,
        "rejections": dict(Counter(r["reason"] for r in rows if not r["ok"]).most_common()),
        "kinds": dict(Counter(r["kind"] for r in ok).most_common()),
        "wall_s": round(wall_total, 1),
        "cpu_s": round(cpu_total, 1),
        "wall_s_per_attempt": round(wall_total / max(1, len(rows)), 1),
        "cpu_s_per_attempt": round(cpu_total / max(1, len(rows)), 1),
        "wall_s_per_accepted": round(wall_total / max(1, len(ok)), 1),
        "cpu_s_per_accepted": round(cpu_total / max(1, len(ok)), 1),
        "completion_tokens_per_attempt": round(sum(r["completion_tokens"] for r in rows) / max(1, len(rows)), 1),
        "prompt_tokens_per_attempt": round(sum(r["prompt_tokens"] for r in rows) / max(1, len(rows)), 1),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "threads": args.threads,
    }
    return summary


def revalidate(name: str, masks, args: argparse.Namespace, out_dir: Path) -> dict:
    """Re-judge the stored raw outputs of ``name`` with the current validation (no model run).

    The masks are rebuilt (deterministic); the shown windows are the stored ones, so a change to
    the checks can be measured on the same real outputs.
    """
    vcfg = ValidationConfig(max_question_chars=args.max_question_chars, max_answer_chars=args.max_answer_chars)
    by_doc = {doc.source: paras for doc, _, paras, _ in masks}
    rows = [json.loads(line) for line in (out_dir / f"{name}.jsonl").read_text().splitlines()]
    accepted: dict[str, list[QAPair]] = {}
    for row in rows:
        paras = by_doc[row["doc"]]
        shown = [p for p in paras if any(s <= p.char_start and p.char_end <= e for s, e in row["windows"])]
        done = accepted.setdefault(row["doc"], [])
        verdict = validate_output(
            row["raw"],
            windows_of(shown),
            earlier=done,
            long_range=row["long_range"],
            instructions=INSTRUCTION_TEXTS,
            config=vcfg,
        )
        if verdict.ok:
            done.append(verdict.to_pair(f"{row['doc']}:{row['step']}", row["step"]))
        row.update(
            ok=verdict.ok,
            reason=verdict.reason,
            detail=verdict.detail,
            question=verdict.question,
            answer=verdict.answer,
            kind=verdict.kind,
            support=verdict.support,
            spans=[[sp.char_start, sp.char_end, sp.score] for sp in verdict.spans],
        )
    with (out_dir / f"{name}.jsonl").open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    ok = [r for r in rows if r["ok"]]
    return {
        "model": name,
        "attempts": len(rows),
        "accepted": len(ok),
        "accepted_share": round(len(ok) / len(rows), 3) if rows else 0.0,
        "rejections": dict(Counter(r["reason"] for r in rows if not r["ok"]).most_common()),
        "kinds": dict(Counter(r["kind"] for r in ok).most_common()),
        "cpu_s_per_attempt": round(sum(r["cpu_s"] for r in rows) / max(1, len(rows)), 1),
        "cpu_s_per_accepted": round(sum(r["cpu_s"] for r in rows) / max(1, len(ok)), 1),
        "wall_s_per_accepted": round(sum(r["wall_s"] for r in rows) / max(1, len(ok)), 1),
    }


def reading_sheet(out_dir: Path, names: list[str], masks) -> None:
    """Markdown: each accepted pair with every quote highlighted in the chunk text around it."""
    texts = {doc.source: text for doc, text, _, _ in masks}
    lines = ["# Accepted pairs next to their evidence\n"]
    for name in names:
        lines.append(f"\n## {name}\n")
        for line in (out_dir / f"{name}.jsonl").read_text().splitlines():
            row = json.loads(line)
            if not row["ok"]:
                continue
            text = texts[row["doc"]]
            lines.append(f"\n### {row['doc']} step {row['step']} ({row['kind']}, long_range={row['long_range']})\n")
            lines.append(f"**Q:** {row['question']}\n\n**A:** {row['answer']}\n")
            for start, end, score in row["spans"]:
                before = text[max(0, start - 300) : start].replace("\n", " ⏎ ")
                after = text[end : end + 300].replace("\n", " ⏎ ")
                quote = text[start:end].replace("\n", " ⏎ ")
                lines.append(f"\n> …{before} **⟦{quote}⟧** {after}… (score {score:.0f}, chars {start}-{end})\n")
    (out_dir / "reading_sheet.md").write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model", action="append", required=True, help="NAME=PRESET or NAME=PATH.gguf (NAME alone: the default)"
    )
    ap.add_argument("--docs", nargs="+", default=list(DEFAULT_DOCS))
    ap.add_argument("--steps", type=int, default=5, help="masks per document")
    ap.add_argument("--first-step", type=int, default=0, help="first mask (step) of each document")
    ap.add_argument("--chunk-chars", type=int, default=200_000, help="~50k tokens: a chunk-sized slice")
    ap.add_argument("--min-context", type=int, default=1024)
    ap.add_argument("--max-context", type=int, default=1536)
    ap.add_argument("--min-windows", type=int, default=2)
    ap.add_argument("--max-windows", type=int, default=2)
    ap.add_argument("--long-range-share", type=float, default=0.2)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--max-question-chars", type=int, default=200)
    ap.add_argument("--max-answer-chars", type=int, default=300)
    ap.add_argument("--max-quote-chars", type=int, default=200)
    ap.add_argument("--temperature", type=float, default=0.3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("data/bench/qa_quality"))
    ap.add_argument("--quote-enum", action="store_true", help="evidence items constrained to the shown sentences")
    ap.add_argument("--revalidate", action="store_true", help="re-judge stored outputs with the current checks")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    masks = fixed_masks(load_chunks(args.docs, args.chunk_chars), args.steps, args)
    if args.revalidate:
        names = [spec.partition("=")[0] for spec in args.model]
        for name in names:
            print(json.dumps(revalidate(name, masks, args, args.out), indent=2))
        reading_sheet(args.out, names, masks)
        return
    summaries = []
    names = []
    for spec in args.model:
        name, _, path = spec.partition("=")
        names.append(name)
        summaries.append(run_model(name, path or None, masks, args, args.out))
        print(json.dumps(summaries[-1], indent=2), flush=True)
    (args.out / "summary.json").write_text(
        json.dumps({"args": vars(args) | {"out": str(args.out)}, "models": summaries}, indent=2)
    )
    reading_sheet(args.out, names, masks)
    print(f"wrote {args.out}/summary.json, per-model JSONL and reading_sheet.md")


if __name__ == "__main__":
    main()
