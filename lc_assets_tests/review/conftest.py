"""A small real lineage file with everything the report and the review read.

Two chunks of numbered paragraphs (one paragraph carries HTML-like text), accepted pairs whose prompts
showed two windows (`shown_spans`) and whose evidence (`qa_evidence`) lies inside them, failed steps and
rejected attempts with raw outputs. Tables the generation step adds (`qa_evidence`, `rejected_attempts`,
`qa_pairs.kind`) are created here with their DDL when the schema does not have them yet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from lc_assets.lib.generation.masking import split_paragraphs
from lc_assets.lib.lineage import LineageStore, insert_rows

GEN = "gen-review"
RUN = "run-gen-1"

NASTY = "The keeper wrote <script>alert('x')</script> & \"notes\" in the log at night."


def paragraphs(tag: str, n: int = 14) -> list[str]:
    out = []
    for i in range(n):
        if i == 3:
            out.append(NASTY)
        else:
            out.append(f"Paragraph {i} of {tag} says the harbour held {10 + i} ships in {1880 + i}. It was calm.")
    return out


@dataclass
class ReviewLineage:
    store: LineageStore
    chunk_texts: dict[str, str]
    pair_ids: list[str]
    quotes: dict[str, list[tuple[int, int, str]]]  # pair -> (start, end, text)
    rejected_ids: list[str]
    extra: dict[str, str] = field(default_factory=dict)


def build_lineage(store: LineageStore, with_evidence: bool = True) -> ReviewLineage:
    """Two sections' steps; without evidence: pairs with no kind, no evidence spans, no rejected attempts."""
    docs, chunks, sections, prompts, pairs, evidence, failed, rejected = [], [], [], [], [], [], [], []
    chunk_texts: dict[str, str] = {}
    quotes: dict[str, list[tuple[int, int, str]]] = {}
    pair_ids: list[str] = []
    for s, tag in enumerate(("alpha", "beta")):
        paras = paragraphs(tag)
        text = "\n\n".join(paras)
        pieces = split_paragraphs(text, lambda xs: [len(x) // 4 for x in xs], 10_000)  # as generation splits
        assert [p.text for p in pieces] == paras
        starts = [p.char_start for p in pieces]
        cid, sid, did = f"chunk-{tag}", f"sec-{tag}", f"doc-{tag}"
        chunk_texts[cid] = text
        docs.append(dict(document_id=did, source=f"{tag}.txt", title=f"The {tag} book", license="CC0",
                         byte_size=len(text), n_tokens=len(text) // 4, tokenizer="t", text=text, run_id="r0",
                         config_hash="c"))  # fmt: skip
        chunks.append(dict(chunk_id=cid, document_id=did, config_hash="k", shard="test", chunk_index=s,
                           char_start=0, char_end=len(text), token_start=0, token_end=1, n_tokens=len(text) // 4,
                           cut_kind="end", tokenizer="t", text=text, run_id="r0"))  # fmt: skip
        n_steps = 6
        sections.append(dict(section_id=sid, chunk_id=cid, document_id=did, shard="test", config_hash=GEN,
                             chunk_tokens=len(text) // 4, target_tokens=1, section_tokens=len(text) // 4 + 200,
                             n_pairs=n_steps - 2, steps=n_steps, failed_steps=2, finish_reason="target_reached",
                             model="m", backend="b", run_id=RUN, n_paragraphs=len(paras)))  # fmt: skip
        for step in range(n_steps):
            prompt_id = f"{sid}:{step}"
            shown = [step, step + 1, step + 7]  # two windows: paragraphs step..step+1, and step+7
            spans = [dict(paragraph_index=i, char_start=starts[i], char_end=starts[i] + len(paras[i])) for i in shown]
            ok = step < n_steps - 2
            record = {"attempt_errors": ["invalid_json: x"] if step == 1 else [], "total_completion_tokens": 40}
            prompts.append(dict(prompt_id=prompt_id, section_id=sid, step=step, status="ok" if ok else "failed",
                                prompt_hash="h", paragraph_ids=[pieces[i].paragraph_id for i in shown],
                                earlier_pair_ids=[], budget_tokens=1, context_tokens=1, prompt_tokens=1,
                                config_hash=GEN, record=json.dumps(record), run_id=RUN,
                                shown_spans=spans))  # fmt: skip
            if ok:
                pid = f"{sid}:{step}:pair"
                pair_ids.append(pid)
                q_para = step + 1
                first = paras[q_para].split(". ")[0]  # "Paragraph k of tag says ... in 18xx"
                a = starts[q_para]
                pair_quotes = [(a, a + len(first), first)]
                far = starts[step + 7]
                second = paras[step + 7][:30]
                pair_quotes.append((far, far + len(second), second))
                quotes[pid] = pair_quotes
                question = f"How many ships did the harbour hold in {1880 + q_para} ({tag})?"
                if step == 2:
                    question = "What did the keeper write <b>in the log</b> & why?"  # escaped in the report
                pairs.append(dict(pair_id=pid, section_id=sid, step=step, prompt_id=prompt_id, question=question,
                                  answer=f"{10 + q_para} ships.", model="m", backend="b", prompt_tokens=1,
                                  completion_tokens=40, attempts=1, seconds=0.1, config_hash=GEN, run_id=RUN,
                                  kind="numeric" if step != 2 else "what"))  # fmt: skip
                for k, (qs, qe, qt) in enumerate(pair_quotes):
                    evidence.append(dict(pair_id=pid, section_id=sid, chunk_id=cid, quote_index=k, char_start=qs,
                                         char_end=qe, quote=qt, origin="completed" if k == 1 and step == 0 else "model",
                                         score=92.0 if k == 1 and step == 3 else 100.0, window_index=k,
                                         run_id=RUN, config_hash=GEN))  # fmt: skip
            else:
                raw = json.dumps({"evidence": [paras[step][:25], "words nowhere in the text"],
                                  "question": "Is this <grounded>?", "answer": "Yes."})  # fmt: skip
                failed.append(dict(prompt_id=prompt_id, section_id=sid, step=step,
                                   reason="evidence_not_found: quote 1 not in the shown text", raw_text=raw,
                                   attempts=2, model="m", backend="b", config_hash=GEN, run_id=RUN))  # fmt: skip
                # the final attempt (1) is the failed step's own output; attempt 0 was rejected before it
                rejected.append(dict(prompt_id=prompt_id, section_id=sid, attempt=1, code="evidence_not_found",
                                     detail="quote 1 not in the shown text", raw_text=raw, run_id=RUN,
                                     config_hash=GEN))  # fmt: skip
                rejected.append(dict(prompt_id=prompt_id, section_id=sid, attempt=0, code="invalid_json", detail="no object",
                                     raw_text="not json {", run_id=RUN, config_hash=GEN))  # fmt: skip
    with store.transaction() as con:
        insert_rows(con, "documents", docs)
        insert_rows(con, "chunks", chunks)
        insert_rows(con, "sections", sections)
        insert_rows(con, "generation_configs", [dict(config_hash=GEN, config=json.dumps(
            {"skip_marker": "[...]", "generator": {"backend": "local", "model": "test-model"},
             "prompt_version": "pv1"}), run_id=RUN)])  # fmt: skip
        insert_rows(con, "masked_prompts", prompts)
        if with_evidence:
            insert_rows(con, "qa_pairs", pairs)
            insert_rows(con, "qa_evidence", evidence)
            insert_rows(con, "rejected_attempts", rejected)
        else:
            insert_rows(con, "qa_pairs", [{k: v for k, v in p.items() if k != "kind"} for p in pairs])
        insert_rows(con, "failed_steps", failed)
    rejected_ids = sorted(
        {f"{r['prompt_id']}#{r['attempt']}" for r in rejected} | {f"{f['prompt_id']}#1" for f in failed}
    )
    return ReviewLineage(store, chunk_texts, pair_ids, quotes, rejected_ids)


@pytest.fixture
def lineage(tmp_path) -> ReviewLineage:
    return build_lineage(LineageStore(tmp_path / "lineage.duckdb"))
