"""Retrieval evaluation: metrics (MMEB, M-BEIR, CtrlBench, BEIR), benchmark loaders, the LLaVE
similarity-gap analysis and reports (JSON, Markdown, Hub model-index)."""

from .evaluate import encode_task, evaluate, evaluate_embeddings, prepare_task
from .metrics import DEFAULT_K_VALUES, rank_corpus, ranking_metrics, relevance_lists, retrieval_metrics
from .report import atomic_output, markdown_table, metric_display_name, model_index_results, write_report, write_text_atomic
from .similarity import pair_similarities, plot_similarity_histogram, similarity_gap
from .tasks import (
    MBEIR_TASKS,
    RetrievalTask,
    item_modality,
    load_ctrlbench,
    load_mbeir,
    load_mmeb,
    load_task,
    load_text_retrieval,
    make_item,
    read_jsonl,
)

__all__ = [
    "retrieval_metrics",
    "ranking_metrics",
    "rank_corpus",
    "relevance_lists",
    "DEFAULT_K_VALUES",
    "similarity_gap",
    "pair_similarities",
    "plot_similarity_histogram",
    "RetrievalTask",
    "load_mmeb",
    "load_mbeir",
    "load_ctrlbench",
    "load_text_retrieval",
    "load_task",
    "item_modality",
    "make_item",
    "read_jsonl",
    "MBEIR_TASKS",
    "evaluate",
    "evaluate_embeddings",
    "encode_task",
    "prepare_task",
    "write_report",
    "markdown_table",
    "model_index_results",
    "metric_display_name",
    "atomic_output",
    "write_text_atomic",
]
