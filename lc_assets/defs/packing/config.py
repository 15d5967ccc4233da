"""packed_documents' Dagster config, derived field by field from the lib's PackingConfig (no re-declared fields)."""

from __future__ import annotations

from typing import Any, get_args, get_origin

import dagster as dg
from pydantic import BaseModel, Field, create_model
from pydantic_core import PydanticUndefined

from lc_assets.lib.packing.config import CurriculumStage, PackingConfig


def derive_config(name: str, model: type[BaseModel], nested: dict[type, type] | None = None, **extra: Any) -> type:
    """A `dg.Config` class with the fields of `model` (type, default, description) plus `extra` fields.

    Tuples of models become lists of their derived configs (`nested`), as Dagster's config system wants.
    """
    nested = nested or {}
    fields: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        annotation = info.annotation
        if get_origin(annotation) is tuple and get_args(annotation)[0] in nested:
            annotation = list[nested[get_args(annotation)[0]]]  # type: ignore[valid-type]
            default: Any = Field(default_factory=list, description=info.description)
        elif info.default is PydanticUndefined:
            default = Field(description=info.description)
        else:
            default = Field(info.default, description=info.description)
        fields[field_name] = (annotation, default)
    fields.update(extra)
    return create_model(name, __base__=dg.Config, __doc__=model.__doc__, **fields)


CurriculumStageConfig = derive_config("CurriculumStageConfig", CurriculumStage)

_ASSET_ONLY = {
    "min_mean_fill": (float, Field(0.999, description="Threshold of the packed_fill_ratio check (mean fill).")),
    "lock_timeout_s": (
        float,
        Field(3600.0, description="How long a run waits for another packing run of the same pool to finish."),
    ),
}

PackedDocumentsConfig = derive_config(
    "PackedDocumentsConfig", PackingConfig, nested={CurriculumStage: CurriculumStageConfig}, **_ASSET_ONLY
)


def packing_config(config: dg.Config) -> PackingConfig:
    """The lib config from the Dagster one (asset-only fields dropped)."""
    data = config.model_dump()
    for key in _ASSET_ONLY:
        data.pop(key)
    data["curriculum"] = tuple(CurriculumStage(**s) for s in data.get("curriculum") or ())
    return PackingConfig(**data)
