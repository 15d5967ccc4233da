"""Plain helpers for the folder-watching sensors: which entries are new, settled, and what they contain.

No Dagster objects live here (it is imported by sensors.py and schedules.py).
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# partition keys and run keys stay readable and safe in URLs, tags and file names
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,200}$")
# names that editors, rsync and browsers use while a file is still being written
_PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".download", ".swp")


@dataclass(frozen=True)
class FolderEntry:
    """One top-level file or folder of a watched folder, as of one sensor tick."""

    name: str
    path: Path
    fingerprint: str  # sha256 over (relative path, size, mtime_ns) of every file: changes when content changes
    newest_mtime: float
    n_files: int


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.parts))


def scan_entry(path: Path) -> FolderEntry | None:
    """Fingerprint one entry from file stats (not contents: hashing terabytes every tick is unaffordable).

    Returns None for entries that cannot be a shard: hidden, partial downloads, unsafe names, empty folders.
    """
    name = path.name
    if name.startswith(".") or name.endswith(_PARTIAL_SUFFIXES) or not _SAFE_NAME.match(name):
        return None
    digest = hashlib.sha256()
    newest = 0.0
    files = _files(path)
    for f in files:
        try:
            st = f.stat()
        except OSError:  # removed between listing and stat: the next tick sees the settled state
            return None
        rel = f.relative_to(path).as_posix() if f != path else name
        digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        newest = max(newest, st.st_mtime)
    if not files:
        return None
    return FolderEntry(name, path, digest.hexdigest()[:16], newest, len(files))


def settled_entries(folder: Path, settle_seconds: float, now: float | None = None) -> list[FolderEntry]:
    """Entries of `folder` whose newest file is at least `settle_seconds` old (a copy still running waits)."""
    if not folder.is_dir():
        return []
    now = time.time() if now is None else now
    entries = (scan_entry(p) for p in sorted(folder.iterdir()))
    return [e for e in entries if e is not None and now - e.newest_mtime >= settle_seconds]


def is_checkpoint(entry: FolderEntry) -> bool:
    """A model checkpoint: an HF-format folder (config.json + weights) or a single GGUF file."""
    if entry.path.is_file():
        return entry.path.suffix == ".gguf"
    has_weights = any(entry.path.glob("*.safetensors")) or any(entry.path.glob("*.bin"))
    return (entry.path / "config.json").is_file() and has_weights


def profile_run_config(profile: str, ops: tuple[str, ...]) -> dict[str, Any]:
    """The run config of `profile` (demo, production or a YAML path; "" = asset defaults) for just `ops`.

    Resources are kept whole (a job accepts config for every resource of the code location).
    """
    if not profile:
        return {}
    from lc_assets.cli import profile_path

    raw = yaml.safe_load(profile_path(profile).read_text(encoding="utf-8")) or {}
    config: dict[str, Any] = {"ops": {k: v for k, v in (raw.get("ops") or {}).items() if k in ops}}
    if raw.get("resources"):
        config["resources"] = raw["resources"]
    return config


def load_cursor(cursor: str | None) -> dict[str, str]:
    """A sensor cursor: JSON {entry name: fingerprint already requested}."""
    import json

    return json.loads(cursor) if cursor else {}


def dump_cursor(seen: dict[str, str]) -> str:
    import json

    return json.dumps(seen, sort_keys=True, separators=(",", ":"))
