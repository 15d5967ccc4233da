"""Per-run lineage files merged into the catalog: four concurrent runs, idempotent merges, live files left alone,
and every prompt rebuilt exactly as it was sent."""

from __future__ import annotations

import json
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor

import pytest

from lc_assets.cli import main
from lc_assets.defs.resources import TokenizerResource
from lc_assets.lib.corpus.lineage import latest_chunk_config
from lc_assets.lib.generation.admission import SectionPreparer
from lc_assets.lib.generation.focus import EvidenceDepth
from lc_assets.lib.generation.prompts import KIND_HINTS, kinds_in_turn
from lc_assets.lib.generation.run import grow_sections
from lc_assets.lib.lineage import LineageStore
from lc_assets.lib.lineage.catalog import merge_pending, merge_run_file, pending_run_files
from lc_assets.lib.lineage.generation import iter_section_tasks, rebuild_prompt, sections_to_grow
from lc_assets.lib.lineage.writer import LineageWriter
from lc_assets_tests.generation.doubles import ScriptedBackend
from lc_assets_tests.lineage.run_worker import STEPS, config, grow_shard, seed_shard
from lc_assets_tests.lineage.test_lineage_writer import prompt_row

SHARDS = ("north", "south", "east", "west")


def _section_row(steps: int, finish: str | None = None, model: str | None = "m") -> dict:
    return dict(
        section_id="s1", chunk_id="c1", document_id="d1", shard="x", config_hash="h", chunk_tokens=10,
        target_tokens=20, section_tokens=10 + steps, n_pairs=steps, steps=steps, failed_steps=0,
        finish_reason=finish, model=model, backend="b", run_id=f"run{steps}", n_paragraphs=3,
    )  # fmt: skip


def test_merges_are_idempotent_and_a_section_never_goes_back(tmp_path):
    catalog = LineageStore(tmp_path / "lineage.duckdb")
    newer, older = catalog.run_file("newer"), catalog.run_file("older")
    with LineageWriter(newer) as w:
        w.put({}, {"sections": {"s1": _section_row(4, "max_steps")}})
    with LineageWriter(older) as w:
        w.put({}, {"sections": {"s1": _section_row(2, model=None)}})
    copy = tmp_path / "copy.duckdb"
    shutil.copyfile(newer, copy)
    assert merge_run_file(catalog, newer, "t").rows == {"sections": 1}
    merge_run_file(catalog, older, "t")  # an older state merged later changes nothing
    merge_run_file(catalog, copy, "t")  # the same file twice: still one row
    assert catalog.query("SELECT steps, finish_reason, model, run_id FROM sections") == [(4, "max_steps", "m", "run4")]
    assert not newer.exists() and not older.exists() and pending_run_files(catalog) == []
    assert catalog.scalar("SELECT count(*) FROM lineage_merges") == 3


def test_the_same_step_from_two_runs_is_reported_and_the_first_kept(tmp_path):
    catalog = LineageStore(tmp_path / "lineage.duckdb")
    for run, prompt_hash in (("first", "aaa"), ("second", "bbb")):
        with LineageWriter(catalog.run_file(run)) as w:
            w.put({"masked_prompts": [prompt_row("s1", 0) | {"prompt_hash": prompt_hash}]})
    assert merge_run_file(catalog, catalog.run_file("first"), "t").conflicting_prompts == 0
    assert merge_run_file(catalog, catalog.run_file("second"), "t").conflicting_prompts == 1
    assert catalog.query("SELECT prompt_hash FROM masked_prompts") == [("aaa",)]


def test_a_live_run_file_is_left_alone(tmp_path):
    catalog = LineageStore(tmp_path / "lineage.duckdb")
    writer = LineageWriter(catalog.run_file("live"), commit_every=1)
    writer.put({}, {"sections": {"s1": _section_row(1)}})
    writer.flush()
    [result] = merge_pending(catalog, "t")
    assert result.skipped and "held by a running" in result.skipped
    writer.close()
    [result] = merge_pending(catalog, "t")
    assert result.skipped is None and result.rows == {"sections": 1}


