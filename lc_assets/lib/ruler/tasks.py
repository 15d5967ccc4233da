"""The 13 RULER tasks with their exact parameters (``scripts/synthetic.yaml`` + ``constants.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

MetricName = Literal["string_match_all", "string_match_part"]


@dataclass(frozen=True)
class TaskSpec:
    """One RULER task: its generator family, generator arguments, generation budget and metric."""

    name: str
    family: Literal["niah", "variable_tracking", "common_words_extraction", "freq_words_extraction", "qa"]
    tokens_to_generate: int
    metric: MetricName
    params: dict[str, Any] = field(default_factory=dict)


def _niah(name: str, haystack: str, type_k: str, type_v: str, k: int = 1, v: int = 1, q: int = 1) -> TaskSpec:
    # RULER raises num_needle_k to max(k, q) at argument parsing (multiquery: k 1 -> 4).
    return TaskSpec(
        name=name,
        family="niah",
        tokens_to_generate=128,
        metric="string_match_all",
        params={
            "type_haystack": haystack,
            "type_needle_k": type_k,
            "type_needle_v": type_v,
            "num_needle_k": max(k, q),
            "num_needle_v": v,
            "num_needle_q": q,
        },
    )


#: Task name -> spec, in RULER's ``config_tasks.sh`` order.
TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        _niah("niah_single_1", "noise", "words", "numbers"),
        _niah("niah_single_2", "essay", "words", "numbers"),
        _niah("niah_single_3", "essay", "words", "uuids"),
        _niah("niah_multikey_1", "essay", "words", "numbers", k=4),
        _niah("niah_multikey_2", "needle", "words", "numbers"),
        _niah("niah_multikey_3", "needle", "uuids", "uuids"),
        _niah("niah_multivalue", "essay", "words", "numbers", v=4),
        _niah("niah_multiquery", "essay", "words", "numbers", q=4),
        TaskSpec(
            "vt",
            "variable_tracking",
            30,
            "string_match_all",
            {"type_haystack": "noise", "num_chains": 1, "num_hops": 4},
        ),
        TaskSpec(
            "cwe", "common_words_extraction", 120, "string_match_all", {"freq_cw": 30, "freq_ucw": 3, "num_cw": 10}
        ),
        TaskSpec(
            "fwe", "freq_words_extraction", 50, "string_match_all", {"alpha": 2.0, "coded_wordlen": 6, "vocab_size": -1}
        ),
        TaskSpec("qa_1", "qa", 32, "string_match_part", {"dataset": "squad"}),
        TaskSpec("qa_2", "qa", 32, "string_match_part", {"dataset": "hotpotqa"}),
    ]
}

ALL_TASKS: tuple[str, ...] = tuple(TASKS)

#: RULER's default evaluation lengths (4K .. 128K).
DEFAULT_LENGTHS: tuple[int, ...] = (4096, 8192, 16384, 32768, 65536, 131072)


def get_task(name: str) -> TaskSpec:
    """The spec of a task by name, with a clear error for unknown names."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown RULER task {name!r}; known tasks: {', '.join(ALL_TASKS)}") from None


def uses_essay(task: str) -> bool:
    """Whether the task needs the essay haystack text."""
    return TASKS[task].params.get("type_haystack") == "essay"
