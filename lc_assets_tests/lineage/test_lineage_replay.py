"""Stored steps replayed: the windows each prompt showed, rebuilt from lineage, give the stored verdicts again."""

from __future__ import annotations

from lc_assets.lib.generation.validate import QuestionIndex
from lc_assets.lib.lineage.replay import rejudge, step_language, stored_steps
from lc_assets_tests.lineage.test_lineage_catalog import _grown


def test_replayed_steps_rejudge_to_the_stored_verdicts(tmp_path):
    catalog, todo, _ = _grown(tmp_path, books=1)
    steps = list(stored_steps(catalog))
    assert len(steps) == catalog.scalar("SELECT count(*) FROM masked_prompts WHERE prompt_hash <> ''") > 0
    stored = dict(catalog.query("SELECT prompt_id, code FROM rejected_attempts WHERE attempt = 0"))
    indexes: dict[str, QuestionIndex] = {}
    for st in steps:
        assert st.attempts, st.prompt_id
        for w in st.windows:  # offset-exact: each shown paragraph is the chunk's text at its span
            assert len(w.text) == w.char_end - w.char_start
            assert all(st.chunk_text[p.char_start : p.char_end] == p.text for p in w.paragraphs)
        index = indexes.setdefault(st.section_id, QuestionIndex())
        verdict = rejudge(st, st.attempts[0].raw_text, index, step_language(st))
        assert verdict.reason == stored.get(st.prompt_id), st.prompt_id
        if st.pair_id is not None:
            assert st.attempts[-1].code is None
        accepted = [a for a in st.attempts if a.code is None]
        if accepted:
            index.add(rejudge(st, accepted[0].raw_text, QuestionIndex(), step_language(st)).question or "")
