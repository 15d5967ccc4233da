"""`lc-assets materialize` passes SIGTERM on to the Dagster run it started (graceful stop reaches the step)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

# the child stands for `dagster asset materialize`: on SIGTERM it settles (writes a file) and exits 3
CHILD = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path
    out = Path(sys.argv[1])
    def stop(signum, frame):
        out.write_text("settled")
        sys.exit(3)
    signal.signal(signal.SIGTERM, stop)
    out.with_suffix(".ready").write_text("")
    time.sleep(60)
    """
)

WRAPPER = textwrap.dedent(
    """
    import os, sys
    from lc_assets.cli import call_forwarding_sigterm
    sys.exit(call_forwarding_sigterm([sys.executable, "-c", sys.argv[1], sys.argv[2]], dict(os.environ)))
    """
)


def test_sigterm_to_the_cli_reaches_the_run_under_it(tmp_path: Path):
    out = tmp_path / "child.txt"
    wrapper = subprocess.Popen([sys.executable, "-c", WRAPPER, CHILD, str(out)])
    deadline = time.monotonic() + 60
    while not out.with_suffix(".ready").exists():
        assert wrapper.poll() is None and time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    wrapper.send_signal(signal.SIGTERM)
    assert wrapper.wait(timeout=30) == 3  # the CLI waited for the run and returns its exit code
    assert out.read_text() == "settled"
