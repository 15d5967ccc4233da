"""Progress that shows in the Dagster log and, in a terminal, as a bar."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import dagster as dg


class StepProgress:
    """Logs `done/total unit (rate/s)` every `every_s` seconds, and also each time another `every_fraction` of
    `total` is done (when given); draws a tqdm bar on a TTY. `update(0)` is a heartbeat: it logs when due."""

    def __init__(
        self,
        context: dg.AssetExecutionContext,
        desc: str,
        total: int | None,
        unit: str,
        every_s: float = 10.0,
        every_fraction: float | None = None,
    ):
        self.context, self.desc, self.total, self.unit, self.every_s = context, desc, total, unit, every_s
        self.done = 0
        self.start = self._last = time.monotonic()
        # done count at which the next fractional step is logged (None: time only)
        self._step = max(1, int(total * every_fraction)) if total and every_fraction else None
        self._next_mark = self._step
        self._bar: Any = None
        if sys.stderr.isatty() or os.environ.get("LC_ASSETS_PROGRESS_BAR") == "1":
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True, file=sys.stderr)

    def update(self, n: int, **extra: Any) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        now = time.monotonic()
        crossed = self._next_mark is not None and self.done >= self._next_mark
        if crossed or now - self._last >= self.every_s:
            self._last = now
            if self._step is not None:
                self._next_mark = (self.done // self._step + 1) * self._step
            self.context.log.info(self.line(**extra))

    def line(self, **extra: Any) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        of = f"/{self.total:,}" if self.total else ""
        parts = [f"{self.desc}: {self.done:,}{of} {self.unit} ({self.done / elapsed:,.0f} {self.unit}/s)"]
        parts += [f"{k}={v}" for k, v in extra.items()]
        return ", ".join(parts)

    def close(self, **extra: Any) -> None:
        if self._bar is not None:
            self._bar.close()
        self.context.log.info(self.line(**extra) + " — done")
