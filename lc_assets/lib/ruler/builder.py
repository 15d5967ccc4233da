"""Build RULER task samples: one entry point over all generators, with shared token-count caches."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from lc_assets.lib.ruler.base import (
    CountCache,
    RulerSample,
    TaskBuild,
    TokenCounter,
    UnitGenerator,
    derive_rng,
    fit_samples,
)
from lc_assets.lib.ruler.tasks import get_task
from lc_assets.lib.ruler.templates import split_answer_prefix
from lc_assets.lib.ruler.words import EssayHaystack


class RulerTaskBuilder:
    """Makes RULER samples for any task and length with one tokenizer, model template and seed.

    Caches (per-word token counts, the essay's prefix sums, loaded QA datasets) are shared by all
    ``build`` calls, so build every task and length with one builder.
    """

    def __init__(
        self,
        tokenizer: TokenCounter,
        *,
        essay_text: str | None = None,
        model_template_type: str = "base",
        seed: int = 42,
        squad_source: str | None = None,
        hotpotqa_source: str | None = None,
        batch_size: int = 16,
    ) -> None:
        from lc_assets.lib.ruler.templates import MODEL_TEMPLATES

        if model_template_type not in MODEL_TEMPLATES:
            raise ValueError(f"unknown model_template_type {model_template_type!r}; known: {sorted(MODEL_TEMPLATES)}")
        self.cache = CountCache(tokenizer)
        self.model_template_type = model_template_type
        self.seed = seed
        self.batch_size = batch_size
        self.sources = {"squad": squad_source, "hotpotqa": hotpotqa_source}
        self._essay_text = essay_text
        self._essay: EssayHaystack | None = None
        self._qa_data: dict[str, Any] = {}

    @property
    def essay(self) -> EssayHaystack:
        if self._essay is None:
            if not self._essay_text:
                raise ValueError("essay-haystack tasks need `essay_text` (the haystack corpus text)")
            self._essay = EssayHaystack(self._essay_text, self.cache)
        return self._essay

    def _generator(self, task: str, max_seq_length: int) -> UnitGenerator[Any] | TaskBuild:
        spec = get_task(task)
        common = dict(
            max_seq_length=max_seq_length,
            tokens_to_generate=spec.tokens_to_generate,
            model_template_type=self.model_template_type,
            cache=self.cache,
        )
        if spec.family == "niah":
            from lc_assets.lib.ruler.niah import NiahGenerator

            essay = self.essay if spec.params["type_haystack"] == "essay" else None
            return NiahGenerator(spec.params, essay=essay, **common)
        if spec.family == "variable_tracking":
            from lc_assets.lib.ruler.vt import VariableTrackingGenerator

            return VariableTrackingGenerator(spec.params, seed=self.seed, **common)
        if spec.family == "common_words_extraction":
            from lc_assets.lib.ruler.cwe import CommonWordsGenerator

            return CommonWordsGenerator(spec.params, **common)
        if spec.family == "freq_words_extraction":
            from lc_assets.lib.ruler.fwe import FreqWordsGenerator

            return FreqWordsGenerator(spec.params, **common)
        from lc_assets.lib.ruler.qa import QaGenerator, QaUnavailable, load_qa_dataset

        dataset = spec.params["dataset"]
        if dataset not in self._qa_data:
            self._qa_data[dataset] = load_qa_dataset(dataset, self.sources[dataset])
        data = self._qa_data[dataset]
        if isinstance(data, QaUnavailable):
            return TaskBuild.not_run(task, max_seq_length, data.reason)
        return QaGenerator(data, **common)

    def build(self, task: str, max_seq_length: int, num_samples: int, start_index: int = 0) -> TaskBuild:
        """Samples ``start_index .. start_index+num_samples-1`` of one task at one length.

        Sample i is the same whichever range it is built in (its RNG is derived from
        seed, task, length and i), given the same tokenizer and haystack.
        """
        if max_seq_length <= 0 or num_samples < 0:
            raise ValueError(f"bad max_seq_length={max_seq_length} / num_samples={num_samples}")
        t0 = time.perf_counter()
        counts_before = self.cache.prompt_counts
        gen = self._generator(task, max_seq_length)
        if isinstance(gen, TaskBuild):
            return gen
        spec = get_task(task)
        indices = range(start_index, start_index + num_samples)
        limit = getattr(gen, "max_samples", None)
        notes: list[str] = []
        if limit is not None and indices.stop > limit:
            notes.append(f"only {limit} questions in the dataset: built samples up to index {limit - 1}")
            indices = range(start_index, max(start_index, limit))
        start, stats = gen.search_start(self.cache, derive_rng(self.seed, task, max_seq_length, "search"))
        sample_rng: Callable[[int], Any] = lambda i: derive_rng(self.seed, task, max_seq_length, i)  # noqa: E731
        samples: list[RulerSample] = []
        for index, units, rendered, exact in fit_samples(
            gen,
            self.cache,
            start,
            indices,
            sample_rng,
            bias=stats.get("estimate_bias", 0.0),
            batch_size=self.batch_size,
        ):
            input_text, answer_prefix = split_answer_prefix(spec.family, rendered.text)
            meta = dict(rendered.meta)
            samples.append(
                RulerSample(
                    index=index,
                    task=task,
                    max_seq_length=max_seq_length,
                    input=input_text,
                    answer_prefix=answer_prefix,
                    outputs=list(rendered.outputs),
                    length=exact,
                    tokens_to_generate=spec.tokens_to_generate,
                    num_units=units,
                    needle_depths=meta.pop("needle_depths", None),
                    needle_char_positions=meta.pop("needle_char_positions", None),
                    needle_token_positions=meta.pop("needle_token_positions", None),
                    extra=meta,
                )
            )
        stats.update(
            start_units=start,
            exact_prompt_counts=self.cache.prompt_counts - counts_before,
            seconds=round(time.perf_counter() - t0, 3),
            notes=notes,
        )
        return TaskBuild(task=task, max_seq_length=max_seq_length, status="ok", samples=samples, stats=stats)
