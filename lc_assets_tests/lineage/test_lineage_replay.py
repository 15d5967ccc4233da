"""Stored steps replayed: the windows each prompt showed, rebuilt from lineage, give the stored verdicts again."""

from __future__ import annotations

from lc_assets.lib.generation.admission import source_language
from lc_assets.lib.generation.prompts import INSTRUCTION_TEXTS
from lc_assets.lib.generation.validate import UNDETERMINED_LANGUAGE, QuestionIndex, ValidationConfig, validate_output
from lc_assets.lib.lineage.replay import stored_steps
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
        cfg = ValidationConfig(**{k: v for k, v in st.settings.items() if k in ValidationConfig.model_fields})
        index = indexes.setdefault(st.section_id, QuestionIndex())
        first = st.attempts[0]
        verdict = validate_output(
            first.raw_text,
            st.windows,
            earlier=st.earlier_pairs,
            question_index=index,
            long_range=st.long_range,
            instructions=INSTRUCTION_TEXTS,
            source_language=source_language(st.chunk_text) or UNDETERMINED_LANGUAGE,
            config=cfg,
            title=st.title,
            focus_window=st.focus_window,
        )
        assert verdict.reason == stored.get(st.prompt_id), st.prompt_id
        if st.pair_id is not None:
            assert st.attempts[-1].code is None
        for attempt in st.attempts:
            if attempt.code is None:
                index.add(validate_output(attempt.raw_text, st.windows, config=cfg).question or "")
