"""From packed rows to what a causal-LM trainer takes: input_ids, labels, position_ids (torch tensors).

Rows written with `trainer_columns="full"` already hold `labels` and `position_ids`; rows written
with `"spans"` hold `loss_spans` and `seq_lens`, from which the same columns are built here. The
collator pads nothing: every packed sample has exactly the same length, so a batch is a stack.
torch is imported only when the collator runs (the packing step itself does not need it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

IGNORE_INDEX = -100


def labels_from_spans(input_ids: Sequence[int], loss_spans: Sequence[Sequence[int]], ignore_index: int = IGNORE_INDEX):
    """`input_ids` with every token outside the ``[start, end)`` loss spans set to `ignore_index`."""
    ids = np.asarray(input_ids, dtype=np.int64)
    labels = np.full(ids.shape, ignore_index, dtype=np.int64)
    for a, b in loss_spans:
        labels[a:b] = ids[a:b]
    return labels


def position_ids_from_seq_lens(seq_lens: Sequence[int]) -> np.ndarray:
    """Positions restarting at 0 at the start of each segment (per-section attention)."""
    lens = np.asarray(seq_lens, dtype=np.int64)
    starts = np.repeat(np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
    return np.arange(int(lens.sum()), dtype=np.int64) - starts


class PackedCollator:
    """Stacks packed rows into `input_ids`, `labels` and `position_ids` tensors for `Trainer`/`SFTTrainer`.

    position_ids: "row" keeps the row's own `position_ids` column (as packed), "sample" gives 0..N-1,
    "section" restarts at every segment of `seq_lens` (use with an attention implementation that
    reads packed sequences from position_ids, e.g. flash_attention_2).
    """

    def __init__(self, position_ids: str = "row", ignore_index: int = IGNORE_INDEX) -> None:
        if position_ids not in ("row", "sample", "section"):
            raise ValueError(f"position_ids must be 'row', 'sample' or 'section', got {position_ids!r}")
        self.position_ids = position_ids
        self.ignore_index = ignore_index

    def row_arrays(self, row: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if "input_ids" not in row:
            raise KeyError("packed row has no input_ids: pack with store_token_ids=True to train from it")
        ids = np.asarray(row["input_ids"], dtype=np.int64)
        if row.get("labels") is not None:
            labels = np.asarray(row["labels"], dtype=np.int64)
        else:
            labels = labels_from_spans(ids, row["loss_spans"], self.ignore_index)
        mode = self.position_ids
        if mode == "row" and row.get("position_ids") is not None:
            pos = np.asarray(row["position_ids"], dtype=np.int64)
        elif mode == "section":
            pos = position_ids_from_seq_lens(row["seq_lens"])
        else:
            pos = np.arange(len(ids), dtype=np.int64)
        return {"input_ids": ids, "labels": labels, "position_ids": pos}

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        import torch

        arrays = [self.row_arrays(r) for r in rows]
        lengths = {len(a["input_ids"]) for a in arrays}
        if len(lengths) != 1:
            raise ValueError(f"packed rows of different lengths in one batch: {sorted(lengths)}")
        return {k: torch.from_numpy(np.stack([a[k] for a in arrays])) for k in ("input_ids", "labels", "position_ids")}
