"""ruler_tasks + ruler_scores: NVIDIA RULER's 13 tasks built at configured lengths, and a model's scores."""

import json
import time

import dagster as dg
from pydantic import ValidationError

from lc_assets.defs.generation.resources import GeneratorResource
from lc_assets.defs.metadata import png_markdown
from lc_assets.defs.resources import LineageStoreResource
from lc_assets.lib.corpus.documents import RawDocument
from lc_assets.lib.corpus.embedded import iter_embedded
from lc_assets.lib.generation.backend import GenerationRequest
from lc_assets.lib.generation.models import PACKAGED_MODELS
from lc_assets.lib.lineage import LineageStore, insert_rows
from lc_assets.lib.ruler import (
    ALL_TASKS,
    DEFAULT_LENGTHS,
    Prediction,
    RulerLengthError,
    RulerSample,
    RulerTaskBuilder,
    RulerTasksConfig,
    build_prompt,
    max_new_tokens,
    score_heatmap_png,
    score_predictions,
    score_table_markdown,
    summarize,
)
from lc_assets.lib.ruler.base import TaskBuild
from lc_assets.lib.tokenizer import load_tokenizer

# haystack text for the essay-type NIAH tasks when the lineage store holds no documents yet
_FALLBACK_ESSAY_ENTRIES = ["devils-dictionary", "jargon-file", "debian-policy"]


class RulerTasksAssetConfig(dg.Config):
    """Which RULER tasks to build; see lc_assets.lib.ruler.RulerTasksConfig."""

    tasks: list[str] = list(ALL_TASKS)
    lengths: list[int] = list(DEFAULT_LENGTHS)
    num_samples: int = 500
    seed: int = 42
    model_template_type: str = "base"
    tokenizer: str = "llama3"  # the EVALUATED model's tokenizer (a local dir, or llama3)
    squad_source: str = "rajpurkar/squad_v2"  # a local SQuAD v2 dev json, or a cached HF name
    hotpotqa_source: str = "hotpotqa/hotpot_qa:distractor"
    essay_max_words: int = 400_000

    def ruler(self) -> RulerTasksConfig:
        return RulerTasksConfig(
            tasks=tuple(self.tasks),
            lengths=tuple(self.lengths),
            num_samples=self.num_samples,
            seed=self.seed,
            model_template_type=self.model_template_type,
            tokenizer=self.tokenizer,
            squad_source=self.squad_source,
            hotpotqa_source=self.hotpotqa_source,
        )


def essay_haystack(store: LineageStore, max_words: int) -> str:
    """Prose for the essay haystack: the project's corpus (lineage store first, else the embedded default)."""
    texts = [r[0] for r in store.query("SELECT text FROM documents ORDER BY byte_size DESC, document_id LIMIT 8")]
    if not texts:
        texts = [d.text for d in iter_embedded(_FALLBACK_ESSAY_ENTRIES) if isinstance(d, RawDocument)]
    words = " ".join(texts).split()
    return " ".join(words[:max_words])


def sample_key(config_hash: str, s: RulerSample) -> str:
    return f"{config_hash}:{s.task}:{s.max_seq_length}:{s.index}"


