"""``vlembed rerank``: re-order retrieved candidates with a generative (M)LLM (MM-Embed §4.2).

Input: a JSON-lines run, one query per line, as ``vlembed eval --save-run K`` writes it::

    {"query_id": "q1", "query": {"text": "...", "image": "path.jpg"},
     "candidates": [{"id": "d7", "text": "...", "image": null}, ...], "relevant": ["d7"]}

Output: the same lines with each query's first ``--top-k`` candidates re-ordered by P("True") (each
gets ``"rerank_score"``), the rest unchanged. When lines carry ``"relevant"``, the metrics before and
after reranking are printed and written beside the output (``<output stem>_metrics.json`` / ``.md``).

Example::

    vlembed rerank --model llava-hf/llava-v1.6-mistral-7b-hf --input eval/cirr_task7_run.jsonl --output eval/cirr_task7_reranked.jsonl
"""

from __future__ import annotations

import argparse
import json
import os


def add_parser(subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_text, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="Any AutoModelForImageTextToText or causal LM folder/Hub id.")
    parser.add_argument("--input", required=True, help="Run file (JSON lines, see above).")
    parser.add_argument("--output", required=True, help="Reranked run file (written atomically).")
    parser.add_argument("--top-k", type=int, default=10, help="Candidates reranked per query (default: 10, MM-Embed).")
    parser.add_argument("--task", default=None, help="Default prompt: e.g. 'image -> text', 'ctrlbench', or an M-BEIR task id; default: per pair from its modalities.")
    parser.add_argument("--prompt", default=None, help="Your own prompt ({query}, {candidate}, {query_image}, {candidate_image}); @file reads it from a file.")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--true-token", default="True")
    parser.add_argument("--false-token", default="False")
    parser.add_argument("--dtype", default=None, help="torch dtype of the model, e.g. bfloat16.")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available).")
    return parser


def _item(entry: dict):
    from vlembed.evaluation import make_item

    return make_item(entry.get("text"), entry.get("image"))


def run(args: argparse.Namespace) -> int:
    import torch

    from vlembed.evaluation import atomic_output, ranking_metrics, read_jsonl, write_report
    from vlembed.reranking import MLLMReranker

    prompt = args.prompt
    if prompt and prompt.startswith("@"):
        with open(prompt[1:], encoding="utf-8") as handle:
            prompt = handle.read()
    lines = list(read_jsonl(args.input))
    if not lines:
        raise ValueError(f"{args.input} holds no queries.")
    for number, line in enumerate(lines, start=1):
        for key in ("query", "candidates"):
            if key not in line:
                raise ValueError(f"{args.input}, line {number}: missing {key!r}.")
    model_kwargs = {"dtype": getattr(torch, args.dtype)} if args.dtype else {}
    reranker = MLLMReranker.from_pretrained(
        args.model, prompt=prompt, true_token=args.true_token, false_token=args.false_token, batch_size=args.batch_size,
        device=args.device or ("cuda" if torch.cuda.is_available() else "cpu"), **model_kwargs,
    )
    orders, scores = reranker.rerank(
        [_item(line["query"]) for line in lines], [[_item(c) for c in line["candidates"]] for line in lines],
        top_k=args.top_k, task=args.task, return_scores=True, show_progress_bar=True,
    )
    with atomic_output(args.output) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        for line, order, query_scores in zip(lines, orders, scores):
            candidates = [dict(c) for c in line["candidates"]]
            for position, score in enumerate(query_scores):
                candidates[position]["rerank_score"] = float(score)
            handle.write(json.dumps({**line, "candidates": [candidates[i] for i in order]}) + "\n")
    print(f"Wrote {args.output}")
    judged = [i for i, line in enumerate(lines) if line.get("relevant")]
    if judged:
        ids = lambda i, order: [lines[i]["candidates"][j].get("id") for j in order]  # noqa: E731
        relevant = [set(lines[i]["relevant"]) for i in judged]
        name = os.path.splitext(os.path.basename(args.input))[0]
        results = []
        for label, rankings in (
            ("retriever", [ids(i, range(len(lines[i]["candidates"]))) for i in judged]),
            ("reranked", [ids(i, orders[i]) for i in judged]),
        ):
            metrics = ranking_metrics(rankings, relevant, k_values=(1, 5, 10))
            print(f"{label}: " + ", ".join(f"{key} = {value:.4f}" for key, value in metrics.items()))
            results.append({"task": f"{name} ({label})", "format": "rerank", "main_metric": "hit@5", "metrics": metrics,
                            "num_queries": len(judged), "skipped": {"queries_without_relevant": len(lines) - len(judged)}})
        stem = os.path.splitext(args.output)[0]
        write_report(results, os.path.dirname(os.path.abspath(args.output)), model_name=args.model, basename=f"{os.path.basename(stem)}_metrics")
    return 0
