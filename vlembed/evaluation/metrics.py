"""Retrieval metrics over embeddings or ranked lists.

Metric names (keys of every result dict; k from ``k_values``, ``ndcg_at``, ``mrr_at``, ``map_at``):

=========================  ==========================================================================
``precision@k``            relevant items in the top k, divided by k (MMEB's Precision@1 is ``precision@1``)
``recall@k``               relevant items in the top k, divided by the query's relevant items
``hit@k``                  1 if any relevant item is in the top k: M-BEIR / UniIR's "Recall@k"
                           (``compute_recall_at_k``), CtrlBench's R@k, sentence-transformers' accuracy@k
``ndcg@k``                 binary-relevance nDCG, ideal DCG over min(#relevant, k) items (BEIR / MTEB)
``mrr@k``                  reciprocal rank of the first relevant item within the top k, else 0
``map@k``                  average precision over the top k, divided by min(#relevant, k)
``modality_accuracy@1``    1 if the top-1 item has the modality the query asks for (MM-Embed §5.2, M.A.@1)
=========================  ==========================================================================

Every metric is the mean over queries. Ranks break score ties by corpus index (by candidate-list
position when each query has its own candidates, as VLM2Vec's argmax does), so the numbers equal
sentence-transformers' ``InformationRetrievalEvaluator`` on the same embeddings. Relevance is binary.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ..search import IndexType, search

logger = logging.getLogger(__name__)

DEFAULT_K_VALUES = (1, 5, 10)


def _discounts(length: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, length + 2))


def ranking_metrics(
    rankings: Sequence[Sequence[int]],
    relevant: Sequence[Iterable[int]],
    *,
    k_values: Sequence[int] = DEFAULT_K_VALUES,
    ndcg_at: Sequence[int] = (10,),
    mrr_at: Sequence[int] = (10,),
    map_at: Sequence[int] = (),
    top1_modality_correct: Sequence[bool] | None = None,
) -> dict[str, float]:
    """Metrics of ranked lists: ``rankings[i]`` is query i's items best first, ``relevant[i]`` its relevant items.

    ``top1_modality_correct[i]`` (optional) says whether query i's top-1 has the asked-for modality.
    """
    if len(rankings) != len(relevant):
        raise ValueError(f"Got {len(rankings)} rankings for {len(relevant)} relevance sets.")
    if not len(rankings):
        raise ValueError("No queries to evaluate.")
    depth = max([*k_values, *ndcg_at, *mrr_at, *map_at])
    hits = np.zeros((len(rankings), depth), dtype=bool)
    num_relevant = np.empty(len(rankings))
    for row, (ranking, relevant_items) in enumerate(zip(rankings, relevant)):
        relevant_set = set(relevant_items)
        if not relevant_set:
            raise ValueError(f"Query {row} has no relevant item; drop it or pass skip_queries_without_relevant=True.")
        num_relevant[row] = len(relevant_set)
        top = list(ranking)[:depth]
        hits[row, : len(top)] = [item in relevant_set for item in top]
    cumulative = hits.cumsum(axis=1)
    metrics: dict[str, float] = {}
    for k in k_values:
        metrics[f"precision@{k}"] = float(np.mean(cumulative[:, k - 1] / k))
        metrics[f"recall@{k}"] = float(np.mean(cumulative[:, k - 1] / num_relevant))
        metrics[f"hit@{k}"] = float(np.mean(cumulative[:, k - 1] > 0))
    for k in ndcg_at:
        discounts = _discounts(k)
        dcg = hits[:, :k] @ discounts
        ideal = np.cumsum(discounts)[np.minimum(num_relevant, k).astype(int) - 1]
        metrics[f"ndcg@{k}"] = float(np.mean(dcg / ideal))
    for k in mrr_at:
        found = hits[:, :k].any(axis=1)  # argmax is the first hit's rank - 1 (0 when there is none)
        metrics[f"mrr@{k}"] = float(np.mean(found / (hits[:, :k].argmax(axis=1) + 1)))
    for k in map_at:
        precision_at_hits = hits[:, :k] * cumulative[:, :k] / np.arange(1, k + 1)
        metrics[f"map@{k}"] = float(np.mean(precision_at_hits.sum(axis=1) / np.minimum(num_relevant, k)))
    if top1_modality_correct is not None:
        metrics["modality_accuracy@1"] = float(np.mean(np.asarray(top1_modality_correct, dtype=float)))
    return metrics


def _sorted_by_score(scores: np.ndarray, indices: np.ndarray, tie_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((tie_keys, -scores), axis=-1)
    return np.take_along_axis(scores, order, -1), np.take_along_axis(indices, order, -1)


def rank_corpus(
    query_embeddings: np.ndarray,
    corpus_embeddings: np.ndarray,
    k: int,
    *,
    candidates: Sequence[Sequence[int]] | None = None,
    index_type: IndexType = "flat",
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each query's top ``k`` corpus indices and scores (inner product), best first.

    With ``candidates``, query i is ranked among ``candidates[i]`` only (MMEB: each query has its own
    list), ties going to the earlier candidate; otherwise FAISS searches the whole corpus and ties go to
    the lower corpus index.
    """
    if len(corpus_embeddings) == 0:
        raise ValueError("The corpus is empty.")
    if candidates is None:
        scores, indices = search(query_embeddings, corpus_embeddings, k, index_type=index_type)
        scores, indices = _sorted_by_score(scores, indices, indices)
        return list(indices), list(scores)
    if len(candidates) != len(query_embeddings):
        raise ValueError(f"Got {len(candidates)} candidate lists for {len(query_embeddings)} queries.")
    ranked, ranked_scores = [], []
    for row, candidate_ids in enumerate(candidates):
        candidate_ids = np.asarray(candidate_ids, dtype=np.int64)
        if candidate_ids.size == 0:
            raise ValueError(f"Query {row} has an empty candidate list.")
        scores = np.asarray(corpus_embeddings[candidate_ids], dtype=np.float32) @ np.asarray(query_embeddings[row], dtype=np.float32)
        scores, ids = _sorted_by_score(scores, candidate_ids, np.arange(len(candidate_ids)))
        ranked.append(ids[:k])
        ranked_scores.append(scores[:k])
    return ranked, ranked_scores


