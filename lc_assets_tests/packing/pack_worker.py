"""A packing run in its own process (the concurrency tests start two at once).

Usage: python -m lc_assets_tests.packing.pack_worker DB ROOT RUN_ID
Prints one JSON line: the samples it made, or the error it ended with.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lc_assets.lib.lineage import LineageStore
from lc_assets.lib.packing import PackingConfig
from lc_assets.lib.packing.run import pack_pool
from lc_assets.lib.tokenizer import load_tokenizer


def main(db: str, root: str, run_id: str) -> None:
    cfg = PackingConfig(sample_tokens=4096, allow_small_samples=True)
    try:
        run = pack_pool(LineageStore(db), load_tokenizer(), cfg, run_id=run_id, root=Path(root), log=lambda m: None)
        ids = [s.sample_id for st in run.stages if st.result for s in st.result.samples]
        print(json.dumps({"run_id": run_id, "samples": ids}))
    except Exception as exc:  # noqa: BLE001 - reported to the parent test
        print(json.dumps({"run_id": run_id, "error": f"{type(exc).__name__}: {exc}"}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
