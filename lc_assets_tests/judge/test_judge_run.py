"""The judge loop over a backend double: verdicts stored per pair, many in flight, resume, stops, errors."""

from __future__ import annotations

import threading

from lc_assets.lib.judge import apply_keep_policy, judge_pairs
from lc_assets.lib.judge.prompt import judge_input
from lc_assets.lib.lineage.judge import (
    count_judgements,
    effective_judgements,
    judgements_of,
    pairs_to_judge,
    shard_pair_ids,
)
from lc_assets.lib.lineage.review import load_pairs
from lc_assets_tests.generation.doubles import Reply
from lc_assets_tests.judge.conftest import GEN, judge_reply, question_of, scripted_judge

RULES = {
    "1881 (alpha)": judge_reply("unsupported", check="Quote 1 is about another year."),
    "1882 (beta)": judge_reply("partly"),
    "keeper": judge_reply("supported", standalone=False),
    "1884 (beta)": Reply('{"check": "unfinished'),
}


def test_every_pair_gets_one_stored_verdict_with_its_lineage(lineage, tok, judge_config):
    store, cfg = lineage.store, judge_config()
    ids = shard_pair_ids(store, "test", GEN)
    assert ids == sorted(lineage.pair_ids) and len(ids) == 8
    backend = scripted_judge(tok, RULES, in_flight_cap=3)
    summary = judge_pairs(store, backend, cfg, ids, run_id="judge-run-1", generation_config_hash=GEN)
    assert (summary.judged, summary.total, summary.stopped) == (8, 8, False)
    assert backend.max_seen_in_flight == 3  # many requests in flight, capped by the backend
    rows = {j.pair_id: j for j in judgements_of(store, cfg.config_hash(), ids)}
    assert set(rows) == set(ids)
    assert rows["sec-alpha:0:pair"].verdict == "unsupported" and not rows["sec-alpha:0:pair"].kept
    assert rows["sec-alpha:0:pair"].check_text == "Quote 1 is about another year."
    assert rows["sec-beta:1:pair"].verdict == "partly" and not rows["sec-beta:1:pair"].kept
    keeper = [j for p, j in rows.items() if p.endswith(":2:pair")]
    assert all(j.verdict == "supported" and j.standalone is False and not j.kept for j in keeper)
    broken = rows["sec-beta:3:pair"]
    assert (broken.verdict, broken.error_code, broken.kept) == ("judge_error", "invalid_json", True)
    counts = count_judgements(list(rows.values()))
    assert (counts.judged, counts.kept, counts.rejected, counts.not_standalone) == (8, 4, 4, 2)
    assert counts.by_verdict == {"supported": 5, "unsupported": 1, "partly": 1, "judge_error": 1}
    assert counts.errors_by_code == {"invalid_json": 1}
    raw, model, run, gen = store.query(
        "SELECT raw_text, judge_model, run_id, generation_config_hash FROM pair_judgements WHERE pair_id = ?",
        ["sec-beta:3:pair"],
    )[0]
    assert (raw, model, run, gen) == ('{"check": "unfinished', "scripted-judge", "judge-run-1", GEN)


def test_the_prompt_shows_each_quote_marked_inside_its_shown_text(lineage, tok, judge_config):
    backend = scripted_judge(tok)
    judge_pairs(lineage.store, backend, judge_config(), ["sec-alpha:0:pair"], run_id="r", generation_config_hash=GEN)
    (request,) = backend.submitted
    user = request.messages[-1]["content"]
    assert "Document: The alpha book" in user
    assert "[[1 Paragraph 1 of alpha says the harbour held 11 ships in 1881]]" in user
    assert "[[2 Paragraph 7 of alpha says the ]]harbour held 17 ships" in user
    assert "It was calm. […] [[2" in user  # the skipped paragraphs between the two windows
    assert user.split("Question:")[0].rstrip().endswith("It was calm.")  # no gap marker at the end
    assert question_of(request) == "How many ships did the harbour hold in 1881 (alpha)?"
    assert list(request.json_schema["properties"]) == ["check", "verdict", "standalone"]  # reasoning first
    assert request.temperature == 0.0


def test_a_rerun_asks_nothing_and_a_changed_keep_policy_relabels_without_asking(lineage, tok, judge_config):
    store, cfg = lineage.store, judge_config()
    ids = shard_pair_ids(store, "test", GEN)
    judge_pairs(store, scripted_judge(tok, RULES), cfg, ids, run_id="r1", generation_config_hash=GEN)
    assert pairs_to_judge(store, cfg.config_hash(), ids) == []
    lenient = judge_config(keep_verdicts=("supported", "partly"), require_standalone=False)
    assert lenient.config_hash() == cfg.config_hash()
    assert apply_keep_policy(store, lenient, ids) == 3  # partly + the two not standalone
    assert apply_keep_policy(store, lenient, ids) == 0
    assert count_judgements(judgements_of(store, cfg.config_hash(), ids)).kept == 7
    other = judge_config(context_chars=50)  # another judge config asks again
    assert pairs_to_judge(store, other.config_hash(), ids) == ids


