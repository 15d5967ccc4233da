"""Turn documentation formats (HTML, info, dictd) into plain text with paragraph breaks."""

from __future__ import annotations

import gzip
import re
from html.parser import HTMLParser

_BLOCK_TAGS = {
    "p", "div", "br", "li", "ul", "ol", "dl", "dt", "dd", "table", "tr", "h1", "h2", "h3", "h4", "h5", "h6",
    "pre", "blockquote", "section", "article", "header", "footer", "hr", "title", "figure", "caption",
}  # fmt: skip
_SKIP_TAGS = {"script", "style", "head", "nav", "button"}  # a button's label ("copy" after every code block) is UI
# Page chrome marked by role (ARIA landmarks: Sphinx's sidebars, "related" bars, search box and footer; Node.js's
# module list) or by the class / id doc generators give it (DocBook's "Prev Up Next" bars, tables of contents,
# footers): in the text it repeats on every page and lists headings the page then has again.
_SKIP_ROLES = frozenset({"navigation", "search", "contentinfo", "banner"})
_SKIP_NAMES = frozenset({"toc", "gtoc", "navheader", "navfooter", "footer"})
# A link to its own page (href "#...") whose whole text is one of these is a heading's permalink: Sphinx's "¶",
# Node.js's "#", "§" — left in, every heading of a doc page ends in a glyph that models quote as part of it.
_PERMALINK_GLYPHS = frozenset("¶#§🔗⚓")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._pre = 0
        self._anchor_starts: list[int | None] = []  # per open <a>: where its text starts if it links in-page
        self._chrome: tuple[str, int] | None = None  # the skipped chrome element: its tag, open elements of that tag

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._chrome is not None:
            if tag == self._chrome[0]:
                self._chrome = (tag, self._chrome[1] + 1)
            return
        if _is_chrome(attrs):
            self._chrome = (tag, 1)
        elif tag == "a":
            href = dict(attrs).get("href") or ""
            self._anchor_starts.append(len(self.parts) if href.startswith("#") else None)
        elif tag in _SKIP_TAGS:
            self._skip += 1
        elif tag == "pre":
            self._pre += 1
            self.parts.append("\n\n")
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n" if tag not in {"br", "td", "dd", "li", "tr"} else "\n")

    def handle_endtag(self, tag: str) -> None:
        if self._chrome is not None:
            if tag == self._chrome[0]:
                self._chrome = (tag, self._chrome[1] - 1) if self._chrome[1] > 1 else None
            return
        if tag == "a":
            start = self._anchor_starts.pop() if self._anchor_starts else None
            if start is not None and "".join(self.parts[start:]).strip() in _PERMALINK_GLYPHS:
                del self.parts[start:]
        elif tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)
            self.parts.append("\n\n")
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._chrome is None:  # a self-closed element (<br/>) neither opens nor closes chrome
            self.handle_starttag(tag, attrs)
            self.handle_endtag(tag)

    def handle_data(self, data: str) -> None:
        if self._skip or self._chrome is not None:
            return
        if self._pre:
            self.parts.append(data)
        else:
            self.parts.append(re.sub(r"\s+", " ", data))


def _is_chrome(attrs: list[tuple[str, str | None]]) -> bool:
    for name, value in attrs:
        if not value:
            continue
        if name == "role" and value in _SKIP_ROLES:
            return True
        if name in ("class", "id") and not _SKIP_NAMES.isdisjoint(value.lower().split()):  # old DocBook: "NAVHEADER"
            return True
    return False


def normalize_paragraphs(text: str) -> str:
    """Trim line ends, keep at most one blank line between paragraphs."""
    lines = [ln.rstrip() for ln in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip() + "\n"


def html_to_text(html: str) -> str:
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    joined = "".join(parser.parts)
    # collapse runs of spaces at line starts made by inline whitespace around block tags
    joined = re.sub(r"\n[ \t]+(?=\S)", "\n", joined)
    return normalize_paragraphs(joined)


def read_gzip_text(path: str) -> str:
    """info.gz, dictd .dict.dz (dictzip is gzip-compatible), jargon.txt.gz."""
    with gzip.open(path, "rb") as fh:
        return fh.read().decode("utf-8", errors="strict")


def info_to_text(raw: str) -> str:
    # info node separators (\x1f) and the tag table carry no prose
    body = raw.split("\x1f\nTag Table:")[0]
    return normalize_paragraphs(body.replace("\x1f", "\n"))


_META_CHARSET = re.compile(rb"""<meta[^>]+charset=["']?([A-Za-z0-9_-]+)""", re.IGNORECASE)


def decode_html(data: bytes) -> str:
    """UTF-8, else the charset the page declares (old DocBook HTML is often ISO-8859-1)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        match = _META_CHARSET.search(data[:4096])
        if not match:
            raise
        return data.decode(match.group(1).decode("ascii"))
