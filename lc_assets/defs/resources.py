"""Resources shared by every stage: the lineage store, the target tokenizer, the corpus shard specs."""

import importlib.resources
import os
from pathlib import Path

import dagster as dg
import yaml
from pydantic import PrivateAttr

from lc_assets.lib.corpus.sources import SourceSpec
from lc_assets.lib.lineage import LineageStore
from lc_assets.lib.tokenizer import DEFAULT_TOKENIZER, TextTokenizer, load_tokenizer

DATA_DIR_ENV = "LC_ASSETS_DATA_DIR"
INBOX_DIR_ENV = "LC_ASSETS_INBOX_DIR"
#: shards named `inbox-<name>` are the file or folder <inbox dir>/<name> (registered by corpus_inbox_sensor)
INBOX_SHARD_PREFIX = "inbox-"


def data_dir() -> Path:
    """Where stores and outputs live: $LC_ASSETS_DATA_DIR, else ./data under the working directory."""
    return Path(os.environ.get(DATA_DIR_ENV, "data"))


def inbox_dir() -> Path:
    """The folder whose entries become corpus shards: $LC_ASSETS_INBOX_DIR, else <data dir>/inbox."""
    return Path(os.environ.get(INBOX_DIR_ENV) or data_dir() / "inbox")


class LineageStoreResource(dg.ConfigurableResource):
    """The DuckDB lineage database (one file; every stage writes its rows here)."""

    path: str = ""  # empty: <data dir>/lineage.duckdb
    lock_timeout_s: float = 300.0

    def store(self) -> LineageStore:
        return LineageStore(self.path or data_dir() / "lineage.duckdb", lock_timeout_s=self.lock_timeout_s)


class TokenizerResource(dg.ConfigurableResource):
    """The TARGET model's tokenizer: the model that will train on the data."""

    name: str = DEFAULT_TOKENIZER  # "llama3", a local tokenizer dir, or a cached HF name
    chat_template_path: str | None = None

    _tokenizer: TextTokenizer | None = PrivateAttr(default=None)

    def load(self) -> TextTokenizer:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.name, self.chat_template_path)
        return self._tokenizer


class CorpusSourcesResource(dg.ConfigurableResource):
    """Maps each corpus shard (partition key) to its source spec."""

    sources_file: str = ""  # empty: $LC_ASSETS_SOURCES_FILE, if set; the packaged defaults always apply
    inbox_dir: str = ""  # empty: $LC_ASSETS_INBOX_DIR, else <data dir>/inbox

    _cache: dict[str, SourceSpec] | None = PrivateAttr(default=None)

    @property
    def _specs(self) -> dict[str, SourceSpec]:
        if self._cache is None:
            self._cache = self._load()
        return self._cache

    def _load(self) -> dict[str, SourceSpec]:
        raw = yaml.safe_load(importlib.resources.files("lc_assets").joinpath("default_sources.yaml").read_text())
        user_file = self.sources_file or os.environ.get("LC_ASSETS_SOURCES_FILE", "")
        if user_file:
            path = Path(user_file).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"corpus sources file not found: {path}")
            raw.update(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
        return {name: SourceSpec.model_validate(spec) for name, spec in raw.items()}

    def shard_names(self) -> list[str]:
        return sorted(self._specs)

    def spec(self, shard: str) -> SourceSpec:
        if shard not in self._specs and shard.startswith(INBOX_SHARD_PREFIX):
            # an inbox shard is a local source; a missing path fails at ingestion with the path named
            inbox = Path(self.inbox_dir) if self.inbox_dir else inbox_dir()
            return SourceSpec(kind="local", path=str(inbox / shard.removeprefix(INBOX_SHARD_PREFIX)))
        try:
            return self._specs[shard]
        except KeyError:
            raise dg.Failure(
                description=f"corpus shard {shard!r} is not defined; known shards: {self.shard_names()}. "
                "Add it to your sources file (LC_ASSETS_SOURCES_FILE)."
            ) from None


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "lineage": LineageStoreResource(),
            "target_tokenizer": TokenizerResource(),
            "corpus_sources": CorpusSourcesResource(),
        }
    )
