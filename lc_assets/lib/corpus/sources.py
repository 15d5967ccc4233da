"""Source specs and readers: local files/folders, Hugging Face datasets, the embedded default."""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import model_validator

from lc_assets.lib.corpus.documents import RawDocument, SkippedInput, SourceNotFoundError
from lc_assets.lib.corpus.embedded import iter_embedded
from lc_assets.lib.stepconfig import StepConfig

TEXT_SUFFIXES = frozenset(
    {".txt", ".md", ".rst", ".tex", ".html", ".htm", ".py", ".c", ".h", ".cc", ".cpp", ".hpp", ".rs", ".go",
     ".java", ".js", ".ts", ".rb", ".sh", ".pl", ".sql", ".toml", ".yaml", ".yml", ".cfg", ".ini", ".org"}
)  # fmt: skip
RECORD_SUFFIXES = frozenset({".jsonl", ".parquet"})
_BINARY_SNIFF_BYTES = 8192


class SourceSpec(StepConfig):
    """Where one shard's documents come from."""

    kind: Literal["embedded", "local", "hf"]
    #: embedded: catalog entry names (None = all)
    entries: list[str] | None = None
    #: local: a file or folder (folders are walked recursively)
    path: str | None = None
    #: local folders: file suffixes to read (default: text, code, jsonl, parquet)
    suffixes: list[str] | None = None
    #: hf: dataset name or builder ("json", "text", "parquet"), config, split, data_files
    dataset: str | None = None
    dataset_config: str | None = None
    split: str = "train"
    data_files: list[str] | None = None
    streaming: bool = True
    #: jsonl / parquet / hf: the column holding the text
    text_field: str = "text"
    #: license recorded for local and hf documents (embedded entries carry their own)
    license: str = "unknown"
    #: stop after this many documents (None = all)
    max_documents: int | None = None

    @model_validator(mode="after")
    def _check(self) -> SourceSpec:
        if self.kind == "local" and not self.path:
            raise ValueError("a local source needs `path` (a file or folder)")
        if self.kind == "hf" and not self.dataset:
            raise ValueError("an hf source needs `dataset` (a name, or a builder such as 'json' with data_files)")
        if self.max_documents is not None and self.max_documents < 1:
            raise ValueError(f"max_documents must be >= 1, got {self.max_documents}")
        return self


def _looks_binary(head: bytes) -> bool:
    if b"\x00" in head:
        return True
    # many control bytes (other than whitespace) mean a binary format
    ctrl = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    return bool(head) and ctrl / len(head) > 0.1


