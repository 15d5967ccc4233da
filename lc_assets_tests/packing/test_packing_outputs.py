"""Config validation and the writers: parquet shards, datasets on disk, manifest, leftovers."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from lc_assets.lib.packing import (
    PackingConfig,
    pack_sections,
    read_sections,
    write_hf_dataset,
    write_outputs,
    write_parquet_shards,
    write_sections,
)
from lc_assets.lib.packing.writers import NoSamplesError


def test_config_bounds_and_messages():
    assert PackingConfig().sample_tokens == 1_048_576
    PackingConfig(sample_tokens=65_536)
    PackingConfig(sample_tokens=2_097_152)
    with pytest.raises(ValidationError, match="sample_tokens=4,096 is outside 65,536 .. 2,097,152.*allow_small"):
        PackingConfig(sample_tokens=4096)
    with pytest.raises(ValidationError, match="outside"):
        PackingConfig(sample_tokens=4_000_000)
    with pytest.raises(ValidationError, match="outside 256"):
        PackingConfig(sample_tokens=100, allow_small_samples=True)
    with pytest.raises(ValidationError):
        PackingConfig(pad_tolerance=0.5)
    with pytest.raises(ValidationError):
        PackingConfig(unknown_field=1)


def test_config_hash_covers_only_what_changes_samples():
    base = PackingConfig()
    assert base.config_hash() == PackingConfig(store_token_ids=False, shard_size=3).config_hash()
    assert base.config_hash() != PackingConfig(seed=1).config_hash()
    assert base.config_hash() != PackingConfig(sample_tokens=65_536).config_hash()


@pytest.fixture(scope="module")
def small_result(tok, pool_factory):
    cfg = PackingConfig(sample_tokens=4096, allow_small_samples=True, shard_size=2)
    return cfg, pack_sections(pool_factory(40, seed=9, prefix="w"), tok, cfg)


def test_round_trip_through_datasets_load_from_disk(small_result, tmp_path, tok):
    from datasets import load_from_disk

    cfg, result = small_result
    written = write_outputs(result, tmp_path, cfg)
    ds = load_from_disk(str(written["hf_dataset"]))
    assert len(ds) == len(result.samples)
    for row, s in zip(ds, result.samples, strict=True):
        assert row["sample_id"] == s.sample_id and row["num_tokens"] == 4096
        assert row["input_ids"] == s.input_ids.tolist()
        assert row["section_ids"] == s.section_ids and row["licenses"] == s.licenses
        assert row["text"] == s.text
        for (a, b), (c, d) in zip(row["target_spans"], row["target_char_spans"], strict=True):
            assert tok.decode(row["input_ids"][a:b]) == row["text"][c:d]
    shards = written["parquet"]
    assert len(shards) == -(-len(result.samples) // 2)
    assert sum(pq.read_metadata(p).num_rows for p in shards) == len(result.samples)
    manifest = json.loads(written["manifest"].read_text())
    assert [m["sample_id"] for m in manifest["samples"]] == [s.sample_id for s in result.samples]
    assert manifest["config_hash"] == cfg.config_hash() and manifest["metrics"]["section_reuse_count"] == 0
    assert manifest["samples"][0]["section_ids"] == result.samples[0].section_ids
    # leftovers survive the round trip and feed the next run
    assert [s.section_id for s in read_sections(written["leftovers"])] == [s.section_id for s in result.leftovers]
    assert read_sections(written["leftovers"]) == result.leftovers


def test_token_ids_are_optional(small_result, tmp_path):
    cfg, result = small_result
    paths = write_parquet_shards(result.samples, tmp_path, cfg.model_copy(update={"store_token_ids": False}))
    assert "input_ids" not in pq.read_schema(paths[0]).names


def test_no_samples_means_no_sample_files(tok, pool_factory, tmp_path):
    cfg = PackingConfig(sample_tokens=65_536)
    result = pack_sections(pool_factory(2, seed=1, prefix="e"), tok, cfg)
    assert not result.samples
    with pytest.raises(NoSamplesError):
        write_parquet_shards(result.samples, tmp_path / "p")
    with pytest.raises(NoSamplesError):
        write_hf_dataset(result.samples, tmp_path / "h")
    written = write_outputs(result, tmp_path / "out", cfg)
    assert set(written) == {"leftovers", "manifest"}
    assert not (tmp_path / "p").exists() and not (tmp_path / "h").exists()
    assert "less than one sample" in json.loads(written["manifest"].read_text())["message"]
    assert write_sections([], tmp_path / "none.parquet") is None and read_sections(tmp_path / "none.parquet") == []


def test_sample_ids_depend_on_sections_and_config(small_result, tok, pool_factory):
    cfg, result = small_result
    ids = [s.sample_id for s in result.samples]
    assert len(set(ids)) == len(ids)
    other = pack_sections(
        pool_factory(40, seed=9, prefix="w"), tok, cfg.model_copy(update={"question_separator": "\n"})
    )
    assert not set(ids) & {s.sample_id for s in other.samples}
    assert all(np.array_equal(s.input_ids[:1], [tok.token_to_id(tok.bos_token)]) for s in result.samples)
