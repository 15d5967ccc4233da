"""Packing of sections (chunk + QA pairs) into chat-format samples of exactly N tokens.

Plain Python (no Dagster). Typical use::

    tok = load_tokenizer()
    result = pack_sections(new_sections, tok, PackingConfig(), leftovers=previous_leftovers)
    files = write_outputs(result, out_dir, config)
    # result.leftovers -> next run; result.metrics.as_metadata() -> asset metadata

Against the lineage store (what the asset does): `run.pack_pool(store, tok, config, run_id=..., root=...)`
reads the pool back, packs every curriculum stage, commits, publishes and verifies. Modules:
config, render (sections as chats, cut points), binpack (the plan), packer (samples), writers,
training (collator), store (pool and usage SQL), evidence (dependency distances), publish (lock,
temporary folders, read-back checks), run (the whole run).
"""

from lc_assets.lib.packing.binpack import BinPlan, Filler, plan_bins
from lc_assets.lib.packing.config import MAX_SAMPLE_TOKENS, MIN_SAMPLE_TOKENS, CurriculumStage, PackingConfig
from lc_assets.lib.packing.metrics import PackingMetrics, ks_2samp
from lc_assets.lib.packing.packer import (
    CutRecord,
    EmptyPoolError,
    PackedSample,
    PackingError,
    PackResult,
    PlacedSection,
    base_section_id,
    pack_sections,
    sample_id,
)
from lc_assets.lib.packing.render import ChatTemplateError, Rejection, RenderedSection, SectionRenderer
from lc_assets.lib.packing.writers import (
    read_sections,
    samples_to_arrow,
    write_hf_dataset,
    write_manifest,
    write_outputs,
    write_parquet_shards,
    write_sections,
)

__all__ = [
    "MAX_SAMPLE_TOKENS",
    "MIN_SAMPLE_TOKENS",
    "BinPlan",
    "ChatTemplateError",
    "CurriculumStage",
    "CutRecord",
    "EmptyPoolError",
    "Filler",
    "PackResult",
    "PackedSample",
    "PackingConfig",
    "PackingError",
    "PlacedSection",
    "PackingMetrics",
    "Rejection",
    "RenderedSection",
    "SectionRenderer",
    "base_section_id",
    "ks_2samp",
    "pack_sections",
    "plan_bins",
    "read_sections",
    "sample_id",
    "samples_to_arrow",
    "write_hf_dataset",
    "write_manifest",
    "write_outputs",
    "write_parquet_shards",
    "write_sections",
]
