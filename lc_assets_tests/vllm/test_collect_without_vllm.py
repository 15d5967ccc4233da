"""`make test-fast` on a host without vLLM: the whole suite must still collect.

vLLM (and torch and psutil, which come with it) are hidden from a fresh interpreter by wrapping every import
finder so that it does not see them: `import vllm` raises ModuleNotFoundError and `importlib.util.find_spec`
answers None, exactly as on a host where they were never installed. That interpreter then runs pytest's
collection with the fast selection. A module-level `import psutil` in a test file once broke this.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HIDDEN = ("vllm", "torch", "psutil")

_RUNNER = """
import importlib.util, sys

HIDDEN = set(sys.argv[1].split(","))


class Hidden:
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            return None
        find = getattr(self.finder, "find_spec", None)
        return find(name, path, target) if find else None

    def __getattr__(self, attr):
        return getattr(self.finder, attr)


assert not HIDDEN & set(sys.modules), "imported before the finders were wrapped"
sys.meta_path[:] = [Hidden(f) for f in sys.meta_path]
assert all(importlib.util.find_spec(m) is None for m in HIDDEN)
try:
    import vllm  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("vllm still importable")

import pytest

code = pytest.main(["--collect-only", "-q", "-m", "not slow", "-p", "no:cacheprovider", "lc_assets_tests"])
leaked = sorted(HIDDEN & set(sys.modules))
if leaked:
    raise SystemExit(f"collection imported {leaked}")
raise SystemExit(int(code))
"""


def test_fast_suite_collects_without_vllm_torch_psutil() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _RUNNER, ",".join(HIDDEN)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    tail = "\n".join((out.stdout + out.stderr).splitlines()[-25:])
    assert out.returncode == 0, tail
    assert "error" not in out.stdout.lower().split("collected")[-1], tail
    # the fast selection is not empty: it holds the suite minus the slow tests
    summary = out.stdout.strip().splitlines()[-1]
    assert "tests collected" in summary and int(summary.split("/")[0]) > 100, summary
