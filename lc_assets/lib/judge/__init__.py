"""The model judge: a second model call per accepted pair, reading its evidence in context (issue 10).

Generation's checks are lexical: a pair whose words are all in its evidence can still state a wrong
relation, drop a "not" or ask about an unnamed subject. The judge asks a model — the generator by default,
a larger one on a GPU host — whether the quotes, read in the text around them, support the answer, and
whether the question stands alone. Verdicts go to `pair_judgements`; packing leaves rejected pairs out.

config.py  PairJudgeConfig (what changes a verdict is hashed; the keep policy is not)
prompt.py  the judge prompt and its JSON schema (a short check BEFORE the verdict)
parse.py   one output -> a verdict, or judge_error with a code
run.py     the loop over a GenerationBackend: many requests in flight, group commits, resume by key
"""

from lc_assets.lib.judge.config import JUDGE_ERROR, MODEL_VERDICTS, PairJudgeConfig
from lc_assets.lib.judge.parse import JUDGE_ERROR_CODES, Judgement, parse_output, parse_result
from lc_assets.lib.judge.run import JudgeProgress, JudgeRunSummary, apply_keep_policy, judge_pairs

__all__ = [
    "JUDGE_ERROR",
    "JUDGE_ERROR_CODES",
    "MODEL_VERDICTS",
    "JudgeProgress",
    "JudgeRunSummary",
    "Judgement",
    "PairJudgeConfig",
    "apply_keep_policy",
    "judge_pairs",
    "parse_output",
    "parse_result",
]