def read_text_file(path: Path, label: str) -> str | SkippedInput:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return SkippedInput(label, "unreadable", f"{type(exc).__name__}: {exc.strerror or exc}")
    if not data.strip():
        return SkippedInput(label, "empty", f"{len(data)} bytes, no text")
    if _looks_binary(data[:_BINARY_SNIFF_BYTES]):
        return SkippedInput(label, "binary", "NUL or control bytes in the first 8 KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return SkippedInput(label, "undecodable", f"not UTF-8 at byte {exc.start}")
    return text


def _records_jsonl(path: Path, label: str, text_field: str) -> Iterator[tuple[str, str] | SkippedInput]:
    try:
        fh = path.open("rb")
    except OSError as exc:
        yield SkippedInput(label, "unreadable", f"{type(exc).__name__}: {exc.strerror or exc}")
        return
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            row_label = f"{label}#L{lineno}"
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                yield SkippedInput(row_label, "undecodable", f"not UTF-8 at byte {exc.start}")
                continue
            except json.JSONDecodeError as exc:
                yield SkippedInput(row_label, "invalid_json", exc.msg)
                continue
            text = record.get(text_field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                yield SkippedInput(row_label, "missing_field", f"no string field {text_field!r}")
                continue
            yield row_label, text


def _records_parquet(path: Path, label: str, text_field: str) -> Iterator[tuple[str, str] | SkippedInput]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for corrupt files
        yield SkippedInput(label, "unreadable", f"not a readable parquet file: {exc}")
        return
    if text_field not in pf.schema_arrow.names:
        yield SkippedInput(label, "missing_field", f"no column {text_field!r} (columns: {pf.schema_arrow.names})")
        return
    row = 0
    for batch in pf.iter_batches(columns=[text_field], batch_size=1024):
        for text in batch.column(0).to_pylist():
            row_label = f"{label}#row{row}"
            row += 1
            if not isinstance(text, str):
                yield SkippedInput(row_label, "missing_field", f"{text_field!r} is not a string")
                continue
            yield row_label, text


def _from_text(label: str, text: str, license: str) -> RawDocument | SkippedInput:
    if not text.strip():
        return SkippedInput(label, "empty", "no text")
    return RawDocument(text=text, source=label, license=license, title=label.rsplit("/", 1)[-1])


def iter_local(spec: SourceSpec) -> Iterator[RawDocument | SkippedInput]:
    root = Path(os.path.expanduser(spec.path or ""))
    if not root.exists():
        raise SourceNotFoundError(f"source path does not exist: {root}")
    suffixes = {s if s.startswith(".") else f".{s}" for s in spec.suffixes} if spec.suffixes else None
    if root.is_file():
        files = [root]
    else:
        files = sorted(p for p in root.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.parts))
    for path in files:
        label = str(path.relative_to(root)) if path != root else path.name
        suffix = path.suffix.lower()
        if suffixes is not None and suffix not in suffixes:
            continue
        if suffix in RECORD_SUFFIXES:
            reader = _records_jsonl if suffix == ".jsonl" else _records_parquet
            for item in reader(path, label, spec.text_field):
                yield item if isinstance(item, SkippedInput) else _from_text(item[0], item[1], spec.license)
        elif suffix in TEXT_SUFFIXES or root.is_file() or suffixes is not None:
            result = read_text_file(path, label)
            yield result if isinstance(result, SkippedInput) else _from_text(label, result, spec.license)
        else:
            yield SkippedInput(label, "unsupported_type", f"suffix {suffix or '(none)'!r} is not a text format")


def iter_hf(spec: SourceSpec) -> Iterator[RawDocument | SkippedInput]:
    """Any `datasets` dataset: a hub name (needs a local cache when offline) or a builder on local files."""
    import datasets

    if spec.data_files:
        missing = [f for f in spec.data_files if not glob.glob(os.path.expanduser(f))]
        if missing:
            raise SourceNotFoundError(f"data_files not found: {missing}")
    try:
        ds = datasets.load_dataset(
            spec.dataset,
            spec.dataset_config,
            split=spec.split,
            data_files=spec.data_files,
            streaming=spec.streaming,
        )
    except FileNotFoundError as exc:
        raise SourceNotFoundError(f"dataset {spec.dataset!r} not found: {exc}") from exc
    except Exception as exc:  # offline / connection errors come in several types
        raise SourceNotFoundError(
            f"dataset {spec.dataset!r} (config {spec.dataset_config!r}, split {spec.split!r}) could not be loaded: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    name = spec.dataset if not spec.data_files else f"{spec.dataset}:{','.join(spec.data_files)}"
    for i, record in enumerate(ds):
        label = f"hf:{name}#{i}"
        text = record.get(spec.text_field)
        if not isinstance(text, str):
            yield SkippedInput(label, "missing_field", f"no string field {spec.text_field!r}")
            continue
        yield _from_text(label, text, spec.license)


def iter_source(spec: SourceSpec) -> Iterator[RawDocument | SkippedInput]:
    """Documents and skips of one source, stopping after `max_documents` documents."""
    if spec.kind == "embedded":
        items = iter_embedded(spec.entries)
    elif spec.kind == "local":
        items = iter_local(spec)
    else:
        items = iter_hf(spec)
    kept = 0
    for item in items:
        yield item
        if isinstance(item, RawDocument):
            kept += 1
            if spec.max_documents is not None and kept >= spec.max_documents:
                return
