"""Similarity-gap analysis (LLaVE §2.2, Table 1 and Figure 1).

For each query, the positive pairs are (query, relevant item); the hard negative pairs are the
``hard_k`` (5) most similar non-relevant items; the easy negative pairs the ``easy_k`` (5) least similar
ones. LLaVE reports the mean cosine of each group and the gap of each negative group to the positives
(negative minus positive: the more negative, the less the distributions overlap), and plots the three
histograms.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np

from ..search import IndexType, search
from .report import atomic_output

PAIR_GROUPS = ("positive", "hard_negative", "easy_negative")


def _first_non_relevant(indices: np.ndarray, scores: np.ndarray, relevant: set[int], count: int) -> np.ndarray:
    keep = [position for position, index in enumerate(indices) if index >= 0 and int(index) not in relevant][:count]
    return scores[keep]


def pair_similarities(
    query_embeddings: np.ndarray,
    corpus_embeddings: np.ndarray,
    relevant: Sequence[Iterable[int]],
    *,
    hard_k: int = 5,
    easy_k: int = 5,
    candidates: Sequence[Sequence[int]] | None = None,
    index_type: IndexType = "flat",
) -> dict[str, np.ndarray]:
    """Cosine similarities of every positive, hard-negative and easy-negative pair (LLaVE §2.2).

    Args:
        query_embeddings, corpus_embeddings: L2-normalised [Q, d] and [N, d].
        relevant: per query, the corpus indices relevant to it (at least one).
        hard_k: per query, the most similar non-relevant items taken as hard negatives.
        easy_k: per query, the least similar non-relevant items taken as easy negatives.
        candidates: per query, the corpus indices it is compared with (MMEB); default the whole corpus.
        index_type: FAISS index for the whole-corpus searches.

    Returns:
        ``{"positive": [...], "hard_negative": [...], "easy_negative": [...]}`` float32 arrays.
    """
    queries = np.asarray(query_embeddings, dtype=np.float32)
    relevant_sets = [set(int(i) for i in items) for items in relevant]
    if len(relevant_sets) != len(queries):
        raise ValueError(f"`relevant` has {len(relevant_sets)} entries for {len(queries)} queries.")
    for row, items in enumerate(relevant_sets):
        if not items:
            raise ValueError(f"Query {row} has no relevant item.")
    groups: dict[str, list[np.ndarray]] = {name: [] for name in PAIR_GROUPS}
    for row, items in enumerate(relevant_sets):
        positives = np.asarray(corpus_embeddings[sorted(items)], dtype=np.float32)
        groups["positive"].append(positives @ queries[row])
    if candidates is not None:
        for row, candidate_ids in enumerate(candidates):
            candidate_ids = np.asarray(candidate_ids, dtype=np.int64)
            scores = np.asarray(corpus_embeddings[candidate_ids], dtype=np.float32) @ queries[row]
            order = np.argsort(-scores, kind="stable")
            groups["hard_negative"].append(_first_non_relevant(candidate_ids[order], scores[order], relevant_sets[row], hard_k))
            groups["easy_negative"].append(_first_non_relevant(candidate_ids[order[::-1]], scores[order[::-1]], relevant_sets[row], easy_k))
    else:
        extra = max(len(items) for items in relevant_sets)
        hard_scores, hard_indices = search(queries, corpus_embeddings, hard_k + extra, index_type=index_type)
        # The least similar items are the nearest neighbours of the negated query.
        easy_scores, easy_indices = search(-queries, corpus_embeddings, easy_k + extra, index_type=index_type)
        for row, items in enumerate(relevant_sets):
            groups["hard_negative"].append(_first_non_relevant(hard_indices[row], hard_scores[row], items, hard_k))
            groups["easy_negative"].append(_first_non_relevant(easy_indices[row], -easy_scores[row], items, easy_k))
    return {name: np.concatenate(values).astype(np.float32) for name, values in groups.items()}


def similarity_gap(
    query_embeddings: np.ndarray,
    corpus_embeddings: np.ndarray,
    relevant: Sequence[Iterable[int]],
    *,
    hard_k: int = 5,
    easy_k: int = 5,
    candidates: Sequence[Sequence[int]] | None = None,
    index_type: IndexType = "flat",
) -> dict[str, float]:
    """LLaVE Table 1: mean cosine of positive, hard-negative and easy-negative pairs, and the gaps.

    Returns ``positive_similarity``, ``hard_negative_similarity``, ``easy_negative_similarity`` (means over
    all pairs of the group) and ``hard_negative_gap`` / ``easy_negative_gap`` (negative minus positive
    mean, the numbers in parentheses in LLaVE Table 1). Arguments as :func:`pair_similarities`.
    """
    pairs = pair_similarities(
        query_embeddings, corpus_embeddings, relevant, hard_k=hard_k, easy_k=easy_k, candidates=candidates, index_type=index_type
    )
    means = {f"{name}_similarity": float(values.mean()) if values.size else float("nan") for name, values in pairs.items()}
    means["hard_negative_gap"] = means["hard_negative_similarity"] - means["positive_similarity"]
    means["easy_negative_gap"] = means["easy_negative_similarity"] - means["positive_similarity"]
    return means


def plot_similarity_histogram(
    query_embeddings: np.ndarray,
    corpus_embeddings: np.ndarray,
    relevant: Sequence[Iterable[int]],
    path: str | os.PathLike,
    *,
    hard_k: int = 5,
    easy_k: int = 5,
    candidates: Sequence[Sequence[int]] | None = None,
    title: str | None = None,
    bins: int = 50,
    index_type: IndexType = "flat",
) -> str:
    """LLaVE Figure 1: histograms of positive, hard-negative and easy-negative cosine similarities, as a PNG.

    Drawn with matplotlib's Agg canvas (no display needed); the file is written atomically. Returns the path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    pairs = pair_similarities(
        query_embeddings, corpus_embeddings, relevant, hard_k=hard_k, easy_k=easy_k, candidates=candidates, index_type=index_type
    )
    figure = Figure(figsize=(6, 4), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    values = np.concatenate(list(pairs.values()))
    edges = np.linspace(float(values.min()), float(values.max()), bins + 1) if values.size else bins
    labels = {"positive": "positive", "hard_negative": f"hard negative (top {hard_k})", "easy_negative": f"easy negative (bottom {easy_k})"}
    for name, colour in zip(PAIR_GROUPS, ("tab:green", "tab:red", "tab:blue")):
        axes.hist(pairs[name], bins=edges, alpha=0.5, density=True, color=colour, label=f"{labels[name]}, mean {pairs[name].mean():.3f}")
    axes.set_xlabel("query-target cosine similarity")
    axes.set_ylabel("density")
    if title:
        axes.set_title(title)
    axes.legend(fontsize="small")
    figure.tight_layout()
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format="png")
    return os.fspath(path)


__all__ = ["pair_similarities", "similarity_gap", "plot_similarity_histogram", "PAIR_GROUPS"]
