"""Fixtures for the operations tests: the loaded code location, a temp data dir, small text shards."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from lc_assets_tests.foundation.conftest import make_text


@pytest.fixture(scope="session")
def loaded_defs() -> dg.Definitions:
    from lc_assets.definitions import defs

    return defs()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """LC_ASSETS_DATA_DIR in a temp folder; the inbox/checkpoint variables unset."""
    path = tmp_path / "data"
    path.mkdir()
    monkeypatch.setenv("LC_ASSETS_DATA_DIR", str(path))
    monkeypatch.delenv("LC_ASSETS_INBOX_DIR", raising=False)
    monkeypatch.delenv("LC_ASSETS_CHECKPOINTS_DIR", raising=False)
    return path


def write_books(folder: Path, n: int, seed: int, paragraphs: int = 40) -> list[Path]:
    """`n` small English-like text files (a few thousand tokens each)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"book{i}.txt"
        p.write_text(make_text(seed + i, paragraphs))
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def postgres_cluster():
    """A real PostgreSQL server for the module's tests; stopped and deleted afterwards."""
    from lc_assets_tests.ops.postgres_cluster import ThrowawayPostgres, why_unavailable

    reason = why_unavailable()
    if reason:
        pytest.skip(reason)
    server = ThrowawayPostgres()
    try:
        yield server.start()
    finally:
        server.stop()
