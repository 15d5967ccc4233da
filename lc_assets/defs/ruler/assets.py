"""ruler_tasks + ruler_scores: NVIDIA RULER's 13 tasks built at configured lengths, and a model's scores."""

import time

import dagster as dg
from pydantic import Field, ValidationError

from lc_assets.defs.generation.resources import GeneratorResource
from lc_assets.defs.metadata import png_markdown
from lc_assets.defs.progress import StepProgress
from lc_assets.defs.resources import LineageStoreResource
from lc_assets.defs.stepconfig import dagster_config, step_config
from lc_assets.lib.corpus.documents import RawDocument
from lc_assets.lib.corpus.embedded import iter_embedded
from lc_assets.lib.generation.models import PACKAGED_MODELS
from lc_assets.lib.lineage import LineageStore
from lc_assets.lib.ruler import (
    Prediction,
    RulerLengthError,
    RulerScoresConfig,
    RulerTaskBuilder,
    RulerTasksConfig,
    score_heatmap_png,
    score_predictions,
    score_table_markdown,
    summarize,
)
from lc_assets.lib.ruler import store as ruler_store
from lc_assets.lib.ruler.base import TaskBuild
from lc_assets.lib.ruler.predict import predict_with_backend
from lc_assets.lib.ruler.report import task_coverage
from lc_assets.lib.ruler.store import sample_key
from lc_assets.lib.tokenizer import load_tokenizer

#: ruler_scores logs progress at least this often, and at every PROGRESS_FRACTION of the samples
PROGRESS_EVERY_S = 30.0
PROGRESS_FRACTION = 0.05

# haystack text for the essay-type NIAH tasks when the lineage store holds no documents yet
_FALLBACK_ESSAY_ENTRIES = ["devils-dictionary", "jargon-file", "debian-policy"]


# Derived from the lib's RulerTasksConfig (one set of fields and defaults). `essay_source` is left out: the
# asset picks the essay haystack itself (the store's largest documents, else the embedded catalog), so the
# field keeps its default; `essay_max_words` bounds that text and is the Dagster layer's own.
RulerTasksAssetConfig = dagster_config(
    RulerTasksConfig,
    "RulerTasksAssetConfig",
    "Which RULER tasks to build; see lc_assets.lib.ruler.RulerTasksConfig.",
    exclude={"essay_source"},
    essay_max_words=(int, Field(400_000, description="words of corpus prose the essay haystack holds")),
)


def essay_haystack(store: LineageStore, max_words: int) -> str:
    """Prose for the essay haystack: the project's corpus (lineage store first, else the embedded default)."""
    texts = ruler_store.largest_documents(store)
    if not texts:
        texts = [d.text for d in iter_embedded(_FALLBACK_ESSAY_ENTRIES) if isinstance(d, RawDocument)]
    words = " ".join(texts).split()
    return " ".join(words[:max_words])


@dg.asset(
    group_name="eval",
    kinds={"python", "duckdb"},
    owners=["team:eval"],
    description="RULER's 13 synthetic tasks (NIAH x8, vt, cwe, fwe, qa_1, qa_2) at each configured context length, "
    "counted with the evaluated model's tokenizer; QA tasks are reported as not run when SQuAD/HotpotQA are not "
    "available offline.",
)
def ruler_tasks(
    context: dg.AssetExecutionContext,
    config: RulerTasksAssetConfig,  # type: ignore[valid-type]
    lineage: LineageStoreResource,
) -> dg.MaterializeResult:
    store = lineage.store()
    try:
        cfg: RulerTasksConfig = step_config(RulerTasksConfig, config)
    except ValidationError as exc:
        raise dg.Failure(description=f"invalid RULER config: {exc}") from exc
    cfg_hash = cfg.config_hash()
    done = ruler_store.built_task_lengths(store, cfg_hash)
    todo = [(t, n) for t in cfg.tasks for n in cfg.lengths if (t, n) not in done]
    builder = RulerTaskBuilder(
        load_tokenizer(cfg.tokenizer),
        essay_text=essay_haystack(store, config.essay_max_words),
        model_template_type=cfg.model_template_type,
        seed=cfg.seed,
        squad_source=cfg.squad_source,
        hotpotqa_source=cfg.hotpotqa_source,
        batch_size=cfg.batch_size,
    )
    t0 = time.monotonic()
    for i, (task, length) in enumerate(todo, start=1):
        try:
            build = builder.build(task, length, cfg.num_samples)
        except RulerLengthError as exc:  # the length cannot hold even RULER's smallest haystack
            build = TaskBuild(task, length, "not_run", reason=str(exc))
        ruler_store.record_task_build(store, cfg_hash, build, context.run_id)
        if build.status != "ok":
            context.log.warning(f"{task} @ {length}: not run — {build.reason}")
        context.log.info(
            f"built {task} @ {length}: {len(build.samples)} samples ({i}/{len(todo)}, {time.monotonic() - t0:.0f}s)"
        )
    builds = ruler_store.task_builds(store, cfg_hash)
    not_run = {f"{b.task}@{b.max_seq_length}": b.reason for b in builds if b.status != "ok"}
    return dg.MaterializeResult(
        metadata={
            "tasks_config_hash": cfg_hash,
            "samples": sum(b.n_samples for b in builds),
            "task_lengths_built": sum(1 for b in builds if b.status == "ok"),
            "not_run": dg.MetadataValue.json(not_run),
            "lengths": str(list(cfg.lengths)),
            "tokenizer": cfg.tokenizer,
            "model_template_type": cfg.model_template_type,
        }
    )


