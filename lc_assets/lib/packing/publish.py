"""Packing output that cannot be half-written or packed twice: a pool lock, temporary run folders, checks.

- `pool_lock`: one packing run per pool at a time (an exclusive `flock` on a file beside the
  outputs); a second run waits, then packs what the first left. The lineage transaction also
  refuses overlapping claims (`store.record_stage`), so even without a shared lock nothing is
  placed twice.
- Files are written to `<root>/<pool_key>/<stage>/.tmp-<run_id>/` and renamed to `<run_id>/` only
  after the DuckDB rows commit; `recover` publishes folders whose rows committed (a kill between
  commit and rename) and removes the others.
- `verify_written` re-reads the written dataset: exact length, fill, no section twice, labels on
  the loss spans only, and the text re-tokenizing to the stored ids.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lc_assets.lib.tokenizer import TextTokenizer

TMP_PREFIX = ".tmp-"


class PoolLockTimeout(TimeoutError):
    """Another packing run held the pool's lock for longer than the timeout."""


@contextlib.contextmanager
def pool_lock(
    root: Path, key: str, timeout_s: float = 3600.0, on_wait: Callable[[str], None] | None = None
) -> Iterator[Path]:
    """Hold the exclusive lock of pool `key` (waits, logging every 30 s through `on_wait`)."""
    lock_dir = Path(root) / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / f"{key}.lock"
    with open(path, "a+") as fh:
        start = next_log = time.monotonic()
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                now = time.monotonic()
                if now - start > timeout_s:
                    raise PoolLockTimeout(
                        f"packing pool {key} is locked by another run for more than {timeout_s:.0f} s ({path})"
                    ) from None
                if on_wait and now >= next_log:
                    on_wait(f"waiting for another packing run of pool {key} to finish ({path})")
                    next_log = now + 30
                time.sleep(0.2)
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()}\n")
            fh.flush()
            yield path
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def stage_dirs(root: Path, key: str, sample_tokens: int, run_id: str) -> tuple[Path, Path]:
    """(temporary, published) folder of one run's stage."""
    stage = Path(root) / key / str(sample_tokens)
    return stage / f"{TMP_PREFIX}{run_id}", stage / run_id


def publish(tmp: Path, final: Path) -> Path:
    """Rename the finished temporary folder to its published name (atomic on one filesystem)."""
    if final.exists():
        raise FileExistsError(f"packed output {final} exists already; not overwriting it")
    os.replace(tmp, final)
    return final


def recover(root: Path, committed: set[str], key: str = "*") -> dict[str, list[str]]:
    """Publish temporary folders of pool `key` whose run committed its rows; delete the others.

    Call it holding the pool's lock: then no run of that pool is writing a temporary folder.
    """
    done: dict[str, list[str]] = {"published": [], "removed": []}
    for tmp in sorted(Path(root).glob(f"{key}/*/{TMP_PREFIX}*")):
        run_id = tmp.name[len(TMP_PREFIX) :]
        final = tmp.parent / run_id
        if run_id in committed and not final.exists():
            os.replace(tmp, final)
            done["published"].append(str(final))
        else:
            shutil.rmtree(tmp, ignore_errors=True)
            done["removed"].append(str(tmp))
    return done


@dataclass
class VerifyReport:
    """What re-reading a written dataset found; `ok` only if every list is empty."""

    n_samples: int = 0
    wrong_length: list[str] = field(default_factory=list)
    low_fill: list[str] = field(default_factory=list)
    reused_sections: list[str] = field(default_factory=list)
    tokenization_mismatch: list[str] = field(default_factory=list)
    label_mismatch: list[str] = field(default_factory=list)
    fill_mean: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            not (self.wrong_length or self.low_fill or self.reused_sections or self.tokenization_mismatch)
            and not self.label_mismatch
        )

    def as_metadata(self) -> dict[str, object]:
        return {
            "samples_read_back": self.n_samples,
            "fill_mean": round(self.fill_mean, 6),
            "wrong_length": self.wrong_length[:10],
            "low_fill": self.low_fill[:10],
            "reused_sections": self.reused_sections[:10],
            "tokenization_mismatch": self.tokenization_mismatch[:10],
            "label_mismatch": self.label_mismatch[:10],
        }


def verify_written(dataset_dir: Path, tokenizer: TextTokenizer, sample_tokens: int, min_fill: float) -> VerifyReport:
    """Re-read a `save_to_disk` dataset and check every sample (see the module docstring)."""
    from datasets import load_from_disk

    from lc_assets.lib.packing.packer import base_section_id

    ds = load_from_disk(str(dataset_dir))
    report = VerifyReport(n_samples=len(ds))
    seen: dict[str, str] = {}
    fills = []
    for row in ds:
        sid = row["sample_id"]
        ids = row.get("input_ids")
        n = len(ids) if ids is not None else row["num_tokens"]
        if n != sample_tokens or row["num_tokens"] != sample_tokens:
            report.wrong_length.append(sid)
        fills.append(row["num_real_tokens"] / sample_tokens)
        if fills[-1] < min_fill:
            report.low_fill.append(sid)
        for item in row["section_ids"]:
            # split parts of one section may sit in two samples; the same part never
            if item in seen:
                report.reused_sections.append(base_section_id(item))
            seen[item] = sid
        if ids is not None and row.get("text") is not None:
            if tokenizer.encode(row["text"]) != list(ids[: row["num_real_tokens"]]):
                report.tokenization_mismatch.append(sid)
        if ids is not None and row.get("labels") is not None:
            expected = np.full(len(ids), -100, dtype=np.int64)
            arr = np.asarray(ids, dtype=np.int64)
            for a, b in row["loss_spans"]:
                expected[a:b] = arr[a:b]
            if not np.array_equal(expected, np.asarray(row["labels"], dtype=np.int64)):
                report.label_mismatch.append(sid)
    report.fill_mean = float(np.mean(fills)) if fills else 0.0
    return report
