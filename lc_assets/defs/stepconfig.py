"""Dagster run config classes derived from the lib step configs (one source of fields and defaults)."""

from typing import Any

import dagster as dg
from pydantic import create_model

from lc_assets.lib.stepconfig import StepConfig


def dagster_config(step: type[StepConfig], name: str, doc: str, **extra: tuple[Any, Any]) -> type[dg.Config]:
    """A `dg.Config` with every field of `step` (same types and defaults) plus `extra` run-only fields."""
    fields: dict[str, Any] = {n: (f.annotation, f.default) for n, f in step.model_fields.items()}
    fields.update(extra)
    return create_model(name, __base__=dg.Config, __doc__=doc, **fields)


def step_config(step: type[StepConfig], config: dg.Config) -> Any:
    """The lib step config of a derived Dagster config (its extra fields dropped)."""
    return step(**config.model_dump(include=set(step.model_fields)))
