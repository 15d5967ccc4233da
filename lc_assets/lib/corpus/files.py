"""Local files as inputs: a folder walk that accounts for every entry, text decoding, record readers.

Every entry under a source folder ends as text to ingest or a `SkippedInput` with the reason:
hidden files and folders, symlink loops, paths that reach a file or folder already read,
broken symlinks, sockets and devices are recorded, never silently passed over.

Symlinks are followed (a corpus is often a folder of links to data elsewhere), each real
folder and file is read once: a link back to a folder being walked is a `symlink_loop`, a
second path to something already read is `already_read`, naming the first path.

Text files may be UTF-8 (with or without a BOM), UTF-16 or UTF-32 with a BOM, and gzip
compressed (`name.txt.gz`, `name.jsonl.gz`); line ends are normalized to "\\n" (CRLF and CR),
so the same text stored with other line ends or encodings is one document. HTML pages
(`.html`, `.htm`, `.xhtml`) are read as their text, in the charset they declare when not UTF-8.
"""

from __future__ import annotations

import codecs
import errno
import gzip
import io
import json
import os
import stat
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from lc_assets.lib.corpus.clean import decode_html, html_to_text
from lc_assets.lib.corpus.documents import SkippedInput

_BINARY_SNIFF_BYTES = 8192
_BOMS = (  # longest first: the UTF-32-LE BOM starts with the UTF-16-LE one
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
GZIP_SUFFIX = ".gz"


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def _looks_binary(head: bytes) -> bool:
    if b"\x00" in head:
        return True
    # many control bytes (other than whitespace) mean a binary format
    ctrl = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    return bool(head) and ctrl / len(head) > 0.1


def decode_text(data: bytes, label: str) -> str | SkippedInput:
    """Bytes of a text file to str: a BOM names the encoding, else UTF-8; binary data is refused."""
    encoding, body = None, data
    for bom, name in _BOMS:
        if data.startswith(bom):
            encoding, body = name, data[len(bom) :]
            break
    if encoding is None:
        if _looks_binary(data[:_BINARY_SNIFF_BYTES]):
            return SkippedInput(label, "binary", "NUL or control bytes in the first 8 KiB (no UTF-16/32 BOM)")
        encoding = "utf-8"
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as exc:
        return SkippedInput(label, "undecodable", f"not {encoding.upper()} at byte {exc.start + len(data) - len(body)}")
    if not text.strip():
        return SkippedInput(label, "empty", f"{len(data)} bytes, no text")
    return normalize_newlines(text)


def read_bytes(path: Path, label: str) -> bytes | SkippedInput:
    """A file's bytes, gunzipped when its name ends in .gz."""
    try:
        if path.name.endswith(GZIP_SUFFIX):
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        return SkippedInput(label, "unreadable", f"corrupt gzip data: {exc}")
    except OSError as exc:
        return SkippedInput(label, "unreadable", f"{type(exc).__name__}: {exc.strerror or exc}")


def read_text_file(path: Path, label: str) -> str | SkippedInput:
    data = read_bytes(path, label)
    return data if isinstance(data, SkippedInput) else decode_text(data, label)


def read_html_file(path: Path, label: str) -> str | SkippedInput:
    """An HTML page as plain text (tags, scripts, styles and navigation dropped, paragraphs kept): UTF-8 or a
    BOM, else the charset the page declares. Markup left in would be what the model is shown."""
    data = read_bytes(path, label)
    if isinstance(data, SkippedInput):
        return data
    text = decode_text(data, label)
    if isinstance(text, SkippedInput) and text.reason == "undecodable":
        try:
            text = decode_html(data)
        except (UnicodeDecodeError, LookupError):  # no declared charset, an unknown one, or not that one either
            return text
    if isinstance(text, SkippedInput):
        return text
    plain = html_to_text(text)
    return plain if plain.strip() else SkippedInput(label, "empty", f"{len(data)} bytes of HTML, no text outside tags")


def content_suffix(path: Path) -> str:
    """The suffix that names the content: `.jsonl` for `x.jsonl.gz`."""
    name = path.name.lower().removesuffix(GZIP_SUFFIX)
    return Path(name).suffix


@dataclass(frozen=True)
class LocalFile:
    path: Path
    label: str  # path relative to the source root, as walked (through symlinks)


def walk(root: Path) -> Iterator[LocalFile | SkippedInput]:
    """Every entry under `root`, depth first in name order: files to read, or skips with the reason."""
    st = root.stat()
    seen_dirs: dict[tuple[int, int], str] = {(st.st_dev, st.st_ino): "."}
    seen_files: dict[tuple[int, int], str] = {}
    return _walk(root, "", frozenset(seen_dirs), seen_dirs, seen_files)


def _walk(
    folder: Path,
    prefix: str,
    ancestors: frozenset[tuple[int, int]],  # the real folders from the root down to here: a link to one loops
    seen_dirs: dict[tuple[int, int], str],
    seen_files: dict[tuple[int, int], str],
) -> Iterator[LocalFile | SkippedInput]:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        yield SkippedInput(prefix.rstrip("/") or ".", "unreadable", f"cannot list folder: {exc.strerror or exc}")
        return
    for entry in entries:
        label = prefix + entry.name
        if entry.name.startswith("."):
            yield SkippedInput(label, "hidden", "names starting with '.' are not read")
            continue
        try:
            st = os.stat(entry.path)  # follows symlinks
        except FileNotFoundError:
            yield SkippedInput(label, "broken_symlink", f"points to {os.readlink(entry.path)!r}, which does not exist")
            continue
        except OSError as exc:
            reason = "symlink_loop" if exc.errno == errno.ELOOP else "unreadable"  # ELOOP: a link to itself
            yield SkippedInput(label, reason, f"{type(exc).__name__}: {exc.strerror or exc}")
            continue
        key = (st.st_dev, st.st_ino)
        if stat.S_ISDIR(st.st_mode):
            if key in ancestors:
                yield SkippedInput(label, "symlink_loop", f"links back to {seen_dirs[key]!r}, a folder above it")
            elif key in seen_dirs:
                yield SkippedInput(label, "already_read", f"the same folder as {seen_dirs[key]!r}")
            else:
                seen_dirs[key] = label
                yield from _walk(Path(entry.path), label + "/", ancestors | {key}, seen_dirs, seen_files)
        elif stat.S_ISREG(st.st_mode):
            if key in seen_files:
                yield SkippedInput(label, "already_read", f"the same file as {seen_files[key]!r}")
            else:
                seen_files[key] = label
                yield LocalFile(Path(entry.path), label)
        else:
            yield SkippedInput(label, "not_a_regular_file", "a socket, pipe or device")


def _open_records(path: Path, label: str) -> IO[bytes] | SkippedInput:
    try:
        return gzip.open(path, "rb") if path.name.endswith(GZIP_SUFFIX) else path.open("rb")
    except OSError as exc:
        return SkippedInput(label, "unreadable", f"{type(exc).__name__}: {exc.strerror or exc}")


def _record_text(record: object, text_field: str, label: str) -> tuple[str, str] | SkippedInput:
    text = record.get(text_field) if isinstance(record, dict) else None
    if not isinstance(text, str):
        return SkippedInput(label, "missing_field", f"no string field {text_field!r}")
    return label, normalize_newlines(text)


def records_json(path: Path, label: str, text_field: str) -> Iterator[tuple[str, str] | SkippedInput]:
    """JSON Lines (one record per line; a bad line is a skip naming it), one JSON array of records, or (a
    `.json` file) one JSON object: the record formats `datasets`' json builder reads."""
    fh = _open_records(path, label)
    if isinstance(fh, SkippedInput):
        yield fh
        return
    with fh:
        try:
            head = fh.peek(64)[:64] if hasattr(fh, "peek") else b""
            if head.lstrip(codecs.BOM_UTF8).lstrip().startswith(b"["):
                yield from _records_json_array(fh.read(), label, text_field)
                return
            if content_suffix(path) == ".json":
                data = fh.read()
                try:  # a pretty-printed object spans many lines: read it whole before trying JSON Lines
                    record = json.loads(data.decode("utf-8-sig"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    fh = io.BytesIO(data)  # JSON Lines under a .json name
                else:
                    yield _record_text(record, text_field, label)
                    return
            for lineno, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue  # blank lines separate nothing in JSON Lines
                row_label = f"{label}#L{lineno}"
                try:
                    record = json.loads(raw.decode("utf-8-sig" if lineno == 1 else "utf-8"))
                except UnicodeDecodeError as exc:
                    yield SkippedInput(row_label, "undecodable", f"not UTF-8 at byte {exc.start}")
                    continue
                except json.JSONDecodeError as exc:
                    yield SkippedInput(row_label, "invalid_json", f"{exc.msg} (column {exc.colno})")
                    continue
                yield _record_text(record, text_field, row_label)
        except (OSError, EOFError, zlib.error) as exc:  # a truncated or corrupt .gz mid-file
            yield SkippedInput(label, "unreadable", f"reading stopped: {type(exc).__name__}: {exc}")


def _records_json_array(data: bytes, label: str, text_field: str) -> Iterator[tuple[str, str] | SkippedInput]:
    try:
        records = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        yield SkippedInput(label, "invalid_json", f"a JSON array that does not parse: {exc}")
        return
    for i, record in enumerate(records):
        yield _record_text(record, text_field, f"{label}#item{i}")


def records_parquet(path: Path, label: str, text_field: str) -> Iterator[tuple[str, str] | SkippedInput]:
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
            yield row_label, normalize_newlines(text)
