"""Nearest-neighbour search over embeddings with FAISS: exact inner product by default, IVF or HNSW for
millions of items, GPU FAISS when present. Embeddings are expected L2-normalised (inner product =
cosine). Mining, evaluation and the encoding store all search through here.

Corpus embeddings may be a numpy array, a memmap, an `EmbeddingStore` or its ``embeddings``
(`vlembed.encoding.ShardedEmbeddings`): they are read in chunks of rows, so a float16 store on disk
is never copied whole into float32 memory outside the index, and exact search without an index
holds only one chunk at a time.
"""

from __future__ import annotations

import sys
from typing import Literal

import numpy as np

IndexType = Literal["flat", "ivf", "hnsw"]
# FAISS GPU indexes return at most this many neighbours per query (GPU_MAX_SELECTION_K); deeper searches run on the CPU.
GPU_MAX_K = 2048


def _faiss():
    try:
        import faiss
    except ImportError as error:
        raise ImportError("Search needs FAISS: pip install faiss-cpu (or faiss-gpu)") from error
    return faiss


def _as_float32(array, start: int = 0, stop: int | None = None) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(array[start:stop], dtype=np.float32))


def _embeddings(corpus):
    """The embedding matrix of an `EmbeddingStore`, or ``corpus`` itself."""
    return corpus.embeddings if hasattr(corpus, "embeddings") and hasattr(corpus, "manifest") else corpus


def _gpu_available(faiss) -> bool:
    return hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0


def is_gpu_index(index) -> bool:
    """Whether ``index`` lives on a GPU (a ``GpuIndex``, or replicas of them over several GPUs), where
    FAISS caps ``k`` at `GPU_MAX_K`."""
    faiss = _faiss()
    if not _gpu_available(faiss) or not hasattr(faiss, "GpuIndex"):
        return False
    if isinstance(index, faiss.IndexReplicas):
        return index.count() > 0 and is_gpu_index(faiss.downcast_index(index.at(0)))
    return isinstance(index, faiss.GpuIndex)