# Derived from the lib's RulerScoresConfig. `model` may stay empty here: the asset then takes the
# backend's model name once it has started.
RulerScoresAssetConfig = dagster_config(
    RulerScoresConfig,
    "RulerScoresAssetConfig",
    "How to score a model on RULER; see lc_assets.lib.ruler.RulerScoresConfig.",
    defaults={"model": ""},
    tasks_config_hash=(str | None, Field(None, description="which ruler_tasks build; default: the latest")),
)


@dg.asset(
    deps=["ruler_tasks"],
    group_name="eval",
    kinds={"vllm", "duckdb"},
    owners=["team:eval"],
    tags={"gpu": "true"},
    pool="gpu",
    op_tags={"lc_assets/gpu": "true"},
    description="A model's RULER scores per task x length (NVIDIA's string_match_all / string_match_part, greedy), "
    "the per-length average (saying how many of the 13 tasks it covers) and the effective length; predictions "
    "are stored and never asked twice.",
)
def ruler_scores(
    context: dg.AssetExecutionContext,
    config: RulerScoresAssetConfig,  # type: ignore[valid-type]
    lineage: LineageStoreResource,
    generator: GeneratorResource,
) -> dg.MaterializeResult:
    store = lineage.store()
    try:
        scoring: RulerScoresConfig = step_config(RulerScoresConfig, config)
    except ValidationError as exc:
        raise dg.Failure(description=f"invalid RULER scores config: {exc}") from exc
    tasks_hash = config.tasks_config_hash or ruler_store.latest_tasks_hash(store)
    if tasks_hash is None:
        raise dg.Failure("no RULER tasks built yet: materialize `ruler_tasks` first")
    samples = ruler_store.load_samples(store, tasks_hash)
    gen = generator
    # a checkpoint path in `model` replaces the engine's model (the checkpoint sensor sets it)
    if scoring.model and generator.backend == "vllm":
        gen = generator.model_copy(update={"model": scoring.model})
    elif generator.backend == "local" and (scoring.model.endswith(".gguf") or scoring.model in PACKAGED_MODELS):
        # a GGUF checkpoint, or a packaged preset (the demo scores the small `smollm2-135m`)
        gen = generator.model_copy(update={"gguf_path": scoring.model})
    with gen.build(context.log) as backend:
        model = scoring.model or backend.model
        backend_name = backend.name
        stored = ruler_store.stored_predictions(store, model)
        todo = [s for s in samples if sample_key(tasks_hash, s) not in stored]
        context.log.info(
            f"{len(samples)} samples, {len(samples) - len(todo)} already predicted, {len(todo)} to ask {model!r} "
            f"({backend.max_in_flight} in flight)"
        )
        progress = StepProgress(
            context,
            "RULER predictions",
            len(todo),
            "samples",
            every_s=PROGRESS_EVERY_S,
            every_fraction=PROGRESS_FRACTION,
        )

        def save(results: list) -> None:
            pairs = [(r.request_id, r.text) for r in results]
            ruler_store.record_predictions(store, model, backend_name, pairs, context.run_id)
            stored.update(pairs)

        failed = predict_with_backend(
            backend,
            todo,
            lambda s: sample_key(tasks_hash, s),
            save,
            max_new_tokens_override=scoring.max_new_tokens_override,
            progress=progress.update,
        )
        progress.close()
        if failed:
            raise dg.Failure(f"{len(failed)} RULER request(s) failed, e.g. {failed[0].error}; re-run to resume")
    predictions = [
        Prediction(s.task, s.max_seq_length, s.index, stored.get(sample_key(tasks_hash, s), "")) for s in samples
    ]
    scores = score_predictions(samples, predictions)
    table = {k: v.score for k, v in scores.items()}
    not_run = {
        (b.task, b.max_seq_length): b.reason or ""
        for b in ruler_store.task_builds(store, tasks_hash)
        if b.status != "ok"
    }
    ruler_store.replace_scores(store, model, backend_name, tasks_hash, list(scores.values()), context.run_id)
    meta: dict = {"model": model, "backend": backend_name, "tasks_config_hash": tasks_hash, "samples": len(samples)}
    if table:
        summary = summarize(table, scoring.effective_length_threshold)
        threshold = scoring.effective_length_threshold
        meta.update(
            {
                "average": summary.avg,
                "average_over_tasks": task_coverage(table, not_run),
                "effective_length": summary.effective_length or 0,
                "per_length": dg.MetadataValue.json({str(k): v for k, v in summary.per_length.items()}),
                "scores": dg.MetadataValue.md(score_table_markdown(table, threshold, not_run)),
                "heatmap": png_markdown(score_heatmap_png(table, title=f"RULER — {model}"), "RULER heatmap"),
            }
        )
    return dg.MaterializeResult(metadata=meta)
