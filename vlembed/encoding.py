"""Encoding a corpus into an embedding store: sharded over processes and GPUs, resumable, memory-mapped.

A corpus is split into fixed-size shards (so the layout does not depend on the number of
processes). Under ``torchrun`` / ``accelerate launch`` each rank encodes shards ``rank, rank + world,
...`` and writes each one to a temporary file that is renamed into place when complete, so a killed
run leaves only whole shards behind and a restart encodes just the missing ones.

On-disk layout of a store folder::

    manifest.json                      model (path + fingerprint), template/instruction/task, dim,
                                       dtype, count, corpus fingerprint, shard layout, run records
    ids.json                           the corpus ids, in corpus order
    embeddings-00000-of-00042.npy      rows [0, shard_size) as a [rows, dim] float32/float16 array
    embeddings-00001-of-00042.npy      ...

`EmbeddingStore` opens a complete store with every shard memory-mapped; `open_store` checks that a store
is what a model would encode, and mining and evaluation search it (see `vlembed.search`) instead of
re-encoding (``--corpus-store``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

MANIFEST_FILE = "manifest.json"
IDS_FILE = "ids.json"
STORE_FORMAT = "vlembed-embedding-store"
STORE_VERSION = 1
DTYPES = ("float32", "float16")
CORPUS_FILE_TYPES = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
# Manifest keys that say what the vectors mean: a store made with other values cannot be resumed.
IDENTITY_KEYS = ("model", "encoding", "corpus", "count", "dim", "dtype", "shard_size")
# Config entries that change when a model is saved, reloaded or moved, but not its embeddings.
_VOLATILE_CONFIG_KEYS = {"_name_or_path", "name_or_path", "transformers_version", "dtype", "torch_dtype", "architectures", "auto_map"}
_WEIGHT_SAMPLES_PER_TENSOR = 4096


class CorpusError(ValueError):
    """A corpus file that cannot be read as items (missing columns, a bad row)."""


class StoreMismatchError(ValueError):
    """An existing store was made with another model, template, corpus or layout."""


class IncompleteStoreError(ValueError):
    """A store with shards still missing (a run that has not finished)."""


# ---------------------------------------------------------------------------------------------- corpus


def load_corpus(
    path: str | os.PathLike,
    *,
    id_column: str = "id",
    text_column: str = "text",
    image_column: str = "image",
    images_column: str = "images",
    image_root: str | os.PathLike | None = None,
    check_images: bool = True,
    cache_dir: str | None = None,
) -> tuple[list[str], list]:
    """Read a corpus file into ids and items that `VLEmbedModel.encode` takes.

    ``path`` is a ``.jsonl`` / ``.json`` / ``.csv`` / ``.parquet`` file or a folder written by
    `datasets.Dataset.save_to_disk`. Columns: ``id`` (optional; default: the row number as a string),
    ``text``, ``image`` (a path, relative to ``image_root``, default the file's folder) and/or ``images``
    (a list of paths; in a CSV file a JSON list). A folder's image columns may also hold `datasets.Image`
    values. Other columns are ignored; the column names can be changed with the ``*_column`` arguments.

    Returns ``(ids, items)``: an item is a ``str`` (text only), a `pathlib.Path` (one image only) or
    a dict with ``"text"`` and ``"image"`` / ``"images"``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CorpusError: the file has none of the item columns, or a row is bad (names row and column).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Corpus not found: '{path}'.")
    dataset = _read_table(path, cache_dir)
    # Absolute image paths: items stay valid from any working directory, and so does the store's fingerprint.
    base = Path(image_root if image_root is not None else path if path.is_dir() else path.parent).resolve()
    columns = set(dataset.column_names)
    item_columns = [column for column in (text_column, image_column, images_column) if column in columns]
    if not item_columns:
        raise CorpusError(
            f"Corpus '{path}' has columns {sorted(columns)}; it needs '{text_column}' and/or "
            f"'{image_column}' / '{images_column}'."
        )
    if len(dataset) == 0:
        raise CorpusError(f"Corpus '{path}' has no rows.")
    # Embedded images are read as raw bytes/paths: decoding them all here would load every pixel.
    for column in (image_column, images_column):
        if column in columns:
            dataset = _undecoded_images(dataset, column)
    has_ids = id_column in columns
    ids: list[str] = []
    items: list = []
    row_of_id: dict[str, int] = {}
    wanted = item_columns + ([id_column] if has_ids else [])
    row_index = 0
    # Column batches from Arrow: iterating a Dataset row by row is about 100 times slower (measured on 200k rows).
    for batch in dataset.select_columns(wanted).iter(batch_size=10_000):
        for values in zip(*(batch[column] for column in wanted)):
            row = dict(zip(wanted, values))
            if has_ids and row[id_column] is None:
                raise CorpusError(f"Corpus '{path}', row {row_index}, column '{id_column}': the id is empty.")
            row_id = str(row[id_column]) if has_ids else str(row_index)
            if row_id in row_of_id:
                raise CorpusError(
                    f"Corpus '{path}', row {row_index}, column '{id_column}': id {row_id!r} repeats row {row_of_id[row_id]}."
                )
            row_of_id[row_id] = row_index
            ids.append(row_id)
            where = f"Corpus '{path}', row {row_index} (id {row_id!r})"
            items.append(_row_item(row, where, base, check_images, text_column, image_column, images_column))
            row_index += 1
    return ids, items


def _row_item(row: dict, where: str, base: Path, check_images: bool, text_column: str, image_column: str, images_column: str):
    """One corpus row as an encode item; errors name the row and the column."""
    text = row.get(text_column)
    if text is not None and not isinstance(text, str):
        raise CorpusError(f"{where}, column '{text_column}': expected a string, got {type(text).__name__}.")
    images = []
    if row.get(image_column) is not None:
        images.append(_image_source(row[image_column], base, check_images, f"{where}, column '{image_column}'"))
    images_value = row.get(images_column)
    if isinstance(images_value, str):  # CSV cells hold lists as JSON
        images_value = _json_list(images_value, f"{where}, column '{images_column}'")
    if images_value is not None and not isinstance(images_value, list):
        raise CorpusError(f"{where}, column '{images_column}': expected a list of paths, got {type(images_value).__name__}.")
    for image in images_value or []:
        images.append(_image_source(image, base, check_images, f"{where}, column '{images_column}'"))
    if not text and not images:
        raise CorpusError(f"{where}: has neither text ('{text_column}') nor an image ('{image_column}' / '{images_column}').")
    if not images:
        return text
    if not text and len(images) == 1:
        return images[0]
    if len(images) == 1:
        return {"text": text or "", "image": images[0]}
    return {"text": text or "", "images": images}


def _read_table(path: Path, cache_dir: str | None):
    import datasets

    if path.is_dir():
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if len(loaded) != 1:
                raise CorpusError(f"Corpus folder '{path}' holds several splits {list(loaded)}; point at one split's folder.")
            loaded = next(iter(loaded.values()))
        return loaded
    builder = CORPUS_FILE_TYPES.get(path.suffix.lower())
    if builder is None:
        raise CorpusError(f"Corpus '{path}': unknown file type; use one of {', '.join(CORPUS_FILE_TYPES)} or a save_to_disk folder.")
    kwargs: dict[str, Any] = {}
    if builder == "csv":
        # Every CSV cell is read as text: type inference would turn ids like "007" or texts like "1.50" into numbers.
        with open(path, newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
        kwargs["features"] = datasets.Features({name: datasets.Value("string") for name in header})
    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train", cache_dir=cache_dir, **kwargs)
    except Exception as error:  # the builders raise many types for malformed files
        raise CorpusError(f"Cannot read corpus '{path}' as {builder}: {error}") from error


def _undecoded_images(dataset, column: str):
    import datasets

    feature = dataset.features[column]
    if isinstance(feature, datasets.Image):
        return dataset.cast_column(column, datasets.Image(decode=False))
    inner = getattr(feature, "feature", None)
    if isinstance(inner, datasets.Image):
        return dataset.cast_column(column, datasets.List(datasets.Image(decode=False)))
    return dataset


def _json_list(value: str, where: str) -> list:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise CorpusError(f"{where}: expected a JSON list of paths, got {value!r}.") from error
    if not isinstance(parsed, list):
        raise CorpusError(f"{where}: expected a JSON list of paths, got {value!r}.")
    return parsed


def _image_source(value: Any, base: Path, check: bool, where: str):
    """A `Path` to an image file, or a lazily decoded PIL image for a `datasets.Image` holding bytes."""
    if isinstance(value, dict):  # datasets.Image(decode=False): {"bytes": ..., "path": ...}
        if value.get("path") and (base / value["path"]).is_file():
            return base / value["path"]
        if value.get("bytes") is not None:
            from PIL import Image

            return Image.open(io.BytesIO(value["bytes"]))  # reads the header only
        raise CorpusError(f"{where}: image has neither bytes nor an existing file ({value.get('path')!r}).")
    if not isinstance(value, str) or not value:
        raise CorpusError(f"{where}: expected an image path, got {value!r}.")
    image_path = base / value
    if check and not image_path.is_file():
        raise CorpusError(f"{where}: image file not found: '{image_path}'.")
    return image_path


# ---------------------------------------------------------------------------------------------- store


class ShardedEmbeddings:
    """Row-wise concatenation of memory-mapped shards, sliced without loading the rest.

    Supports ``len``, ``shape``, ``dtype``, integer / slice / integer-array indexing (returning
    in-memory arrays) and ``np.asarray`` (which loads everything).
    """

    def __init__(self, shards: Sequence[np.ndarray]):
        if not shards:
            raise ValueError("ShardedEmbeddings needs at least one shard.")
        self.shards = list(shards)
        self.offsets = np.cumsum([0] + [len(shard) for shard in self.shards])
        self.dtype = self.shards[0].dtype
        self.shape = (int(self.offsets[-1]), self.shards[0].shape[1])
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"ShardedEmbeddings(shape={self.shape}, dtype={self.dtype}, shards={len(self.shards)})"

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        # One allocation of the target dtype, filled shard by shard (no intermediate float16 copy).
        array = np.empty(self.shape, dtype=dtype or self.dtype)
        for shard, offset in zip(self.shards, self.offsets):
            array[offset : offset + len(shard)] = shard
        return array

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, tuple):
            rows, *columns = key
            return self[rows][(slice(None), *columns)]
        if isinstance(key, (int, np.integer)):
            index = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= index < len(self):
                raise IndexError(f"row {key} is out of range for {len(self)} rows")
            shard = int(np.searchsorted(self.offsets, index, side="right")) - 1
            return np.asarray(self.shards[shard][index - self.offsets[shard]])
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                return self[np.arange(start, stop, step)]
            pieces = [
                shard[max(start - offset, 0) : min(stop - offset, len(shard))]
                for shard, offset in zip(self.shards, self.offsets)
                if offset < stop and offset + len(shard) > start
            ]
            return np.concatenate(pieces) if pieces else np.empty((0, self.shape[1]), self.dtype)
        indices = np.asarray(key)
        if indices.dtype == bool:
            indices = np.flatnonzero(indices)
        indices = np.where(indices < 0, indices + len(self), indices)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"row indices out of range for {len(self)} rows")
        result = np.empty((len(indices), self.shape[1]), self.dtype)
        shard_of_row = np.searchsorted(self.offsets, indices, side="right") - 1
        for shard in np.unique(shard_of_row):
            selected = shard_of_row == shard
            result[selected] = self.shards[shard][indices[selected] - self.offsets[shard]]
        return result


