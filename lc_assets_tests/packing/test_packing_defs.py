"""packed_documents' Dagster config is derived from the lib's PackingConfig: same fields, defaults, descriptions."""

from __future__ import annotations

from lc_assets.defs.packing.config import PackedDocumentsConfig, packing_config
from lc_assets.lib.packing import PackingConfig


def test_every_lib_field_is_in_the_dagster_config_with_its_default():
    lib, dag = PackingConfig.model_fields, PackedDocumentsConfig.model_fields
    assert set(lib) <= set(dag) and set(dag) - set(lib) == {"min_mean_fill", "lock_timeout_s"}
    for name, info in lib.items():
        assert dag[name].description == info.description
        if name != "curriculum":
            assert dag[name].default == info.default, name
    assert packing_config(PackedDocumentsConfig()) == PackingConfig()


def test_curriculum_round_trips_from_run_config():
    cfg = PackedDocumentsConfig(
        allow_small_samples=True, curriculum=[{"sample_tokens": 2048, "max_samples": 3}, {"sample_tokens": 8192}]
    )
    lib = packing_config(cfg)
    assert [c.sample_tokens for c in lib.stages()] == [2048, 8192] and lib.stage_limits() == [3, None]
    assert lib.stages()[0].config_hash() != lib.stages()[1].config_hash()
