"""Fixtures of the judge tests: a real lineage file with accepted pairs and evidence, and a scripted judge double."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest

from lc_assets.lib.generation.backend import GenerationRequest
from lc_assets.lib.generation.config import GeneratorIdentity
from lc_assets.lib.judge import PairJudgeConfig
from lc_assets.lib.lineage import LineageStore
from lc_assets.lib.tokenizer import TextTokenizer, load_tokenizer
from lc_assets_tests.generation.doubles import Reply, ScriptedBackend
from lc_assets_tests.review.conftest import GEN, ReviewLineage, build_lineage

__all__ = ["GEN", "judge_reply", "question_of", "scripted_judge"]

IDENTITY = GeneratorIdentity(backend="scripted", model="scripted-judge")


def question_of(request: GenerationRequest) -> str:
    """The question a judge prompt asks about."""
    m = re.search(r"^Question: (.*)$", request.messages[-1]["content"], re.MULTILINE)
    assert m, "a judge prompt names the question"
    return m.group(1)


def judge_reply(verdict: str = "supported", standalone: bool = True, check: str = "The quote states it.") -> Reply:
    return Reply(json.dumps({"check": check, "verdict": verdict, "standalone": standalone}))


def scripted_judge(tok: TextTokenizer, rules: dict[str, Reply] | None = None, **kw) -> ScriptedBackend:
    """A judge double: the reply of the first rule whose key is in the question, else 'supported'."""

    def script(request: GenerationRequest) -> Reply:
        question = question_of(request)
        return next((r for key, r in (rules or {}).items() if key in question), judge_reply())

    return ScriptedBackend(tok, script=script, name="scripted", model="scripted-judge", **kw)


@pytest.fixture(scope="session")
def tok() -> TextTokenizer:
    return load_tokenizer()


@pytest.fixture
def lineage(tmp_path) -> ReviewLineage:
    return build_lineage(LineageStore(tmp_path / "lineage.duckdb"))


@pytest.fixture
def judge_config() -> Callable[..., PairJudgeConfig]:
    def make(**kw) -> PairJudgeConfig:
        return PairJudgeConfig(judge=IDENTITY, **kw)

    return make
