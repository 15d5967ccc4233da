"""The HTML quality report over a real lineage file: parsed back, highlights where the evidence is, all escaped."""

from __future__ import annotations

import inspect
from html.parser import HTMLParser
from pathlib import Path

from lc_assets.lib.lineage import LineageStore
from lc_assets.lib.lineage.quality import load_quality
from lc_assets.lib.lineage.review import PairReview, load_items, record_review
from lc_assets.lib.quality_report import write_quality_report
from lc_assets_tests.review.conftest import GEN, NASTY, RUN, build_lineage


class _Page(HTMLParser):
    """Collects what the tests check: marks (with their quote numbers), pair sections, tags, sources, text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.marks: list[tuple[str, str]] = []  # (data-quote, text)
        self.pairs: list[str] = []  # section ids
        self.sources: list[str] = []
        self.text: list[str] = []
        self._mark: tuple[str, list[str]] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "mark":
            self._mark = (a.get("data-quote", ""), [])
        if tag == "section" and "pair" in (a.get("class") or ""):
            self.pairs.append(a["id"])
        for key in ("src", "href"):
            if key in a:
                self.sources.append(a[key])

    def handle_endtag(self, tag):
        if tag == "mark" and self._mark:
            self.marks.append((self._mark[0], "".join(self._mark[1])))
            self._mark = None

    def handle_data(self, data):
        self.text.append(data)
        if self._mark:
            self._mark[1].append(data)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_signature_is_what_the_generation_asset_calls():
    params = inspect.signature(write_quality_report).parameters
    assert list(params) == ["store", "generation_config_hash", "out_path", "run_id", "sample_pairs", "seed"]
    assert [params[p].default for p in ("run_id", "sample_pairs", "seed")] == [None, 20, 0]
    assert all(params[p].kind is inspect.Parameter.KEYWORD_ONLY for p in ("run_id", "sample_pairs", "seed"))


def test_report_renders_highlights_inside_the_shown_excerpt(lineage, tmp_path):
    out = write_quality_report(lineage.store, GEN, tmp_path / "r" / "quality.html", sample_pairs=50)
    assert out == tmp_path / "r" / "quality.html" and not list(out.parent.glob(".*tmp"))
    page = _parse(out)
    assert len(page.pairs) == len(lineage.pair_ids)  # all 8 sampled (fewer than 50)
    # every stored quote is highlighted exactly, with its number
    expected = sorted(
        (str(k + 1), text) for pid in lineage.pair_ids for k, (_, _, text) in enumerate(lineage.quotes[pid])
    )
    assert sorted(page.marks) == expected
    # self-contained: no external asset, plots are inline PNG
    assert page.sources and all(s.startswith("data:image/png;base64,") for s in page.sources)
    assert "link" not in page.tags and "script" not in page.tags
    text = "".join(page.text)
    assert "yield" in text and "66.7%" in text  # 8 accepted of 12 steps
    assert "evidence_not_found" in text and "a quote is not in the shown text" in text
    assert "test-model" in text and "No reviews yet" in text
    assert text.count("fuzzy match 92") == 2 and text.count("added by the validator") == 2


def test_everything_from_the_data_is_escaped(lineage, tmp_path):
    out = write_quality_report(lineage.store, GEN, tmp_path / "q.html", sample_pairs=50)
    raw = out.read_text(encoding="utf-8")
    page = _parse(out)
    assert "script" not in page.tags and "b" in page.tags  # <b> is the report's own Q/A label only
    assert "<script>" not in raw and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in raw
    text = "".join(page.text)
    assert NASTY in text  # shown as text, in the excerpt of the pairs that showed paragraph 3
    assert "What did the keeper write <b>in the log</b> & why?" in text
    assert "<b>in the log</b>" not in raw


def test_a_run_and_a_sample_size_narrow_the_report(lineage, tmp_path):
    page = _parse(write_quality_report(lineage.store, GEN, tmp_path / "a.html", run_id=RUN, sample_pairs=3, seed=1))
    assert len(page.pairs) == 3
    again = _parse(write_quality_report(lineage.store, GEN, tmp_path / "b.html", run_id=RUN, sample_pairs=3, seed=1))
    assert again.pairs == page.pairs  # the seed fixes the sample
    other = _parse(write_quality_report(lineage.store, GEN, tmp_path / "c.html", run_id="another-run"))
    assert other.pairs == [] and "Sampled pairs (0 of 0" in "".join(other.text)


def test_metrics_come_from_the_stored_rows(lineage):
    q = load_quality(lineage.store, GEN)
    assert (q.steps, q.accepted, q.sections) == (12, 8, 2)
    assert q.rejections_by_reason == {"evidence_not_found": 4}
    assert q.rejected_attempts_by_reason == {"invalid_json": 2}  # step 1 of each section retried once
    assert q.kind_mix == {"numeric": 6, "what": 2}
    assert q.completed_evidence_share == 0.25 and q.pairs_with_depth == 8
    assert q.evidence_verbatim_share == 0.75  # step 3's second quote of each section matched fuzzily (92)
    assert sum(q.depth_histogram) == 16  # two quotes per pair
    assert q.completion_tokens == 12 * 40


def test_reviews_appear_with_the_pair_and_in_the_agreement(lineage, tmp_path):
    items = {i.item_id: i for i in load_items(lineage.store, [lineage.pair_ids[0], lineage.rejected_ids[1]])}
    first = lineage.pair_ids[0]
    record_review(lineage.store, items[first], PairReview(first, "ann", "fix", None, "Eleven <ships>.", "n&b"),
                  run_id="rev", config_hash="c")  # fmt: skip
    rej = lineage.rejected_ids[1]
    record_review(lineage.store, items[rej], PairReview(rej, "ann", "reject"), run_id="rev", config_hash="c")
    page = _parse(write_quality_report(lineage.store, GEN, tmp_path / "r.html", sample_pairs=50))
    text = "".join(page.text)
    assert "reviewed by ann: fix — A: Eleven <ships>. — n&b" in text
    assert "rejected attempts the reviewer rejected too100.0%" in text.replace("\n", "")
    assert "Cohen's kappa" in text


def test_old_lineage_without_spans_or_evidence_tables_still_reports(tmp_path):
    store = LineageStore(tmp_path / "old.duckdb")
    built = build_lineage(store, with_evidence=False)
    with store.connect() as con:  # rows from before shown_spans were stored: paragraph ids only
        con.execute("UPDATE masked_prompts SET shown_spans = NULL")
    page = _parse(write_quality_report(store, GEN, tmp_path / "old.html", sample_pairs=50))
    assert len(page.pairs) == len(built.pair_ids) and page.marks == []
    text = "".join(page.text)
    assert "no evidence stored" in text and "kind ?" in text
    # the shown text is rebuilt from the paragraph ids: pair 0 of alpha showed paragraphs 0, 1 and 7
    assert "Paragraph 1 of alpha says" in text and "Paragraph 7 of alpha says" in text
    assert "Paragraph 13 of alpha says" not in text  # never shown to any prompt
