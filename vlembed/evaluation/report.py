"""Evaluation reports: JSON with every number under its full metric name, a Markdown table, and the
Hub ``model-index`` results a model card takes. Files are written atomically (temp file + ``os.replace``)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

_METRIC_ORDER = ("precision", "recall", "hit", "ndcg", "mrr", "map", "modality_accuracy")
_DISPLAY = {
    "precision": "P",
    "recall": "Recall",
    "hit": "Hit",
    "ndcg": "nDCG",
    "mrr": "MRR",
    "map": "MAP",
    "modality_accuracy": "M.A.",
}


@contextmanager
def atomic_output(path: str | os.PathLike, *, directory: bool = False) -> Iterator[str]:
    """Yield a temporary path beside ``path``; once the block succeeds it replaces ``path``.

    Readers never see a half-written file: the rename is atomic on one filesystem. With
    ``directory=True`` the temporary path is a folder (e.g. for ``Dataset.save_to_disk``).
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    prefix = f".{os.path.basename(path)}."
    if directory:
        temporary = tempfile.mkdtemp(dir=parent, prefix=prefix)
        target = os.path.join(temporary, "out")
    else:
        handle, temporary = tempfile.mkstemp(dir=parent, prefix=prefix, suffix=os.path.splitext(path)[1])
        os.close(handle)
        target = temporary
    try:
        yield target
        if directory:
            if os.path.isdir(path):
                # A folder cannot be replaced in one step: move the old one aside first.
                old = tempfile.mkdtemp(dir=parent, prefix=prefix + "old.")
                os.replace(path, os.path.join(old, "out"))
                os.replace(target, path)
                shutil.rmtree(old)
            else:
                os.replace(target, path)
        else:
            os.replace(target, path)
    finally:
        if directory:
            shutil.rmtree(temporary, ignore_errors=True)
        elif os.path.exists(temporary):
            os.unlink(temporary)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_output(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)


def _metric_sort_key(name: str) -> tuple:
    base, _, k = name.partition("@")
    return (_METRIC_ORDER.index(base) if base in _METRIC_ORDER else len(_METRIC_ORDER), base, int(k) if k.isdigit() else 0)


def metric_display_name(name: str) -> str:
    """"hit@5" -> "Hit@5" etc.; M-BEIR's "Recall@k" is our ``hit@k``."""
    base, _, k = name.partition("@")
    return f"{_DISPLAY.get(base, base)}@{k}" if k else _DISPLAY.get(base, base)


def markdown_table(results: Sequence[dict[str, Any]]) -> str:
    """One row per task: counts, the main metric and every metric (percent), then the LLaVE similarity gap."""
    metric_names = sorted({name for result in results for name in result["metrics"]}, key=_metric_sort_key)
    header = ["task", "format", "queries", "corpus", "main metric", *map(metric_display_name, metric_names), "skipped"]
    lines = [
        "Metrics in percent. Hit@k is M-BEIR's Recall@k (any relevant item in the top k); Recall@k is the "
        "fraction of relevant items found; P@1 is MMEB's Precision@1.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * 4 + [":---"] + ["---:"] * (len(metric_names)) + ["---"]) + "|",
    ]
    for result in results:
        skipped = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in result.get("skipped", {}).items() if count) or "0"
        main = result.get("main_metric")
        cells = [
            result["task"], result.get("format", ""), str(result.get("num_queries", "")), str(result.get("num_corpus", "")),
            f"{metric_display_name(main)} = {100 * result['metrics'][main]:.2f}" if main in result["metrics"] else "",
            *(f"{100 * result['metrics'][name]:.2f}" if name in result["metrics"] else "" for name in metric_names),
            skipped,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    gaps = [result for result in results if result.get("similarity_gap")]
    if gaps:
        lines += [
            "",
            "Mean cosine similarity of positive, hard-negative (top 5) and easy-negative (bottom 5) pairs "
            "(LLaVE Table 1); the gap is negative minus positive.",
            "",
            "| task | positive | hard negative (gap) | easy negative (gap) |",
            "|---|---:|---:|---:|",
        ]
        for result in gaps:
            gap = result["similarity_gap"]
            lines.append(
                f"| {result['task']} | {gap['positive_similarity']:.3f} | "
                f"{gap['hard_negative_similarity']:.3f} ({gap['hard_negative_gap']:+.3f}) | "
                f"{gap['easy_negative_similarity']:.3f} ({gap['easy_negative_gap']:+.3f}) |"
            )
    return "\n".join(lines) + "\n"


def model_index_results(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Hub ``model-index`` ``results`` entries of a model card, one per task.

    Each is ``{"task": {"type": "retrieval"}, "dataset": {"name", "type", "split", ...}, "metrics":
    [{"type": "hit_at_5", "value": 0.71, "name": "Hit@5"}, ...]}`` with values as fractions.
    """
    entries = []
    for result in results:
        metrics = [
            {"type": name.replace("@", "_at_"), "value": float(value), "name": metric_display_name(name)}
            for name, value in sorted(result["metrics"].items(), key=lambda item: _metric_sort_key(item[0]))
        ]
        dataset = dict(result.get("dataset") or {"name": result["task"], "type": result["task"]})
        entries.append({"task": {"type": "retrieval", "name": "Retrieval"}, "dataset": dataset, "metrics": metrics})
    return entries


def write_report(
    results: Sequence[dict[str, Any]],
    out_dir: str | os.PathLike,
    *,
    model_name: str | None = None,
    basename: str = "results",
) -> dict[str, str]:
    """Write ``<basename>.json`` (every result, plus ``model_index``) and ``<basename>.md``; return their paths."""
    out_dir = os.fspath(out_dir)
    payload = {"model": model_name, "results": list(results), "model_index": model_index_results(results)}
    paths = {"json": os.path.join(out_dir, f"{basename}.json"), "markdown": os.path.join(out_dir, f"{basename}.md")}
    write_text_atomic(paths["json"], json.dumps(payload, indent=2, default=_jsonable) + "\n")
    title = f"# Retrieval evaluation{f' of {model_name}' if model_name else ''}\n\n"
    write_text_atomic(paths["markdown"], title + markdown_table(results))
    return paths


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


__all__ = ["atomic_output", "write_text_atomic", "markdown_table", "model_index_results", "write_report", "metric_display_name"]
