"""scripts/ui_screenshots.py end to end: a real dagster-webserver, a run launched over GraphQL, Chromium PNGs."""

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = (
    "asset_groups.png", "asset_graph.png", "assets_catalog.png", "run.png", "filtered_corpus_asset.png",
    "chunks_asset.png",
)  # fmt: skip


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.mark.skipif(
    not (shutil.which("chromium") or shutil.which("chromium-browser")),
    reason="Debian chromium not installed (scripts/install_system_deps.sh)",
)
def test_ui_screenshots_script(tmp_path):
    out = tmp_path / "shots"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "ui_screenshots.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=420,
    )
    summary = json.loads(proc.stdout)
    assert proc.returncode == 0, summary
    assert summary["status"] == "SUCCESS" and summary["run_id"]
    for name in PAGES:
        png = out / name
        assert png.is_file(), name
        assert _png_size(png) == (1600, 1000)
        # a blank or error page compresses to a few KB; the rendered UI pages are ~100 KB
        assert png.stat().st_size > 40_000, (name, png.stat().st_size)
