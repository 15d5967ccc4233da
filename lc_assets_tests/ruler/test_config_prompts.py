"""Configs, templates and the prediction helper."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lc_assets.lib.ruler import (
    ALL_TASKS,
    MODEL_TEMPLATES,
    RulerSample,
    RulerScoresConfig,
    RulerTasksConfig,
    build_prompt,
    max_new_tokens,
    run_predictions,
)
from lc_assets.lib.ruler.templates import full_template, niah_singular


def test_defaults_match_ruler() -> None:
    cfg = RulerTasksConfig()
    assert cfg.tasks == ALL_TASKS and len(ALL_TASKS) == 13
    assert cfg.lengths == (4096, 8192, 16384, 32768, 65536, 131072) and cfg.num_samples == 500
    assert cfg.config_hash() == RulerTasksConfig(batch_size=4).config_hash()  # speed knobs do not change data
    assert cfg.config_hash() != RulerTasksConfig(seed=1).config_hash()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tasks": ("niah_single_1", "niah_single_9")}, "unknown RULER task"),
        ({"tasks": ()}, "must not be empty"),
        ({"tasks": ("vt", "vt")}, "duplicate task"),
        ({"lengths": (4096, 0)}, "lengths must be >="),
        ({"lengths": (-5,)}, "lengths must be >="),
        ({"num_samples": 0}, "greater than or equal to 1"),
        ({"model_template_type": "llama-9"}, "unknown model_template_type"),
        ({"bogus": 1}, "Extra inputs"),
    ],
)
def test_bad_config_is_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RulerTasksConfig(**kwargs)


def test_scores_config_requires_greedy() -> None:
    assert RulerScoresConfig(model="m").effective_length_threshold == 85.6
    with pytest.raises(ValidationError, match="greedy"):
        RulerScoresConfig(model="m", temperature=0.7)


def test_niah_singular_rewrite_hits_wrapper_and_template() -> None:
    t = niah_singular(full_template("niah", "base")).format(type_needle_v="number", context="C", query="k")
    assert t == (
        "A special magic number is hidden within the following text. Make sure to memorize it. I will quiz you "
        "about the number afterwards.\nC\nWhat is the special magic number for k mentioned in the provided text? "
        "The special magic number for k mentioned in the provided text is"
    )
    assert "polite answer to" in niah_singular(full_template("niah", "vicuna-chat"))


def test_answer_prefix_comes_after_the_model_wrapper() -> None:
    t = full_template("qa", "meta-llama3")
    assert t.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n Answer:")
    assert set(MODEL_TEMPLATES) >= {"base", "meta-chat", "meta-llama3", "Phi3", "nemotron5-instruct"}


def test_run_predictions_sends_input_plus_prefix_with_task_caps() -> None:
    samples = [
        RulerSample(0, "qa_1", 4096, "[INST] question [/INST]", " Answer:", ["x"], 5, 32, 1),
        RulerSample(0, "niah_single_1", 4096, "text", " The special magic", ["y"], 5, 128, 1),
        RulerSample(1, "qa_1", 4096, "q2", " Answer:", ["z"], 5, 32, 1),
    ]
    calls: list[tuple[list[str], int]] = []

    def predict(prompts: list[str], cap: int) -> list[str]:
        calls.append((prompts, cap))
        return [f"out{cap}-{p[-3:]}" for p in prompts]

    preds = run_predictions(samples, predict)
    assert [p.index for p in preds] == [0, 0, 1] and preds[0].prediction == "out32-er:"
    assert (["[INST] question [/INST] Answer:", "q2 Answer:"], 32) in calls
    assert (["text The special magic"], 128) in calls
    assert build_prompt(samples[0]) == "[INST] question [/INST] Answer:"
    assert [max_new_tokens(t) for t in ("niah_multiquery", "vt", "cwe", "fwe", "qa_2")] == [128, 30, 120, 50, 32]
