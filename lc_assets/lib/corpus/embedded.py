"""The embedded default corpus: long, openly licensed texts that the project's set-up installs.

Every entry is a recipe over files that Debian documentation packages (installed by
`make install` with apt) or the Python installation itself put on the machine: which
files make one document, how to clean them, and the document's license. Nothing is
downloaded at run time. Entries whose files are absent are reported as skips.
"""

from __future__ import annotations

import glob
import os
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lc_assets.lib.corpus.clean import decode_html, html_to_text, info_to_text, normalize_paragraphs, read_gzip_text
from lc_assets.lib.corpus.documents import RawDocument, SkippedInput

#: Debian packages that carry the default corpus (installed by `make install`).
DEBIAN_PACKAGES = (
    "python3-doc",
    "postgresql-doc",
    "abs-guide",
    "jargon-text",
    "debian-handbook",
    "dict-devil",
    "debian-reference-en",
    "debian-policy",
)

PSF = "PSF-2.0"
POSTGRES = "PostgreSQL"


def _stdlib() -> str:
    return sysconfig.get_paths()["stdlib"]


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    title: str
    license: str
    package: str  # where the files come from (Debian package or "python")
    patterns: tuple[str, ...]  # globs, joined in sorted order into one document
    reader: str = "text"  # text | html | gzip | info | source
    roots: Callable[[], str] | None = None  # prefix for patterns resolved at run time

    def files(self) -> list[str]:
        prefix = self.roots() if self.roots else ""
        found: set[str] = set()
        for pattern in self.patterns:
            found.update(glob.glob(os.path.join(prefix, pattern), recursive=True))
        # symlinked doc dirs (python3-dev -> python3) would otherwise repeat files
        unique = {os.path.realpath(f) for f in found if os.path.isfile(f)}
        return sorted(unique)


_PY_DOCS = "/usr/share/doc/python3.*/html/_sources/"
_PG_DOCS = "/usr/share/doc/postgresql-doc-*/html/"


def _py(name: str, title: str, *subdirs: str) -> CatalogEntry:
    return CatalogEntry(name, title, PSF, "python3-doc", tuple(f"{_PY_DOCS}{d}" for d in subdirs))


def _pg(name: str, title: str, *patterns: str) -> CatalogEntry:
    return CatalogEntry(name, title, POSTGRES, "postgresql-doc", tuple(f"{_PG_DOCS}{p}" for p in patterns), "html")


def _stdlib_pkg(pkg: str) -> CatalogEntry:
    return CatalogEntry(
        f"cpython-{pkg}",
        f"CPython standard library source: {pkg}",
        PSF,
        "python",
        (f"{pkg}/**/*.py",),
        "source",
        _stdlib,
    )


