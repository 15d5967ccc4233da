"""What a source yields: documents to keep, or skips with the reason they were not kept."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


def content_id(text: str) -> str:
    """Stable document id: a hash of the exact text, so equal content is stored once."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class RawDocument:
    text: str
    source: str  # shard-relative origin: file path, dataset name + row, catalog entry
    license: str
    title: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def document_id(self) -> str:
        return content_id(self.text)

    @property
    def byte_size(self) -> int:
        return len(self.text.encode("utf-8"))


@dataclass(frozen=True)
class SkippedInput:
    """A file or row that was not ingested, and why (recorded, never silently dropped)."""

    source: str
    reason: str  # short machine-readable reason: empty, binary, undecodable, unreadable, ...
    detail: str = ""


class SourceNotFoundError(FileNotFoundError):
    """A configured source path or dataset does not exist."""


class SourceReadError(RuntimeError):
    """A source could not be read past some point (e.g. a hub dataset with a corrupt record)."""
