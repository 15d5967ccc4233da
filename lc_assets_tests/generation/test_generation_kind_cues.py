"""Why-questions only where the text gives a reason: the causal-marker finder on real text, the kind choice (fall back
to the next kind of the section's cycle, deterministic, other steps unchanged), and the prompts a run sends with it
(rebuilt exactly from what lineage stores)."""

from __future__ import annotations

import pytest

from lc_assets.lib.generation.kind_cues import KIND_CUES, causal_markers, kind_for_text, states_a_reason
from lc_assets.lib.generation.masking import Mask, Paragraph, windows_of
from lc_assets.lib.generation.prompting import rebuild_messages
from lc_assets.lib.generation.prompts import (
    KIND_HINTS,
    TASK_ANY,
    fit_prompt,
    kinds_in_turn,
    question_text,
    suggest_kind,
)
from lc_assets.lib.generation.records import MemorySink
from lc_assets.lib.generation.scheduler import GenerationScheduler
from lc_assets.lib.sections import Section

from .conftest import small_config
from .doubles import ScriptedBackend
from .labelled_attempts import load_attempts

PYDOCS, NODE_JARGON = load_attempts("pydocs"), load_attempts("node_jargon")
OS, ST, LC = "57a0578c1bcf8c16fc489e11739f2d56", "6b1b5378c83d18abbfd041a0935a2bcf", "e901bc95f6e3cacec6338a260005f421"
STREAM, JARGON = "251180c5f4abf44e5d35f46ad8caf72d", "7748ee2a626cd94bf3789752d23983cb"
JARGON0 = "b7d9d0b2f53bee2cb827d1483b2bfa47"  # the Jargon File with earlier_pairs: 0


def _shown(row: dict) -> str:
    return "\n\n".join(p[3] for w in row["windows"] for p in w)


def _focus_text(row: dict) -> str:
    """The text the step's question had to come from: its focus window's, else every shown window's."""
    windows = row["windows"] if row["focus_window"] is None else [row["windows"][row["focus_window"]]]
    return "\n\n".join(p[3] for w in windows for p in w)


def _real(row: dict, start: str, end: str) -> str:
    """A passage the run showed, from ``start`` to ``end`` (both included): the fixtures' own text."""
    text = _shown(row)
    i = text.index(start)
    return text[i : text.index(end, i) + len(end)]


@pytest.mark.parametrize(
    ("row", "start", "end", "markers"),
    [
        # a code comment states the reason
        (PYDOCS[f"{LC}:46"], "# Signals need", "initialized.", ["in order to"]),
        (PYDOCS[f"{LC}:11"], "# to set a flag so that", "raise an exception", ["so that"]),
        # prose
        (PYDOCS[f"{ST}:16"], "For performance reasons", "checked for", ["reasons"]),
        (PYDOCS[f"{ST}:13"], "Keys views are set-like since", "hashable.", ["since"]),
        (PYDOCS[f"{OS}:24"], "serves only for debugging", "purposes.", ["purposes"]),
        (NODE_JARGON[f"{JARGON}:20"], "British correspondents", "come from", ["therefore"]),
        (NODE_JARGON[f"{JARGON0}:13"], "This is why the characters", "Teletype", ["this is why"]),
        # a temporal "since" before a hard-wrapped causal "because"
        (NODE_JARGON[f"{JARGON}:35"], "has been in decline since about 1996", "because", ["because"]),
        # no reason stated: a temporal "since", a why-step's whole focus window
        (PYDOCS[f"{LC}:4"], "Since Python 3.7", "context-local storage", []),
        (PYDOCS[f"{ST}:9"], "bytearray.expandtabs(tabsize=8)", "even if no changes were made.", []),
        # "the intended allusion is to the root prompt" gives a reason without a marker word (not found: a known miss)
        (NODE_JARGON[f"{JARGON}:25"], "Occasionally one sees a # leader", "super-user).", []),
    ],
)
def test_markers_in_real_text(row, start, end, markers):
    passage = _real(row, start, end)
    assert causal_markers(passage) == markers
    assert states_a_reason(passage) is bool(markers)


