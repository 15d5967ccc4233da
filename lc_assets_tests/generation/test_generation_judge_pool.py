"""Judging in worker processes: the same verdicts as in the loop, errors and dead workers loud."""

from __future__ import annotations

import json
import os
import signal

import pytest

from lc_assets.lib.generation.backend import GenerationResult
from lc_assets.lib.generation.judge_pool import JudgePool, JudgeWorkerError, _Section
from lc_assets.lib.generation.judging import StepContext
from lc_assets.lib.generation.masking import MaskWindow, Paragraph, split_paragraphs
from lc_assets.lib.generation.prompts import EARLIER_HEADER
from lc_assets.lib.generation.records import MemorySink
from lc_assets.lib.generation.scheduler import GenerationScheduler
from lc_assets.lib.generation.validate import QuestionIndex

from .conftest import make_section, small_config
from .doubles import Reply, ScriptedBackend, grounded_text, unique_reply


def _mixed_script(req):
    """Valid pairs, a repeated question (near-duplicate), broken JSON, an unsupported answer, a backend error."""
    sid, step, attempt = req.request_id.split("/")[:3]
    step_i = int(step)
    if step_i == 1 and attempt == "0":
        return Reply("not json")
    if step_i in (0, 2):  # step 2 repeats step 0's question (the double's own questions never repeat)
        return Reply(grounded_text(req, question="Which words does the repeated paragraph list?"))
    if step_i == 3 and attempt == "0":
        return Reply(json.dumps({"evidence": [], "question": "What is never shown here?", "answer": "Nothing."}))
    if step_i == 5 and sid.endswith("1"):
        return Reply("", error="HTTP 500")
    listed = req.messages[-1]["content"].split(EARLIER_HEADER)
    if step_i == 4 and attempt == "0" and len(listed) == 2:
        # an answer copying a question the prompt lists as asked: the echo check reads the step's earlier pairs
        earlier = listed[1].strip().splitlines()[0].lstrip("- ").strip()
        return Reply(json.dumps(json.loads(grounded_text(req)) | {"answer": earlier}))
    return unique_reply(req)


def _run(target_tokenizer, workers: int) -> MemorySink:
    backend = ScriptedBackend(tokenizer=target_tokenizer, script=_mixed_script, in_flight_cap=3)
    sink = MemorySink()
    cfg = small_config(judge_workers=workers, target_ratio=1.15, max_consecutive_failed_steps=6)
    summary = GenerationScheduler(backend, cfg, sink, target_tokenizer).run([make_section(f"s{i}") for i in range(4)])
    assert len(summary.sections) == 4
    return sink


def _comparable(sink: MemorySink) -> list[tuple]:
    return sorted(
        (
            r.section_id,
            r.step,
            r.status,
            r.failure_reason,
            r.attempts,
            r.pair,
            r.evidence,
            r.kind,
            tuple((a.attempt, a.reason) for a in r.rejected),
            r.section_tokens,
        )  # fmt: skip
        for r in sink.records
    )


def test_worker_verdicts_equal_the_loops(target_tokenizer):
    inline = _comparable(_run(target_tokenizer, 0))
    pooled = _comparable(_run(target_tokenizer, 2))
    assert pooled == inline
    statuses = {row[2] for row in inline}
    reasons = {(row[3] or "").split(":")[0] for row in inline} | {a[1].split(":")[0] for row in inline for a in row[8]}
    # the comparison covers accepted pairs and each kind of refusal, not only the easy path
    assert statuses == {"ok", "failed"}
    assert {"invalid_json", "duplicate_question", "evidence_missing", "backend_error", "echo"} <= reasons


def test_verdicts_left_for_later_loop_turns_change_nothing(target_tokenizer, monkeypatch):
    # the loop settles a few verdicts per turn and keeps the rest for the next turns: with one per turn, every
    # verdict that comes back with another waits a turn, and the records are still those of judging in the loop
    from lc_assets.lib.generation import scheduler

    inline = _comparable(_run(target_tokenizer, 0))
    monkeypatch.setattr(scheduler, "_VERDICTS_PER_TURN", 1)
    left = []
    collect = scheduler._Run._collect_verdicts

    def counting(self, timeout):
        collect(self, timeout)
        left.append(len(self.verdicts))

    monkeypatch.setattr(scheduler._Run, "_collect_verdicts", counting)
    assert _comparable(_run(target_tokenizer, 1)) == inline
    assert max(left) >= 1  # verdicts did wait for a later turn


def test_judge_workers_are_not_part_of_the_generation_hash():
    assert small_config(judge_workers=0).config_hash() == small_config(judge_workers=3).config_hash()


_TEXT = "The parser reads the header line first. It stops at the first blank line of the file."
_PARAGRAPHS = (Paragraph(0, "p00000-x", 0, len(_TEXT), _TEXT, 20),)


def _context(section_id: str = "s") -> StepContext:
    window = MaskWindow(_PARAGRAPHS)
    return StepContext(section_id, 0, (window,), (), QuestionIndex(), False, "und", small_config())


def test_a_worker_exception_comes_back_with_its_traceback():
    with JudgePool(small_config(), 1) as pool:
        # a result whose text is not a string makes validation raise inside the worker
        pool.submit("k1", _context(), GenerationResult("k1", None, 1, 1, "stop", 0.0), [], _PARAGRAPHS)  # type: ignore[arg-type]
        pool.send()
        with pytest.raises(JudgeWorkerError, match="judging k1 failed in a judge worker") as info:
            for _ in range(200):
                pool.ready(timeout=0.1)
        assert "Traceback" in str(info.value)


