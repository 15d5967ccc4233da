"""Source specs and readers: local files/folders, Hugging Face datasets, the embedded default."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import model_validator

from lc_assets.lib.corpus.documents import RawDocument, SkippedInput, SourceNotFoundError, SourceReadError
from lc_assets.lib.corpus.embedded import iter_embedded
from lc_assets.lib.corpus.files import (
    LocalFile,
    content_suffix,
    normalize_newlines,
    read_html_file,
    read_text_file,
    records_json,
    records_parquet,
    walk,
)
from lc_assets.lib.stepconfig import StepConfig

TEXT_SUFFIXES = frozenset(
    {".txt", ".md", ".rst", ".tex", ".html", ".htm", ".py", ".c", ".h", ".cc", ".cpp", ".hpp", ".rs", ".go",
     ".java", ".js", ".ts", ".rb", ".sh", ".pl", ".sql", ".toml", ".yaml", ".yml", ".cfg", ".ini", ".org"}
)  # fmt: skip
HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
RECORD_SUFFIXES = frozenset({".json", ".jsonl", ".parquet"})
# `datasets` builders whose local files the record readers read the same way, by file suffix
_RECORD_BUILDERS = {"json": {".json", ".jsonl"}, "parquet": {".parquet"}}


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


def _from_text(label: str, text: str, license: str) -> RawDocument | SkippedInput:
    if not text.strip():
        return SkippedInput(label, "empty", "no text")
    return RawDocument(text=text, source=label, license=license, title=label.rsplit("/", 1)[-1])


def _records(path: Path, label: str, text_field: str, license: str) -> Iterator[RawDocument | SkippedInput]:
    reader = records_parquet if content_suffix(path) == ".parquet" else records_json
    for item in reader(path, label, text_field):
        yield item if isinstance(item, SkippedInput) else _from_text(item[0], item[1], license)


def iter_local(spec: SourceSpec) -> Iterator[RawDocument | SkippedInput]:
    """Every file under the path (symlinks followed once): a document per text file or record, else a skip."""
    root = Path(os.path.expanduser(spec.path or ""))
    if not root.exists():
        if root.is_symlink():
            raise SourceNotFoundError(f"source path is a broken symlink: {root} -> {os.readlink(root)}")
        raise SourceNotFoundError(f"source path does not exist: {root}")
    suffixes = {s if s.startswith(".") else f".{s}" for s in spec.suffixes} if spec.suffixes else None
    items = [LocalFile(root, root.name)] if root.is_file() else walk(root)
    for item in items:
        if isinstance(item, SkippedInput):
            yield item
            continue
        path, label = item.path, item.label
        suffix = content_suffix(path)
        if suffixes is not None and suffix not in suffixes and path.suffix.lower() not in suffixes:
            yield SkippedInput(label, "suffix_not_selected", f"suffix {suffix or '(none)'!r} not in {sorted(suffixes)}")
        elif suffix in RECORD_SUFFIXES:
            yield from _records(path, label, spec.text_field, spec.license)
        elif suffix in HTML_SUFFIXES:
            result = read_html_file(path, label)
            yield result if isinstance(result, SkippedInput) else _from_text(label, result, spec.license)
        elif suffix in TEXT_SUFFIXES or root.is_file() or suffixes is not None:
            result = read_text_file(path, label)
            yield result if isinstance(result, SkippedInput) else _from_text(label, result, spec.license)
        else:
            yield SkippedInput(label, "unsupported_type", f"suffix {suffix or '(none)'!r} is not a text format")


def _hf_data_files(spec: SourceSpec) -> list[Path]:
    files: list[Path] = []
    missing = []
    for pattern in spec.data_files or []:
        found = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
        if not found:
            missing.append(pattern)
        files += [Path(f) for f in found if Path(f).is_file() and Path(f) not in files]
    if missing:
        raise SourceNotFoundError(f"data_files not found: {missing}")
    return files


def _load_dataset(spec: SourceSpec, data_files: list[str] | None) -> Any:
    import datasets

    try:
        return datasets.load_dataset(
            spec.dataset, spec.dataset_config, split=spec.split, data_files=data_files, streaming=spec.streaming
        )
    except FileNotFoundError as exc:
        raise SourceNotFoundError(f"dataset {spec.dataset!r} not found: {exc}") from exc
    except datasets.exceptions.DatasetGenerationError as exc:  # without streaming the data is read here
        cause = exc.__cause__ or exc
        raise SourceReadError(
            f"dataset {spec.dataset!r} split {spec.split!r}{f', file {data_files[0]}' if data_files else ''}: "
            f"reading failed: {type(cause).__name__}: {cause}"
        ) from exc
    except Exception as exc:  # offline / connection / parse errors come in several types
        raise SourceNotFoundError(
            f"dataset {spec.dataset!r} (config {spec.dataset_config!r}, split {spec.split!r}"
            f"{f', file {data_files[0]}' if data_files else ''}) could not be loaded: {type(exc).__name__}: {exc}"
        ) from exc


def _dataset_records(spec: SourceSpec, label: str, data_file: Path | None) -> Iterator[RawDocument | SkippedInput]:
    """Records of a `datasets` dataset (one data file, or a hub dataset); a read error stops only that file."""
    try:
        ds = _load_dataset(spec, [str(data_file)] if data_file else None)
    except SourceReadError as exc:  # a non-streaming load reads the whole file: nothing of it is kept
        if data_file is None:
            raise
        yield SkippedInput(f"{label}#0+", "unreadable", f"no record read: {exc}")
        return
    n = 0  # records read: names the one where reading stopped
    try:
        for n, record in enumerate(ds, start=1):
            row_label = f"{label}#{n - 1}"
            text = record.get(spec.text_field)
            if not isinstance(text, str):
                yield SkippedInput(row_label, "missing_field", f"no string field {spec.text_field!r}")
                continue
            yield _from_text(row_label, normalize_newlines(text), spec.license)
    except Exception as exc:  # noqa: BLE001 - pyarrow/datasets raise many types for bad data
        if data_file is None:
            raise SourceReadError(
                f"dataset {spec.dataset!r} split {spec.split!r}: reading failed after {n} record(s): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        yield SkippedInput(
            f"{label}#{n}+", "unreadable", f"reading stopped after {n} record(s): {type(exc).__name__}: {exc}"
        )


def iter_hf(spec: SourceSpec) -> Iterator[RawDocument | SkippedInput]:
    """Any `datasets` dataset: a hub name (needs a local cache when offline) or a builder on local files.

    Local data files are read one at a time. JSON (Lines or an array) and parquet files are read
    record by record by the same readers as `kind: local` (`datasets`' Arrow reader stops a whole
    file at its first bad line, naming neither), so a bad record is a skip naming file and line;
    other builders go through `datasets` per file, and a read error there skips the rest of that
    file only, naming it and the record where it stopped.
    """
    if not spec.data_files:
        yield from _dataset_records(spec, f"hf:{spec.dataset}", None)
        return
    for path in _hf_data_files(spec):
        label = f"hf:{spec.dataset}:{path}"
        if spec.dataset in _RECORD_BUILDERS and content_suffix(path) in _RECORD_BUILDERS[spec.dataset]:
            yield from _records(path, label, spec.text_field, spec.license)
        else:
            yield from _dataset_records(spec, label, path)


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
