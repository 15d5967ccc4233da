"""The quality report and the CLI show the judge's verdicts and how they agree with human reviews."""

from __future__ import annotations

from lc_assets.cli import judge_line, main
from lc_assets.lib.judge import judge_pairs
from lc_assets.lib.lineage.judge import generation_judge_counts, judge_vs_human
from lc_assets.lib.lineage.review import PairReview
from lc_assets.lib.quality_report import render_quality_report
from lc_assets.lib.review import agreement, apply_verdicts
from lc_assets_tests.judge.conftest import GEN, judge_reply, scripted_judge


def _judge_and_review(lineage, tok, judge_config):
    store = lineage.store
    rules = {"1881": judge_reply("unsupported", check="Another <year>.")}
    judge_pairs(store, scripted_judge(tok, rules), judge_config(), lineage.pair_ids, run_id="j1",
                generation_config_hash=GEN)  # fmt: skip
    apply_verdicts(
        store,
        [PairReview("sec-alpha:0:pair", "ann", "reject"),  # judge rejected, human rejected
         PairReview("sec-beta:0:pair", "ann", "accept"),  # judge rejected, human accepted
         PairReview("sec-alpha:1:pair", "ann", "accept"),  # judge kept, human accepted
         PairReview("sec-alpha:3:pair", "ann", "fix", fixed_answer="14 ships.")],  # kept, human fixed
        run_id="rev", config_hash="c",
    )  # fmt: skip


def test_judge_counts_and_agreement_with_people(lineage, tok, judge_config):
    _judge_and_review(lineage, tok, judge_config)
    counts = generation_judge_counts(lineage.store, GEN)
    assert (counts.judged, counts.kept, counts.rejected) == (8, 6, 2)  # the two 1881 pairs are rejected
    pairs = sorted(judge_vs_human(lineage.store, GEN))
    assert pairs == sorted([("rejected", "reject"), ("rejected", "accept"), ("accepted", "accept"),
                            ("accepted", "fix")])  # fmt: skip
    a = agreement(pairs)
    assert (a.n, a.agreement, a.accepted_confirmed, a.rejected_confirmed) == (4, 0.5, 0.5, 0.5)
    assert generation_judge_counts(lineage.store, GEN, run_id="no-such-run").judged == 0


def test_the_html_report_has_the_judge_section_escaped(lineage, tok, judge_config):
    _judge_and_review(lineage, tok, judge_config)
    page = render_quality_report(lineage.store, GEN, sample_pairs=8)
    assert "<h2>Model judge</h2>" in page and "Model judge against human review" in page
    assert "pairs the judge rejected the reviewer rejected too" in page
    assert "Another &lt;year&gt;." in page and "Another <year>." not in page
    assert "model judge (scripted-judge): <b class='verdict-reject'>unsupported, rejected</b>" in page


def test_the_report_says_when_nothing_was_judged(lineage):
    page = render_quality_report(lineage.store, GEN, sample_pairs=2)
    assert "No model verdicts yet" in page
    assert judge_line(lineage.store, GEN, None) == "model judge: no verdicts yet (materialize judged_qa_pairs)"


def test_cli_prints_verdict_counts_and_agreement(lineage, tok, judge_config, capsys, tmp_path):
    _judge_and_review(lineage, tok, judge_config)
    assert main(["report", "--db", str(lineage.store.path), "-o", str(tmp_path / "r.html")]) == 0
    out = capsys.readouterr().out
    assert "model judge: 8 pair(s) judged (supported 6, unsupported 2); kept 6, rejected 2 (25.0%)" in out
    assert main(["review", "--stats", "--db", str(lineage.store.path)]) == 0
    out = capsys.readouterr().out
    assert "human verdicts against the model judge" in out