def relevance_lists(
    relevant: Sequence[Iterable[int]] | Mapping[str, Iterable[str]],
    *,
    num_queries: int,
    corpus_size: int,
    query_ids: Sequence[str] | None = None,
    corpus_ids: Sequence[str] | None = None,
) -> list[set[int]]:
    """Relevance as corpus-index sets per query, from index lists or an id-keyed mapping.

    An id-keyed mapping needs ``query_ids`` and ``corpus_ids``; an id that is not among them is an error.
    """
    if isinstance(relevant, Mapping):
        if query_ids is None or corpus_ids is None:
            raise ValueError("An id-keyed `relevant` mapping needs query_ids and corpus_ids.")
        known_queries = set(query_ids)
        unknown = [query_id for query_id in relevant if query_id not in known_queries]
        if unknown:
            raise ValueError(f"Relevance judgements name unknown query id {unknown[0]!r} ({len(unknown)} unknown).")
        position = {corpus_id: index for index, corpus_id in enumerate(corpus_ids)}
        sets = []
        for query_id in query_ids:
            ids = set()
            for corpus_id in relevant.get(query_id, ()):
                if corpus_id not in position:
                    raise ValueError(f"Query {query_id!r}: relevant corpus id {corpus_id!r} is not in the corpus.")
                ids.add(position[corpus_id])
            sets.append(ids)
        return sets
    if len(relevant) != num_queries:
        raise ValueError(f"`relevant` has {len(relevant)} entries for {num_queries} queries.")
    sets = []
    for row, items in enumerate(relevant):
        ids = {int(items)} if isinstance(items, (int, np.integer)) else {int(item) for item in items}
        bad = [item for item in ids if not 0 <= item < corpus_size]
        if bad:
            raise ValueError(f"Query {row}: relevant index {bad[0]} is outside the corpus of {corpus_size} items.")
        sets.append(ids)
    return sets


