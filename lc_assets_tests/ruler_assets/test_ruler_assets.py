"""ruler_tasks → ruler_scores through Dagster, with a backend double that reads the answer from the context."""

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import pytest

from lc_assets.defs.generation.resources import GeneratorResource
from lc_assets.defs.resources import LineageStoreResource
from lc_assets.defs.ruler.assets import ruler_scores, ruler_tasks
from lc_assets.lib.generation.backend import GenerationBackend, GenerationRequest, GenerationResult
from lc_assets.lib.lineage import LineageStore

SYNTHETIC = [
    "niah_single_1",
    "niah_single_2",
    "niah_multikey_2",
    "niah_multivalue",
    "niah_multiquery",
    "vt",
    "cwe",
    "fwe",
]


def answer_from_context(prompt: str) -> str:
    """What a perfect reader would answer, found in the prompt itself (each RULER family)."""
    if "special magic" in prompt:
        needles = defaultdict(list)
        for key, value in re.findall(r"One of the special magic \w+ for ([\w-]+) is: ([\w-]+)\.", prompt):
            needles[key].append(value)
        query = re.findall(r"special magic \w+ for (.+?) mentioned in the provided text\?", prompt)[-1]
        keys = [k.strip() for k in re.split(r",\s*(?:and\s+)?|\s+and\s+", query) if k.strip()]
        return ", ".join(v for k in keys for v in needles[k])
    if "chain(s) of variable assignment" in prompt:
        body = prompt.split("Memorize and track")[-1]
        value = re.findall(r"assigned the value (\d+)", body)[0]
        assigned = {}
        for name, rhs in re.findall(r"VAR (\w+) = (VAR \w+|\d+)", body):
            assigned[name] = rhs
        found, frontier = [], {value}
        while frontier:
            new = {n for n, rhs in assigned.items() if rhs.replace("VAR ", "") in frontier and n not in found}
            found += sorted(new)
            frontier = new
        return " ".join(found)
    if "numbered list of words" in prompt:
        body = prompt.split("Below is a numbered list of words")[-1]
        words = re.findall(r"\d+\. (\S+)", body.split("Question:")[0])
        return " ".join(f"{i}. {w}" for i, (w, _) in enumerate(Counter(words).most_common(10), 1))
    if "coded text" in prompt:
        body = prompt.split("Find the three most frequently appeared coded words.")[-1].split("Question:")[0]
        return " ".join(w for w, _ in Counter(body.split()).most_common(4))
    return ""


class ContextReader(GenerationBackend):
    name = "context-reader"
    model = "context-reader-double"

    def __init__(self) -> None:
        self.pending: list[GenerationRequest] = []
        self.asked: list[str] = []

    @property
    def context_window(self) -> int:
        return 1 << 20

    def count_prompt_tokens(self, messages: Sequence[dict[str, str]]) -> int:
        return sum(len(m["content"].split()) for m in messages)

    def submit(self, request: GenerationRequest) -> None:
        self.pending.append(request)

    def wait(self, timeout: float | None = None) -> list[GenerationResult]:
        done, self.pending = self.pending, []
        self.asked += [r.request_id for r in done]
        return [GenerationResult(r.request_id, answer_from_context(r.prompt or ""), 0, 1, "stop", 0.0) for r in done]


ASKED: list[str] = []


class ContextReaderGenerator(GeneratorResource):
    def build(self, log=None):
        backend = ContextReader()
        backend.asked = ASKED
        return backend


@pytest.fixture
def env(tmp_path: Path):
    ASKED.clear()
    resources = {
        "lineage": LineageStoreResource(path=str(tmp_path / "lineage.duckdb")),
        "generator": ContextReaderGenerator(),
    }
    return resources, LineageStore(tmp_path / "lineage.duckdb"), tmp_path


def _materialize(resources, tasks_cfg, tmp_path, instance=None):
    return dg.materialize(
        [ruler_tasks, ruler_scores],
        resources=resources,
        instance=instance or dg.DagsterInstance.ephemeral(),
        run_config={"ops": {"ruler_tasks": {"config": tasks_cfg}, "ruler_scores": {"config": {"model": "reader"}}}},
    )


def _scores_metadata(result) -> dict:
    mat = next(m for m in result.get_asset_materialization_events() if m.asset_key.to_user_string() == "ruler_scores")
    return {k: v.value for k, v in mat.materialization.metadata.items()}


