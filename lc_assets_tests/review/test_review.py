"""`lc-assets review` over a real lineage file: sampling, verdicts recorded and resumed, files, agreement."""

from __future__ import annotations

import json

import pytest

from lc_assets.cli import main
from lc_assets.lib.lineage.review import (
    PairReview,
    candidate_ids,
    effective_reviews,
    load_items,
    newest_config_with_pairs,
    sample_candidate_ids,
)
from lc_assets.lib.review import (
    ReviewConfig,
    VerdictFileError,
    agreement,
    apply_verdicts,
    read_verdicts,
    render_item,
    review_session,
    sample_items,
    sample_order,
)
from lc_assets_tests.review.conftest import GEN, RUN


def _rows(store):
    return store.query(
        "SELECT pair_id, reviewer, verdict, fixed_question, fixed_answer, note, item_kind, automatic, automatic_code, "
        "generation_config_hash, generation_run_id FROM pair_reviews ORDER BY pair_id"
    )


def read_verdicts_from(lines):
    return [PairReview(x["pair_id"], "t", x["verdict"]) for x in lines]


def _script(*answers):
    it = iter(answers)

    def ask(_prompt: str) -> str:
        try:
            return next(it)
        except StopIteration:
            raise EOFError from None

    return ask


def test_sample_order_depends_only_on_seed_and_id():
    ids = [f"p{i}" for i in range(50)]
    order = sample_order(ids, 3)
    assert order == sample_order(reversed(ids), 3) and order != sample_order(ids, 4)
    grown = sample_order([*ids, "new-1", "new-2"], 3)
    assert [i for i in grown if i in ids] == order  # adding items never reshuffles the others


def test_the_sql_sample_follows_the_same_seeded_order_and_skips_reviewed_items(lineage):
    store = lineage.store
    for kind in ("pair", "rejected_attempt"):
        every = candidate_ids(store, kind, GEN)
        for seed in (0, 5):
            assert sample_candidate_ids(store, kind, GEN, 100, seed) == sample_order(every, seed)
    first = sample_candidate_ids(store, "pair", GEN, 3, 9)
    apply_verdicts(store, read_verdicts_from([{"pair_id": first[0], "verdict": "accept"}]), run_id="r", config_hash="c")
    assert sample_candidate_ids(store, "pair", GEN, 3, 9, skip_reviewed=True)[:2] == first[1:]
    assert sample_candidate_ids(store, "pair", GEN, 3, 9) == first  # without skipping: unchanged
    assert sample_candidate_ids(store, "pair", GEN, 3, 9, run_id="other-run") == []


def test_rejected_attempts_are_listed_once_from_both_tables(lineage):
    # failed steps' final attempts (#1) are in rejected_attempts as well: one item each
    assert candidate_ids(lineage.store, "rejected_attempt", GEN) == lineage.rejected_ids
    assert len(lineage.rejected_ids) == 8
    assert candidate_ids(lineage.store, "rejected_attempt", GEN, run_id="other") == []


def test_items_carry_the_shown_text_and_their_quotes(lineage):
    pair, rejected = load_items(lineage.store, [lineage.pair_ids[0], "sec-alpha:4#1"])
    assert pair.kind == "pair" and pair.automatic == "accepted" and pair.question_kind == "numeric"
    assert pair.excerpt.highlighted == {1: lineage.quotes[pair.item_id][0][2], 2: lineage.quotes[pair.item_id][1][2]}
    assert rejected.automatic == "rejected" and rejected.automatic_code == "evidence_not_found"
    assert rejected.question == "Is this <grounded>?"
    found, missing = rejected.quotes
    assert found.located and rejected.excerpt.highlighted == {1: "Paragraph 4 of alpha says"}
    assert not missing.located
    text = render_item(rejected, "1/2")
    assert "[[1 Paragraph 4 of alpha says]]" in text and "(NOT in the shown text)" in text
    assert "\x1b[" not in text and "\x1b[" in render_item(rejected, color=True)
    assert "evidence_not_found" not in text  # blind: the automatic decision is not shown


