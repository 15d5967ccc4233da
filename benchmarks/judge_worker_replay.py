"""Record what the loop sends a judge worker in one benchmark run, then replay it through the worker's loop in
this process: the judge worker's CPU per task for two versions of the code on the same work, and a digest of
every verdict (equal digests: the same verdicts, pair counts included).

    python benchmarks/judge_worker_replay.py record STREAM.pkl [--sections 250 --steps 6000]
    python benchmarks/judge_worker_replay.py replay STREAM.pkl [--repeats 3]

Run ``replay`` on one recorded stream with each version of the code (PYTHONPATH=<that checkout>), alternating:
figures under load move ±20% from run to run, the digest does not.
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import orchestration_ceiling  # noqa: E402 - the benchmark's classes are in the recorded tasks

from lc_assets.lib.generation import judge_pool  # noqa: E402
from lc_assets.lib.generation.config import GenerationConfig  # noqa: E402
from lc_assets.lib.generation.judging import judge_output  # noqa: E402
from lc_assets.lib.tokenizer import load_tokenizer  # noqa: E402


def record(path: Path, sections: int, steps: int) -> None:
    batches: list[bytes] = []
    send = judge_pool.JudgePool.send

    def recording_send(self: judge_pool.JudgePool) -> None:
        batches.extend(pickle.dumps(batch) for batch in self._batches.values())
        send(self)

    judge_pool.JudgePool.send = recording_send  # type: ignore[method-assign]
    args = argparse.Namespace(
        sections=sections, steps=steps, in_flight=32, target_ratio=1.3, commit_every=256, commit_every_ms=500.0,
        judge_workers=1, count_paragraphs=False, cache=str(Path(tempfile.gettempdir()) / "lc_assets_bench"),
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        orchestration_ceiling.one_run("memory", args, load_tokenizer(), Path(args.cache), Path(tmp))
    path.write_bytes(pickle.dumps(batches))
    print(f"{len(batches)} batches, {sum(map(len, batches)) / 1e6:.1f} MB -> {path}")


def replay(path: Path, repeats: int) -> None:
    """The worker's loop (judge_pool._worker) over the recorded batches, unpickling included."""
    stream: list[bytes] = pickle.loads(path.read_bytes())
    tokenizer = load_tokenizer()
    config = GenerationConfig(evidence_choices=True)
    for rep in range(repeats):
        digest = hashlib.sha256()
        sections: dict[str, judge_pool._Section] = {}
        tasks = judge_s = count_s = 0.0
        start = time.process_time()
        for blob in stream:
            for entry in pickle.loads(blob):
                if isinstance(entry, str):
                    sections.pop(entry, None)
                    continue
                if isinstance(entry, judge_pool._OpenSection):
                    sections[entry.section_id] = judge_pool._Section(entry.paragraphs)
                    continue
                context = sections[entry.context.section_id].context(entry, config)
                t0 = time.process_time()
                verdict = judge_output(context, entry.result)
                t1 = time.process_time()
                if verdict.pair is not None:
                    q, a = tokenizer.count_batch([verdict.pair.question, verdict.pair.answer])
                    verdict = replace(verdict, pair_counts=(q, a))
                judge_s += t1 - t0
                count_s += time.process_time() - t1
                tasks += 1
                digest.update(repr((entry.key, verdict)).encode())
        total = time.process_time() - start
        print(
            f"repeat {rep + 1}: {tasks:.0f} tasks, CPU per task {1000 * total / tasks:.3f} ms (judging "
            f"{1000 * judge_s / tasks:.3f}, pair counts {1000 * count_s / tasks:.3f}), verdicts {digest.hexdigest()[:16]}",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["record", "replay"])
    ap.add_argument("stream", type=Path)
    ap.add_argument("--sections", type=int, default=250)
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    if args.mode == "record":
        record(args.stream, args.sections, args.steps)
    else:
        replay(args.stream, args.repeats)


if __name__ == "__main__":
    main()
