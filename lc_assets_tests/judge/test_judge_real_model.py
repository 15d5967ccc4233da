"""The judge with the real embedded model (Qwen2.5-Coder-1.5B on llama.cpp): two pairs, one request each.

What must hold whatever the small model thinks: grammar-constrained output is read as a verdict (no
judge_error), the verdict is stored with its tokens and timing, and a second run asks nothing.
"""

from __future__ import annotations

import pytest

from lc_assets.lib.generation.config import GeneratorIdentity
from lc_assets.lib.generation.local_backend import LocalLlamaBackend
from lc_assets.lib.judge import MODEL_VERDICTS, PairJudgeConfig, judge_pairs
from lc_assets.lib.lineage.judge import judgements_of, pairs_to_judge
from lc_assets_tests.judge.conftest import GEN

pytestmark = pytest.mark.slow


def test_the_local_model_judges_two_pairs(lineage):
    pairs = ["sec-alpha:0:pair", "sec-alpha:2:pair"]  # a numeric pair and the odd "keeper" question
    # 1 thread: the machine's 2 cores are shared (llama.cpp stalls with 2 threads under load)
    with LocalLlamaBackend(n_parallel=2, n_ctx_per_slot=2048, n_threads=1) as backend:
        cfg = PairJudgeConfig(judge=GeneratorIdentity(backend="local", model=backend.model))
        summary = judge_pairs(lineage.store, backend, cfg, pairs, run_id="real", generation_config_hash=GEN)
    assert summary.judged == 2 and not summary.errors_by_code, summary
    stored = judgements_of(lineage.store, cfg.config_hash(), pairs)
    assert [j.verdict in MODEL_VERDICTS for j in stored] == [True, True]
    assert all(j.check_text and j.standalone is not None for j in stored)
    tokens = lineage.store.query("SELECT prompt_tokens, completion_tokens, seconds FROM pair_judgements")
    assert all(p > 100 and c > 5 and s > 0 for p, c, s in tokens)
    assert pairs_to_judge(lineage.store, cfg.config_hash(), pairs) == []
