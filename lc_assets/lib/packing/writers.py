"""Writers for packed samples: parquet shards, a Hugging Face `datasets` dataset, a manifest.

Plain functions; none writes an empty file: with no samples they raise, and `write_outputs`
writes only the manifest (which says why) and the leftovers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lc_assets.lib.packing.config import PackingConfig
from lc_assets.lib.packing.packer import PackedSample, PackResult
from lc_assets.lib.sections import QAPair, Section

_SPAN_COLUMNS = ("section_spans", "target_spans", "loss_spans", "target_char_spans")
_LIST_COLUMNS = ("section_ids", "chunk_ids", "document_ids", "sources", "licenses")


class NoSamplesError(ValueError):
    """Asked to write samples, but there are none (nothing is written)."""


def _spans_array(per_sample: Sequence[np.ndarray]) -> pa.Array:
    """list<list<int64>> of [start, end] pairs, built from offsets (no Python lists of ints)."""
    flat = np.concatenate([s.reshape(-1) for s in per_sample]) if per_sample else np.zeros(0, np.int64)
    inner = pa.ListArray.from_arrays(pa.array(np.arange(0, len(flat) + 1, 2, dtype=np.int32)), pa.array(flat))
    counts = np.array([s.shape[0] for s in per_sample], dtype=np.int32)
    outer_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(outer_offsets), inner)


def _large_lists(per_sample: Sequence[np.ndarray], dtype) -> pa.Array:
    flat = np.concatenate(per_sample).astype(dtype) if per_sample else np.zeros(0, dtype)
    offsets = np.concatenate([[0], np.cumsum([len(a) for a in per_sample])]).astype(np.int64)
    return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(flat))


def samples_to_arrow(
    samples: Sequence[PackedSample], config: PackingConfig | None = None, *, config_hash: str = ""
) -> pa.Table:
    """One row per sample; spans are token ``[start, end)`` pairs (char pairs for target_char_spans).

    With `config.trainer_columns == "full"` the rows also hold what a trainer takes as it is:
    `labels` (input_ids, -100 outside the loss spans), `position_ids` (per `config.position_ids`),
    `seq_lens` (attention segments: BOS + first section, each next section, the pad) and `cu_seqlens`.
    """
    if not samples:
        raise NoSamplesError("no samples to write")
    config = config or PackingConfig(sample_tokens=samples[0].num_tokens, allow_small_samples=True)
    cols: dict[str, pa.Array] = {
        "sample_id": pa.array([s.sample_id for s in samples], pa.string()),
        "num_tokens": pa.array([s.num_tokens for s in samples], pa.int32()),
        "num_real_tokens": pa.array([s.num_real_tokens for s in samples], pa.int32()),
        "fill_ratio": pa.array([s.fill_ratio for s in samples], pa.float64()),
        "pad_token_id": pa.array([s.pad_token_id for s in samples], pa.int32()),
        "n_pairs": pa.array([s.n_pairs for s in samples], pa.int32()),
    }
    for name in _LIST_COLUMNS:
        cols[name] = pa.array([getattr(s, name) for s in samples], pa.list_(pa.string()))
    for name in _SPAN_COLUMNS:
        cols[name] = _spans_array([getattr(s, name) for s in samples])
    cols["dependency_distances"] = pa.array([s.dependency_distances.tolist() for s in samples], pa.list_(pa.int64()))
    cols["cross_pair_ids"] = pa.array([s.cross_pair_ids for s in samples], pa.list_(pa.string()))
    for k, name in enumerate(("cross_nearest_distances", "cross_farthest_distances")):
        cols[name] = pa.array([s.cross_distances[:, k].tolist() for s in samples], pa.list_(pa.int64()))
    cols["cut_section_id"] = pa.array([s.cut.section_id if s.cut else None for s in samples], pa.string())
    cols["cut_kind"] = pa.array([s.cut.kind if s.cut else None for s in samples], pa.string())
    cols["config_hash"] = pa.array([config_hash] * len(samples), pa.string())
    if config.store_text:
        cols["text"] = pa.array([s.text for s in samples], pa.large_string())
    if config.store_token_ids:
        cols["input_ids"] = _large_lists([s.input_ids for s in samples], np.int32)
    lens = [s.seq_lens() for s in samples]
    cols["seq_lens"] = pa.array([x.tolist() for x in lens], pa.list_(pa.int32()))
    if config.trainer_columns == "full":
        cols["cu_seqlens"] = pa.array(
            [np.concatenate([[0], np.cumsum(x)]).tolist() for x in lens], pa.list_(pa.int32())
        )
        cols["labels"] = _large_lists([s.labels() for s in samples], np.int32)
        cols["position_ids"] = _large_lists([s.position_ids(config.position_ids) for s in samples], np.int32)
    return pa.table(cols)


def write_parquet_shards(
    samples: Sequence[PackedSample],
    out_dir: str | Path,
    config: PackingConfig | None = None,
    *,
    config_hash: str = "",
) -> list[Path]:
    """Write `part-00000.parquet`, ... with `config.shard_size` samples each; returns the paths."""
    if not samples:
        raise NoSamplesError("no samples to write: not creating parquet shards")
    shard_size = config.shard_size if config else 16
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, start in enumerate(range(0, len(samples), shard_size)):
        table = samples_to_arrow(samples[start : start + shard_size], config, config_hash=config_hash)
        path = out / f"part-{k:05d}.parquet"
        pq.write_table(table, path, compression="zstd")
        paths.append(path)
    return paths


def write_hf_dataset(
    samples: Sequence[PackedSample],
    out_dir: str | Path,
    config: PackingConfig | None = None,
    *,
    config_hash: str = "",
) -> Path:
    """Save the samples as a `datasets.Dataset` with `save_to_disk` (load with `load_from_disk`)."""
    if not samples:
        raise NoSamplesError("no samples to write: not creating a datasets dataset")
    from datasets import Dataset
    from datasets.table import InMemoryTable

    table = samples_to_arrow(samples, config, config_hash=config_hash)
    out = Path(out_dir)
    Dataset(InMemoryTable(table)).save_to_disk(str(out))
    return out


def manifest_dict(result: PackResult, config: PackingConfig) -> dict[str, Any]:
    """The run's manifest: config, metrics, and per sample its sections in order, sources and licenses."""
    return {
        "config": config.model_dump(mode="json"),
        "config_hash": result.config_hash,
        "tokenizer": result.tokenizer,
        "message": result.message,
        "metrics": result.metrics.as_metadata(),
        "failure": result.failure,
        "samples": [
            {
                "sample_id": s.sample_id,
                "num_tokens": s.num_tokens,
                "num_real_tokens": s.num_real_tokens,
                "fill_ratio": s.fill_ratio,
                "section_ids": s.section_ids,
                "document_ids": s.document_ids,
                "sources": s.sources,
                "licenses": s.licenses,
                "source_mix": s.source_mix(),
                "n_pairs": s.n_pairs,
                "cross_pairs": [
                    {"pair_id": pid, "section_id": sid, "nearest_tokens": int(d[0]), "farthest_tokens": int(d[1])}
                    for pid, sid, d in zip(s.cross_pair_ids, s.cross_section_ids, s.cross_distances, strict=True)
                ],
                "seq_lens": s.seq_lens().tolist(),
                "cut": None
                if s.cut is None
                else {
                    "section_id": s.cut.section_id,
                    "kind": s.cut.kind,
                    "used_tokens": s.cut.used_tokens,
                    "section_tokens": s.cut.section_tokens,
                    "pairs_used": s.cut.pairs_used,
                    "pairs_total": s.cut.pairs_total,
                    "cut_pair_ids": list(s.cut.cut_pair_ids),
                    "carried_as": s.cut.carried_as,
                },
            }
            for s in result.samples
        ],
        "leftover_section_ids": [s.section_id for s in result.leftovers],
        "rejected": [{"section_id": r.section_id, "reason": r.reason, "tokens": r.tokens} for r in result.rejected],
        "split_parts": result.split_parts,
    }


