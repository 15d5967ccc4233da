"""Benchmark: time to build RULER tasks vs. tokenizing the same output text once.

    python benchmarks/ruler_build.py                      # 13 tasks x 500 samples at 131072 (slow)
    python benchmarks/ruler_build.py --samples 20 --length 16384

The baseline is ``tokenizer.encode_batch`` over the built prompts (input + answer prefix), in
batches of the same size, in the same process. QA tasks run only with --squad/--hotpotqa sources.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from pathlib import Path

from lc_assets.lib.ruler import ALL_TASKS, RulerTaskBuilder
from lc_assets.lib.ruler.words import wonderwords_list
from lc_assets.lib.tokenizer import load_tokenizer


def synthetic_essay(num_sentences: int = 60_000, seed: int = 7) -> str:
    """Prose-like text from wonderwords (used when no --essay-file is given)."""
    rng = random.Random(seed)
    nouns, adjs, verbs = (wonderwords_list(f) for f in ("nounlist.txt", "adjectivelist.txt", "verblist.txt"))
    sentences = []
    for _ in range(num_sentences):
        words = [rng.choice(adjs), rng.choice(nouns), rng.choice(verbs), "the", rng.choice(nouns)]
        words += [rng.choice(nouns) for _ in range(rng.randint(0, 10))]
        sentences.append(" ".join(words).capitalize() + rng.choice([".", ".", "?", "!"]))
    return " ".join(sentences)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--length", type=int, default=131072)
    parser.add_argument("--tasks", default=",".join(ALL_TASKS))
    parser.add_argument("--tokenizer", default="llama3")
    parser.add_argument("--essay-file", type=Path, default=None)
    parser.add_argument("--squad", default=None, help="SQuAD v2 dev json or HF name")
    parser.add_argument("--hotpotqa", default=None, help="HotpotQA dev distractor json or HF name[:config]")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    tok = load_tokenizer(args.tokenizer)
    essay = args.essay_file.read_text(encoding="utf-8") if args.essay_file else synthetic_essay()
    builder = RulerTaskBuilder(
        tok, essay_text=essay, squad_source=args.squad, hotpotqa_source=args.hotpotqa, batch_size=args.batch_size
    )
    print(f"{'task':<16} {'n':>5} {'build s':>9} {'tokenize s':>10} {'ratio':>6} {'tokens/sample':>13} counts/sample")
    total_build = total_tok = 0.0
    total_tokens = built = 0
    for task in args.tasks.split(","):
        t0 = time.perf_counter()
        result = builder.build(task, args.length, args.samples)
        build_s = time.perf_counter() - t0
        if not result.ok:
            print(f"{task:<16} not run: {result.reason}")
            continue
        prompts = [s.prompt for s in result.samples]
        t0 = time.perf_counter()
        tokens = 0
        for b in range(0, len(prompts), args.batch_size):
            tokens += sum(len(ids) for ids in tok.encode_batch(prompts[b : b + args.batch_size]))
        tok_s = time.perf_counter() - t0
        assert tokens == sum(s.length for s in result.samples)
        n = len(result.samples)
        print(
            f"{task:<16} {n:>5} {build_s:>9.2f} {tok_s:>10.2f} {build_s / tok_s:>6.2f} {tokens / n:>13.0f} "
            f"{result.stats['exact_prompt_counts'] / n:.2f}"
        )
        total_build += build_s
        total_tok += tok_s
        total_tokens += tokens
        built += n
        del result, prompts
        gc.collect()
    if total_tok:
        print(
            f"TOTAL {built} samples at {args.length}: build {total_build:.1f}s, tokenize {total_tok:.1f}s, "
            f"ratio {total_build / total_tok:.2f}, {total_tokens / 1e6:.1f}M tokens"
        )


if __name__ == "__main__":
    main()
