"""Hard-negative mining: ABC's similarity-threshold rule and MM-Embed's modality-aware rule.

Two layers:

- Embedding level (what other code and tests call): :func:`mine_threshold_negatives` and
  :func:`mine_modality_aware_negatives` take L2-normalised query and corpus embeddings (inner product =
  cosine) and corpus indices of each query's positives, and return corpus indices of negatives.
  Nearest-neighbour search goes through :mod:`vlembed.search` (exact FAISS inner product by default,
  ``index_type="ivf"``/``"hnsw"`` for millions of items, GPU FAISS when present).
- ``datasets`` front end: :func:`mine_hard_negatives` encodes a training set's queries and a corpus with
  an :class:`~vlembed.EmbeddingModel` (through :func:`vlembed.encoding.encode_corpus`, so encoding is
  chunked, cached and resumable; or it reads an existing ``vlembed encode`` store of the corpus), mines,
  and returns the dataset with ``negatives``, ``negative_images`` (when the corpus has images) and
  ``negative_hardness`` columns (and ``negative_types`` for MM-Embed, whose collator draws one negative
  per row and epoch).

Positives and co-relevant items (every positive of the same query, including the positives of rows that
repeat the query) are never returned as negatives.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..search import GPU_MAX_K, IndexType, build_index, exact_search, is_gpu_index, search

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)

MODALITIES = ("text", "image", "image,text")
_QUERY_CHUNK = 16_384  # queries searched at once: bounds the per-chunk scores, indices and masks (~100 MB)


# ---------------------------------------------------------------------------------------------- helpers


def _positive_sets(positive_ids: Sequence[int | Sequence[int]], num_queries: int, corpus_size: int) -> list[np.ndarray]:
    """Each query's positives as an int64 array; errors name the query."""
    if len(positive_ids) != num_queries:
        raise ValueError(f"positive_ids has {len(positive_ids)} entries for {num_queries} queries.")
    positives = []
    for query_index, entry in enumerate(positive_ids):
        ids = np.atleast_1d(np.asarray(entry, dtype=np.int64))
        if ids.size == 0:
            raise ValueError(f"Query {query_index} has no positive; every query needs at least one.")
        bad = ids[(ids < 0) | (ids >= corpus_size)]
        if bad.size:
            raise ValueError(
                f"Query {query_index}: positive id {int(bad[0])} is outside the corpus of {corpus_size} items."
            )
        positives.append(np.unique(ids))
    return positives


def _check_embeddings(query_embeddings, corpus_embeddings) -> None:
    if len(corpus_embeddings) == 0:
        raise ValueError("The corpus is empty: there is nothing to mine negatives from.")
    if query_embeddings.shape[1] != corpus_embeddings.shape[1]:
        raise ValueError(
            f"Query embeddings have dimension {query_embeddings.shape[1]} but corpus embeddings "
            f"{corpus_embeddings.shape[1]}."
        )


def _padded(positives: list[np.ndarray]) -> np.ndarray:
    """[Q, max positives] with -1 padding, for vectorised membership tests."""
    width = max(len(ids) for ids in positives)
    table = np.full((len(positives), width), -1, dtype=np.int64)
    for row, ids in enumerate(positives):
        table[row, : len(ids)] = ids
    return table


def _is_positive(indices: np.ndarray, positive_table: np.ndarray) -> np.ndarray:
    """[Q, k] mask: indices[q, j] is one of query q's positives."""
    return (indices[:, :, None] == positive_table[:, None, :]).any(axis=-1)


def _positive_scores(queries: np.ndarray, corpus_embeddings, positives: list[np.ndarray]) -> np.ndarray:
    """Each query's lowest positive similarity (the hardest positive, as sentence-transformers uses)."""
    counts = np.array([len(ids) for ids in positives])
    flat = np.concatenate(positives)
    order = np.argsort(flat, kind="stable")  # sorted row reads are cheap on memory-mapped shards
    rows = np.empty((len(flat), queries.shape[1]), dtype=np.float32)
    rows[order] = np.asarray(corpus_embeddings[flat[order]], dtype=np.float32)
    pair_scores = np.einsum("ij,ij->i", rows, np.repeat(queries, counts, axis=0))
    return np.minimum.reduceat(pair_scores, np.concatenate([[0], np.cumsum(counts)[:-1]]))


