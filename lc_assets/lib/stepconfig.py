"""Base for per-step config models: validated, frozen, and hashed for lineage."""

from __future__ import annotations

import hashlib
import json
from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class StepConfig(BaseModel):
    """One config model per pipeline step.

    `config_hash()` covers only the fields that change results (all fields minus
    `HASH_EXCLUDE`), so lineage rows made by equal configs carry equal hashes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: fields that do not change the data (batch sizes, progress intervals, ...)
    HASH_EXCLUDE: ClassVar[frozenset[str]] = frozenset()

    def config_hash(self) -> str:
        payload = self.model_dump(mode="json", exclude=set(self.HASH_EXCLUDE))
        blob = json.dumps({"step": type(self).__name__, "config": payload}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
