"""How long a judge task takes to reach a worker process while the loop thread is busy: a ``multiprocessing.Queue``
(its feeder thread must win the interpreter lock from the busy threads) against the judge pool's task pipe (written
by the sending thread itself).

    python benchmarks/judge_pipe_latency.py [--messages 2000] [--repeats 2]

The sender works as the generation loop does: it sends a message, then computes in Python for ``--busy-ms``
(recording, building the next prompt) while a second thread computes in bursts (the lineage writer). The worker
records arrival minus send time (one monotonic clock for both processes). Prints median, 90th percentile and mean
per transport, alternating.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from lc_assets.lib.generation.judge_pool import _TaskPipe


def _receiver(source: Any, out: Connection) -> None:
    delays = []
    while True:
        sent = source.recv() if isinstance(source, Connection) else source.get()
        if sent is None:
            break
        delays.append(time.monotonic() - sent)
    out.send(delays)


def _busy(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def one(transport: str, messages: int, busy_s: float) -> list[float]:
    ctx = multiprocessing.get_context("spawn")
    results, results_w = ctx.Pipe(duplex=False)
    if transport == "queue":
        queue = ctx.Queue()
        proc = ctx.Process(target=_receiver, args=(queue, results_w))
        proc.start()

        def put(message: float | None) -> None:
            queue.put(message)
    else:
        reader, writer = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_receiver, args=(reader, results_w))
        proc.start()
        reader.close()
        pipe = _TaskPipe(writer)

        def put(message: float | None) -> None:
            pipe.put(message)
            pipe.flush()

    stop = threading.Event()

    def writer_thread() -> None:  # bursts of Python work, as the lineage writer's row conversion
        while not stop.is_set():
            _busy(0.002)
            time.sleep(0.001)

    other = threading.Thread(target=writer_thread)
    other.start()
    time.sleep(3.0)  # the receiver has started (spawn imports this module)
    try:
        for _ in range(messages):
            put(time.monotonic())
            _busy(busy_s)
        put(None)
        if transport == "pipe":
            while pipe.pending:
                time.sleep(0.001)
                pipe.flush()
        delays = results.recv()
    finally:
        stop.set()
        other.join()
        proc.join()
    return sorted(delays)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--busy-ms", type=float, default=1.0, help="Python work of the sender between two messages")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    for _ in range(args.repeats):
        for transport in ("queue", "pipe"):
            d = one(transport, args.messages, args.busy_ms / 1000)
            print(
                f"{transport:>5}: median {1000 * statistics.median(d):.3f} ms, p90 {1000 * d[int(0.9 * len(d))]:.3f} "
                f"ms, mean {1000 * statistics.mean(d):.3f} ms",
                flush=True,
            )


if __name__ == "__main__":
    main()
