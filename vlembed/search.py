"""Nearest-neighbour search over embeddings with FAISS: exact inner product by default, IVF or HNSW for
millions of items, GPU FAISS when present. Embeddings are expected L2-normalised (inner product =
cosine). Mining, evaluation and the encoding store all search through here.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

IndexType = Literal["flat", "ivf", "hnsw"]


def _faiss():
    try:
        import faiss
    except ImportError as error:
        raise ImportError("Search needs FAISS: pip install faiss-cpu (or faiss-gpu)") from error
    return faiss


def _as_float32(array, start: int = 0, stop: int | None = None) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(array[start:stop], dtype=np.float32))


def build_index(
    corpus_embeddings: np.ndarray,
    index_type: IndexType = "flat",
    *,
    nlist: int | None = None,
    nprobe: int = 16,
    hnsw_m: int = 32,
    ef_search: int = 128,
    use_gpu: bool | None = None,
    add_batch_size: int = 65_536,
):
    """A FAISS inner-product index over ``corpus_embeddings`` ([N, d], float32 or float16, may be a memmap).

    ``"flat"`` is exact. ``"ivf"`` clusters into ``nlist`` lists (default ~4·sqrt(N)) and scans
    ``nprobe`` of them; ``"hnsw"`` is a graph with ``hnsw_m`` links and ``ef_search`` breadth.
    Vectors are added in chunks so a float16 memmap never has to be copied whole into float32
    outside the index. ``use_gpu=None`` uses a GPU when FAISS sees one (flat and IVF only).
    """
    faiss = _faiss()
    count, dim = corpus_embeddings.shape
    if count == 0:
        raise ValueError("Cannot build an index over an empty corpus.")
    if index_type == "flat":
        index = faiss.IndexFlatIP(dim)
    elif index_type == "ivf":
        nlist = nlist or max(1, min(count // 39, int(4 * np.sqrt(count))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        sample = np.sort(rng.choice(count, size=min(count, nlist * 256), replace=False))
        index.train(_as_float32(corpus_embeddings[sample]))
        index.nprobe = min(nprobe, nlist)
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = ef_search
    else:
        raise ValueError(f"Unknown index_type {index_type!r}; choose 'flat', 'ivf' or 'hnsw'.")
    if use_gpu is None:
        use_gpu = hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0 and index_type != "hnsw"
    if use_gpu:
        index = faiss.index_cpu_to_all_gpus(index)
    for start in range(0, count, add_batch_size):
        index.add(_as_float32(corpus_embeddings, start, start + add_batch_size))
    return index


def search(
    query_embeddings: np.ndarray,
    corpus_or_index,
    k: int,
    *,
    index_type: IndexType = "flat",
    batch_size: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` inner-product neighbours: (scores [Q, k] float32, corpus indices [Q, k] int64), best first.

    ``corpus_or_index`` is an embedding matrix (an index of ``index_type`` is built) or a built index.
    ``k`` is capped at the corpus size.
    """
    index = corpus_or_index if hasattr(corpus_or_index, "search") else build_index(corpus_or_index, index_type)
    k = min(k, index.ntotal)
    queries = np.asarray(query_embeddings)
    scores = np.empty((len(queries), k), dtype=np.float32)
    indices = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), batch_size):
        batch_scores, batch_indices = index.search(_as_float32(queries, start, start + batch_size), k)
        scores[start : start + batch_size], indices[start : start + batch_size] = batch_scores, batch_indices
    return scores, indices
