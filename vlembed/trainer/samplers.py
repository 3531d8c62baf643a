"""Batch samplers for contrastive training.

- ``"no_duplicates"``: sentence-transformers' `NoDuplicatesBatchSampler` over each row's contents
  (`content_keys`) — the same text or image twice in a batch is a false negative: a query, a
  positive or a negative of one row equal to any content of another row.
- ``"group_by"``: `GroupByKeyBatchSampler` — all rows sharing a key (ABC §3.3: the queries about one
  image, each with its own instruction) land in one batch, so they are each other's negatives.
- ``"random"`` / ``"sequential"``: plain shuffled or in-order batches.

Batches are global: a sampler draws batches of ``per_device × world_size`` rows and
`SplitGlobalBatchSampler` yields each as ``world_size`` consecutive per-device batches. accelerate's
`BatchSamplerShard` hands batch k to rank k mod world_size, so the ranks of one step share one
global batch, and no-duplicates and group-by hold over the gathered batch the loss scores. Every
sampler reseeds from ``seed + epoch``, so a resumed run sees the same batches.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import defaultdict
from typing import Any, Iterator

import torch
from torch.utils.data import BatchSampler, RandomSampler, SequentialSampler

# The columns whose contents must not repeat within a batch: a row's negative equal to another
# row's positive is a false negative too.
CONTENT_COLUMNS = ("query", "query_image", "positive", "positive_image", "negatives", "negative_images")
IMAGE_COLUMNS = ("query_image", "positive_image", "negative_images")
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


class SplitGlobalBatchSampler(BatchSampler):
    """Each global batch of ``global_sampler`` as ``num_devices`` consecutive per-device batches.

    accelerate's `BatchSamplerShard` (``split_batches=False``) gives batch k to rank k mod
    num_devices, so at every step the ranks hold the pieces of one global batch.
    """

    def __init__(self, global_sampler: BatchSampler, num_devices: int, num_rows: int):
        self.global_sampler, self.num_devices, self.num_rows = global_sampler, num_devices, num_rows
        self.batch_size = global_sampler.batch_size // num_devices  # read by BatchSamplerShard
        self.drop_last = global_sampler.drop_last

    def set_epoch(self, epoch: int) -> None:
        self.global_sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_sampler:
            for start in range(0, len(batch), self.batch_size):
                yield batch[start : start + self.batch_size]

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.global_sampler) * self.num_devices
        return math.ceil(self.num_rows / self.batch_size)


def content_keys(dataset, columns: tuple[str, ...] = CONTENT_COLUMNS) -> list[list[int]]:
    """Per row, a 64-bit key for each of its contents in ``columns``: a text by its value, an image by
    its path or a digest of its bytes. Empty texts and missing images (``""``, None) are no content,
    so image-only queries, or rows without an optional image, do not collide on them."""
    present = [column for column in columns if column in dataset.column_names]
    if not present:
        return [[] for _ in range(len(dataset))]
    keys = []
    # Arrow batches hold images as stored ({"path", "bytes"}), so nothing is decoded.
    for batch in dataset.select_columns(present).with_format("arrow").iter(batch_size=1000):
        cells = {column: batch.column(column).to_pylist() for column in present}
        for row in range(batch.num_rows):
            row_keys = set()
            for column in present:
                kind = "image" if column in IMAGE_COLUMNS else "text"
                row_keys.update(_key(kind, content) for content in _contents(cells[column][row]))
            keys.append(sorted(row_keys))
    return keys


def _contents(value: Any) -> Iterator[Any]:
    """The non-empty contents in a cell: texts, image paths, ``{"path", "bytes"}`` images."""
    if value is None or (isinstance(value, str) and not value):
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _contents(item)
    else:
        yield value


def _key(kind: str, content: Any) -> int:
    if isinstance(content, dict):  # a datasets image as stored
        identity = content.get("path") or hashlib.sha1(content["bytes"]).hexdigest()
    else:
        identity = str(content)
    # A stable digest (not hash()): every rank must build the same batches.
    return int.from_bytes(hashlib.blake2b(f"{kind}\0{identity}".encode(), digest_size=8).digest(), "big") >> 1


def _no_duplicates_sampler(dataset, batch_size: int, drop_last: bool, seed: int) -> BatchSampler:
    """sentence-transformers' sampler over a table of each row's content keys.

    The table has one column per key; a row with fewer keys repeats its own first one (a row never
    conflicts with itself), and a row with none gets a key of its own (negative, unlike content keys).
    """
    from datasets import Dataset
    from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

    keys = content_keys(dataset)
    width = max((len(row) for row in keys), default=1) or 1
    table = [(row or [-1 - index]) for index, row in enumerate(keys)]
    table = [row + row[:1] * (width - len(row)) for row in table]
    columns = Dataset.from_dict({f"key_{slot}": [row[slot] for row in table] for slot in range(width)})
    return NoDuplicatesBatchSampler(columns, batch_size, drop_last, generator=torch.Generator(), seed=seed, precompute_hashes=True)


def _group_keys(dataset, column: str) -> list[tuple[int, ...]]:
    """One hashable key per row: its contents in ``column`` (text, image path or image digest)."""
    return [tuple(row) for row in content_keys(dataset, (column,))]


def build_batch_sampler(
    name: str, dataset, batch_size: int, *, drop_last: bool, seed: int, group_by_column: str | None = None,
    num_devices: int = 1,
) -> BatchSampler:
    """The batch sampler ``name`` (one of `BATCH_SAMPLERS`) over a `datasets.Dataset`, yielding batches
    of ``batch_size`` (per device) that come ``num_devices`` at a time from one global batch."""
    global_size = batch_size * num_devices
    if name == "no_duplicates":
        sampler = _no_duplicates_sampler(dataset, global_size, drop_last, seed)
    elif name == "group_by":
        if group_by_column is None or group_by_column not in dataset.column_names:
            raise ValueError(
                f"batch_sampler='group_by' needs group_by_column naming a dataset column; got {group_by_column!r} "
                f"(columns: {dataset.column_names})."
            )
        sampler = GroupByKeyBatchSampler(_group_keys(dataset, group_by_column), global_size, drop_last, seed)
    elif name in ("random", "sequential"):
        sampler = _SeededBatchSampler(len(dataset), global_size, drop_last, shuffle=name == "random", seed=seed)
    else:
        raise ValueError(f"Unknown batch_sampler {name!r}; choose one of {', '.join(BATCH_SAMPLERS)}.")
    return sampler if num_devices == 1 else SplitGlobalBatchSampler(sampler, num_devices, len(dataset))