def test_four_concurrent_runs_each_row_once_and_walks_intact(tmp_path):
    catalog = LineageStore(tmp_path / "lineage.duckdb")
    n_sections = {s: seed_shard(catalog, s, tmp_path / s, 2, 100 * i) for i, s in enumerate(SHARDS)}
    spawn = multiprocessing.get_context("spawn")  # four fresh interpreters, as four pods would be
    with ProcessPoolExecutor(4, mp_context=spawn) as pool:
        futures = [pool.submit(grow_shard, str(catalog.path), s, f"run-{s}", 0.01) for s in SHARDS]
        results = [f.result(timeout=600) for f in futures]

    total = sum(n_sections.values())
    assert {r["shard"]: r["finished"] for r in results} == n_sections
    assert sum(r["steps"] for r in results) == total * STEPS
    ok = catalog.scalar("SELECT count(*) FROM masked_prompts WHERE status = 'ok'")  # validation may refuse some
    expected = {"masked_prompts": total * STEPS, "qa_pairs": ok, "failed_steps": total * STEPS - ok, "sections": total}
    for table, key in (
        ("masked_prompts", "prompt_id"),
        ("qa_pairs", "pair_id"),
        ("failed_steps", "prompt_id"),
        ("sections", "section_id"),
    ):
        count, distinct = catalog.query(f"SELECT count(*), count(DISTINCT {key}) FROM {table}")[0]
        assert count == distinct == expected[table], table
    # a pair is never stored without its evidence (written in the same group commit)
    assert catalog.scalar("SELECT count(*) FROM qa_pairs WHERE pair_id NOT IN (SELECT pair_id FROM qa_evidence)") == 0
    assert catalog.query("SELECT DISTINCT finish_reason, steps FROM sections") == [("max_steps", STEPS)]
    # every pair walks back to its prompt, section, chunk and document; shown earlier pairs exist
    walked = catalog.scalar(
        """SELECT count(*) FROM qa_pairs q JOIN masked_prompts m USING (prompt_id)
           JOIN sections s ON s.section_id = q.section_id JOIN chunks c ON c.chunk_id = s.chunk_id
           JOIN documents d ON d.document_id = c.document_id"""
    )
    assert walked == ok
    assert (
        catalog.scalar(
            "SELECT count(*) FROM (SELECT unnest(earlier_pair_ids) AS p FROM masked_prompts) "
            "WHERE p NOT IN (SELECT pair_id FROM qa_pairs)"
        )
        == 0
    )
    merges = [json.loads(r) for (r,) in catalog.query("SELECT rows FROM lineage_merges")]
    assert sum(1 for m in merges if m.get("masked_prompts")) == 4
    assert all(m["conflicting_prompts"] == 0 for m in merges)
    assert pending_run_files(catalog) == []
    for prompt_id in catalog.query("SELECT prompt_id FROM masked_prompts USING SAMPLE 8 ROWS"):
        assert rebuild_prompt(catalog, prompt_id[0]).messages  # rebuilt and hash-verified


def _grown(tmp_path, books: int):
    """A catalog with one shard of `books` documents, every section grown by the scripted double."""
    catalog = LineageStore(tmp_path / "lineage.duckdb")
    seed_shard(catalog, "books", tmp_path / "books", books, 7)
    tok = TokenizerResource().load()
    # many long-range prompts to rebuild; one book's questions must name it (attributed_sources)
    cfg = config().model_copy(update={"long_range_share": 0.5, "attributed_sources": ["*book0*"]})
    todo, _ = sections_to_grow(catalog, "books", latest_chunk_config(catalog, "books"), cfg.config_hash())
    backend = ScriptedBackend(tokenizer=tok)
    grow_sections(catalog, todo, backend, cfg, tok, "grow-run")
    return catalog, todo, backend


