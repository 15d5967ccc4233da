"""RULER (NVIDIA/RULER @ c3f5e3b) as plain Python: task generators, prompts, scoring, reports.

Typical use (what the ``ruler_tasks`` / ``ruler_scores`` assets do)::

    cfg = RulerTasksConfig(lengths=(4096, 8192), num_samples=100)
    builder = RulerTaskBuilder(load_tokenizer(cfg.tokenizer), essay_text=corpus_text,
                               model_template_type=cfg.model_template_type, seed=cfg.seed,
                               squad_source=cfg.squad_source, hotpotqa_source=cfg.hotpotqa_source)
    builds = [builder.build(t, n, cfg.num_samples) for t in cfg.tasks for n in cfg.lengths]
    samples = [s for b in builds if b.ok for s in b.samples]
    predictions = run_predictions(samples, predict)          # predict(prompts, max_new_tokens)
    scores = score_predictions(samples, predictions)         # {(task, length): TaskScore}
    table = {k: v.score for k, v in scores.items()}
    summarize(table); score_table_markdown(table); score_heatmap_png(table)
"""

from lc_assets.lib.ruler.base import RulerLengthError, RulerSample, TaskBuild, TokenCounter, derive_rng
from lc_assets.lib.ruler.builder import RulerTaskBuilder
from lc_assets.lib.ruler.config import RulerScoresConfig, RulerTasksConfig
from lc_assets.lib.ruler.predict import (
    PredictFn,
    Prediction,
    build_prompt,
    max_new_tokens,
    run_predictions,
    score_predictions,
)
from lc_assets.lib.ruler.qa import QaUnavailable, load_qa_dataset
from lc_assets.lib.ruler.report import score_heatmap_png, score_table_markdown
from lc_assets.lib.ruler.scoring import (
    EFFECTIVE_LENGTH_THRESHOLD,
    Summary,
    TaskScore,
    average,
    average_per_length,
    effective_length,
    postprocess_pred,
    score_task,
    string_match_all,
    string_match_part,
    summarize,
    weighted_average,
)
from lc_assets.lib.ruler.tasks import ALL_TASKS, DEFAULT_LENGTHS, TASKS, TaskSpec, get_task
from lc_assets.lib.ruler.templates import MODEL_TEMPLATES, TASK_TEMPLATES

__all__ = [
    "ALL_TASKS",
    "DEFAULT_LENGTHS",
    "EFFECTIVE_LENGTH_THRESHOLD",
    "MODEL_TEMPLATES",
    "TASKS",
    "TASK_TEMPLATES",
    "Prediction",
    "PredictFn",
    "QaUnavailable",
    "RulerLengthError",
    "RulerSample",
    "RulerScoresConfig",
    "RulerTaskBuilder",
    "RulerTasksConfig",
    "Summary",
    "TaskBuild",
    "TaskScore",
    "TaskSpec",
    "TokenCounter",
    "average",
    "average_per_length",
    "build_prompt",
    "derive_rng",
    "effective_length",
    "get_task",
    "load_qa_dataset",
    "max_new_tokens",
    "postprocess_pred",
    "run_predictions",
    "score_heatmap_png",
    "score_predictions",
    "score_table_markdown",
    "score_task",
    "string_match_all",
    "string_match_part",
    "summarize",
    "weighted_average",
]