def build_index(
    corpus_embeddings,
    index_type: IndexType = "flat",
    *,
    nlist: int | None = None,
    nprobe: int = 16,
    train_points_per_list: int = 64,
    hnsw_m: int = 32,
    ef_construction: int = 40,
    ef_search: int = 128,
    use_gpu: bool | None = None,
    add_batch_size: int = 65_536,
    report_recall: bool = True,
    recall_k: int = 10,
    recall_queries: int = 256,
):
    """A FAISS inner-product index over ``corpus_embeddings`` ([N, d], float32 or float16, may be a memmap).

    ``"flat"`` is exact. ``"ivf"`` clusters into ``nlist`` lists (default ~sqrt(N)), trained with
    k-means on ``train_points_per_list`` sampled vectors per list, and scans ``nprobe`` of them;
    ``"hnsw"`` is a graph with ``hnsw_m`` links, built with breadth ``ef_construction`` and searched
    with ``ef_search``. Vectors are added in chunks of ``add_batch_size`` rows, so a float16 memmap
    is never copied whole into float32 outside the index. ``use_gpu=None`` uses a GPU when FAISS
    sees one (flat and IVF only).

    For an approximate index, ``report_recall`` prints its recall@``recall_k`` against exact search on
    ``recall_queries`` sampled corpus vectors (see `approximate_recall`) to stderr.
    """
    faiss = _faiss()
    corpus_embeddings = _embeddings(corpus_embeddings)
    count, dim = corpus_embeddings.shape
    if count == 0:
        raise ValueError("Cannot build an index over an empty corpus.")
    if index_type == "flat":
        index = faiss.IndexFlatIP(dim)
    elif index_type == "ivf":
        nlist = nlist or max(1, min(count // 39, int(np.sqrt(count))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        sample = np.sort(rng.choice(count, size=min(count, nlist * train_points_per_list), replace=False))
        index.train(_as_float32(corpus_embeddings[sample]))
        index.nprobe = min(nprobe, nlist)
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
    else:
        raise ValueError(f"Unknown index_type {index_type!r}; choose 'flat', 'ivf' or 'hnsw'.")
    if use_gpu is None:
        use_gpu = _gpu_available(faiss) and index_type != "hnsw"
    if use_gpu:
        index = faiss.index_cpu_to_all_gpus(index)
    for start in range(0, count, add_batch_size):
        index.add(_as_float32(corpus_embeddings, start, start + add_batch_size))
    if report_recall and index_type != "flat":
        recall = approximate_recall(index, corpus_embeddings, k=recall_k, num_queries=recall_queries)
        print(
            f"{index_type} index over {count} vectors: recall@{min(recall_k, count - 1)} = {recall:.3f} against exact "
            f"search ({min(recall_queries, count)} sampled corpus vectors as queries)",
            file=sys.stderr,
        )
    return index


def exact_search(
    query_embeddings,
    corpus_embeddings,
    k: int,
    *,
    chunk_size: int = 65_536,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` inner-product search without an index, one chunk of corpus rows at a time.

    Memory beyond the queries and the results is one ``chunk_size`` x d float32 block, whatever the
    corpus size: the way to search a memory-mapped store that does not fit in RAM as float32.
    Returns (scores [Q, k] float32, corpus indices [Q, k] int64), best first.
    """
    faiss = _faiss()
    corpus_embeddings = _embeddings(corpus_embeddings)
    count = len(corpus_embeddings)
    k = min(k, count)
    queries = _as_float32(query_embeddings)
    heap = faiss.ResultHeap(len(queries), k, keep_max=True)
    for start in range(0, count, chunk_size):
        chunk = _as_float32(corpus_embeddings, start, start + chunk_size)
        scores, indices = faiss.knn(queries, chunk, min(k, len(chunk)), metric=faiss.METRIC_INNER_PRODUCT)
        heap.add_result(scores, indices + start)
    heap.finalize()
    return heap.D, heap.I


def search(
    query_embeddings,
    corpus_or_index,
    k: int,
    *,
    index_type: IndexType = "flat",
    batch_size: int = 4096,
    **index_kwargs,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` inner-product neighbours: (scores [Q, k] float32, corpus indices [Q, k] int64), best first.

    ``corpus_or_index`` is a built index, or embeddings (array, memmap, `EmbeddingStore` or its
    ``embeddings``). For embeddings, ``"flat"`` searches exactly: streamed chunk by chunk on the CPU
    (`exact_search`), or through a GPU index when FAISS sees a GPU. ``"ivf"`` / ``"hnsw"`` build that
    index first with ``index_kwargs`` (see `build_index`). ``k`` is capped at the corpus size.

    FAISS on a GPU returns at most `GPU_MAX_K` (2048) neighbours: for a deeper ``k``, embeddings are
    searched on the CPU, and a GPU index is copied to the CPU for this search.
    """
    faiss = _faiss()
    if not hasattr(corpus_or_index, "search"):
        corpus = _embeddings(corpus_or_index)
        if index_kwargs.get("use_gpu") is None:
            index_kwargs["use_gpu"] = _gpu_available(faiss) and index_type != "hnsw" and min(k, len(corpus)) <= GPU_MAX_K
        if index_type == "flat" and not index_kwargs["use_gpu"]:
            return exact_search(query_embeddings, corpus, k)
        corpus_or_index = build_index(corpus, index_type, **index_kwargs)
    index = corpus_or_index
    k = min(k, index.ntotal)
    if k > GPU_MAX_K and is_gpu_index(index):
        print(f"Searching k={k} > {GPU_MAX_K} neighbours: copying the GPU index to the CPU for this search.", file=sys.stderr)
        index = faiss.index_gpu_to_cpu(index)
    queries = np.asarray(query_embeddings)
    scores = np.empty((len(queries), k), dtype=np.float32)
    indices = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), batch_size):
        batch_scores, batch_indices = index.search(_as_float32(queries, start, start + batch_size), k)
        scores[start : start + batch_size], indices[start : start + batch_size] = batch_scores, batch_indices
    return scores, indices


def approximate_recall(
    index,
    corpus_embeddings,
    query_embeddings=None,
    *,
    k: int = 10,
    num_queries: int = 256,
    seed: int = 0,
    exact_indices: np.ndarray | None = None,
) -> float:
    """Recall@``k`` of ``index`` against exact search over ``corpus_embeddings``: the mean share of each
    query's true top ``k`` that the index returns in its top ``k``.

    Without ``query_embeddings``, ``num_queries`` corpus rows are sampled as queries and each one is
    left out of both its exact and its approximate result lists (finding itself would flatter the
    index). ``exact_indices`` ([Q, >=k], from `exact_search`) skips recomputing the exact neighbours.
    """
    corpus_embeddings = _embeddings(corpus_embeddings)
    count = len(corpus_embeddings)
    self_rows = None
    if query_embeddings is None:
        rng = np.random.default_rng(seed)
        self_rows = np.sort(rng.choice(count, size=min(num_queries, count), replace=False))
        query_embeddings = corpus_embeddings[self_rows]
        k = min(k, count - 1)
    k = min(k, count)
    if k < 1:
        raise ValueError("Recall needs a corpus of at least two vectors.")
    depth = k + (self_rows is not None)
    if exact_indices is None:
        _, exact_indices = exact_search(query_embeddings, corpus_embeddings, depth)
    _, approximate_indices = search(query_embeddings, index, depth)
    hits = 0
    for row, (exact, approximate) in enumerate(zip(exact_indices, approximate_indices)):
        skip = -1 if self_rows is None else self_rows[row]
        truth = [neighbour for neighbour in exact if neighbour != skip][:k]
        found = [neighbour for neighbour in approximate if neighbour not in (skip, -1)][:k]
        hits += len(set(truth) & set(found))
    return hits / (k * len(exact_indices))


__all__ = ["IndexType", "GPU_MAX_K", "build_index", "search", "exact_search", "approximate_recall", "is_gpu_index"]
