"""packed_documents' Dagster config, derived field by field from the lib's PackingConfig (no re-declared fields)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from lc_assets.defs.stepconfig import dagster_config, step_config
from lc_assets.lib.packing.config import CurriculumStage, PackingConfig

CurriculumStageConfig = dagster_config(CurriculumStage, "CurriculumStageConfig")

PackedDocumentsConfig = dagster_config(
    PackingConfig,
    "PackedDocumentsConfig",
    nested={CurriculumStage: CurriculumStageConfig},
    min_mean_fill=(float, Field(0.999, description="Threshold of the packed_fill_ratio check (mean fill).")),
    lock_timeout_s=(
        float,
        Field(3600.0, description="How long a run waits for another packing run of the same pool to finish."),
    ),
)


def packing_config(config: dg.Config) -> PackingConfig:
    """The lib config from the Dagster one (asset-only fields dropped)."""
    return step_config(PackingConfig, config)