def test_session_records_verdicts_at_once_and_resumes_with_the_next_items(lineage):
    store = lineage.store
    config = ReviewConfig(generation_config_hash=GEN, sample=3, seed=7)
    items = sample_items(store, config)
    assert [i.kind for i in items] == ["pair"] * 3
    shown: list[str] = []
    result = review_session(
        store, items, "ann", run_id="s1", config_hash=config.config_hash(), show=shown.append,
        ask=_script("x", "a", "", "f", "Fixed question?", "", "typo", "q"),
    )  # fmt: skip
    assert result.stopped and [r.verdict for r in result.recorded] == ["accept", "fix"]
    assert any("type one of" in s for s in shown)
    rows = _rows(store)
    assert [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows] == sorted(
        [
            (items[0].item_id, "ann", "accept", None, None, None),
            (items[1].item_id, "ann", "fix", "Fixed question?", None, "typo"),
        ]
    )
    assert {(r[6], r[7], r[8], r[9], r[10]) for r in rows} == {("pair", "accepted", None, GEN, RUN)}
    # the same command again: the reviewed ones are skipped, the order goes on
    again = sample_items(store, config)
    assert [i.item_id for i in again][:1] == [items[2].item_id]
    assert not {i.item_id for i in again} & {r[0] for r in _rows(store)}
    result = review_session(store, again, "ann", run_id="s2", config_hash="c", show=lambda s: None,
                            ask=_script("r", "unsupported", "s"))  # fmt: skip
    assert result.stopped and result.skipped == 1 and [r.verdict for r in result.recorded] == ["reject"]
    assert effective_reviews(store, GEN)[items[2].item_id].note == "unsupported"


def test_rejected_attempts_are_mixed_in_blind(lineage):
    config = ReviewConfig(generation_config_hash=GEN, sample=4, rejected=4, seed=1)
    items = sample_items(lineage.store, config)
    kinds = [i.kind for i in items]
    assert kinds.count("pair") == 4 and kinds.count("rejected_attempt") == 4
    assert kinds != sorted(kinds) and kinds != sorted(kinds, reverse=True)  # interleaved by the seeded order
    review_session(lineage.store, items, "bob", run_id="s", config_hash="c", show=lambda s: None,
                   ask=_script(*["r", ""] * 8))  # fmt: skip
    codes = {r[8] for r in _rows(lineage.store) if r[6] == "rejected_attempt"}
    assert codes <= {"evidence_not_found", "invalid_json"} and codes


def test_verdicts_file_records_and_names_bad_lines(lineage, tmp_path):
    good = tmp_path / "verdicts.jsonl"
    p0, p1 = lineage.pair_ids[:2]
    good.write_text(
        "\n".join(
            json.dumps(x)
            for x in (
                {"pair_id": p0, "verdict": "reject", "note": "answer invents a fact"},
                {"pair_id": p1, "verdict": "fix", "fixed_answer": "Twelve ships.", "reviewer": "cy"},
                {"pair_id": "sec-beta:5#1", "verdict": "accept"},
            )
        )
        + "\n\n"
    )
    verdicts = read_verdicts(good, "dee")
    assert [(v.reviewer, v.verdict) for v in verdicts] == [("dee", "reject"), ("cy", "fix"), ("dee", "accept")]
    apply_verdicts(lineage.store, verdicts, run_id="file", config_hash="c")
    apply_verdicts(lineage.store, verdicts, run_id="file", config_hash="c")  # idempotent: one row per reviewer
    assert len(_rows(lineage.store)) == 3
    bad = tmp_path / "bad.jsonl"
    for line, message in (
        ("{not json", "bad.jsonl:2: not JSON"),
        (json.dumps({"pair_id": p0, "verdict": "maybe"}), "bad.jsonl:2: verdict 'maybe'"),
        (json.dumps({"pair_id": p0, "verdict": "fix"}), "bad.jsonl:2: a 'fix' needs"),
        (json.dumps({"verdict": "accept"}), "bad.jsonl:2: no pair_id"),
    ):
        bad.write_text(json.dumps({"pair_id": p0, "verdict": "accept"}) + "\n" + line + "\n")
        with pytest.raises(VerdictFileError, match=message):
            read_verdicts(bad, "dee")
    unknown = read_verdicts(good, "eve") + [read_verdicts(good, "eve")[0].__class__("no-such-pair", "eve", "accept")]
    with pytest.raises(VerdictFileError, match="no-such-pair"):
        apply_verdicts(lineage.store, unknown, run_id="x", config_hash="c")
    assert not {r[1] for r in _rows(lineage.store)} & {"eve"}  # nothing of the bad file was stored