def test_a_dead_worker_stops_the_run_loudly():
    with JudgePool(small_config(), 1) as pool:
        ok = json.dumps({"evidence": ["The parser reads the header line first."], "question": "q?", "answer": "a"})
        pool.submit("k1", _context(), GenerationResult("k1", ok, 1, 1, "stop", 0.0), [], _PARAGRAPHS)
        pool.send()
        got = []
        for _ in range(200):
            got += pool.ready(timeout=0.1)
            if got:
                break
        assert [k for k, _ in got] == ["k1"] and got[0][1].reason is not None  # judged (refused: 1-word question)
        os.kill(pool._procs[0].pid, signal.SIGKILL)
        pool._procs[0].join(5)
        pool.submit("k2", _context(), GenerationResult("k2", ok, 1, 1, "stop", 0.0), [], _PARAGRAPHS)
        with pytest.raises(JudgeWorkerError, match=r"lc-judge-0 died \(exit code -9\)"):
            pool.send()  # (the task pipe's broken end says it here already)
            for _ in range(50):
                pool.ready(timeout=0.1)


def test_a_pool_needs_a_worker():
    with pytest.raises(ValueError, match="at least one worker"):
        JudgePool(small_config(), 0)


def test_windows_travel_as_references_into_the_sections_paragraphs():
    from lc_assets.lib.generation.judge_pool import _window_ref

    paras = tuple(Paragraph(i, f"p{i}", 10 * i, 10 * i + 9, f"text {i:04d}", 3) for i in range(5))
    assert _window_ref(MaskWindow(paras[1:4]), paras) == (1, 3)
    # a window over paragraphs that are not the section's own objects (another chunk's) is sent whole
    foreign = tuple(Paragraph(i, f"q{i}", 0, 9, "other text", 3) for i in range(2))
    assert _window_ref(MaskWindow(foreign), paras) == MaskWindow(foreign)


def test_workers_of_a_killed_parent_exit(tmp_path):
    # SIGKILL gives the parent no chance to stop its workers; they notice it is gone and exit within seconds
    import subprocess
    import sys
    import time

    code = (
        "import os, sys, time\n"
        "from lc_assets.lib.generation.judge_pool import JudgePool\n"
        "from lc_assets_tests.generation.conftest import small_config\n"
        "pool = JudgePool(small_config(), 2)\n"
        "print(' '.join(str(p.pid) for p in pool._procs), flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2
        time.sleep(1.0)
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in pids):
            time.sleep(0.2)
        alive = [p for p in pids if os.path.exists(f"/proc/{p}")]
        for p in alive:
            os.kill(p, signal.SIGKILL)
        assert alive == []
    finally:
        if parent.poll() is None:
            parent.kill()


def test_full_pipes_neither_block_the_loop_nor_deadlock():
    # ~1 MB of tasks, far more than a pipe holds (64 KB): send() writes what the pipe takes and returns; the rest
    # goes on while ready() waits, and the worker (blocked on a full verdict pipe meanwhile) is read: every verdict
    # comes back, in order
    import time

    paragraphs = tuple(Paragraph(i, f"p{i:05d}", 100 * i, 100 * i + len(_TEXT), _TEXT, 20) for i in range(2000))
    window = MaskWindow(paragraphs[:1])
    context = StepContext("s", 0, (window,), (), QuestionIndex(), False, "und", small_config())
    answer = "The parser reads the header line first. " * 20
    keys = [f"k{i}" for i in range(600)]
    with JudgePool(small_config(), 1) as pool:
        for key in keys:
            text = json.dumps(
                {"evidence": ["The parser reads the header line first."], "question": key, "answer": answer}
            )
            pool.submit(key, context, GenerationResult(key, text, 1, 1, "stop", 0.0), [], paragraphs)
        t0 = time.monotonic()
        pool.send()
        assert time.monotonic() - t0 < 1.0  # did not wait for the worker to read
        assert pool._tasks[0].pending  # the pipe did not take it all
        time.sleep(1.0)  # the worker judges what it got and fills the verdict pipe
        got: list[str] = []
        deadline = time.monotonic() + 120
        while len(got) < len(keys) and time.monotonic() < deadline:
            got += [k for k, _ in pool.ready(timeout=0.1)]
        assert got == keys
        assert not pool._tasks[0].pending


def test_a_worker_cuts_each_window_text_from_its_section_text_as_the_window_joins_it():
    text = "First para.\n\nSecond — “quoted”.\n\n\n\nThird\nwith a line.\n\n  Fourth é.  \n\nFifth."
    paragraphs = tuple(split_paragraphs(text, lambda texts: [len(t) for t in texts], 100))
    section = _Section(paragraphs)
    for first in range(len(paragraphs)):
        for n in range(1, len(paragraphs) - first + 1):
            (window,) = section.windows([(first, n)])
            assert window.text == MaskWindow(paragraphs[first : first + n]).text
            assert window.paragraphs == paragraphs[first : first + n]
    # overlapping paragraphs (not as split_paragraphs cuts them): each window joins its own text
    overlapping = (Paragraph(0, "p0", 0, 10, "abcdefghij", 1), Paragraph(1, "p1", 5, 12, "fghijkl", 1))
    (window,) = _Section(overlapping).windows([(0, 2)])
    assert window.text == MaskWindow(overlapping).text