@dg.asset(
    group_name="eval",
    kinds={"python", "duckdb"},
    owners=["team:eval"],
    description="RULER's 13 synthetic tasks (NIAH x8, vt, cwe, fwe, qa_1, qa_2) at each configured context length, "
    "counted with the evaluated model's tokenizer; QA tasks are reported as not run when SQuAD/HotpotQA are not "
    "available offline.",
)
def ruler_tasks(
    context: dg.AssetExecutionContext, config: RulerTasksAssetConfig, lineage: LineageStoreResource
) -> dg.MaterializeResult:
    store = lineage.store()
    try:
        cfg = config.ruler()
    except ValidationError as exc:
        raise dg.Failure(description=f"invalid RULER config: {exc}") from exc
    cfg_hash = cfg.config_hash()
    done = {
        (t, n)
        for t, n in store.query("SELECT task, max_seq_length FROM ruler_task_builds WHERE config_hash = ?", [cfg_hash])
    }
    todo = [(t, n) for t in cfg.tasks for n in cfg.lengths if (t, n) not in done]
    builder = RulerTaskBuilder(
        load_tokenizer(cfg.tokenizer),
        essay_text=essay_haystack(store, config.essay_max_words),
        model_template_type=cfg.model_template_type,
        seed=cfg.seed,
        squad_source=cfg.squad_source,
        hotpotqa_source=cfg.hotpotqa_source,
    )
    t0 = time.monotonic()
    for i, (task, length) in enumerate(todo, start=1):
        try:
            build = builder.build(task, length, cfg.num_samples)
        except RulerLengthError as exc:  # the length cannot hold even RULER's smallest haystack
            build = TaskBuild(task, length, "not_run", reason=str(exc))
        rows = [
            dict(
                sample_key=sample_key(cfg_hash, s), config_hash=cfg_hash, task=s.task, max_seq_length=s.max_seq_length,
                idx=s.index, length=s.length, sample=json.dumps(s.to_dict()), run_id=context.run_id,
            )
            for s in build.samples
        ]  # fmt: skip
        with store.transaction() as con:  # a task x length lands whole or not at all
            insert_rows(con, "ruler_samples", rows)
            insert_rows(
                con,
                "ruler_task_builds",
                [
                    dict(
                        config_hash=cfg_hash, task=task, max_seq_length=length, status=build.status,
                        reason=build.reason, n_samples=len(build.samples), run_id=context.run_id,
                    )
                ],
            )  # fmt: skip
        if build.status != "ok":
            context.log.warning(f"{task} @ {length}: not run — {build.reason}")
        context.log.info(
            f"built {task} @ {length}: {len(build.samples)} samples ({i}/{len(todo)}, {time.monotonic() - t0:.0f}s)"
        )
    builds = store.query(
        "SELECT task, max_seq_length, status, reason, n_samples FROM ruler_task_builds WHERE config_hash = ? ORDER BY 1, 2",
        [cfg_hash],
    )
    not_run = {f"{t}@{n}": r for t, n, st, r, _ in builds if st != "ok"}
    return dg.MaterializeResult(
        metadata={
            "tasks_config_hash": cfg_hash,
            "samples": sum(b[4] for b in builds),
            "task_lengths_built": sum(1 for b in builds if b[2] == "ok"),
            "not_run": dg.MetadataValue.json(not_run),
            "lengths": str(list(cfg.lengths)),
            "tokenizer": cfg.tokenizer,
            "model_template_type": cfg.model_template_type,
        }
    )


class RulerScoresConfig(dg.Config):
    model: str = ""  # label for the scores; default: the backend's model name. A checkpoint dir for vllm.
    tasks_config_hash: str | None = None  # which ruler_tasks build; default: the latest
    effective_length_threshold: float = 85.6  # Llama-2-7B at 4k, as RULER reports
    max_new_tokens_override: int | None = None
    batch_size: int = 16


def _latest_tasks_hash(store: LineageStore) -> str | None:
    return store.scalar("SELECT config_hash FROM ruler_task_builds ORDER BY created_at DESC LIMIT 1")


