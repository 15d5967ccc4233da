"""judged_qa_pairs through Dagster with a scripted judge: metadata, checks, resume, the disabled path."""

from __future__ import annotations

import dagster as dg
import pytest

from lc_assets.defs.generation.resources import GeneratorResource
from lc_assets.defs.judge.assets import judged_qa_pairs
from lc_assets.defs.judge.resources import JudgeModelResource
from lc_assets.defs.partitions import CORPUS_SHARDS
from lc_assets.defs.resources import LineageStoreResource
from lc_assets.lib.tokenizer import load_tokenizer
from lc_assets_tests.foundation.conftest import materialization_metadata
from lc_assets_tests.generation.doubles import Reply
from lc_assets_tests.judge.conftest import judge_reply, scripted_judge

RULES = {
    "1881": judge_reply("unsupported", check="The quote gives the count of another year."),
    "keeper": Reply("I'm sorry, I cannot help with that."),
}


class ScriptedJudgeGenerator(GeneratorResource):
    """The generator resource answering judge prompts with the scripted double."""

    def build(self, log=None):
        return scripted_judge(load_tokenizer(), RULES)


@pytest.fixture
def run(lineage):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(CORPUS_SHARDS, ["test"])

    def materialize(config: dict | None = None):
        return dg.materialize(
            [judged_qa_pairs],
            resources={
                "lineage": LineageStoreResource(path=str(lineage.store.path)),
                "generator": ScriptedJudgeGenerator(),
                "judge_model": JudgeModelResource(),
            },
            instance=instance,
            partition_key="test",
            run_config={"ops": {"judged_qa_pairs": {"config": config or {}}}},
        )

    return materialize


def _checks(result) -> dict[str, tuple[bool, str]]:
    return {e.check_name: (e.passed, e.severity.value) for e in result.get_asset_check_evaluations()}


def test_the_asset_judges_the_shard_and_reports_kept_rejected_and_errors(run, lineage):
    result = run({"max_rejected_share": 0.3})
    meta = materialization_metadata(result, "judged_qa_pairs")
    assert (meta["pairs"], meta["judged"], meta["judged_this_run"], meta["not_judged"]) == (8, 8, 8, 0)
    assert (meta["kept"], meta["rejected"]) == (6, 2)  # the two 1881 pairs; refusals are kept (and checked)
    assert meta["verdicts"] == {"supported": 4, "unsupported": 2, "judge_error": 2}
    assert meta["judge_errors"] == {"refusal": 2}
    assert meta["rejected_share"] == 0.25 and meta["judge_backend"] == "local"
    assert "another year" in meta["rejected_examples"]
    checks = _checks(result)
    assert checks["judge_rejected_share"] == (True, "WARN")
    assert checks["judge_errors"] == (False, "ERROR")  # 2 of 8 unreadable > 0.1
    again = run({"max_rejected_share": 0.2, "max_judge_error_share": 0.3})
    meta = materialization_metadata(again, "judged_qa_pairs")
    assert (meta["judged"], meta["judged_this_run"]) == (8, 0)  # resumed: nothing asked twice
    assert _checks(again) == {"judge_rejected_share": (False, "WARN"), "judge_errors": (True, "ERROR")}
    assert lineage.store.scalar("SELECT count(*) FROM judge_configs") == 1


def test_a_changed_keep_policy_relabels_stored_verdicts(run):
    run()
    meta = materialization_metadata(run({"keep_judge_errors": False}), "judged_qa_pairs")
    assert (meta["judged_this_run"], meta["relabelled"], meta["kept"]) == (0, 2, 4)


def test_disabled_judges_nothing_and_passes_its_checks(run, lineage):
    result = run({"enabled": False})
    meta = materialization_metadata(result, "judged_qa_pairs")
    assert (meta["enabled"], meta["pairs"], meta["judged_this_run"]) == (False, 8, 0)
    assert all(passed for passed, _ in _checks(result).values())
    assert lineage.store.scalar("SELECT count(*) FROM pair_judgements") == 0
