"""Dagster run config classes derived from the lib step configs: one source of fields, types, defaults, bounds.

An asset's run config is its step's `StepConfig` seen through Dagster's config system, plus the few
run-only fields the Dagster layer needs (batch sizes, check thresholds). The asset builds the lib
model back with `step_config`, which validates the cross-field rules; its `config_hash()` goes to
the lineage rows. Nothing is re-declared here, so a default changed in lib changes the run config too.
"""

from collections.abc import Collection, Mapping
from copy import copy
from typing import Any, get_args, get_origin

import dagster as dg
from pydantic import BaseModel, create_model
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined


def _run_config_field(info: FieldInfo, nested: Mapping[type, type]) -> tuple[Any, FieldInfo]:
    """(annotation, field) of one lib field for Dagster: same default, bounds and description.

    Dagster's config system has no tuples: `tuple[X, ...]` becomes `list[X]` (a model X becomes its
    derived config, `nested[X]`), and its default a list.
    """
    field = copy(info)
    annotation = info.annotation
    if get_origin(annotation) is tuple:
        item = get_args(annotation)[0]
        annotation = list[nested.get(item, item)]  # type: ignore[misc]
        if info.default is not PydanticUndefined:
            field.default = list(info.default)
    return annotation, field


def dagster_config(
    step: type[BaseModel],
    name: str,
    doc: str | None = None,
    *,
    fields: Collection[str] | None = None,
    exclude: Collection[str] = (),
    defaults: Mapping[str, Any] | None = None,
    nested: Mapping[type, type] | None = None,
    **run_only: tuple[Any, Any],
) -> type[dg.Config]:
    """A `dg.Config` with the fields of `step` plus `run_only` fields that the step config does not have.

    fields / exclude: which of the step's fields the run config sets (default: all); the others keep
        the step's defaults or are set by the asset (say why where you call this).
    defaults: run-config defaults that differ from the step's on purpose, e.g. a field the step requires
        that the asset resolves when the run config leaves it empty.
    nested: derived configs of models the step holds in tuples (`tuple[Stage, ...]` -> `list[StageConfig]`).
    """
    chosen = [n for n in (fields if fields is not None else step.model_fields) if n not in exclude]
    unknown = sorted(set(chosen) - set(step.model_fields)) + sorted(set(defaults or {}) - set(chosen))
    if unknown:
        raise ValueError(f"{name}: {unknown} are not run-config fields of {step.__name__}")
    model_fields: dict[str, Any] = {}
    for field_name in chosen:
        annotation, field = _run_config_field(step.model_fields[field_name], nested or {})
        if defaults and field_name in defaults:
            field.default, field.default_factory = defaults[field_name], None
        model_fields[field_name] = (annotation, field)
    clash = sorted(set(run_only) & set(step.model_fields))
    if clash:
        raise ValueError(f"{name}: run-only fields {clash} are fields of {step.__name__}; derive them instead")
    model_fields.update(run_only)
    return create_model(name, __base__=dg.Config, __doc__=doc or step.__doc__, **model_fields)


def step_config(step: type[BaseModel], config: dg.Config, **resolved: Any) -> Any:
    """The lib step config of a derived Dagster config: its run-only fields dropped, `resolved` fields set."""
    return step(**{**config.model_dump(include=set(step.model_fields)), **resolved})