class EmbeddingStore:
    """A complete embedding store on disk (see the module docstring for the layout).

    Attributes:
        path: the store folder.
        manifest: the parsed ``manifest.json``.
        embeddings: a `ShardedEmbeddings` of memory-mapped shards, ``[count, dim]``, in corpus order.
        ids: the corpus ids (``list[str]``), read on first access.

    Raises:
        FileNotFoundError: the folder has no manifest.
        IncompleteStoreError: shards are missing (the encoding run has not finished).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        manifest_path = self.path / MANIFEST_FILE
        if not manifest_path.is_file():
            raise FileNotFoundError(f"No embedding store at '{self.path}' (no {MANIFEST_FILE}).")
        self.manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if self.manifest.get("format") != STORE_FORMAT:
            raise ValueError(f"'{manifest_path}' is not a vlembed embedding store manifest.")
        shard_files = [self.path / shard["file"] for shard in self.manifest["shards"]]
        missing = [path.name for path in shard_files if not path.is_file()]
        if missing:
            raise IncompleteStoreError(
                f"Embedding store '{self.path}' is incomplete: {len(missing)} of {len(shard_files)} shards are "
                f"missing (first: {missing[0]}). Run the same encoding again to finish it."
            )
        shards = [np.load(path, mmap_mode="r") for path in shard_files]
        for shard, entry in zip(shards, self.manifest["shards"]):
            expected = (entry["stop"] - entry["start"], self.manifest["dim"])
            if shard.shape != expected or shard.dtype != np.dtype(self.manifest["dtype"]):
                raise ValueError(
                    f"Shard '{entry['file']}' holds {shard.shape} {shard.dtype}; the manifest says {expected} {self.manifest['dtype']}."
                )
        self.embeddings = ShardedEmbeddings(shards)
        self._ids: list[str] | None = None

    @property
    def ids(self) -> list[str]:
        if self._ids is None:
            self._ids = json.loads((self.path / IDS_FILE).read_text(encoding="utf-8"))
        return self._ids

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    def __len__(self) -> int:
        return int(self.manifest["count"])

    def __repr__(self) -> str:
        return f"EmbeddingStore('{self.path}', count={len(self)}, dim={self.dim}, dtype={self.manifest['dtype']})"


def open_store(
    path: str | os.PathLike,
    model,
    ids: Sequence[Any],
    *,
    instruction: str | None = None,
    task: Literal["query", "document"] = "document",
) -> ShardedEmbeddings | np.ndarray:
    """The embeddings of ``ids`` (in that order) from an existing store, checked to be what ``model``
    would encode: the manifest's model fingerprint and encoding (task, instruction, template,
    normalisation) must match, and the store must hold every id. File contents are not re-read or
    hashed, so the store must come from the same corpus.

    Returns the memory-mapped `ShardedEmbeddings` when the store holds exactly ``ids`` in order (a
    ``vlembed encode`` of the same corpus file), else an in-memory copy of the rows of ``ids``.

    Raises:
        StoreMismatchError: another model, template or instruction, or ids the store lacks (naming them).
        FileNotFoundError, IncompleteStoreError: no store, or an unfinished one.
    """
    store = EmbeddingStore(path)
    stored = store.manifest["model"]
    if stored.get("fingerprint") != model_fingerprint(model):
        raise StoreMismatchError(
            f"Embedding store '{store.path}' was encoded by another model (stored: {stored.get('name_or_path')!r}, "
            f"this model: {str(getattr(model.config, 'name_or_path', ''))!r}; their weights or config differ). "
            "Encode the corpus with this model (vlembed encode) or leave the store out."
        )
    encoding = _encoding_identity(model, instruction, task)
    differences = [key for key in encoding if store.manifest["encoding"].get(key) != encoding[key]]
    if differences:
        details = "; ".join(f"{key}: stored {store.manifest['encoding'].get(key)!r}, needed {encoding[key]!r}" for key in differences)
        raise StoreMismatchError(f"Embedding store '{store.path}' was encoded with another {', '.join(differences)} ({details}).")
    ids = [str(item_id) for item_id in ids]
    if ids == store.ids:
        return store.embeddings
    position = {item_id: row for row, item_id in enumerate(store.ids)}
    missing = [item_id for item_id in ids if item_id not in position]
    if missing:
        raise StoreMismatchError(
            f"Embedding store '{store.path}' ({len(store)} items) lacks {len(missing)} of the {len(ids)} ids needed "
            f"(first: {missing[0]!r}); it was made from another corpus."
        )
    return store.embeddings[np.array([position[item_id] for item_id in ids], dtype=np.int64)]


def shard_layout(count: int, shard_size: int) -> list[dict]:
    """The shards of a ``count``-item corpus: ``[{"file", "start", "stop"}, ...]``; independent of processes."""
    num_shards = -(-count // shard_size)
    return [
        {"file": f"embeddings-{index:05d}-of-{num_shards:05d}.npy", "start": start, "stop": min(start + shard_size, count)}
        for index, start in enumerate(range(0, count, shard_size))
    ]


# ---------------------------------------------------------------------------------------------- encoding


def encode_corpus(
    model,
    items: Sequence[Any],
    out_dir: str | os.PathLike,
    *,
    ids: Sequence[Any] | None = None,
    instruction: str | None = None,
    task: Literal["query", "document"] = "document",
    batch_size: int = 32,
    shard_size: int = 10_000,
    dtype: Literal["float32", "float16"] = "float32",
    show_progress_bar: bool | None = None,
    overwrite: bool = False,
) -> EmbeddingStore:
    """Encode ``items`` with ``model`` into an embedding store at ``out_dir``, resuming a partial one.

    Run it in every process of a ``torchrun`` / ``accelerate launch`` job: each rank encodes shards
    ``rank, rank + world_size, ...`` (the process group is initialised from the environment when
    needed: NCCL with CUDA, else gloo), and the model moves to ``cuda:LOCAL_RANK`` when CUDA is
    available. Shards whose file exists are skipped, so a killed run restarts where it stopped.

    Args:
        model: a `VLEmbedModel` (anything with its ``encode``, ``config`` and ``state_dict``).
        items: a sequence of items as `VLEmbedModel.encode` takes them (e.g. from `load_corpus`).
        out_dir: the store folder (created if missing).
        ids: one id per item (default: the row numbers); stored as strings, must be unique.
        instruction, task: as in `VLEmbedModel.encode`; recorded in the manifest.
        batch_size: items per forward pass. Within a shard, items are batched longest first.
        shard_size: items per shard file; part of the store's identity.
        dtype: ``"float32"`` or ``"float16"`` storage.
        show_progress_bar: a bar per rank (rank 0 adds one for the whole corpus); default: shown
            when a rank has more than 4 batches to do.
        overwrite: replace an existing store made with another model, template, corpus or layout
            instead of raising `StoreMismatchError`.

    Returns:
        The complete `EmbeddingStore` (in every rank).
    """
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}.")
    if task not in ("query", "document"):
        raise ValueError(f"task must be 'query' or 'document', got {task!r}.")
    if batch_size < 1 or shard_size < 1:
        raise ValueError(f"batch_size and shard_size must be at least 1, got {batch_size} and {shard_size}.")
    count = len(items)
    if count == 0:
        raise ValueError("Cannot encode an empty corpus.")
    ids = [str(row) for row in range(count)] if ids is None else [str(row_id) for row_id in ids]
    if len(ids) != count:
        raise ValueError(f"Got {len(ids)} ids for {count} items.")
    _check_unique(ids)
    out_dir = Path(out_dir)
    rank, world_size, local_rank = _distributed_context()
    if torch.cuda.is_available() and model.device.type == "cpu":
        model.to(f"cuda:{local_rank}")
    layout = shard_layout(count, shard_size)

    # Rank 0 checks the folder against this run and writes the manifest before anyone encodes.
    error = None
    if rank == 0:
        manifest = _manifest(model, ids, items, instruction, task, dtype, shard_size, layout)
        error = _prepare_store(out_dir, manifest, ids, overwrite)
    error = _broadcast_from_rank0(error, world_size)
    if error is not None:
        raise StoreMismatchError(error)
    _barrier(world_size)

    started = time.perf_counter()
    mine = [shard for shard in layout[rank::world_size] if not (out_dir / shard["file"]).is_file()]
    skipped = len(layout[rank::world_size]) - len(mine)
    encoded_items = _encode_shards(
        model, items, mine, out_dir, layout, instruction=instruction, task=task, batch_size=batch_size,
        dtype=dtype, show_progress_bar=show_progress_bar, rank=rank, world_size=world_size,
    )
    seconds = time.perf_counter() - started
    local = {"rank": rank, "encoded_shards": len(mine), "skipped_shards": skipped, "encoded_items": encoded_items,
             "seconds": round(seconds, 3), "items_per_second": round(encoded_items / max(seconds, 1e-9), 2)}
    print(f"[rank {rank}] encoded {encoded_items} items in {seconds:.1f} s ({encoded_items / max(seconds, 1e-9):.1f} items/s), "
          f"{skipped} shards already done", flush=True)
    per_rank = _gather_objects(local, world_size)
    if rank == 0:
        wall = time.perf_counter() - started
        total = sum(stats["encoded_items"] for stats in per_rank)
        print(f"Encoded {total} of {count} items in {wall:.1f} s over {world_size} process(es): "
              f"{total / max(wall, 1e-9):.1f} items/s in all -> {out_dir}", flush=True)
        _record_run(out_dir, per_rank, wall, world_size, str(model.device))
    _barrier(world_size)
    return EmbeddingStore(out_dir)


def _check_unique(ids: list[str]) -> None:
    """Raise naming the first repeated id and both of its rows."""
    first_row: dict[str, int] = {}
    for row, row_id in enumerate(ids):
        if row_id in first_row:
            raise ValueError(f"Corpus ids must be unique: id {row_id!r} is at rows {first_row[row_id]} and {row}.")
        first_row[row_id] = row


def _encode_shards(model, items, shards, out_dir: Path, layout, *, instruction, task, batch_size, dtype,
                   show_progress_bar, rank: int, world_size: int) -> int:
    """Encode and write each of ``shards``; return the number of items encoded."""
    from tqdm.auto import tqdm

    todo = sum(shard["stop"] - shard["start"] for shard in shards)
    if show_progress_bar is None:
        show_progress_bar = -(-todo // batch_size) > 4
    bar = tqdm(total=todo, desc=f"Encoding (rank {rank})", unit="item", position=rank, disable=not show_progress_bar)
    total_bar = None
    if rank == 0 and world_size > 1 and show_progress_bar:
        total_bar = tqdm(total=layout[-1]["stop"], desc="Encoding (all ranks)", unit="item", position=world_size)
    for shard in shards:
        try:
            shard_items = model.processor.parse(list(items[shard["start"] : shard["stop"]]))
        except (TypeError, ValueError, OSError) as error:
            raise ValueError(
                f"Cannot encode corpus rows {shard['start']}-{shard['stop'] - 1} (input i below is row {shard['start']} + i): {error}"
            ) from error
        # Longest first inside the shard: similar lengths share a batch, and the first batch shows the peak memory.
        order = sorted(range(len(shard_items)), key=lambda index: -_length_key(shard_items[index]))
        embeddings = np.empty((len(shard_items), model.config.embedding_dim), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            embeddings[batch] = model.encode(
                [shard_items[index] for index in batch], instruction, task=task, batch_size=batch_size, show_progress_bar=False
            )
            bar.update(len(batch))
            if total_bar is not None:
                _refresh_total(total_bar, out_dir, layout)
        _atomic_write(out_dir / shard["file"], lambda handle: np.save(handle, embeddings.astype(dtype, copy=False)))
    bar.close()
    if total_bar is not None:
        _refresh_total(total_bar, out_dir, layout, force=True)
        total_bar.close()
    return todo


def _length_key(item) -> int:
    """Same ordering as `VLEmbedModel.encode`: media-heavy items first, then longer texts."""
    return len(item.text) + 100_000 * (len(item.images) + bool(item.video))


def _refresh_total(total_bar, out_dir: Path, layout, force: bool = False) -> None:
    """Set rank 0's corpus-wide bar from the shard files present (all ranks write to one folder)."""
    now = time.monotonic()
    if not force and now - getattr(total_bar, "last_scan", 0.0) < 1.0:
        return
    total_bar.last_scan = now
    done = sum(shard["stop"] - shard["start"] for shard in layout if (out_dir / shard["file"]).is_file())
    total_bar.update(done - total_bar.n)