def test_serving_errors_are_stored_and_asked_again_next_run(lineage, tok, judge_config):
    store, cfg = lineage.store, judge_config()
    ids = shard_pair_ids(store, "test", GEN)
    down = scripted_judge(tok, {"1881": Reply("", error="connection refused")})
    judge_pairs(store, down, cfg, ids, run_id="r1", generation_config_hash=GEN)
    stored = {j.pair_id: j for j in judgements_of(store, cfg.config_hash(), ids)}
    assert {p for p, j in stored.items() if j.error_code == "backend_error"} == {"sec-alpha:0:pair", "sec-beta:0:pair"}
    again = pairs_to_judge(store, cfg.config_hash(), ids)
    assert again == ["sec-alpha:0:pair", "sec-beta:0:pair"]
    judge_pairs(store, scripted_judge(tok), cfg, again, run_id="r2", generation_config_hash=GEN)
    assert pairs_to_judge(store, cfg.config_hash(), ids) == []
    assert all(j.verdict == "supported" for j in effective_judgements(store, GEN).values())


def test_a_stopped_run_keeps_what_it_committed_and_the_next_run_does_the_rest(lineage, tok, judge_config):
    store, cfg = lineage.store, judge_config(commit_every=1)
    ids = shard_pair_ids(store, "test", GEN)
    stop = threading.Event()
    calls = []

    def script(request):
        calls.append(request.request_id)
        if len(calls) == 3:
            stop.set()  # the run is terminated while the third request is out
            return Reply(judge_reply().text, delay_s=30.0)
        return judge_reply()

    backend = scripted_judge(tok, in_flight_cap=1)
    backend.script = script
    first = judge_pairs(store, backend, cfg, ids, run_id="r1", generation_config_hash=GEN, stop=stop)
    assert first.stopped and first.judged < len(ids)
    done = len(judgements_of(store, cfg.config_hash(), ids))
    assert done == first.judged == 2
    assert backend.aborted  # the request in flight at the stop was aborted, not recorded
    rest = pairs_to_judge(store, cfg.config_hash(), ids)
    assert len(rest) == len(ids) - done
    second = judge_pairs(store, scripted_judge(tok), cfg, rest, run_id="r2", generation_config_hash=GEN)
    assert second.judged == len(rest) and not second.stopped
    runs = dict(store.query("SELECT run_id, count(*) FROM pair_judgements GROUP BY 1"))
    assert runs == {"r1": done, "r2": len(rest)}


def test_prompts_that_do_not_fit_drop_the_context_then_are_too_long(lineage, tok, judge_config):
    store, cfg = lineage.store, judge_config(max_tokens=64, max_check_chars=100)
    item = judge_input(load_pairs(store, ["sec-alpha:0:pair"])[0], cfg.context_chars)
    from lc_assets.lib.judge.prompt import build_messages

    backend = scripted_judge(tok)
    with_context = backend.count_prompt_tokens(build_messages(item))
    from dataclasses import replace

    quotes_only = backend.count_prompt_tokens(build_messages(replace(item, context="")))
    assert quotes_only < with_context
    backend.window = quotes_only + 64  # the quotes fit, the context does not
    s = judge_pairs(store, backend, cfg, ["sec-alpha:0:pair"], run_id="r", generation_config_hash=GEN)
    assert s.context_dropped == 1 and s.judged == 1
    assert "The quotes in their context" not in backend.submitted[0].messages[-1]["content"]
    tiny = scripted_judge(tok, window=80)
    s = judge_pairs(store, tiny, judge_config(max_tokens=64, max_check_chars=100, context_chars=10),
                    ["sec-alpha:1:pair"], run_id="r", generation_config_hash=GEN)  # fmt: skip
    assert s.errors_by_code == {"too_long": 1} and not tiny.submitted


def test_a_request_that_never_returns_is_aborted_as_a_timeout(lineage, tok, judge_config):
    store, cfg = lineage.store, judge_config(request_timeout_s=0.2)
    backend = scripted_judge(tok, {"1881 (alpha)": Reply(judge_reply().text, delay_s=30.0)})
    s = judge_pairs(store, backend, cfg, ["sec-alpha:0:pair", "sec-alpha:1:pair"], run_id="r",
                    generation_config_hash=GEN)  # fmt: skip
    assert s.errors_by_code == {"timeout": 1} and s.by_verdict["supported"] == 1
    assert backend.aborted == [r.request_id for r in backend.submitted if "sec-alpha:0:pair" in r.request_id]
    assert pairs_to_judge(store, cfg.config_hash(), ["sec-alpha:0:pair", "sec-alpha:1:pair"]) == ["sec-alpha:0:pair"]


def test_max_pairs_bounds_a_run_and_progress_is_reported(lineage, tok, judge_config):
    events = []
    s = judge_pairs(lineage.store, scripted_judge(tok), judge_config(max_pairs=3, progress_every_s=0.001),
                    lineage.pair_ids, run_id="r", generation_config_hash=GEN, progress=events.append)  # fmt: skip
    assert (s.total, s.judged) == (3, 3)
    assert events and events[-1].done == 3 and "judged 3/3 pairs" in str(events[-1])