def retrieval_metrics(
    query_embeddings: np.ndarray,
    corpus_embeddings: np.ndarray,
    relevant: Sequence[Iterable[int]] | Mapping[str, Iterable[str]],
    *,
    k_values: Sequence[int] = DEFAULT_K_VALUES,
    ndcg_at: Sequence[int] = (10,),
    mrr_at: Sequence[int] = (10,),
    map_at: Sequence[int] = (),
    query_modalities: Sequence[str] | None = None,
    corpus_modalities: Sequence[str] | None = None,
    candidates: Sequence[Sequence[int]] | None = None,
    query_ids: Sequence[str] | None = None,
    corpus_ids: Sequence[str] | None = None,
    skip_queries_without_relevant: bool = False,
    index_type: IndexType = "flat",
) -> dict[str, float]:
    """Retrieval metrics of query embeddings against corpus embeddings (see the module docstring for names).

    Args:
        query_embeddings: [Q, d] L2-normalised.
        corpus_embeddings: [N, d] L2-normalised (an array, a memmap or a store's `ShardedEmbeddings`).
        relevant: per query, the corpus indices relevant to it; or a mapping query id -> corpus ids
            together with ``query_ids`` and ``corpus_ids``.
        k_values: cut-offs of precision@k, recall@k and hit@k.
        ndcg_at, mrr_at, map_at: cut-offs of nDCG, MRR and MAP.
        query_modalities: per query, the modality its instruction asks for; with ``corpus_modalities``
            ("text", "image", "image,text") adds ``modality_accuracy@1``.
        candidates: per query, the corpus indices it is ranked against (MMEB); default the whole corpus.
        skip_queries_without_relevant: drop queries with no relevant item (and log how many) instead of
            raising. Metrics average over the remaining queries, as sentence-transformers does.
        index_type: FAISS index for the search ("flat" = exact).
    """
    for values, what, expected in ((query_modalities, "query_modalities", len(query_embeddings)),
                                   (corpus_modalities, "corpus_modalities", len(corpus_embeddings))):
        if values is not None and len(values) != expected:
            raise ValueError(f"{what} has {len(values)} entries for {expected} {what.split('_')[0]} embeddings.")
    relevant_sets = relevance_lists(
        relevant, num_queries=len(query_embeddings), corpus_size=len(corpus_embeddings), query_ids=query_ids, corpus_ids=corpus_ids
    )
    keep = [row for row, items in enumerate(relevant_sets) if items]
    if len(keep) < len(relevant_sets):
        if not skip_queries_without_relevant:
            missing = next(row for row, items in enumerate(relevant_sets) if not items)
            raise ValueError(
                f"Query {missing} has no relevant item ({len(relevant_sets) - len(keep)} such queries); "
                "pass skip_queries_without_relevant=True to leave them out."
            )
        logger.warning("Skipped %d queries without a relevant item.", len(relevant_sets) - len(keep))
    query_embeddings = np.asarray(query_embeddings)[keep]
    depth = max([*k_values, *ndcg_at, *mrr_at, *map_at])
    rankings, _ = rank_corpus(
        query_embeddings, corpus_embeddings, depth,
        candidates=None if candidates is None else [candidates[row] for row in keep], index_type=index_type,
    )
    top1_correct = None
    if query_modalities is not None and corpus_modalities is not None:
        from ..trainer.mining import normalize_modality

        top1_correct = [
            normalize_modality(corpus_modalities[int(ranking[0])]) == normalize_modality(query_modalities[row])
            for row, ranking in zip(keep, rankings)
        ]
    return ranking_metrics(
        rankings, [relevant_sets[row] for row in keep], k_values=k_values, ndcg_at=ndcg_at, mrr_at=mrr_at,
        map_at=map_at, top1_modality_correct=top1_correct,
    )


__all__ = ["ranking_metrics", "retrieval_metrics", "rank_corpus", "relevance_lists", "DEFAULT_K_VALUES"]
