import codecs
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from lc_assets.lib.corpus.documents import RawDocument, SkippedInput, SourceNotFoundError, content_id
from lc_assets.lib.corpus.embedded import CATALOG, iter_embedded
from lc_assets.lib.corpus.sources import SourceSpec, iter_source
from lc_assets_tests.foundation.conftest import make_text


def _split(items):
    docs = [i for i in items if isinstance(i, RawDocument)]
    skips = {i.source: i.reason for i in items if isinstance(i, SkippedInput)}
    return docs, skips


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    (root / "books").mkdir(parents=True)
    (root / "books" / "a.txt").write_text(make_text(1, 30))
    (root / "books" / "b.md").write_text("# Title\n\n" + make_text(2, 20))
    (root / "code.py").write_text("def f():\n    return 1\n")
    (root / "dup.txt").write_text(make_text(1, 30))  # same content as books/a.txt
    (root / "empty.txt").write_text("  \n\n")
    (root / "blob.txt").write_bytes(b"\x00\x01\x02binary\x00" * 100)
    (root / "latin1.txt").write_bytes("caf\xe9 na\xefve".encode("latin-1"))
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / ".hidden.txt").write_text("ignored")
    rows = [{"text": make_text(3, 5)}, {"text": ""}, {"other": "x"}, {"text": make_text(4, 5)}]
    lines = [json.dumps(r) for r in rows] + ["{not json"]
    (root / "records.jsonl").write_text("\n".join(lines) + "\n")
    pq.write_table(pa.table({"text": [make_text(5, 4), make_text(6, 4)]}), root / "table.parquet")
    pq.write_table(pa.table({"body": ["x"]}), root / "wrongcol.parquet")
    (root / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    return root


def test_local_folder_reads_every_kind_and_records_every_skip(corpus_dir: Path):
    docs, skips = _split(list(iter_source(SourceSpec(kind="local", path=str(corpus_dir), license="CC0-1.0"))))
    sources = sorted(d.source for d in docs)
    assert sources == sorted(
        ["books/a.txt", "books/b.md", "code.py", "dup.txt", "records.jsonl#L1", "records.jsonl#L4"]
        + ["table.parquet#row0", "table.parquet#row1"]
    )
    assert all(d.license == "CC0-1.0" for d in docs)
    a, dup = (next(d for d in docs if d.source == s) for s in ("books/a.txt", "dup.txt"))
    assert a.document_id == dup.document_id  # same content, same id: stored once downstream
    assert skips == {
        "empty.txt": "empty",
        "blob.txt": "binary",
        "latin1.txt": "undecodable",
        "image.png": "unsupported_type",
        "records.jsonl#L2": "empty",
        "records.jsonl#L3": "missing_field",
        "records.jsonl#L5": "invalid_json",
        "wrongcol.parquet": "missing_field",
        "broken.parquet": "unreadable",
        ".hidden.txt": "hidden",
    }


def test_local_html_pages_are_read_as_their_text(tmp_path: Path):
    # an mdbook/rustdoc-like page: navigation and scripts around the text, inline code, entities
    page = (
        "<!DOCTYPE html><html><head><title>Book</title><style>p {color: red}</style></head><body>"
        "<nav><a href='#a'>1. Getting Started</a></nav><main><h1>Ownership</h1>"
        "<p>Each value in Rust has an <em>owner</em>. The <code>String</code> type\nmanages heap data &amp; "
        "frees it.</p><pre><code>let s = String::from(&quot;hi&quot;);\nlet t = s;</code></pre>"
        "<script>window.playground = true;</script></main></body></html>"
    )
    (tmp_path / "book.html").write_text(page, encoding="utf-8")
    # old DocBook pages: ISO-8859-1 declared in a meta tag
    latin = "<html><head><meta charset='iso-8859-1'></head><body><p>Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e.</p></body></html>"
    (tmp_path / "old.htm").write_bytes(latin.encode("latin-1"))
    (tmp_path / "undeclared.html").write_bytes("<p>na\u00efve</p>".encode("latin-1"))
    (tmp_path / "markup.xhtml").write_text("<html><body><div><img src='x.png'/></div></body></html>")
    docs, skips = _split(list(iter_source(SourceSpec(kind="local", path=str(tmp_path)))))
    text = {d.source: d.text for d in docs}
    assert text["book.html"] == (
        "Ownership\n\nEach value in Rust has an owner. The String type manages heap data & frees it.\n\n"
        'let s = String::from("hi");\nlet t = s;\n'
    )
    assert text["old.htm"] == "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e.\n"
    assert skips == {"undeclared.html": "undecodable", "markup.xhtml": "empty"}


def test_heading_permalinks_and_page_chrome_are_not_part_of_the_text(tmp_path: Path):
    # Sphinx ends headings with a "¶" link, Node.js's docs with a "#" one: models quoted "writable.write(chunk)#"
    sphinx = (
        "<h2>os.remove(path)<a class='headerlink' href='#os.remove' title='Permalink'>\u00b6</a></h2>"
        "<p>Remove (delete) the file <a href='#os.unlink'>unlink()</a> and see <a href='#fn1'>[1]</a>.</p>"
    )
    node = (
        "<h3>writable.write(chunk)<span><a class='mark' href='#writable-write' id='w'>#</a></span>"
        "<a aria-hidden='true' class='legacy' id='stream_w'></a></h3><p>Use <a href='other.html#x'>#</a> "
        "the <code>#</code> sign.</p><pre>w.write('a');</pre><button class='copy-button'>copy</button>"
    )
    # page chrome around it, as Sphinx, DocBook and Node.js mark it: sidebars, "Prev Up Next", tables of contents
    sphinx = (
        "<div class='related' role='navigation'><ul><li><a href='genindex.html'>index</a></li></ul></div>"
        "<div class='navheader'><table><tr><td>Prev</td><td>Up</td></tr></table></div>"
        "<div class='toc'><dl class='toc'><dt>9.4.1. <a href='#f'>format</a></dt><dl class='toc'><dt>x</dt></dl></dl>"
        "<br/></div>" + sphinx + "<div class='sphinxsidebar' role='navigation'><h3>Table of Contents</h3><div>"
        "<ul><li>os</li></ul></div></div><div class='footer'>&copy; Copyright 2001.</div><p>Last.</p>"
    )
    (tmp_path / "sphinx.html").write_text(sphinx, encoding="utf-8")
    (tmp_path / "node.html").write_text(node, encoding="utf-8")
    docs, _ = _split(list(iter_source(SourceSpec(kind="local", path=str(tmp_path)))))
    text = {d.source: d.text for d in docs}
    assert text["sphinx.html"] == "os.remove(path)\n\nRemove (delete) the file unlink() and see [1].\n\nLast.\n"
    # a "#" that links to another page, or is plain text, is content
    assert text["node.html"] == "writable.write(chunk)\n\nUse # the # sign.\n\nw.write('a');\n"


def test_unreadable_file_is_skipped_with_reason(corpus_dir: Path, monkeypatch):
    real = Path.read_bytes

    def deny(self: Path) -> bytes:
        if self.name == "a.txt":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", deny)
    docs, skips = _split(list(iter_source(SourceSpec(kind="local", path=str(corpus_dir / "books")))))
    assert skips == {"a.txt": "unreadable"}
    assert [d.source for d in docs] == ["b.md"]


def test_single_file_and_missing_path(corpus_dir: Path, tmp_path: Path):
    docs, _ = _split(list(iter_source(SourceSpec(kind="local", path=str(corpus_dir / "code.py")))))
    assert len(docs) == 1 and docs[0].text.startswith("def f")
    missing = tmp_path / "no" / "such" / "dir"
    with pytest.raises(SourceNotFoundError, match=str(missing)):
        list(iter_source(SourceSpec(kind="local", path=str(missing))))


def test_max_documents_caps_documents_not_skips(corpus_dir: Path):
    docs, _ = _split(list(iter_source(SourceSpec(kind="local", path=str(corpus_dir), max_documents=2))))
    assert len(docs) == 2


def test_hf_datasets_on_local_files_offline(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    data = tmp_path / "ds.jsonl"
    data.write_text("\n".join(json.dumps({"content": make_text(i, 3)}) for i in range(4)) + "\n")
    for streaming in (True, False):
        spec = SourceSpec(
            kind="hf", dataset="json", data_files=[str(data)], text_field="content", streaming=streaming, license="MIT"
        )
        docs, skips = _split(list(iter_source(spec)))
        assert [d.text for d in docs] == [make_text(i, 3) for i in range(4)]
        assert skips == {} and all(d.license == "MIT" for d in docs)


def test_hf_errors_are_clear(tmp_path: Path, monkeypatch):
    import datasets.config
    import huggingface_hub.constants

    # the libraries read these at import time, so the env vars alone come too late here
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SourceNotFoundError, match="data_files not found"):
        list(iter_source(SourceSpec(kind="hf", dataset="json", data_files=[str(tmp_path / "nope.jsonl")])))
    with pytest.raises(SourceNotFoundError, match="could not be loaded"):
        list(iter_source(SourceSpec(kind="hf", dataset="some-org/definitely-not-cached")))


def test_spec_validation():
    with pytest.raises(ValidationError, match="needs `path`"):
        SourceSpec(kind="local")
    with pytest.raises(ValidationError, match="needs `dataset`"):
        SourceSpec(kind="hf")
    with pytest.raises(ValidationError):
        SourceSpec(kind="ftp")


def test_embedded_catalog_has_licensed_long_documents():
    assert len(CATALOG) >= 20 and all(e.license for e in CATALOG)
    docs, skips = _split(list(iter_embedded(["devils-dictionary", "cpython-email"])))
    assert {d.source for d in docs} | set(skips) == {"embedded:devils-dictionary", "embedded:cpython-email"}
    for d in docs:
        assert len(d.text) > 100_000 and d.license in ("public-domain", "PSF-2.0")
    with pytest.raises(ValueError, match="unknown embedded corpus entries"):
        list(iter_embedded(["no-such-book"]))


def test_encodings_line_ends_and_gzip_give_one_document(tmp_path: Path):
    text = make_text(21, 12)
    root = tmp_path / "enc"
    root.mkdir()
    (root / "lf.txt").write_text(text)
    (root / "crlf.txt").write_bytes(text.replace("\n", "\r\n").encode())
    (root / "cr.txt").write_bytes(text.replace("\n", "\r").encode())
    (root / "bom8.txt").write_bytes(codecs.BOM_UTF8 + text.encode())
    (root / "u16le.txt").write_bytes(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    (root / "u16be.md").write_bytes(codecs.BOM_UTF16_BE + text.encode("utf-16-be"))
    (root / "u32.txt").write_bytes(codecs.BOM_UTF32_LE + text.encode("utf-32-le"))
    (root / "packed.txt.gz").write_bytes(gzip.compress(text.replace("\n", "\r\n").encode()))
    (root / "rows.jsonl.gz").write_bytes(gzip.compress((json.dumps({"text": text}) + "\n{bad\n").encode()))
    (root / "broken.txt.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    (root / "u16-no-bom.txt").write_bytes(text.encode("utf-16-le"))
    (root / "bad16.txt").write_bytes(codecs.BOM_UTF16_LE + b"\x00\xd8\x41\x00")  # lone surrogate
    docs, skips = _split(list(iter_source(SourceSpec(kind="local", path=str(root)))))
    assert {d.document_id for d in docs} == {content_id(text)}
    assert sorted(d.source for d in docs) == sorted(
        ["lf.txt", "crlf.txt", "cr.txt", "bom8.txt", "u16le.txt", "u16be.md", "u32.txt", "packed.txt.gz"]
        + ["rows.jsonl.gz#L1"]
    )
    assert skips == {
        "rows.jsonl.gz#L2": "invalid_json",
        "broken.txt.gz": "unreadable",
        "u16-no-bom.txt": "binary",
        "bad16.txt": "undecodable",
    }


def test_symlinks_are_followed_once_and_loops_recorded(tmp_path: Path):
    data = tmp_path / "data"
    (data / "a").mkdir(parents=True)
    (data / "a" / "one.txt").write_text(make_text(31, 3))
    (data / "b").mkdir()
    (data / "b" / "two.txt").write_text(make_text(32, 3))
    root = tmp_path / "corpus"
    (root / "real").mkdir(parents=True)
    (root / "real" / "three.txt").write_text(make_text(33, 3))
    (root / "links").mkdir()
    (root / "links" / "a").symlink_to(data / "a")  # a folder of symlinked folders
    (root / "links" / "b").symlink_to(data / "b")
    (root / "links" / "a-again").symlink_to(data / "a")  # the same folder by a second path
    (root / "real" / "loop").symlink_to(root)  # back up to the root: a loop
    (root / "real" / "self").symlink_to(root / "real" / "self")  # a link to itself
    (root / "gone").symlink_to(tmp_path / "nowhere")
    (root / "three-link.txt").symlink_to(root / "real" / "three.txt")
    docs, skips = _split(list(iter_source(SourceSpec(kind="local", path=str(root)))))
    assert sorted(d.source for d in docs) == ["links/a/one.txt", "links/b/two.txt", "real/three.txt"]
    assert skips == {
        "links/a-again": "already_read",
        "real/loop": "symlink_loop",
        "real/self": "symlink_loop",
        "gone": "broken_symlink",
        "three-link.txt": "already_read",
    }


def test_suffix_filter_records_what_it_leaves_out(corpus_dir: Path):
    items = list(iter_source(SourceSpec(kind="local", path=str(corpus_dir), suffixes=["txt"])))
    docs, skips = _split(items)
    assert sorted(d.source for d in docs) == ["books/a.txt", "dup.txt"]
    assert skips["code.py"] == "suffix_not_selected" and skips["records.jsonl"] == "suffix_not_selected"


def test_many_tiny_files(tmp_path: Path):
    root = tmp_path / "tiny"
    for i in range(3000):
        sub = root / f"d{i % 30:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:04d}.txt").write_text(f"tiny file number {i}\n")
    docs, skips = _split(list(iter_source(SourceSpec(kind="local", path=str(root)))))
    assert len(docs) == 3000 and not skips
    assert docs[0].source == "d00/f0000.txt" and docs[-1].source == "d29/f2999.txt"


@pytest.mark.parametrize("streaming", [True, False])
def test_hf_json_keeps_good_records_and_names_bad_ones(tmp_path: Path, monkeypatch, streaming):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"text": make_text(40 + i, 2), "id": i}) + "\n" for i in range(3)))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": make_text(50, 2)}) + "\n{broken\n" + json.dumps({"body": "x"}) + "\n")
    spec = SourceSpec(kind="hf", dataset="json", data_files=[str(tmp_path / "*.jsonl")], streaming=streaming)
    docs, skips = _split(list(iter_source(spec)))
    assert [d.source for d in docs] == [f"hf:json:{bad}#L1"] + [f"hf:json:{good}#L{i}" for i in (1, 2, 3)]
    assert skips == {f"hf:json:{bad}#L2": "invalid_json", f"hf:json:{bad}#L3": "missing_field"}
    # on a clean file the records are exactly those `datasets` itself yields
    import datasets

    ref = datasets.load_dataset("json", data_files=[str(good)], split="train", streaming=streaming)
    assert [d.text for d in docs[1:]] == [r["text"] for r in ref]


def test_hf_other_builders_read_per_file(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    (tmp_path / "a.txt").write_text("first line\nsecond line\n")
    (tmp_path / "b.txt").write_bytes(b"fine\n\xff\xfe broken utf-8\n")
    spec = SourceSpec(kind="hf", dataset="text", data_files=[str(tmp_path / "*.txt")])
    docs, skips = _split(list(iter_source(spec)))
    assert [d.text for d in docs][:2] == ["first line", "second line"]
    (source, reason), *_ = skips.items()
    assert reason == "unreadable" and str(tmp_path / "b.txt") in source


@pytest.mark.parametrize("streaming", [True, False])
def test_hf_builder_bad_file_skips_that_file_only(tmp_path: Path, monkeypatch, streaming):
    # `datasets` reads eagerly without streaming: a bad csv row fails load_dataset itself, not the iteration
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    (tmp_path / "a_good.csv").write_text("id,text\n1,first good row\n2,second good row\n")
    (tmp_path / "b_bad.csv").write_text('id,text\n1,fine\n2,"x",extra,fields\n3,after\n')
    spec = SourceSpec(kind="hf", dataset="csv", data_files=[str(tmp_path / "*.csv")], streaming=streaming)
    docs, skips = _split(list(iter_source(spec)))
    assert [d.text for d in docs] == ["first good row", "second good row"]
    ((source, reason),) = skips.items()
    assert reason == "unreadable" and source.startswith(f"hf:csv:{tmp_path / 'b_bad.csv'}#")


def test_local_json_files_are_records_like_the_hf_json_builder(tmp_path: Path):
    """A .json file is one object, an array of objects, or JSON Lines: records, never an unsupported type."""
    root = tmp_path / "json"
    root.mkdir()
    (root / "object.json").write_text(json.dumps({"text": make_text(1, 3), "meta": {"a": 1}}, indent=2))
    (root / "array.json").write_text(json.dumps([{"text": make_text(2, 3)}, {"title": "no text"}], indent=2))
    (root / "lines.json").write_text(json.dumps({"text": make_text(3, 3)}) + "\n{broken\n")
    (root / "config.json").write_text(json.dumps({"name": "pkg", "version": "1.0"}, indent=2))
    docs, skips = _split(list(iter_source(SourceSpec(kind="local", path=str(root)))))
    assert {d.source: d.text for d in docs} == {
        "object.json": make_text(1, 3),
        "array.json#item0": make_text(2, 3),
        "lines.json#L1": make_text(3, 3),
    }
    assert skips == {
        "array.json#item1": "missing_field",
        "lines.json#L2": "invalid_json",
        "config.json": "missing_field",
    }