CATALOG: tuple[CatalogEntry, ...] = (
    _py("python-library-reference", "The Python Standard Library (reference manual)", "library/*.rst.txt"),
    _py("python-whatsnew", "What's New in Python", "whatsnew/*.rst.txt"),
    _py("python-c-api", "Python/C API Reference Manual", "c-api/*.rst.txt"),
    _py("python-howto", "Python HOWTOs", "howto/*.rst.txt"),
    _py("python-language-reference", "The Python Language Reference", "reference/*.rst.txt"),
    _py("python-tutorial-faq", "The Python Tutorial and FAQ", "tutorial/*.rst.txt", "faq/*.rst.txt"),
    _py("python-extending-using", "Extending, Embedding and Using Python", "extending/*.rst.txt", "using/*.rst.txt"),
    _pg("postgresql-sql-commands", "PostgreSQL SQL Commands", "sql-*.html"),
    _pg("postgresql-functions", "PostgreSQL Functions and Operators", "functions*.html"),
    _pg("postgresql-server-config", "PostgreSQL Server Configuration and Administration", "runtime*.html"),
    _pg("postgresql-client-apps", "PostgreSQL Client and Server Applications", "app-*.html"),
    _pg("postgresql-procedural-languages", "PostgreSQL Procedural Languages", "pl*.html", "xfunc*.html"),
    _pg("postgresql-libpq-ecpg", "PostgreSQL libpq and ECPG", "libpq*.html", "ecpg*.html"),
    _pg("postgresql-catalogs", "PostgreSQL System Catalogs and Views", "catalog*.html", "view*.html"),
    _pg("postgresql-release-notes", "PostgreSQL Release Notes", "release*.html"),
    CatalogEntry(
        "abs-guide", "Advanced Bash-Scripting Guide", "public-domain", "abs-guide", ("/usr/share/doc/abs-guide/html/*.html",), "html"
    ),
    CatalogEntry(
        "jargon-file", "The Jargon File 4.4.7", "public-domain", "jargon-text", ("/usr/share/doc/jargon-text/jargon.txt.gz",), "gzip"
    ),
    CatalogEntry(
        "debian-handbook",
        "The Debian Administrator's Handbook",
        "GPL-2.0-or-later OR CC-BY-SA-3.0",
        "debian-handbook",
        ("/usr/share/doc/debian-handbook/html/en-US/*.html",),
        "html",
    ),
    CatalogEntry(
        "devils-dictionary",
        "The Devil's Dictionary (Bierce, 1911)",
        "public-domain",
        "dict-devil",
        ("/usr/share/dictd/devil.dict.dz",),
        "gzip",
    ),
    CatalogEntry(
        "debian-reference",
        "Debian Reference",
        "GPL-2.0-or-later",
        "debian-reference-en",
        ("/usr/share/debian-reference/*.en.html",),
        "html",
    ),
    CatalogEntry(
        "debian-policy",
        "Debian Policy Manual",
        "GPL-2.0-or-later",
        "debian-policy",
        ("/usr/share/doc/debian-policy/policy.html/*.html",),
        "html",
    ),
    CatalogEntry("gnu-coreutils-manual", "GNU Coreutils manual", "GFDL-1.3", "coreutils", ("/usr/share/info/coreutils.info*",), "info"),
    *(
        _stdlib_pkg(p)
        for p in ("asyncio", "email", "tkinter", "idlelib", "xml", "multiprocessing", "unittest", "lib2to3", "concurrent", "importlib", "http")
    ),
)  # fmt: skip


def _read(path: str, reader: str) -> str:
    if reader in ("gzip", "info") or path.endswith((".gz", ".dz")):
        raw = read_gzip_text(path) if path.endswith((".gz", ".dz")) else Path(path).read_text(encoding="utf-8")
        return info_to_text(raw) if reader == "info" else normalize_paragraphs(raw)
    if reader == "html":
        return html_to_text(decode_html(Path(path).read_bytes()))
    raw = Path(path).read_text(encoding="utf-8")
    if reader == "source":
        return raw if raw.endswith("\n") else raw + "\n"
    return normalize_paragraphs(raw)


def _header(path: str, reader: str) -> str:
    # code files are joined with a header line naming the file, as code corpora usually are
    if reader == "source":
        return f"# ---- file: {Path(path).name} ----\n"
    return ""


def iter_embedded(names: list[str] | None = None) -> Iterator[RawDocument | SkippedInput]:
    """Yield one document per catalog entry (files joined in sorted order)."""
    wanted = set(names) if names else None
    if wanted:
        unknown = wanted - {e.name for e in CATALOG}
        if unknown:
            raise ValueError(f"unknown embedded corpus entries: {sorted(unknown)}; known: {[e.name for e in CATALOG]}")
    for entry in CATALOG:
        if wanted is not None and entry.name not in wanted:
            continue
        source = f"embedded:{entry.name}"
        files = entry.files()
        if not files:
            yield SkippedInput(
                source, "missing", f"no files for patterns {entry.patterns}; install Debian package {entry.package!r}"
            )
            continue
        pieces: list[str] = []
        for path in files:
            try:
                text = _read(path, entry.reader)
            except (OSError, UnicodeDecodeError, EOFError) as exc:
                yield SkippedInput(f"{source}:{Path(path).name}", "unreadable", f"{type(exc).__name__}: {exc}")
                continue
            if text.strip():
                pieces.append(_header(path, entry.reader) + text)
        separator = "\n" if entry.reader == "source" else "\n\n"
        text = separator.join(p.rstrip("\n") + "\n" for p in pieces)
        if not text.strip():
            yield SkippedInput(source, "empty", "all files were empty")
            continue
        yield RawDocument(
            text=text,
            source=source,
            license=entry.license,
            title=entry.title,
            meta={"package": entry.package, "files": len(files)},
        )