def _searchable(corpus_embeddings, index_type: IndexType):
    """What to search repeatedly: the embeddings themselves for exact search on the CPU (streamed in chunks,
    never copied whole), else an index built once (approximate, or exact on a GPU)."""
    import faiss

    on_gpu = hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0
    return corpus_embeddings if index_type == "flat" and not on_gpu else build_index(corpus_embeddings, index_type)


def _query_rng(seed: int, query_index: int) -> np.random.Generator:
    # One stream per query: a query's draw does not depend on chunking or on the other queries.
    return np.random.default_rng([seed, query_index])


def normalize_modality(modality: str, where: str = "modality") -> str:
    """Canonical MM-Embed modality label: "text", "image" or "image,text" ("text,image" and "image+text" accepted)."""
    parts = sorted(part.strip() for part in str(modality).lower().replace("+", ",").split(","))
    label = ",".join(parts)
    if label not in MODALITIES:
        raise ValueError(f"Unknown {where} {modality!r}; expected one of {', '.join(MODALITIES)}.")
    return label


def _modality_codes(modalities: Sequence[str], what: str) -> np.ndarray:
    """Each label's position in `MODALITIES`; errors name the item ("<what> <i>")."""
    codes = {modality: code for code, modality in enumerate(MODALITIES)}
    return np.array([codes[normalize_modality(m, f"{what} {i}")] for i, m in enumerate(modalities)], dtype=np.int64)


# ---------------------------------------------------------------------------------------------- ABC §3.2


def _iter_threshold_pools(query_embeddings, corpus_embeddings, positive_ids, *, epsilon, pool_size, index_type):
    """Yield (query index, pool indices, pool similarities) in query order, one query chunk at a time, so
    that callers need not hold every pool at once."""
    _check_embeddings(query_embeddings, corpus_embeddings)
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}.")
    if pool_size < 1:
        raise ValueError(f"pool_size must be at least 1, got {pool_size}.")
    corpus_size = len(corpus_embeddings)
    positives = _positive_sets(positive_ids, len(query_embeddings), corpus_size)
    searchable = _searchable(corpus_embeddings, index_type)
    for start in range(0, len(query_embeddings), _QUERY_CHUNK):
        chunk_positives = positives[start : start + _QUERY_CHUNK]
        chunk_queries = np.asarray(query_embeddings[start : start + _QUERY_CHUNK], dtype=np.float32)
        thresholds = _positive_scores(chunk_queries, corpus_embeddings, chunk_positives)
        thresholds = thresholds - (1.0 - epsilon) * np.abs(thresholds)
        chunk_pools: list = [None] * len(chunk_queries)
        pending = np.arange(len(chunk_queries))
        depth = pool_size + max(len(ids) for ids in chunk_positives)
        while len(pending):
            depth = min(depth, corpus_size)
            if depth > GPU_MAX_K and is_gpu_index(searchable):
                # FAISS on a GPU stops at 2048 neighbours: the few queries that need more are searched exactly on the CPU.
                scores, indices = exact_search(chunk_queries[pending], corpus_embeddings, depth)
            else:
                scores, indices = search(chunk_queries[pending], searchable, depth)
            table = _padded([chunk_positives[row] for row in pending])
            eligible = (scores <= thresholds[pending, None]) & ~_is_positive(indices, table) & (indices >= 0)
            enough = (eligible.sum(axis=1) >= pool_size) | (depth >= corpus_size)
            for position in np.flatnonzero(enough):
                keep = np.flatnonzero(eligible[position])[:pool_size]
                chunk_pools[pending[position]] = (indices[position, keep], scores[position, keep])
            pending = pending[~enough]
            depth *= 4
        for offset, (pool, pool_scores) in enumerate(chunk_pools):
            yield start + offset, pool, pool_scores