def write_manifest(result: PackResult, config: PackingConfig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest_dict(result, config), indent=1, ensure_ascii=False), encoding="utf-8")
    return path


_SECTION_SCHEMA = pa.schema(
    [
        ("section_id", pa.string()),
        ("chunk_id", pa.string()),
        ("document_id", pa.string()),
        ("source", pa.string()),
        ("license", pa.string()),
        ("text", pa.large_string()),
        ("chunk_index", pa.int64()),
        (
            "pairs",
            pa.list_(
                pa.struct(
                    [("pair_id", pa.string()), ("step", pa.int64()), ("question", pa.string()), ("answer", pa.string())]
                )
            ),
        ),
    ]
)


def write_sections(sections: Sequence[Section], path: str | Path) -> Path | None:
    """Persist sections (e.g. leftovers for the next run) as parquet; writes nothing and returns None if empty."""
    if not sections:
        return None
    rows = {
        "section_id": [s.section_id for s in sections],
        "chunk_id": [s.chunk_id for s in sections],
        "document_id": [s.document_id for s in sections],
        "source": [s.source for s in sections],
        "license": [s.license for s in sections],
        "text": [s.text for s in sections],
        "chunk_index": [s.chunk_index for s in sections],
        "pairs": [[vars(p) for p in s.pairs] for s in sections],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rows, schema=_SECTION_SCHEMA), path, compression="zstd")
    return path


def read_sections(path: str | Path | None) -> list[Section]:
    """Read sections written by `write_sections`; a missing path means no leftovers."""
    if path is None or not Path(path).exists():
        return []
    out = []
    for row in pq.read_table(path).to_pylist():
        pairs = tuple(QAPair(**p) for p in row.pop("pairs") or [])
        out.append(Section(**row, pairs=pairs))
    return out


def write_outputs(result: PackResult, out_dir: str | Path, config: PackingConfig) -> dict[str, Any]:
    """Write everything of one run under out_dir: parquet/, hf_dataset/, manifest.json, leftovers.parquet.

    Returns the paths written (keys absent when nothing of that kind was written).
    """
    out = Path(out_dir)
    written: dict[str, Any] = {}
    if result.samples:
        written["parquet"] = write_parquet_shards(
            result.samples, out / "parquet", config, config_hash=result.config_hash
        )
        written["hf_dataset"] = write_hf_dataset(
            result.samples, out / "hf_dataset", config, config_hash=result.config_hash
        )
    leftovers = write_sections(result.leftovers, out / "leftovers.parquet")
    if leftovers:
        written["leftovers"] = leftovers
    written["manifest"] = write_manifest(result, config, out / "manifest.json")
    return written