def test_markers_in_code():
    # comments are prose (real lines of the embedded CPython sources); identifiers and arguments are not
    assert causal_markers("# Because the first token, the attribute (name) eats CFWS, the second") == ["because"]
    assert causal_markers("    # since close() has been called we ignore any read data") == ["since"]
    assert causal_markers("# Since Python 3.8 Tasks propagate all exceptions correctly,") == []
    assert causal_markers("# seconds since epoch.") == []
    assert causal_markers("pg_event_trigger_table_rewrite_reason () → integer") == []
    assert causal_markers("Returns a code explaining the reason(s) for rewriting.") == ["reason"]
    for code in (
        "reason_code = resp.reason_code",
        "raise HTTPError(url, code, err.reason, hdrs, fp)",
        "self.reason = reason_phrase",
        "def close(self, reason: str) -> None:",
        "log(msg, reason)",
        "String getReason() { return purposeText; }",
        "git log --since=2.weeks",
        "purpose(x)",
        "const thus_far = 3;",
    ):
        assert causal_markers(code) == [], code
    assert causal_markers("x = 1  # held so that readers\n# never see a half-written row") == ["so that"]


def test_why_falls_back_to_the_next_kind_of_the_cycle_without_a_reason():
    seed, section, kinds = 3, "s", tuple(KIND_HINTS)
    why_steps = [step for step in range(70) if kinds_in_turn(seed, section, step, kinds)[0] == "why"]
    assert len(why_steps) == 10  # once per cycle of seven
    no_reason = _real(PYDOCS[f"{ST}:9"], "bytearray.expandtabs(tabsize=8)", "even if no changes were made.")
    reason = _real(PYDOCS[f"{LC}:46"], "# Signals need", "initialized.")
    for step in range(70):
        turn = kinds_in_turn(seed, section, step, kinds)
        cycle, pos = divmod(step, len(kinds))
        order = [kinds_in_turn(seed, section, cycle * len(kinds) + i, kinds)[0] for i in range(len(kinds))]
        assert turn == (*order[pos:], *order[:pos])  # the step's kind, then the rest of its cycle, wrapping
        assert suggest_kind(seed, section, step, kinds) == turn[0]  # without text: the cycle's kind, as before
        assert suggest_kind(seed, section, step, kinds, text=reason) == turn[0]
        if step in why_steps:
            assert suggest_kind(seed, section, step, kinds, text=no_reason) == turn[1] != "why"
        else:  # every other step keeps its kind
            assert suggest_kind(seed, section, step, kinds, text=no_reason) == turn[0]
    # deterministic per (seed, section, step), in any process (the cycle's rng is derived by hashing): "why" at steps 5
    # and 8 gives way to the kind after it (multi_hop, numeric), which steps 6 and 9 ask too; the rest is unchanged
    cycle = ["how", "what", "list", "compare", "numeric", "why", "multi_hop", "compare", "why", "numeric", "how"]
    assert [suggest_kind(seed, section, s) for s in range(11)] == cycle
    fallen = ["how", "what", "list", "compare", "numeric", "multi_hop", "multi_hop", "compare", "numeric", "numeric"]
    assert [suggest_kind(seed, section, s, text=no_reason) for s in range(11)] == [*fallen, "how"]
    assert [suggest_kind(seed, "t", s, kinds) for s in range(70)] != [suggest_kind(seed, section, s) for s in range(70)]
    # only gated kinds: no fallback fits, the step asks for any question
    assert suggest_kind(seed, section, 0, ["why"], text=no_reason) is None
    assert kind_for_text(["why", "why"], no_reason) is None and kind_for_text(["why"], reason) == "why"
    assert set(KIND_CUES) == {"why"}  # measured before gating more kinds (docs/qa_quality.md, session 10)


def _paragraphs(texts: list[tuple[int, str]]) -> list[Paragraph]:
    out, pos = [], 0
    for index, text in texts:
        out.append(Paragraph(index, f"p{index}", pos, pos + len(text), text, len(text.split())))
        pos += len(text) + 2
    return out