def test_rebuilt_prompts_equal_what_the_backend_received(tmp_path, capsys):
    catalog, todo, backend = _grown(tmp_path, books=2)
    sent = {"/".join(r.request_id.split("/")[:2]): r.messages for r in backend.submitted}
    assert len(sent) == len(todo) * STEPS
    for key, messages in sent.items():
        section_id, step = key.split("/")
        assert rebuild_prompt(catalog, f"{section_id}:{step}").messages == messages
    # the prompts vary by what lineage stores beside spans: the suggested kind, long-range steps, the title
    kinds, long_range = catalog.query("SELECT count(DISTINCT kind), count(*) FILTER (long_range) FROM masked_prompts")[
        0
    ]
    assert kinds >= 4 and long_range >= 1
    assert all("The excerpts come from the document titled" in m[1]["content"] for m in sent.values())
    # ... and the focus window a step asked about (masked_prompts.record), rebuilt from the record
    assert any("Quote your evidence from Excerpt" in m[1]["content"] for m in sent.values())
    # ... and the attribution its config asked of one book's sections (documents.source, the config's patterns)
    named = [m for m in sent.values() if 'Begin the question with "In ' in m[1]["content"]]
    assert 0 < len(named) < len(sent)
    assert catalog.scalar("SELECT count(*) FROM qa_pairs WHERE question LIKE 'In %, %'") > 0
    # ... and the kind a step was sent when its cycle's "why" fell back (no reason stated in the text its question
    # must come from, kind_cues): the stored kind is the one sent, so those prompts are rebuilt exactly too
    cfg = config()
    stored = catalog.query("SELECT section_id, step, kind FROM masked_prompts WHERE NOT long_range")
    fell_back = [
        (sid, step, kind)
        for sid, step, kind in stored
        if kinds_in_turn(cfg.seed, sid, step, cfg.question_kinds)[0] == "why" and kind != "why"
    ]
    assert fell_back and all(f"{sid}/{step}" in sent for sid, step, _ in fell_back)
    assert all(KIND_HINTS["why"] not in sent[f"{sid}/{step}"][1]["content"] for sid, step, _ in fell_back)
    assert all(KIND_HINTS[kind] in sent[f"{sid}/{step}"][1]["content"] for sid, step, kind in fell_back)
    section_id, step = next(iter(sent)).split("/")
    assert main(["lineage", "prompt", f"{section_id}:{step}", "--json", "--db", str(catalog.path)]) == 0
    assert tuple(json.loads(capsys.readouterr().out)) == sent[f"{section_id}/{step}"]
    with pytest.raises(SystemExit, match="no prompt"):
        main(["lineage", "prompt", "nope:0", "--db", str(catalog.path)])


def test_resume_from_lineage_rebuilds_each_sections_evidence_depth(tmp_path):
    """`committed_steps` carries every pair's qa_evidence spans, so a resumed section's histogram (which window
    its next steps focus on) is the one its live run had."""
    catalog, todo, _ = _grown(tmp_path, books=1)
    cfg = config().model_copy(update={"long_range_share": 0.5})
    tok = TokenizerResource().load()
    preparer = SectionPreparer(cfg, tok.count_batch, tok)
    checked = 0
    for task in iter_section_tasks(catalog, todo):
        spans = catalog.query(
            "SELECT char_start, char_end FROM qa_evidence WHERE section_id = ?", [task.section.section_id]
        )
        expected = EvidenceDepth(len(task.section.text))
        expected.add(spans)
        assert preparer(task).evidence_depth.counts == expected.counts
        checked += sum(expected.counts)
    assert checked > 0


def test_a_changed_prompt_template_is_refused_not_rebuilt_wrong(tmp_path, monkeypatch):
    catalog, todo, _ = _grown(tmp_path, books=1)
    from lc_assets.lib.generation import prompts

    monkeypatch.setattr(prompts, "SYSTEM_PROMPT", prompts.SYSTEM_PROMPT + " Be brief.")
    with pytest.raises(ValueError, match="prompt templates changed"):
        rebuild_prompt(catalog, f"{todo[0].section_id}:0")


def test_lineage_merge_cli_merges_what_killed_runs_left(tmp_path, capsys):
    catalog = LineageStore(tmp_path / "lineage.duckdb")
    with LineageWriter(catalog.run_file("killed")) as w:
        w.put({}, {"sections": {"s1": _section_row(3)}})
    assert main(["lineage", "merge", "--db", str(catalog.path)]) == 0
    assert "1 run file(s) merged" in capsys.readouterr().out
    assert catalog.scalar("SELECT steps FROM sections") == 3