def test_scores_of_a_perfect_reader_and_resume(env):
    resources, store, tmp_path = env
    cfg = {"tasks": SYNTHETIC, "lengths": [1024, 2048], "num_samples": 2, "squad_source": str(tmp_path / "none.json")}
    instance = dg.DagsterInstance.ephemeral()
    result = _materialize(resources, cfg, tmp_path, instance)
    assert result.success
    scores = {(t, n): s for t, n, s in store.query("SELECT task, max_seq_length, score FROM ruler_scores")}
    assert set(scores) == {(t, n) for t in SYNTHETIC for n in (1024, 2048)}
    assert all(s == 100.0 for s in scores.values()), scores
    mat = next(m for m in result.get_asset_materialization_events() if m.asset_key.to_user_string() == "ruler_scores")
    meta = mat.materialization.metadata
    assert meta["average"].value == 100.0 and meta["effective_length"].value == 2048
    assert "data:image/png;base64," in meta["heatmap"].value
    # 8 of the 13 tasks were configured: the average says so, it does not pass for a 13-task average
    assert meta["average_over_tasks"].value.startswith(f"{len(SYNTHETIC)} of 13 (")
    assert "| tasks averaged (of 13) | 8 | 8 |" in meta["scores"].value
    # progress in the Dagster log at every 5% of the samples (here: every answer the double returns)
    logs = [e.user_message for e in instance.all_logs(result.run_id) if "RULER predictions:" in e.user_message]
    assert len(logs) >= 32 // 8 and logs[-1].startswith("RULER predictions: 32/32 samples")
    asked = len(ASKED)
    assert asked == len(SYNTHETIC) * 2 * 2
    # a second run asks nothing again: predictions are stored
    again = _materialize(resources, cfg, tmp_path)
    assert again.success and len(ASKED) == asked
    # every sample's prompt fits its length budget, counted exactly
    over = store.scalar("SELECT count(*) FROM ruler_samples WHERE length > max_seq_length")
    assert over == 0


def test_qa_tasks_are_not_run_without_datasets(env, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    resources, store, tmp_path = env
    cfg = {
        "tasks": ["qa_1", "qa_2", "niah_single_1"],
        "lengths": [1024],
        "num_samples": 2,
        "squad_source": str(tmp_path / "missing_squad.json"),
        "hotpotqa_source": str(tmp_path / "missing_hotpot.json"),
    }
    result = _materialize(resources, cfg, tmp_path)
    assert result.success
    builds = {t: (st, r) for t, st, r in store.query("SELECT task, status, reason FROM ruler_task_builds")}
    assert builds["qa_1"][0] == "not_run" and "missing_squad.json" in builds["qa_1"][1]
    assert builds["qa_2"][0] == "not_run"
    assert builds["niah_single_1"][0] == "ok"
    # not-run tasks get no score row (never a faked 0 or 100), and the average names them with the reason
    assert {t for (t,) in store.query("SELECT DISTINCT task FROM ruler_scores")} == {"niah_single_1"}
    coverage = _scores_metadata(result)["average_over_tasks"]
    assert coverage.startswith("1 of 13 (") and "qa_1 not run: " in coverage and "missing_squad.json" in coverage
    assert "qa_2 not run: " in coverage
    assert "niah_single_2" in coverage and "not configured" in coverage


def test_bad_task_name_is_a_clear_failure(env):
    resources, _, tmp_path = env
    result = dg.materialize(
        [ruler_tasks],
        resources={"lineage": resources["lineage"]},
        instance=dg.DagsterInstance.ephemeral(),
        run_config={"ops": {"ruler_tasks": {"config": {"tasks": ["niah_single_9"], "lengths": [1024]}}}},
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "niah_single_9" in str(failure.event_specific_data.error)


def test_scores_config_is_checked_by_the_lib_model_before_the_backend_starts(env):
    """ruler_scores' run config is the lib's RulerScoresConfig: a sampled decode is refused, naming the value."""
    resources, _, _ = env

    class NeverStarted(GeneratorResource):
        def build(self, log=None):
            raise AssertionError("the backend must not start on an invalid config")

    result = dg.materialize(
        [ruler_scores],
        resources={"lineage": resources["lineage"], "generator": NeverStarted()},
        instance=dg.DagsterInstance.ephemeral(),
        run_config={"ops": {"ruler_scores": {"config": {"temperature": 0.7}}}},
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "greedy decoding; temperature=0.7" in str(failure.event_specific_data.error)


def test_progress_logs_at_every_fraction_and_after_every_interval(monkeypatch):
    from types import SimpleNamespace

    from lc_assets.defs import progress as progress_module

    lines: list[str] = []
    context = SimpleNamespace(log=SimpleNamespace(info=lines.append))
    clock = [0.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock[0])
    p = progress_module.StepProgress(context, "RULER predictions", 200, "samples", every_s=30, every_fraction=0.05)
    for _ in range(200):  # one sample a second: 5% = 10 samples come before 30 s
        clock[0] += 1.0
        p.update(1)
    assert len(lines) == 20 and lines[0].startswith("RULER predictions: 10/200 samples")
    lines.clear()
    slow = progress_module.StepProgress(context, "slow", 1000, "samples", every_s=30, every_fraction=0.05)
    for _ in range(10):  # a heartbeat every 10 s, no sample finishing: a line every 30 s all the same
        clock[0] += 10.0
        slow.update(0)
    assert len(lines) == 3
