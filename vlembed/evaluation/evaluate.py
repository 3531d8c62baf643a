"""Model-level evaluation: encode a task's queries and corpus with an embedding model, then score them."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from typing import Any, Literal

import numpy as np

from ..search import IndexType
from .metrics import rank_corpus, retrieval_metrics
from .similarity import plot_similarity_histogram, similarity_gap
from .tasks import RetrievalTask

logger = logging.getLogger(__name__)

OnBadImage = Literal["error", "skip"]


def _readable(item: Any, index: int) -> str | None:
    """None if the item's images can be read, else the reason."""
    from ..modeling.processing_vlembed import to_embedding_input

    try:
        to_embedding_input(item, index)
    except (OSError, ValueError, TypeError) as error:
        return str(error)
    return None


def prepare_task(task: RetrievalTask, *, on_bad_image: OnBadImage = "error") -> RetrievalTask:
    """Check every item's images and leave out what cannot be evaluated, counting each reason in ``skipped``.

    - An unreadable image raises (naming the query or corpus id), or with ``on_bad_image="skip"`` drops the
      item: a corpus item (``corpus_items_with_unreadable_images``), a query
      (``queries_with_unreadable_images``), and then every query that had a dropped item among its
      relevant items or its own candidates (``queries_judged_on_unreadable_items``), whose metric would
      otherwise change silently.
    - Queries with no relevant item are dropped (``queries_without_relevant``), as sentence-transformers does.

    The task's ids and judgements are checked first (:meth:`RetrievalTask.check`), so a hand-built task gets
    the same errors as a loaded one.
    """
    task = task.check()
    skipped = dict(task.skipped)
    bad_corpus = set()
    for index, (corpus_id, item) in enumerate(zip(task.corpus_ids, task.corpus)):
        reason = _readable(item, index)
        if reason is not None:
            if on_bad_image == "error":
                raise ValueError(f"{task.name}: corpus item {corpus_id!r} cannot be read: {reason}")
            bad_corpus.add(corpus_id)
    keep_corpus = [index for index, corpus_id in enumerate(task.corpus_ids) if corpus_id not in bad_corpus]
    if bad_corpus:
        skipped["corpus_items_with_unreadable_images"] = len(bad_corpus)
        task = replace(task, corpus=[task.corpus[i] for i in keep_corpus], corpus_ids=[task.corpus_ids[i] for i in keep_corpus])
    if not task.corpus:
        raise ValueError(f"{task.name}: the corpus is empty.")
    keep, counts = [], {"queries_with_unreadable_images": 0, "queries_judged_on_unreadable_items": 0, "queries_without_relevant": 0}
    for index, (query_id, item) in enumerate(zip(task.query_ids, task.queries)):
        reason = _readable(item, index)
        if reason is not None:
            if on_bad_image == "error":
                raise ValueError(f"{task.name}: query {query_id!r} cannot be read: {reason}")
            counts["queries_with_unreadable_images"] += 1
        elif bad_corpus and (task.relevant.get(query_id, set()) | set((task.candidates or {}).get(query_id, ()))) & bad_corpus:
            counts["queries_judged_on_unreadable_items"] += 1
        elif not task.relevant.get(query_id):
            counts["queries_without_relevant"] += 1
        else:
            keep.append(index)
    skipped.update({reason: count for reason, count in counts.items() if count})
    if not keep:
        raise ValueError(f"{task.name}: no query is left to evaluate (skipped: {skipped}).")
    task = task.select_queries(keep)
    task.skipped = skipped
    for reason, count in skipped.items():
        logger.warning("%s: skipped %d (%s).", task.name, count, reason.replace("_", " "))
    return task


def encode_task(
    model,
    task: RetrievalTask,
    *,
    batch_size: int = 32,
    cache_dir: str | os.PathLike | None = None,
    corpus_store: str | os.PathLike | None = None,
) -> tuple[np.ndarray, Any]:
    """(query embeddings, corpus embeddings): queries with ``task="query"`` and their instructions,
    the corpus with ``task="document"``.

    The corpus is read from ``corpus_store`` (an existing store, checked by
    :func:`vlembed.encoding.open_store`), or encoded through the resumable store under ``cache_dir``, or
    in memory. Store embeddings stay memory-mapped (a `ShardedEmbeddings`): search reads them in chunks.
    """
    from ..encoding import encode_corpus, open_store

    queries = model.encode(task.queries, instruction=task.query_instructions, task="query", batch_size=batch_size)
    if corpus_store is not None:
        corpus = open_store(corpus_store, model, task.corpus_ids, instruction=task.corpus_instruction, task="document")
    elif cache_dir is not None:
        corpus = encode_corpus(
            model, task.corpus, os.path.join(os.fspath(cache_dir), task.format, task.name), ids=task.corpus_ids,
            instruction=task.corpus_instruction, task="document", batch_size=batch_size,
        ).embeddings
    else:
        corpus = model.encode(task.corpus, instruction=task.corpus_instruction, task="document", batch_size=batch_size)
    return np.asarray(queries, dtype=np.float32), corpus