def test_cli_export_verdicts_stats_and_report(lineage, tmp_path, capsys, monkeypatch):
    db = str(lineage.store.path)
    out = tmp_path / "sample.jsonl"
    assert main(["review", "--db", db, "-n", "3", "--include-rejected", "2", "--export", str(out)]) == 0
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(exported) == 5 and all(e["verdict"] is None and "shown_text" in e for e in exported)
    assert main(["review", "--db", db, "-n", "2", "--include-rejected", "--export", str(tmp_path / "x.jsonl")]) == 0
    assert sum("#" in json.loads(line)["pair_id"] for line in (tmp_path / "x.jsonl").read_text().splitlines()) == 2
    with pytest.raises(SystemExit, match="sample"):
        main(["review", "--db", db, "-n", "0", "--export", str(tmp_path / "y.jsonl")])
    assert "automatic" not in exported[0]
    for e in exported:
        e["verdict"] = "accept" if "#" not in e["pair_id"] else "reject"
    out.write_text("\n".join(json.dumps(e) for e in exported))
    monkeypatch.delenv("USER", raising=False)
    with pytest.raises(SystemExit, match="--reviewer"):
        main(["review", "--db", db, "--verdicts", str(out)])
    assert main(["review", "--db", db, "--verdicts", str(out), "--reviewer", "fay"]) == 0
    capsys.readouterr()
    assert main(["review", "--db", db, "--stats"]) == 0
    stats = capsys.readouterr().out
    assert "5 review(s)" in stats and "agreement 100.0%" in stats
    monkeypatch.setenv("USER", "gus")
    monkeypatch.setattr("builtins.input", _script("a", "", "q"))
    assert main(["review", "--db", db, "-n", "2", "--context", "0"]) == 0
    assert "recorded 1 verdict(s)" in capsys.readouterr().out
    assert {r[1] for r in _rows(lineage.store)} == {"fay", "gus"}
    report = tmp_path / "rep.html"
    assert main(["report", "--db", db, "-o", str(report), "--run", RUN, "--sample", "2"]) == 0
    assert "Cohen&#x27;s kappa" in report.read_text() or "Cohen's kappa" in report.read_text()


def test_agreement_on_a_hand_made_case():
    judgements = (
        [("accepted", "accept")] * 7 + [("accepted", "fix")] + [("accepted", "reject")] * 2
        + [("rejected", "accept")] + [("rejected", "reject")] * 4
    )  # fmt: skip
    a = agreement(judgements)
    assert a.n == 15 and a.rows() == [("accepted", 7, 1, 2), ("rejected", 1, 0, 4)]
    # fix counts as reject: agree = 7 + 4 = 11 of 15; p_e = 10/15 * 8/15 + 5/15 * 7/15 = 115/225
    assert a.agreement == round(11 / 15, 4)
    assert a.kappa == round((165 - 115) / (225 - 115), 4) == 0.4545
    assert a.accepted_confirmed == 0.7 and a.rejected_confirmed == 0.8
    lenient = agreement(judgements, fix_counts_as="accept")
    # agree = 8 + 4 = 12; human ok = 9 -> p_e = 10/15 * 9/15 + 5/15 * 6/15 = 120/225
    assert lenient.agreement == 0.8 and lenient.kappa == round((180 - 120) / (225 - 120), 4)
    assert agreement([]).kappa is None and agreement([]).agreement is None
    one_sided = agreement([("accepted", "accept")] * 3)
    assert one_sided.agreement == 1.0 and one_sided.kappa is None  # chance agreement is 1: kappa undefined
    with pytest.raises(ValueError, match="unknown judgement"):
        agreement([("accepted", "maybe")])


def test_the_default_generation_config_is_the_newest_with_pairs_of_the_shard(lineage):
    # report and review default to the newest config overall; the model judge to the newest of its shard
    store = lineage.store
    assert newest_config_with_pairs(store) == GEN
    assert newest_config_with_pairs(store, "test") == GEN
    assert newest_config_with_pairs(store, "another-shard") is None
