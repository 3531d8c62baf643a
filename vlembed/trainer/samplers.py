"""Batch samplers for contrastive training.

- ``"no_duplicates"``: sentence-transformers' `NoDuplicatesBatchSampler` over the content columns —
  the same text or image twice in a batch is a false negative.
- ``"group_by"``: `GroupByKeyBatchSampler` — all rows sharing a key (ABC §3.3: the queries about one
  image, each with its own instruction) land in one batch, so they are each other's negatives.
- ``"random"`` / ``"sequential"``: plain shuffled or in-order batches.

Every sampler yields per-device batches of a fixed size and reseeds from ``seed + epoch``, so a
resumed run sees the same batches; accelerate hands whole batches to the ranks in turn.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Iterator

import torch
from torch.utils.data import BatchSampler, RandomSampler, SequentialSampler

CONTENT_COLUMNS = ("query", "query_image", "positive", "positive_image")
BATCH_SAMPLERS = ("no_duplicates", "group_by", "random", "sequential")


class GroupByKeyBatchSampler(BatchSampler):
    """Batches made of whole groups of rows sharing ``key_column`` (ABC §3.3).

    Groups are shuffled, then packed in order into batches of exactly ``batch_size``; a group that
    does not fit in what is left of a batch is split, the rest opening the next batch, so that
    every batch has the same size (the loss gathers fixed-size batches across processes). With
    group sizes dividing the batch size (ABC: 4 instructions per image), no group is ever split.
    """

    def __init__(self, keys: list, batch_size: int, drop_last: bool, seed: int = 0):
        self.batch_size, self.drop_last, self.seed, self.epoch = batch_size, drop_last, seed, 0
        groups: dict = defaultdict(list)
        for index, key in enumerate(keys):
            groups[key].append(index)
        self.groups = list(groups.values())
        self.num_rows = len(keys)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        order = list(range(len(self.groups)))
        random.Random(self.seed + self.epoch).shuffle(order)
        stream = [index for group in order for index in self.groups[group]]
        for start in range(0, len(stream), self.batch_size):
            batch = stream[start : start + self.batch_size]
            if len(batch) == self.batch_size or not self.drop_last:
                yield batch

    def __len__(self) -> int:
        full, rest = divmod(self.num_rows, self.batch_size)
        return full + (rest > 0 and not self.drop_last)


class _SeededBatchSampler(BatchSampler):
    """torch's BatchSampler over a random (``seed + epoch``) or sequential order."""

    def __init__(self, num_rows: int, batch_size: int, drop_last: bool, shuffle: bool, seed: int):
        self.generator = torch.Generator()
        self.seed, self.epoch, self.shuffle = seed, 0, shuffle
        sampler = RandomSampler(range(num_rows), generator=self.generator) if shuffle else SequentialSampler(range(num_rows))
        super().__init__(sampler, batch_size, drop_last)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        self.generator.manual_seed(self.seed + self.epoch)
        return super().__iter__()


def _group_keys(dataset, column: str) -> list[str]:
    """One hashable key per row: the text, the image path, or a digest of the image bytes."""
    import hashlib

    from datasets import Image

    values = dataset.select_columns([column])
    if isinstance(values.features[column], Image):
        values = values.cast_column(column, Image(decode=False))  # compare files, not decoded pixels
    keys = []
    for value in values[column]:
        if isinstance(value, dict):
            value = value.get("path") or hashlib.sha1(value["bytes"]).hexdigest()
        keys.append(str(value))
    return keys


def build_batch_sampler(
    name: str, dataset, batch_size: int, *, drop_last: bool, seed: int, group_by_column: str | None = None
) -> BatchSampler:
    """The batch sampler ``name`` (one of `BATCH_SAMPLERS`) over a `datasets.Dataset`."""
    if name == "no_duplicates":
        from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

        content = dataset.select_columns([column for column in CONTENT_COLUMNS if column in dataset.column_names])
        return NoDuplicatesBatchSampler(content, batch_size, drop_last, generator=torch.Generator(), seed=seed)
    if name == "group_by":
        if group_by_column is None or group_by_column not in dataset.column_names:
            raise ValueError(
                f"batch_sampler='group_by' needs group_by_column naming a dataset column; got {group_by_column!r} "
                f"(columns: {dataset.column_names})."
            )
        return GroupByKeyBatchSampler(_group_keys(dataset, group_by_column), batch_size, drop_last, seed)
    if name in ("random", "sequential"):
        return _SeededBatchSampler(len(dataset), batch_size, drop_last, shuffle=name == "random", seed=seed)
    raise ValueError(f"Unknown batch_sampler {name!r}; choose one of {', '.join(BATCH_SAMPLERS)}.")