@dg.asset(
    deps=["ruler_tasks"],
    group_name="eval",
    kinds={"vllm", "duckdb"},
    owners=["team:eval"],
    tags={"gpu": "true"},
    pool="gpu",
    op_tags={"lc_assets/gpu": "true"},
    description="A model's RULER scores per task x length (NVIDIA's string_match_all / string_match_part, greedy), "
    "the per-length average and the effective length; predictions are stored and never asked twice.",
)
def ruler_scores(
    context: dg.AssetExecutionContext,
    config: RulerScoresConfig,
    lineage: LineageStoreResource,
    generator: GeneratorResource,
) -> dg.MaterializeResult:
    store = lineage.store()
    tasks_hash = config.tasks_config_hash or _latest_tasks_hash(store)
    if tasks_hash is None:
        raise dg.Failure("no RULER tasks built yet: materialize `ruler_tasks` first")
    samples = [
        RulerSample(**json.loads(r[0]))
        for r in store.query(
            "SELECT sample FROM ruler_samples WHERE config_hash = ? ORDER BY task, max_seq_length, idx", [tasks_hash]
        )
    ]
    gen = generator
    # a checkpoint path in `model` replaces the engine's model (the checkpoint sensor sets it)
    if config.model and generator.backend == "vllm":
        gen = generator.model_copy(update={"model": config.model})
    elif generator.backend == "local" and (config.model.endswith(".gguf") or config.model in PACKAGED_MODELS):
        # a GGUF checkpoint, or a packaged preset (the demo scores the small `smollm2-135m`)
        gen = generator.model_copy(update={"gguf_path": config.model})
    with gen.build(context.log) as backend:
        model = config.model or backend.model
        stored = dict(store.query("SELECT sample_key, prediction FROM ruler_predictions WHERE model = ?", [model]))
        todo = [s for s in samples if sample_key(tasks_hash, s) not in stored]
        context.log.info(
            f"{len(samples)} samples, {len(samples) - len(todo)} already predicted, {len(todo)} to ask {model!r}"
        )
        for start in range(0, len(todo), config.batch_size):
            batch = todo[start : start + config.batch_size]
            requests = [
                GenerationRequest(
                    request_id=sample_key(tasks_hash, s),
                    messages=(),
                    prompt=build_prompt(s),
                    max_tokens=config.max_new_tokens_override or max_new_tokens(s.task),
                    temperature=0.0,  # RULER decodes greedily
                )
                for s in batch
            ]
            results = backend.generate_batch(requests)
            rows = [
                dict(
                    sample_key=r.request_id, model=model, backend=backend.name, prediction=r.text, run_id=context.run_id
                )
                for r in results
                if r.error is None
            ]
            failed = [r for r in results if r.error is not None]
            with store.transaction() as con:  # finished predictions are kept even if a later batch fails
                insert_rows(con, "ruler_predictions", rows)
            for r in rows:
                stored[r["sample_key"]] = r["prediction"]
            if failed:
                raise dg.Failure(f"{len(failed)} RULER request(s) failed, e.g. {failed[0].error}; re-run to resume")
            context.log.info(f"predicted {min(start + len(batch), len(todo))}/{len(todo)}")
        backend_name = backend.name
    predictions = [
        Prediction(s.task, s.max_seq_length, s.index, stored.get(sample_key(tasks_hash, s), "")) for s in samples
    ]
    scores = score_predictions(samples, predictions)
    table = {k: v.score for k, v in scores.items()}
    summary = summarize(table, config.effective_length_threshold) if table else None
    with store.transaction() as con:
        con.execute("DELETE FROM ruler_scores WHERE model = ? AND tasks_config_hash = ?", [model, tasks_hash])
        insert_rows(
            con,
            "ruler_scores",
            [
                dict(
                    model=model, backend=backend_name, tasks_config_hash=tasks_hash, task=v.task,
                    max_seq_length=v.max_seq_length, score=v.score, nulls=v.nulls, num_samples=v.num_samples,
                    metric=v.metric, run_id=context.run_id,
                )
                for v in scores.values()
            ],
        )  # fmt: skip
    meta: dict = {"model": model, "backend": backend_name, "tasks_config_hash": tasks_hash, "samples": len(samples)}
    if summary:
        png = score_heatmap_png(table, title=f"RULER — {model}")
        meta.update(
            {
                "average": summary.avg,
                "effective_length": summary.effective_length or 0,
                "per_length": dg.MetadataValue.json({str(k): v for k, v in summary.per_length.items()}),
                "scores": dg.MetadataValue.md(score_table_markdown(table, config.effective_length_threshold)),
                "heatmap": png_markdown(png, "RULER heatmap"),
            }
        )
    return dg.MaterializeResult(metadata=meta)
