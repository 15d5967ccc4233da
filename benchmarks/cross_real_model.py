"""A handful of real cross-pair generations with the embedded local model, printed next to the windows shown.

One long document of the embedded corpus (--document, a title prefix; default the 1.5M-token Python
Standard Library reference), chunked by the chunks step's code; cross sections planned as the product plans them (defaults: chunks 250k-650k tokens apart), every
k-th one grown for --steps steps with Qwen2.5-Coder-1.5B-Instruct Q4_K_M (xllamacpp, `--threads`, one
slot). For a person to read: each step's two excerpts (one per chunk), the pair and its evidence, or
the rejection reasons.

    python benchmarks/cross_real_model.py --sections 5 --threads 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cross_distance import store_chunks  # noqa: E402

from lc_assets.lib.corpus.embedded import iter_embedded  # noqa: E402
from lc_assets.lib.generation.config import GenerationConfig, GeneratorIdentity  # noqa: E402
from lc_assets.lib.generation.cross import (  # noqa: E402
    CROSS_SEPARATOR,
    CrossGenerationConfig,
    CrossPairConfig,
    grow_cross_sections,
    plan_cross_sections,
)
from lc_assets.lib.generation.local_backend import LocalBackendConfig, LocalLlamaBackend  # noqa: E402
from lc_assets.lib.lineage import LineageStore  # noqa: E402
from lc_assets.lib.lineage.cross import shard_chunk_refs  # noqa: E402
from lc_assets.lib.tokenizer import load_tokenizer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sections", type=int, default=5)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--document", default="The Python Standard Library")
    ap.add_argument("--max-context", type=int, default=2048)
    args = ap.parse_args()
    tok = load_tokenizer()
    found = [d for d in iter_embedded(None) if getattr(d, "title", "") and d.title.startswith(args.document)]
    if not found:
        raise SystemExit(f"no embedded document titled {args.document!r}...")
    docs = [("doc0", found[0].text)]
    backend = LocalLlamaBackend(LocalBackendConfig(n_threads=args.threads, n_parallel=1, n_ctx_per_slot=4096))
    with tempfile.TemporaryDirectory() as tmp, backend:
        store = LineageStore(Path(tmp) / "lineage.duckdb")
        store_chunks(store, tok, docs)
        ident = GeneratorIdentity(backend="local", model=backend.model)
        base = GenerationConfig(min_context_tokens=1024, max_context_tokens=args.max_context, generator=ident)
        cfg = CrossGenerationConfig.of(base, CrossPairConfig(sections_per_chunk=1, steps_per_section=args.steps))
        plan = plan_cross_sections(shard_chunk_refs(store, "bench", "k"), cfg, "bench")
        chosen = plan[:: max(1, len(plan) // args.sections)][: args.sections]
        run = grow_cross_sections(store, chosen, backend, cfg, tok, "real", progress=lambda ev: print(ev, flush=True))
        assert run is not None
        texts = dict(store.query("SELECT chunk_id, text FROM chunks"))
        for d in chosen:
            joined = texts[d.first.chunk_id] + CROSS_SEPARATOR + texts[d.second.chunk_id]
            print("=" * 100)
            print(f"chunks {d.first.chunk_id} + {d.second.chunk_id}, {d.distance_tokens:,} tokens apart")
            for prompt_id, spans, status in store.query(
                "SELECT prompt_id, shown_spans, status FROM masked_prompts WHERE section_id = ? ORDER BY step",
                [d.section_id],
            ):
                shown = [joined[s["char_start"] : s["char_end"]] for s in spans]
                print(f"--- {prompt_id} ({status}); shown {len(shown)} paragraphs:")
                print(textwrap.indent("\n\n".join(shown)[:6000], "    | "))
                for q, a in store.query("SELECT question, answer FROM qa_pairs WHERE prompt_id = ?", [prompt_id]):
                    print(f"Q: {q}\nA: {a}")
                    for c, quote in store.query(
                        "SELECT e.chunk_id, quote FROM qa_evidence e JOIN qa_pairs q USING (pair_id) "
                        "WHERE q.prompt_id = ? ORDER BY quote_index",
                        [prompt_id],
                    ):
                        print(f"   evidence [{c}]: {quote}")
                for code, detail in store.query(
                    "SELECT code, detail FROM rejected_attempts WHERE prompt_id = ? ORDER BY attempt", [prompt_id]
                ):
                    print(f"   rejected: {code}: {detail[:300]}")
        print(f"\nsteps ok {run.summary.steps_ok}, failed {run.summary.steps_failed}, "
              f"rejections {run.summary.rejected_attempts}, {run.summary.elapsed_s:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
