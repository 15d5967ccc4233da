"""Orchestration ceiling: how many generation steps per second one process can drive, engine time excluded.

The production path — lineage catalog with real chunks (embedded corpus), the real Llama-3 tokenizer
for every count, lazy admission, the prompt guard, judging, and the DuckDB lineage (per-run file,
group commits, merge into the catalog) — against a backend double that answers every request at
once with a valid, grounded pair of ~150 output tokens: evidence picked from the step's schema (the
shown sentences, the longest of a few), an answer made of the quotes' words (up to the answer bound), so evidence validation runs its whole accepting
path. The same run with the in-memory sink instead of DuckDB is the baseline: their ratio is what
lineage costs. ``--baseline`` adds the orchestrator as it was before evidence validation (schema-only
judging, free quotes) with DuckDB lineage: their ratio is what validation costs.

    python benchmarks/orchestration_ceiling.py                      # 1,000 sections, 3 repeats
    python benchmarks/orchestration_ceiling.py --sections 250 --repeats 1 --baseline

Each run: start (merge pending run files, list the sections to grow) -> first request -> stop after
--steps steps (graceful stop: in-flight requests finish, everything is committed and merged).
Steps/s is measured from the first request to the end of the run, so the admission ramp (sections
prepared while the loop already runs) and the final commit + merge are inside it. The last line:

    duckdb_steps_per_s=<x> memory_steps_per_s=<y> ratio=<x/y> first_request_s=<t> sections=<n>
    [baseline_steps_per_s=<b> validated_vs_baseline=<x/b>]

(medians over --repeats; first_request_s is the DuckDB runs' median). Per run, CPU per step: ``cpu_ms_per_step``
(the process and its judge workers), ``parent_cpu_ms_per_step`` (the process: the loop, lineage writer and
admission threads share one interpreter lock), its threads (``phase_ms_per_step.loop_thread_cpu``,
``writer_commit_cpu_ms_per_step``, ``phase_ms_per_step.prepare_sections_cpu (admission thread)``) and
``parent_other_threads_cpu_ms_per_step`` (the tokenizer's threads counting paragraphs at admission, DuckDB's own
threads, the merge). The pipeline: ``attempts_per_step`` (requests, and so judged outputs, per step: a refused output
is retried), ``phase_ms_per_step.judge_wait_wall`` (the loop idle for want of verdicts) and
``phase_ms_per_step.judge_workers_idle_wall`` (the judge workers idle for want of tasks).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lineage_fixture import SHARD, seeded_catalog  # noqa: E402

from lc_assets.lib.corpus.lineage import latest_chunk_config  # noqa: E402
from lc_assets.lib.generation import scheduler as scheduler_module  # noqa: E402
from lc_assets.lib.generation.backend import GenerationBackend, GenerationRequest, GenerationResult  # noqa: E402
from lc_assets.lib.generation.config import GenerationConfig, GeneratorIdentity  # noqa: E402
from lc_assets.lib.generation.judging import StepContext, Verdict  # noqa: E402
from lc_assets.lib.generation.prompts import parse_qa_output  # noqa: E402
from lc_assets.lib.generation.records import GenerationSummary, MemorySink  # noqa: E402
from lc_assets.lib.generation.run import grow_sections  # noqa: E402
from lc_assets.lib.generation.scheduler import GenerationScheduler  # noqa: E402
from lc_assets.lib.lineage.catalog import merge_pending  # noqa: E402
from lc_assets.lib.lineage.generation import iter_section_tasks, sections_to_grow  # noqa: E402
from lc_assets.lib.sections import QAPair  # noqa: E402
from lc_assets.lib.tokenizer import TextTokenizer, load_tokenizer  # noqa: E402

_PLAIN_WORD = re.compile(r"[A-Za-z]{4,}")
_WORDS = ("section", "chunk", "paragraph", "answer", "token", "model", "engine", "request", "lineage", "commit")


def instant_output(request: GenerationRequest, n: int) -> str:
    """A valid, grounded output as a grammar-constrained model would write it: evidence picked from the
    schema's choices (the shown sentences; one per window on a long-range step), an answer made of the
    quotes' words, a question unique per request naming its subject (so validation runs its whole accepting path;
    ~89% of outputs are accepted, the rest retried)."""
    evidence = (request.json_schema or {})["properties"]["evidence"]
    if "prefixItems" not in evidence and "enum" not in evidence["items"]:  # the baseline: nothing checks quotes
        answer = " ".join(f"{_WORDS[(n + i) % 10]}{(n * 7 + i) % 997}" for i in range(55))
        return json.dumps(
            {"evidence": [], "question": f"What does request {n} of {request.request_id} say?", "answer": answer}
        )
    if "prefixItems" in evidence:  # long-range: one quote per window
        quotes = [item["enum"][(n * 7 + i) % len(item["enum"])] for i, item in enumerate(evidence["prefixItems"])]
        handful = []
    else:  # the longest few of a rotating handful of shown sentences, as many as the schema allows
        choices = evidence["items"]["enum"]
        start = n * 7 % len(choices)
        handful = [choices[(start + i) % len(choices)] for i in range(min(8, len(choices)))]
        quotes = sorted(handful, key=len, reverse=True)[: evidence.get("maxItems", 1)]
    # an answer of ~150 tokens (a model's usual length): the quotes' words, then shown sentences of their own
    # (validation completes a sentence the quotes do not support from the shown text), up to the answer bound
    max_answer = request.json_schema["properties"]["answer"].get("maxLength", 600) - 1
    answer = " and ".join(q.rstrip(".,;:") for q in quotes).rstrip(".,;: ") + "."
    for extra in [c for c in handful if c not in quotes][:2]:
        if len(answer) + 1 + len(extra) > max_answer or not extra.rstrip().endswith("."):
            break
        answer += " " + extra.strip()
    if len(answer) > max_answer:
        answer = answer[:max_answer].rsplit(" ", 1)[0].rstrip(".,;: ") + "."
    tag = hashlib.sha1(f"{request.request_id}".encode()).hexdigest()
    # the question names its subject, as a model's does: the longest word of each sentence the answer uses (a
    # question sharing no word with the sentences that complete the answer is refused as off-topic evidence)
    used = [*quotes, *[c for c in handful if c.strip() in answer and c not in quotes]]
    subject = list(dict.fromkeys(max(_PLAIN_WORD.findall(s) or ["text"], key=len).lower() for s in used))
    about = ", ".join(subject[:-1]) + " and " + subject[-1] if len(subject) > 1 else subject[0]
    question = f"What is recorded about {about} as item {tag[:4]} {tag[4:8]} {tag[8:12]}?"
    return json.dumps({"evidence": quotes, "question": question, "answer": answer})


def schema_only_judge(context: StepContext, result: GenerationResult) -> Verdict:
    """The judging before evidence validation was wired (JSON, fields, lengths, exact duplicates): the baseline
    of ``--baseline``."""
    cfg = context.config
    if result.error is not None:
        return Verdict(None, f"backend_error: {result.error}")
    parsed = parse_qa_output(result.text, cfg.max_question_chars, cfg.max_answer_chars)
    if not parsed.ok or parsed.question is None or parsed.answer is None:
        return Verdict(None, parsed.reason)
    return Verdict(QAPair(f"{context.section_id}:{context.step}", context.step, parsed.question, parsed.answer), None)


ORIGINAL_JUDGE = scheduler_module.judge_output


class InstantBackend(GenerationBackend):
    """Answers every request at once with a valid, unique pair; counts with the real tokenizer, as vLLM
    does in-process (exact prompt counts through the chat template, batched text counts)."""

    name = "instant"
    model = "instant-double"

    def __init__(
        self,
        tokenizer: TextTokenizer,
        in_flight: int,
        stop_after: int,
        stop: threading.Event,
        count_paragraphs: bool = False,
    ) -> None:
        self.tokenizer = tokenizer
        self.count_paragraphs = count_paragraphs
        self.in_flight = in_flight
        self.stop_after = stop_after
        self.stop = stop
        self.submitted = 0
        self.first_submit: float | None = None
        self.done: list[GenerationResult] = []

    @property
    def context_window(self) -> int:
        return 16384

    @property
    def max_in_flight(self) -> int:
        return self.in_flight

    def count_prompt_tokens(self, messages: Sequence[dict[str, str]]) -> int:
        return self.tokenizer.count(self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True))

    def count_text_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.tokenizer.count_batch(list(texts))

    @property
    def counting_fingerprint(self) -> str | None:
        # as vLLM serving a Llama-3 model reports it; None with --count-paragraphs (the generator counts them)
        return None if self.count_paragraphs else self.tokenizer.counting_fingerprint

    def submit(self, request: GenerationRequest) -> None:
        if self.first_submit is None:
            self.first_submit = time.monotonic()
        self.submitted += 1
        if self.submitted >= self.stop_after:
            self.stop.set()
        text = instant_output(request, self.submitted)
        self.done.append(GenerationResult(request.request_id, text, 3000, 150, "stop", 0.0))

    def wait(self, timeout: float | None = None) -> list[GenerationResult]:
        out, self.done = self.done, []
        return out


class RssSampler:
    """Peak resident memory of this process while a run goes (sampled every 20 ms)."""

    def __init__(self) -> None:
        self.start_kib = 0
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def rss_kib() -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_kib = max(self.peak_kib, self.rss_kib())

    def __enter__(self) -> RssSampler:
        self.start_kib = self.peak_kib = self.rss_kib()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def one_run(variant: str, args: argparse.Namespace, tok: TextTokenizer, cache: Path, workdir: Path) -> dict[str, float]:
    """One run; ``variant``: duckdb | memory (validated, evidence choices) | baseline (DuckDB, schema-only judging,
    free quotes: the orchestrator before evidence validation was wired)."""
    baseline = variant == "baseline"
    sink = "memory" if variant == "memory" else "duckdb"
    scheduler_module.judge_output = schema_only_judge if baseline else ORIGINAL_JUDGE  # type: ignore[assignment]
    catalog = seeded_catalog(workdir / f"catalog-{variant}.duckdb", args.sections, cache)
    config = GenerationConfig(
        evidence_choices=not baseline,
        target_ratio=args.target_ratio,
        max_in_flight=args.in_flight,
        commit_every_steps=args.commit_every,
        commit_every_ms=args.commit_every_ms,
        judge_workers=0 if baseline else args.judge_workers,  # the baseline's judge is patched in this process
        generator=GeneratorIdentity(backend="instant", model="instant-double"),
    )
    stop = threading.Event()
    backend = InstantBackend(tok, args.in_flight, args.steps, stop, args.count_paragraphs)
    # a real backend loads its tokenizer when it is built, before the run starts (vLLM: with the engine)
    backend.count_prompt_tokens([{"role": "user", "content": "warm-up"}])
    cpu0 = time.process_time()
    with RssSampler() as rss:
        t0 = time.monotonic()
        merge_pending(catalog, "bench")
        chunk_hash = latest_chunk_config(catalog, SHARD)
        assert chunk_hash is not None
        todo, _ = sections_to_grow(catalog, SHARD, chunk_hash, config.config_hash())
        if sink == "duckdb":
            result = grow_sections(catalog, todo, backend, config, tok, f"bench-{time.time_ns()}", stop=stop)
            summary: GenerationSummary = result.summary
            merge_s = result.merge_seconds
            commit_s, commit_cpu, groups = (
                result.writer.commit_seconds,
                result.writer.commit_cpu_seconds,
                result.writer.groups,
            )
        else:
            summary = GenerationScheduler(backend, config, MemorySink(), tok).run(
                iter_section_tasks(catalog, todo), stop=stop, total=len(todo)
            )
            commit_s, commit_cpu, groups, merge_s = 0.0, 0.0, 0, 0.0
        end = time.monotonic()
    # the judge workers' CPU counts too: the ceiling is what the whole orchestrator costs per step
    cpu = time.process_time() - cpu0 + summary.phase_seconds.get("judge_workers_cpu", 0.0)
    steps = summary.steps_ok + summary.steps_failed
    assert backend.first_submit is not None
    out = {
        "steps": steps,
        "steps_per_s": steps / (end - backend.first_submit),
        "first_request_s": backend.first_submit - t0,
        "sections_admitted": len(summary.sections),
        "sections_stored_counts": summary.sections_stored_counts,
        "sections_at_target": sum(r.finish_reason == "target_reached" for r in summary.sections),
        "steps_failed": summary.steps_failed,
        # requests (and so judged outputs) per step: a refused output is retried, so this multiplies the engine's
        # and the judge's work per step (~1.1 with the double's pairs; 1.8 while its questions named no subject and
        # the off-topic-evidence check refused ~40% of them)
        "attempts_per_step": backend.submitted / steps,
        # what a pair adds to its section in target tokens (question + answer + chat template)
        "tokens_per_pair": sum(r.section_tokens - r.chunk_tokens for r in summary.sections)
        / max(1, sum(r.n_pairs for r in summary.sections)),
        "cpu_ms_per_step": 1000 * cpu / steps,
        "cores_used": cpu / (end - t0),  # what the process got of the (shared) machine
        "steps_per_cpu_s": steps / cpu,
        "writer_commit_ms_per_step": 1000 * commit_s / steps,
        "writer_commit_cpu_ms_per_step": 1000 * commit_cpu / steps,
        "group_commits": groups,
        "merge_into_catalog_s": merge_s,
        "peak_rss_mib": rss.peak_kib / 1024,
        "rss_growth_mib": (rss.peak_kib - rss.start_kib) / 1024,  # over the process before the run
    }
    for phase, seconds in sorted(summary.phase_seconds.items()):
        out[f"phase_ms_per_step.{phase}"] = 1000 * seconds / steps
    # the generation process without its judge workers, and what of it is not the loop, writer or admission
    # thread: the backend's batched counts on the tokenizer's threads (at admission), DuckDB's own threads, the merge
    phases = summary.phase_seconds
    parent = cpu - phases.get("judge_workers_cpu", 0.0)
    out["parent_cpu_ms_per_step"] = 1000 * parent / steps
    out["parent_other_threads_cpu_ms_per_step"] = (
        1000
        * (
            parent
            - phases.get("loop_thread_cpu", 0.0)
            - commit_cpu
            - phases.get("prepare_sections_cpu (admission thread)", 0.0)
        )
        / steps
    )
    catalog.path.unlink(missing_ok=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=20_000, help="steps per run (then a graceful stop)")
    ap.add_argument(
        "--in-flight",
        type=int,
        default=32,
        help="sections in flight; with --steps 20000 about one section is admitted per ~180 steps, near production's "
        "one per ~250 (sections at target ratio 1.3 of 85-110k-token chunks)",
    )
    ap.add_argument("--target-ratio", type=float, default=1.3, help="section target (the production default)")
    ap.add_argument("--commit-every", type=int, default=256)
    ap.add_argument("--commit-every-ms", type=float, default=500.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--judge-workers", type=int, default=1, help="judge processes beside the loop (0: in the loop)")
    ap.add_argument("--switch-interval-ms", type=float, default=None, help="sys.setswitchinterval (GIL hand-over)")
    ap.add_argument(
        "--count-paragraphs",
        action="store_true",
        help="admission counts every chunk's paragraphs with the generator's tokenizer, as before the counts "
        "stored at chunking were used (a generator whose tokenizer is not the target's)",
    )
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "lc_assets_bench"))
    ap.add_argument(
        "--baseline",
        action="store_true",
        help="also run the orchestrator as it was before evidence validation (schema-only judging, free quotes) "
        "with DuckDB lineage: validated_vs_baseline is the cost of validation in the same process",
    )
    args = ap.parse_args()

    if args.switch_interval_ms is not None:
        sys.setswitchinterval(args.switch_interval_ms / 1000)
    tok = load_tokenizer()
    cache = Path(args.cache)
    variants = ["duckdb", "memory"] + (["baseline"] if args.baseline else [])
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for variant in variants if i % 2 == 0 else variants[::-1]:
                res = one_run(variant, args, tok, cache, Path(tmp))
                runs[variant].append(res)
                print(f"run {i + 1} {variant}: " + json.dumps({k: round(v, 3) for k, v in res.items()}), flush=True)

    def median(variant: str, key: str) -> float:
        return statistics.median(r.get(key, 0.0) for r in runs[variant])

    print(f"\nload average (1, 5, 15 min): {os.getloadavg()}")
    keys = sorted({k for rs in runs.values() for r in rs for k in r})
    print(f"{'median of ' + str(args.repeats):<52} " + " ".join(f"{v:>10}" for v in variants))
    for key in keys:
        print(f"{key:<52} " + " ".join(f"{median(v, key):>10.3f}" for v in variants))
    duck, mem = median("duckdb", "steps_per_s"), median("memory", "steps_per_s")
    line = (
        f"duckdb_steps_per_s={duck:.1f} memory_steps_per_s={mem:.1f} ratio={duck / mem:.3f} "
        f"first_request_s={median('duckdb', 'first_request_s'):.2f} sections={args.sections}"
    )
    if args.baseline:
        base = median("baseline", "steps_per_s")
        line += f" baseline_steps_per_s={base:.1f} validated_vs_baseline={duck / base:.3f}"
    print(line)


if __name__ == "__main__":
    main()