def threshold_negative_pools(
    query_embeddings: np.ndarray,
    corpus_embeddings: np.ndarray,
    positive_ids: Sequence[int | Sequence[int]],
    *,
    epsilon: float = 0.95,
    pool_size: int = 100,
    index_type: IndexType = "flat",
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """ABC §3.2 candidate pools: per query, the ``pool_size`` most similar corpus items whose similarity
    is at most the threshold, positives excluded. Returns (pool indices, pool similarities) per query,
    most similar first.

    The threshold is ``s_pos - (1 - epsilon) * |s_pos|``, which is ABC's ``epsilon * s_pos`` whenever the
    positive similarity ``s_pos`` is positive and stays below ``s_pos`` when it is negative (the form
    sentence-transformers' ``relative_margin`` uses). With several positives, ``s_pos`` is the lowest.

    The pool is exact: queries whose first search did not reach ``pool_size`` items under the threshold
    are searched again, four times deeper, until it does or the whole corpus has been seen (on a GPU
    index, searches deeper than FAISS's 2048 neighbours run as exact search on the CPU).
    """
    pools, pool_scores = [], []
    for _, pool, scores in _iter_threshold_pools(
        query_embeddings, corpus_embeddings, positive_ids, epsilon=epsilon, pool_size=pool_size, index_type=index_type
    ):
        pools.append(pool)
        pool_scores.append(scores)
    return pools, pool_scores


def mine_threshold_negatives(
    query_embeddings: np.ndarray,
    corpus_embeddings: np.ndarray,
    positive_ids: Sequence[int | Sequence[int]],
    *,
    epsilon: float = 0.95,
    pool_size: int = 100,
    num_negatives: int = 7,
    seed: int = 0,
    index_type: IndexType = "flat",
    return_scores: bool = False,
) -> list[list[int]] | tuple[list[list[int]], list[list[float]]]:
    """ABC §3.2 mined negatives: ``num_negatives`` drawn at random from each query's threshold pool.

    ABC sets epsilon = 0.95, a pool of the 100 most similar candidates below the threshold and 7 negatives
    per query (§4.1). See :func:`threshold_negative_pools` for the pool.

    Args:
        query_embeddings: [Q, d] L2-normalised query embeddings.
        corpus_embeddings: [N, d] L2-normalised corpus embeddings (may be a memmap).
        positive_ids: per query, the corpus index of its positive, or a list of them (all are excluded,
            and the lowest positive similarity sets the threshold).
        epsilon: a negative's similarity is at most ``epsilon`` times the positive's.
        pool_size: how many of the most similar under-threshold candidates to sample from.
        num_negatives: how many to draw per query (fewer when the pool is smaller).
        seed: the draw for query ``i`` uses ``numpy.random.default_rng([seed, i])`` over the pool sorted
            by corpus index, so it depends only on the pool's members, not on score ties or chunking.
        index_type: FAISS index for the search ("flat" = exact).
        return_scores: also return each negative's similarity to its query (its hardness).

    Returns:
        Per query, the negatives' corpus indices, most similar first (and their similarities).
    """
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be at least 1, got {num_negatives}.")
    negatives: list[list[int]] = []
    negative_scores: list[list[float]] = []
    for query_index, pool, scores in _iter_threshold_pools(
        query_embeddings, corpus_embeddings, positive_ids, epsilon=epsilon, pool_size=pool_size, index_type=index_type
    ):
        by_index = np.argsort(pool, kind="stable")
        chosen = by_index[_query_rng(seed, query_index).choice(len(pool), size=min(num_negatives, len(pool)), replace=False)]
        chosen = chosen[np.lexsort((pool[chosen], -scores[chosen]))]
        negatives.append(pool[chosen].tolist())
        if return_scores:
            negative_scores.append(scores[chosen].tolist())
    return (negatives, negative_scores) if return_scores else negatives


# ---------------------------------------------------------------------------------------------- MM-Embed §4.1.1


def mine_modality_aware_negatives(
    query_embeddings: np.ndarray,
    corpus_embeddings: np.ndarray,
    positive_ids: Sequence[int | Sequence[int]],
    corpus_modalities: Sequence[str],
    query_modalities: Sequence[str],
    *,
    top_k: int = 50,
    k_prime: int = 45,
    index_type: IndexType = "flat",
    return_scores: bool = False,
) -> tuple[list[list[int]], list[list[int]]] | tuple[list[list[int]], list[list[int]], list[list[float]], list[list[float]]]:
    """MM-Embed §4.1.1 modality-aware hard negatives, from the ``top_k`` (50) candidates retrieved per query.

    - Type 1 (wrong modality): ranked above the labeled positive, with a modality other than the one the
      query's instruction asks for. With several positives, "above the positive" means above the
      lowest-ranked one; a positive outside the top ``top_k`` ranks below every retrieved candidate.
    - Type 2 (unsatisfactory information): the asked-for modality, ranked below ``k_prime`` (45), i.e.
      ranks ``k_prime + 1`` to ``top_k`` (1-based).

    Positives are never negatives. MM-Embed trains on one negative per query drawn from type 1 or type 2
    with equal probability: :func:`mine_hard_negatives` writes both lists so that the collator draws
    afresh each epoch; :func:`sample_modality_aware_negatives` is the same draw on these lists.

    Args:
        query_embeddings, corpus_embeddings: L2-normalised [Q, d] and [N, d].
        positive_ids: per query, its positive's corpus index or a list of them.
        corpus_modalities: per corpus item, "text", "image" or "image,text".
        query_modalities: per query, the modality its instruction asks for (M-BEIR: the positive's).
        top_k, k_prime: MM-Embed's 50 and 45.
        index_type: FAISS index for the search ("flat" = exact).
        return_scores: also return each negative's similarity to its query.

    Returns:
        (type 1, type 2): per query, corpus indices in rank order (then their similarities, the same shape).
    """
    _check_embeddings(query_embeddings, corpus_embeddings)
    if not 0 <= k_prime < top_k:
        raise ValueError(f"Need 0 <= k_prime < top_k, got k_prime={k_prime}, top_k={top_k}.")
    corpus_size = len(corpus_embeddings)
    if len(corpus_modalities) != corpus_size:
        raise ValueError(f"corpus_modalities has {len(corpus_modalities)} entries for {corpus_size} corpus items.")
    if len(query_modalities) != len(query_embeddings):
        raise ValueError(f"query_modalities has {len(query_modalities)} entries for {len(query_embeddings)} queries.")
    corpus_codes = _modality_codes(corpus_modalities, "modality of corpus item")
    query_codes = _modality_codes(query_modalities, "asked-for modality of query")
    positives = _positive_sets(positive_ids, len(query_embeddings), corpus_size)
    scores, indices = search(query_embeddings, corpus_embeddings, top_k, index_type=index_type)
    is_positive = _is_positive(indices, _padded(positives))
    ranks = np.arange(indices.shape[1])
    # Rank of the lowest-ranked positive; the whole list when some positive was not retrieved.
    found = is_positive.sum(axis=1)
    last_positive = np.where(is_positive, ranks, -1).max(axis=1)
    cutoff = np.where(found < np.array([len(ids) for ids in positives]), indices.shape[1], last_positive)
    right_modality = corpus_codes[indices] == query_codes[:, None]
    candidate = ~is_positive & (indices >= 0)
    type1_mask = candidate & ~right_modality & (ranks[None, :] < cutoff[:, None])
    type2_mask = candidate & right_modality & (ranks[None, :] >= k_prime)
    type1 = [indices[row, mask].tolist() for row, mask in enumerate(type1_mask)]
    type2 = [indices[row, mask].tolist() for row, mask in enumerate(type2_mask)]
    if not return_scores:
        return type1, type2
    type1_scores = [scores[row, mask].tolist() for row, mask in enumerate(type1_mask)]
    type2_scores = [scores[row, mask].tolist() for row, mask in enumerate(type2_mask)]
    return type1, type2, type1_scores, type2_scores


def random_modality_negatives(
    positive_ids: Sequence[int | Sequence[int]],
    corpus_modalities: Sequence[str],
    query_modalities: Sequence[str],
    *,
    queries: Sequence[int] | None = None,
    seed: int = 0,
) -> list[tuple[int, int]]:
    """One random negative per query, for queries that have neither modality-aware type, so that training
    never lacks one: a random negative, as MM-Embed's first stage (M^rand, §4.1.1) trains with.

    Returns per query ``(corpus index, type)``: a uniform corpus item of the asked-for modality that is not
    a positive, standing in for type 2 (right modality, not the answer); when the corpus holds no such
    item, a uniform non-positive item of another modality, standing in for type 1 (wrong modality).
    ``queries`` limits the draw to those query indices (default: all). Query ``i`` draws from
    ``numpy.random.default_rng([seed, i])``.

    Raises:
        ValueError: a query whose positives are the whole corpus (naming it).
    """
    corpus_codes = _modality_codes(corpus_modalities, "modality of corpus item")
    query_codes = _modality_codes(query_modalities, "asked-for modality of query")
    positives = _positive_sets(positive_ids, len(query_codes), len(corpus_codes))
    of_modality = {code: np.flatnonzero(corpus_codes == code) for code in range(len(MODALITIES))}
    other_modality = {code: np.flatnonzero(corpus_codes != code) for code in range(len(MODALITIES))}
    drawn = []
    for query_index in range(len(query_codes)) if queries is None else queries:
        rng, asked = _query_rng(seed, query_index), query_codes[query_index]
        for kind, members in ((2, of_modality[asked]), (1, other_modality[asked])):
            choice = _draw_non_positive(rng, members, positives[query_index])
            if choice is not None:
                drawn.append((choice, kind))
                break
        else:
            raise ValueError(f"Query {query_index}: every corpus item is one of its positives; there is no negative to draw.")
    return drawn


def _draw_non_positive(rng: np.random.Generator, members: np.ndarray, positives: np.ndarray) -> int | None:
    """A uniform member that is not a positive, or None. Positives are few: rejection needs < 2 draws on average."""
    if len(members) > 2 * len(positives):
        while True:
            choice = int(members[rng.integers(len(members))])
            if choice not in positives:
                return choice
    allowed = np.setdiff1d(members, positives)
    return int(allowed[rng.integers(len(allowed))]) if len(allowed) else None


def sample_modality_aware_negatives(
    type1: Sequence[Sequence[int]],
    type2: Sequence[Sequence[int]],
    *,
    num_negatives: int = 1,
    seed: int = 0,
) -> list[list[tuple[int, int]]]:
    """MM-Embed §4.1.1 sampling: each draw takes type 1 or type 2 with equal probability (the other when
    one is used up), then a uniform member of it, without replacement.

    Returns per query a list of ``(type, position)`` pairs: ``type1[i][position]`` or ``type2[i][position]``.
    Query ``i`` draws from ``numpy.random.default_rng([seed, i])``.
    """
    if len(type1) != len(type2):
        raise ValueError(f"type1 has {len(type1)} queries but type2 has {len(type2)}.")
    return [
        draw_modality_aware(len(first), len(second), _query_rng(seed, query_index), num_negatives)
        for query_index, (first, second) in enumerate(zip(type1, type2))
    ]


def draw_modality_aware(
    num_type1: int, num_type2: int, rng: np.random.Generator, num_negatives: int = 1
) -> list[tuple[int, int]]:
    """One query's MM-Embed §4.1.1 draw from ``num_type1`` type-1 and ``num_type2`` type-2 candidates:
    ``(type, position)`` pairs, type 1 or 2 with equal probability (the other when one is used up),
    then a uniform candidate of it, without replacement. The collator draws with it per row and epoch."""
    remaining = {1: list(range(num_type1)), 2: list(range(num_type2))}
    picked = []
    while len(picked) < num_negatives and (remaining[1] or remaining[2]):
        kind = (1 if rng.random() < 0.5 else 2) if remaining[1] and remaining[2] else (1 if remaining[1] else 2)
        picked.append((kind, remaining[kind].pop(int(rng.integers(len(remaining[kind]))))))
    return picked


# ---------------------------------------------------------------------------------------------- datasets front end


def _item_fields(item: Any) -> tuple[str, Any]:
    """(text, first image or None) of an item as `VLEmbedModel.encode` takes it: what the training schema's
    ``negatives`` / ``negative_images`` columns can hold (the item itself is what gets encoded)."""
    if isinstance(item, str):
        return item, None
    if isinstance(item, dict):
        images = ([item["image"]] if item.get("image") is not None else []) + list(item.get("images") or [])
        return item.get("text") or "", images[0] if images else None
    return "", item  # a PIL image or a path


def _image_key(image: Any) -> str:
    if image is None:
        return ""
    if isinstance(image, (str, os.PathLike)):
        # One file, however it is written: a relative path in the training set and the absolute one
        # `load_corpus` makes are the same positive (and must never come back as its negative).
        return os.path.realpath(image)
    # A decoded image (datasets' Image feature): identify it by its pixels.
    return "pil:" + hashlib.sha1(image.tobytes() + repr((image.mode, image.size)).encode()).hexdigest()


def _make_item(text: str, image: Any) -> Any:
    if image is None:
        return text
    return {"text": text, "image": image} if text else {"image": image}


def _item_modality(text: str, image: Any) -> str:
    from ..modeling.processing_vlembed import EmbeddingInput

    return EmbeddingInput(text=text, images=[image] if image is not None else []).modality


def _content_id(key: tuple) -> str:
    return hashlib.sha1(repr(key).encode()).hexdigest()[:20]


def _encode_cached(model, items: list, out_dir: str, *, ids: list[str], instruction: str | None, task: str, **kwargs):
    """The items' embeddings, memory-mapped from a resumable store (never copied whole into memory)."""
    from ..encoding import encode_corpus

    return encode_corpus(model, items, out_dir, ids=ids, instruction=instruction, task=task, **kwargs).embeddings


def mine_hard_negatives(
    dataset: Dataset,
    model,
    *,
    strategy: Literal["threshold", "modality"] = "threshold",
    query_column: str = "query",
    positive_column: str = "positive",
    query_image_column: str = "query_image",
    query_instruction_column: str = "query_instruction",
    positive_image_column: str = "positive_image",
    target_modality_column: str | None = None,
    corpus: Sequence[Any] | None = None,
    corpus_ids: Sequence[str] | None = None,
    corpus_store: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    epsilon: float = 0.95,
    pool_size: int = 100,
    num_negatives: int | None = None,
    top_k: int = 50,
    k_prime: int = 45,
    seed: int = 0,
    batch_size: int = 32,
    shard_size: int = 10_000,
    index_type: IndexType = "flat",
    return_report: bool = False,
) -> Dataset | tuple[Dataset, dict[str, int]]:
    """Add mined hard negatives to a training set (ABC §3.2 or MM-Embed §4.1.1).

    Rows follow the trainer's schema: ``query`` (text), optional ``query_image`` and
    ``query_instruction``, ``positive`` (text) and optional ``positive_image``. The returned dataset has
    those columns plus ``negatives`` (list of texts), ``negative_images`` (aligned image paths or None,
    only when the corpus has images) and ``negative_hardness`` (each negative's similarity to the query).

    - ``"threshold"`` (ABC): ``num_negatives`` (7) negatives drawn from each row's threshold pool.
    - ``"modality"`` (MM-Embed): every type-1 then every type-2 candidate of the row, and a
      ``negative_types`` column (1 or 2 per negative); the collator draws one per row and epoch, type 1
      or type 2 with equal probability, as MM-Embed trains. A row with neither type gets one random
      negative (:func:`random_modality_negatives`: of the asked-for modality, marked 2; else of another
      modality, marked 1) so that training never lacks one; the report counts these rows.

    Rows with the same query (text, image and instruction) share their positives: none of them is mined as
    a negative for any of those rows. Positives missing from ``corpus`` are added to it. Image paths are
    compared resolved, so a relative and an absolute path to one file are one item.

    Args:
        dataset: the training set.
        model: an :class:`~vlembed.EmbeddingModel`. Queries are encoded with ``task="query"`` and their
            instruction, the corpus with ``task="document"``.
        strategy: ``"threshold"`` (ABC) or ``"modality"`` (MM-Embed).
        target_modality_column: column holding the modality each query asks for (``"modality"`` strategy);
            default: the modality of the row's positive, as M-BEIR defines its tasks.
        corpus: candidate items (str, image path, or ``{"text", "image"}`` dicts); default: the
            dataset's unique positives.
        corpus_ids: ids of ``corpus`` items (default: derived from their content).
        corpus_store: an existing store of ``corpus`` (``vlembed encode`` with this model and no
            instruction) to read instead of encoding it; its ids must cover ``corpus_ids`` and every
            positive (see :func:`vlembed.encoding.open_store`).
        cache_dir: where the embeddings are kept (:func:`vlembed.encoding.encode_corpus`); a rerun with the
            same folder resumes an interrupted encoding. Default: a temporary folder.
        epsilon, pool_size: ABC's threshold and pool (0.95, 100).
        num_negatives: negatives per row for ``"threshold"`` (default 7, ABC).
        top_k, k_prime: MM-Embed's 50 and 45.
        seed: sampling seed (see :func:`mine_threshold_negatives`).
        batch_size: encoding batch size.
        shard_size: items per cached shard (an interrupted encoding loses at most one shard per process).
        index_type: FAISS index ("flat" exact; "ivf"/"hnsw" for millions of items).
        return_report: also return ``{"rows", "negatives", "rows_short", "rows_with_random_negative"}``:
            rows with fewer than ``num_negatives`` (threshold) and rows given a random negative (modality).
    """
    if strategy not in ("threshold", "modality"):
        raise ValueError(f"strategy must be 'threshold' or 'modality', got {strategy!r}.")
    if strategy == "modality" and num_negatives is not None:
        raise ValueError(
            "num_negatives is for the threshold strategy: the modality strategy writes every type-1 and type-2 "
            "candidate and the collator draws one per row and epoch (MM-Embed §4.1.1)."
        )
    for column in (query_column, positive_column):
        if column not in dataset.column_names:
            raise ValueError(f"Column {column!r} is not in the dataset (columns: {dataset.column_names}).")
    if len(dataset) == 0:
        raise ValueError("The dataset is empty.")
    if corpus_store is not None and corpus is None:
        raise ValueError("corpus_store needs the corpus it was encoded from (corpus=, with corpus_ids=), whose ids it holds.")

    def column(name: str) -> list:
        return list(dataset[name]) if name in dataset.column_names else [None] * len(dataset)

    queries = _TrainingQueries(column(query_column), column(query_image_column), column(query_instruction_column))
    positive_texts, positive_images = column(positive_column), column(positive_image_column)
    pool = _TrainingCorpus()
    if corpus is not None:
        if corpus_ids is not None and len(corpus_ids) != len(corpus):
            raise ValueError(f"corpus_ids has {len(corpus_ids)} entries for {len(corpus)} corpus items.")
        for index, item in enumerate(corpus):
            pool.add(item, None if corpus_ids is None else str(corpus_ids[index]))
    given = len(pool.items)
    row_positive = [pool.add(_make_item(text or "", image)) for text, image in zip(positive_texts, positive_images)]
    if corpus is not None and len(pool.items) > given:
        logger.warning("Added %d positives that were not in the corpus.", len(pool.items) - given)
    positives = queries.positives(row_positive)

    temporary = None if cache_dir is not None else tempfile.TemporaryDirectory(prefix="vlembed-mine-")
    root = os.fspath(cache_dir) if cache_dir is not None else temporary.name
    encoding = dict(batch_size=batch_size, shard_size=shard_size)
    try:  # the embeddings are memory-mapped from the folder: mine before a temporary one goes
        if corpus_store is not None:
            from ..encoding import open_store

            corpus_embeddings = open_store(corpus_store, model, pool.ids, task="document")
        else:
            corpus_embeddings = _encode_cached(
                model, pool.items, os.path.join(root, "corpus"), ids=pool.ids, instruction=None, task="document", **encoding
            )
        query_embeddings = queries.encode(model, os.path.join(root, "queries"), corpus_embeddings.shape[1], **encoding)
        if strategy == "threshold":
            num_negatives = num_negatives or 7
            mined, hardness = mine_threshold_negatives(
                query_embeddings, corpus_embeddings, positives, epsilon=epsilon, pool_size=pool_size,
                num_negatives=num_negatives, seed=seed, index_type=index_type, return_scores=True,
            )
            types, random_rows = None, 0
        else:
            if target_modality_column is not None:
                targets = column(target_modality_column)
                asked = [targets[row] for row in queries.first_rows]
            else:
                asked = [_item_modality(positive_texts[row] or "", positive_images[row]) for row in queries.first_rows]
            corpus_modalities = [_item_modality(text, image) for text, image in zip(pool.texts, pool.images)]
            mined, hardness, types, random_rows = _modality_negative_lists(
                query_embeddings, corpus_embeddings, positives, corpus_modalities, asked, queries.of_row,
                top_k=top_k, k_prime=k_prime, seed=seed, index_type=index_type,
            )
    finally:
        if temporary is not None:
            temporary.cleanup()

    per_row = [mined[query] for query in queries.of_row]
    report = {
        "rows": len(dataset),
        "negatives": sum(map(len, per_row)),
        "rows_short": sum(len(negatives) < num_negatives for negatives in per_row) if strategy == "threshold" else 0,
        "rows_with_random_negative": random_rows,
    }
    if report["rows_short"]:
        logger.warning("%d of %d rows got fewer than %d negatives.", report["rows_short"], len(dataset), num_negatives)
    if random_rows:
        logger.warning(
            "%d of %d rows had no type-1 or type-2 candidate and got one random negative instead.", random_rows, len(dataset)
        )
    columns: dict[str, list] = {
        "negatives": [[pool.texts[j] for j in negatives] for negatives in per_row],
        "negative_hardness": [[float(score) for score in hardness[query]] for query in queries.of_row],
    }
    if any(image is not None for image in pool.images):
        columns["negative_images"] = [[_image_value(pool.images[j]) for j in negatives] for negatives in per_row]
    if types is not None:
        columns["negative_types"] = [types[query] for query in queries.of_row]
    existing = [name for name in dict.fromkeys([*columns, "negative_types"]) if name in dataset.column_names]
    result = dataset.remove_columns(existing) if existing else dataset
    for name, values in columns.items():
        result = result.add_column(name, values)
    return (result, report) if return_report else result


def _modality_negative_lists(query_embeddings, corpus_embeddings, positives, corpus_modalities, asked, of_row, *,
                             top_k, k_prime, seed, index_type):
    """Per query: every type-1 then type-2 candidate, their similarities and types; queries with neither get
    a random negative. Returns (negatives, hardness, types, number of rows given a random negative)."""
    type1, type2, scores1, scores2 = mine_modality_aware_negatives(
        query_embeddings, corpus_embeddings, positives, corpus_modalities, asked,
        top_k=top_k, k_prime=k_prime, index_type=index_type, return_scores=True,
    )
    mined = [first + second for first, second in zip(type1, type2)]
    hardness = [first + second for first, second in zip(scores1, scores2)]
    types = [[1] * len(first) + [2] * len(second) for first, second in zip(type1, type2)]
    empty = [query for query, negatives in enumerate(mined) if not negatives]
    if empty:
        drawn = random_modality_negatives(positives, corpus_modalities, asked, queries=empty, seed=seed)
        for query, (choice, kind) in zip(empty, drawn):
            similarity = np.asarray(corpus_embeddings[choice], dtype=np.float32) @ np.asarray(query_embeddings[query], dtype=np.float32)
            mined[query], hardness[query], types[query] = [choice], [float(similarity)], [kind]
    empty_queries = set(empty)
    return mined, hardness, types, sum(query in empty_queries for query in of_row)


class _TrainingCorpus:
    """The candidate items, deduplicated by content; ``add`` returns an item's corpus index."""

    def __init__(self):
        self.items: list[Any] = []
        self.texts: list[str] = []
        self.images: list[Any] = []  # first image or None: what ``negative_images`` holds
        self.ids: list[str] = []
        self._position: dict[tuple, int] = {}

    def add(self, item: Any, item_id: str | None = None) -> int:
        text, image = _item_fields(item)
        images = (item.get("images") or []) if isinstance(item, dict) else []
        key = (text, _image_key(image), *map(_image_key, images))
        if key not in self._position:
            self._position[key] = len(self.items)
            self.items.append(item)
            self.texts.append(text)
            self.images.append(image)
            self.ids.append(item_id if item_id is not None else _content_id(key))
        return self._position[key]


class _TrainingQueries:
    """The dataset's unique queries (text, image, instruction); rows that repeat a query share it."""

    def __init__(self, texts: list, images: list, instructions: list):
        self.texts, self.images, self.instructions = texts, images, instructions
        self.of_row: list[int] = []  # row -> unique query
        self.first_rows: list[int] = []  # unique query -> its first row
        seen: dict[tuple, int] = {}
        for row, (text, image, instruction) in enumerate(zip(texts, images, instructions)):
            key = (text or "", _image_key(image), instruction or "")
            if key not in seen:
                seen[key] = len(self.first_rows)
                self.first_rows.append(row)
            self.of_row.append(seen[key])

    def positives(self, row_positive: list[int]) -> list[list[int]]:
        """Each unique query's positives: those of every row that repeats it (co-relevant items)."""
        positives: list[set[int]] = [set() for _ in self.first_rows]
        for row, query in enumerate(self.of_row):
            positives[query].add(row_positive[row])
        return [sorted(ids) for ids in positives]

    def encode(self, model, root: str, dim: int, **encoding) -> np.ndarray:
        """Embeddings of the unique queries, one cached store per instruction (the store takes one)."""
        embeddings = np.empty((len(self.first_rows), dim), dtype=np.float32)
        by_instruction: dict[str, list[int]] = {}
        for query, row in enumerate(self.first_rows):
            by_instruction.setdefault(self.instructions[row] or "", []).append(query)
        for instruction, members in by_instruction.items():
            rows = [self.first_rows[query] for query in members]
            embeddings[members] = _encode_cached(
                model, [_make_item(self.texts[row] or "", self.images[row]) for row in rows],
                os.path.join(root, hashlib.sha1(instruction.encode()).hexdigest()[:16]),
                ids=[_content_id((self.texts[row], _image_key(self.images[row]))) for row in rows],
                instruction=instruction or None, task="query", **encoding,
            )[:]
        return embeddings


def _image_value(image: Any) -> Any:
    return os.fspath(image) if isinstance(image, os.PathLike) else image


__all__ = [
    "mine_threshold_negatives",
    "threshold_negative_pools",
    "mine_modality_aware_negatives",
    "sample_modality_aware_negatives",
    "draw_modality_aware",
    "random_modality_negatives",
    "mine_hard_negatives",
    "normalize_modality",
    "MODALITIES",
]