def test_the_focus_window_decides_not_the_other_windows():
    no_reason = "The bytearray version of this method does not operate in place."
    reason = "Values views are not treated as set-like since the entries are generally not unique."
    paras = _paragraphs([(2, no_reason), (9, reason)])
    windows = windows_of(paras)
    assert question_text(windows, 0) == no_reason and question_text(windows, None) == f"{no_reason}\n\n{reason}"

    def fit(focus, kind="why", fallbacks=("list", "what"), long_range=False):
        return fit_prompt(
            Mask(0, 100, tuple(paras), long_range), 20, [], lambda m: 1, 10_000, 100, kind=kind,
            choose_focus=lambda w: focus, kind_fallbacks=fallbacks,
        )  # fmt: skip

    assert fit(0).kind == "list"  # the focus states no reason: the next kind of the cycle
    user = fit(0).messages[1]["content"]
    assert KIND_HINTS["list"] in user and KIND_HINTS["why"] not in user
    assert fit(1).kind == "why"  # the focus states one
    assert fit(None).kind == "why"  # no focus: every shown window counts
    assert fit(0, kind="what").kind == "what"  # only "why" needs a cue
    assert fit(0, fallbacks=None).kind == "why"  # no fallbacks given: the kind as suggested (the old behaviour)
    assert fit(0, fallbacks=()).kind is None and TASK_ANY in fit(0, fallbacks=()).messages[1]["content"]
    assert fit(0, long_range=True).kind == "why"  # a long-range step names no kind: nothing to choose


def test_a_run_suggests_why_only_where_its_text_states_a_reason_and_rebuilds_every_prompt(target_tokenizer):
    # a section whose paragraphs state a reason now and then: "why" is kept on those steps only
    paras = []
    for i in range(60):
        body = " ".join(f"w{(i * 7 + j) % 97}" for j in range(40))
        because = f" It is kept because w{i} needs it." if i % 4 == 0 else ""
        paras.append(f"Paragraph {i} says {body}.{because}")
    section = Section("why", "chunk-why", "doc-why", "test", "CC0", "\n\n".join(paras))
    cfg = small_config(long_range_share=0.2, target_ratio=None, target_tokens=10**9, max_steps_per_section=70)
    backend = ScriptedBackend(tokenizer=target_tokenizer)
    sink = MemorySink()
    GenerationScheduler(backend, cfg, sink, target_tokenizer).run([section])
    sent = {int(r.request_id.split("/")[1]): r.messages for r in backend.submitted}
    pairs = {r.pair.pair_id: r.pair for r in sink.records if r.pair is not None}
    kept = fell_back = 0
    for rec in sink.records:
        turn = kinds_in_turn(cfg.seed, section.section_id, rec.step, cfg.question_kinds)
        shown = [Paragraph(i, "", s, e, section.text[s:e], 0) for i, s, e in rec.shown_spans]
        text = question_text(windows_of(shown), rec.focus_window)
        if rec.long_range or turn[0] != "why":
            assert rec.suggested_kind == turn[0]
        elif states_a_reason(text):
            assert rec.suggested_kind == "why"
            kept += 1
        else:
            assert rec.suggested_kind == turn[1]
            fell_back += 1
        # the kind stored for the step (masked_prompts.kind) rebuilds the exact messages sent
        earlier = [pairs[p] for p in rec.earlier_pair_ids]
        rebuilt = rebuild_messages(
            section.text, rec.shown_spans, len(paras), earlier, cfg.skip_marker, kind=rec.suggested_kind,
            long_range=rec.long_range, max_quotes=cfg.max_quotes, focus=rec.focus_window,
        )  # fmt: skip
        assert rebuilt == sent[rec.step]
    assert kept and fell_back, (kept, fell_back)


def test_the_markers_are_part_of_the_prompt_fingerprint(monkeypatch):
    """Which kind a step is sent depends on the marker list: a changed list is a new generation config."""
    from lc_assets.lib.generation import config as config_module

    before = config_module.prompt_version()
    monkeypatch.setattr(config_module, "cues_fingerprint", lambda: {"causal": "because", "why": "states_a_reason"})
    config_module.prompt_version.cache_clear()
    try:
        assert config_module.prompt_version() != before
    finally:
        config_module.prompt_version.cache_clear()