# ---------------------------------------------------------------------------------------------- manifest


def _manifest(model, ids, items, instruction, task, dtype, shard_size, layout) -> dict:
    config = model.config
    return {
        "format": STORE_FORMAT,
        "version": STORE_VERSION,
        "model": {"name_or_path": str(getattr(config, "name_or_path", "")), "fingerprint": model_fingerprint(model)},
        "encoding": _encoding_identity(model, instruction, task),
        "corpus": {"fingerprint": corpus_fingerprint(ids, items)},
        "count": len(ids),
        "dim": int(config.embedding_dim),
        "dtype": dtype,
        "shard_size": shard_size,
        "shards": layout,
        "ids_file": IDS_FILE,
        "runs": [],
    }


def _encoding_identity(model, instruction: str | None, task: str) -> dict:
    """What the manifest's ``encoding`` records: the template actually applied, and normalisation."""
    from .modeling.configuration_vlembed import PLAIN_TEMPLATE

    config = model.config
    return {
        "task": task,
        "instruction": instruction,
        "template": config.templates[task] if instruction else PLAIN_TEMPLATE,
        "normalize": bool(config.normalize),
    }


def model_fingerprint(model) -> str:
    """A SHA-256 of the model's config (minus paths and versions) and a strided sample of every weight.

    The sample (up to 4096 values per tensor) makes the fingerprint cheap for billions of parameters
    while any training step, merged adapter or dtype change still alters it.
    """
    import torch

    digest = hashlib.sha256()
    digest.update(json.dumps(_stable_config(model.config.to_dict()), sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            flat = tensor.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // _WEIGHT_SAMPLES_PER_TENSOR)][:_WEIGHT_SAMPLES_PER_TENSOR]
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            digest.update(sample.float().cpu().numpy().tobytes())
    return digest.hexdigest()


def _stable_config(value):
    if isinstance(value, dict):
        return {key: _stable_config(item) for key, item in value.items() if key not in _VOLATILE_CONFIG_KEYS}
    if isinstance(value, list):
        return [_stable_config(item) for item in value]
    return value


def corpus_fingerprint(ids: Sequence[str], items: Sequence[Any]) -> str:
    """A SHA-256 of the ids and the items' content (texts, image paths, in-memory image pixels)."""
    digest = hashlib.sha256()
    for row_id, item in zip(ids, items):
        digest.update(row_id.encode() + b"\x00")
        _hash_item(digest, item)
    return digest.hexdigest()


def _hash_item(digest, item) -> None:
    if isinstance(item, str):
        digest.update(b"t" + item.encode() + b"\x00")
    elif isinstance(item, (Path, os.PathLike)):
        digest.update(b"p" + os.fsencode(item) + b"\x00")
    elif isinstance(item, dict):
        for key in sorted(item):
            digest.update(b"k" + key.encode())
            _hash_item(digest, item[key])
    elif isinstance(item, (list, tuple)):
        digest.update(b"l%d" % len(item))
        for element in item:
            _hash_item(digest, element)
    elif item is None:
        digest.update(b"n")
    elif hasattr(item, "tobytes") and hasattr(item, "mode"):  # a PIL image
        digest.update(f"i{item.mode}{item.size}".encode() + item.tobytes())
    else:
        digest.update(b"r" + repr(item).encode())


def _prepare_store(out_dir: Path, manifest: dict, ids: list[str], overwrite: bool) -> str | None:
    """Check ``out_dir`` against this run; write manifest and ids. Returns an error message or None."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(".*.tmp"):  # left by a killed run; final files are never partial
        stale.unlink()
    manifest_path = out_dir / MANIFEST_FILE
    existing_shards = sorted(out_dir.glob("embeddings-*-of-*.npy"))
    if manifest_path.is_file():
        try:
            existing = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            existing = {}
        differences = [key for key in IDENTITY_KEYS if existing.get(key) != manifest[key]]
        if differences and not overwrite:
            return (
                f"'{out_dir}' holds a store made with another {', '.join(differences)} "
                f"({_describe_difference(existing, manifest, differences)}). "
                "Use another folder or overwrite=True (--overwrite) to replace it."
            )
        if not differences:
            manifest["runs"] = existing.get("runs", [])
            existing_shards = []  # same store: keep its shards
    elif existing_shards and not overwrite:
        return f"'{out_dir}' holds embedding shards without a {MANIFEST_FILE}; use another folder or overwrite=True."
    for shard in existing_shards:
        shard.unlink()
    _atomic_write(out_dir / IDS_FILE, lambda handle: handle.write(json.dumps(ids).encode()))
    _write_manifest(out_dir, manifest)
    return None


def _describe_difference(existing: dict, new: dict, keys: list[str]) -> str:
    parts = []
    for key in keys:
        old_value, new_value = existing.get(key), new[key]
        if key == "model":
            old_value, new_value = old_value and old_value.get("name_or_path"), new_value["name_or_path"]
            if old_value == new_value:
                old_value, new_value = "other weights or config", "these weights and config"
        elif key == "corpus":
            old_value, new_value = "other ids or items", "these ids and items"
        parts.append(f"{key}: stored {old_value!r}, this run {new_value!r}")
    return "; ".join(parts)


def _record_run(out_dir: Path, per_rank: list[dict], wall: float, world_size: int, device: str) -> None:
    manifest = json.loads((out_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    encoded = sum(stats["encoded_items"] for stats in per_rank)
    manifest["runs"].append({
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "world_size": world_size,
        "device": device,
        "seconds": round(wall, 3),
        "encoded_shards": sum(stats["encoded_shards"] for stats in per_rank),
        "skipped_shards": sum(stats["skipped_shards"] for stats in per_rank),
        "encoded_items": encoded,
        "items_per_second": round(encoded / max(wall, 1e-9), 2),
        "ranks": per_rank,
    })
    _write_manifest(out_dir, manifest)


def _write_manifest(out_dir: Path, manifest: dict) -> None:
    _atomic_write(out_dir / MANIFEST_FILE, lambda handle: handle.write(json.dumps(manifest, indent=2).encode()))


def _atomic_write(path: Path, write) -> None:
    """Call ``write(binary_handle)`` on a temporary file beside ``path``, then rename it into place."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


# ---------------------------------------------------------------------------------------------- distributed


def _distributed_context() -> tuple[int, int, int]:
    """(rank, world size, local rank), initialising the process group from torchrun's environment if needed."""
    import torch
    import torch.distributed as dist

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), local_rank
    if world_size > 1:
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        return dist.get_rank(), dist.get_world_size(), local_rank
    return 0, 1, local_rank


def _barrier(world_size: int) -> None:
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()


def _broadcast_from_rank0(value, world_size: int):
    if world_size == 1:
        return value
    import torch.distributed as dist

    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def _gather_objects(value, world_size: int) -> list:
    if world_size == 1:
        return [value]
    import torch.distributed as dist

    gathered: list = [None] * world_size
    dist.all_gather_object(gathered, value)
    return gathered


__all__ = [
    "load_corpus",
    "encode_corpus",
    "EmbeddingStore",
    "ShardedEmbeddings",
    "open_store",
    "shard_layout",
    "model_fingerprint",
    "corpus_fingerprint",
    "CorpusError",
    "StoreMismatchError",
    "IncompleteStoreError",
]