def evaluate_embeddings(
    task: RetrievalTask,
    query_embeddings: np.ndarray,
    corpus_embeddings: np.ndarray,
    *,
    similarity_plot: str | os.PathLike | None = None,
    run_depth: int | None = None,
    index_type: IndexType = "flat",
) -> dict[str, Any]:
    """Score a prepared task (see :func:`prepare_task`) from embeddings aligned with its queries and corpus.

    Returns the result dict of :func:`evaluate`.
    """
    position = {corpus_id: index for index, corpus_id in enumerate(task.corpus_ids)}
    relevant = [{position[c] for c in task.relevant[q]} for q in task.query_ids]
    candidates = None if task.candidates is None else [[position[c] for c in task.candidates[q]] for q in task.query_ids]
    corpus_modalities = task.corpus_modalities
    # Modality accuracy only means something in a pool that mixes modalities (M-BEIR).
    mixed_pool = task.query_modalities is not None and len(set(corpus_modalities)) > 1
    metrics = retrieval_metrics(
        query_embeddings, corpus_embeddings, relevant, k_values=task.k_values, candidates=candidates,
        query_modalities=task.query_modalities if mixed_pool else None, corpus_modalities=corpus_modalities if mixed_pool else None,
        index_type=index_type,
    )
    result: dict[str, Any] = {
        "task": task.name,
        "format": task.format,
        "dataset": task.dataset,
        "main_metric": task.main_metric,
        "metrics": metrics,
        "similarity_gap": similarity_gap(query_embeddings, corpus_embeddings, relevant, candidates=candidates, index_type=index_type),
        "num_queries": len(task.query_ids),
        "num_corpus": len(task.corpus_ids),
        "skipped": dict(task.skipped),
    }
    if similarity_plot is not None:
        result["similarity_plot"] = plot_similarity_histogram(
            query_embeddings, corpus_embeddings, relevant, similarity_plot, candidates=candidates, title=task.name, index_type=index_type
        )
    if run_depth:
        rankings, scores = rank_corpus(query_embeddings, corpus_embeddings, run_depth, candidates=candidates, index_type=index_type)
        result["run"] = [
            {"query_id": query_id, "candidate_ids": [task.corpus_ids[i] for i in ranking], "scores": [float(s) for s in row_scores]}
            for query_id, ranking, row_scores in zip(task.query_ids, rankings, scores)
        ]
    return result


def evaluate(
    model,
    task: RetrievalTask,
    *,
    batch_size: int = 32,
    cache_dir: str | os.PathLike | None = None,
    on_bad_image: OnBadImage = "error",
    similarity_plot: str | os.PathLike | None = None,
    run_depth: int | None = None,
    index_type: IndexType = "flat",
    corpus_store: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Evaluate an embedding model on a retrieval task (a loader's output).

    Queries are encoded with the model's query template and their instructions (``task="query"``),
    candidates with ``task="document"``; then :func:`~vlembed.evaluation.retrieval_metrics` and the
    LLaVE similarity gap are computed.

    Args:
        model: an :class:`~vlembed.EmbeddingModel` (anything with its ``encode`` signature).
        task: from :func:`load_mmeb`, :func:`load_mbeir`, :func:`load_ctrlbench` or :func:`load_text_retrieval`.
        batch_size: encoding batch size.
        cache_dir: keep corpus embeddings there (resumable); default: encode in memory.
        corpus_store: read the corpus embeddings from this existing store (``vlembed encode`` of the task's
            corpus with this model, or an earlier run's ``cache_dir/<format>/<task>``) instead of encoding:
            the model fingerprint, template and ids are checked (file contents are not).
        on_bad_image: ``"error"`` or ``"skip"`` (see :func:`prepare_task`).
        similarity_plot: write LLaVE Figure 1's histogram to this PNG.
        run_depth: also return each query's top ``run_depth`` candidates (``result["run"]``), e.g. for reranking.
        index_type: FAISS index ("flat" = exact).

    Returns:
        ``{"task", "format", "dataset", "main_metric", "metrics", "similarity_gap", "num_queries",
        "num_corpus", "skipped"}`` (plus ``"similarity_plot"`` / ``"run"`` when asked).
    """
    task = prepare_task(task, on_bad_image=on_bad_image)
    query_embeddings, corpus_embeddings = encode_task(
        model, task, batch_size=batch_size, cache_dir=cache_dir, corpus_store=corpus_store
    )
    return evaluate_embeddings(
        task, query_embeddings, corpus_embeddings, similarity_plot=similarity_plot, run_depth=run_depth, index_type=index_type
    )


__all__ = ["evaluate", "evaluate_embeddings", "encode_task", "prepare_task"]
