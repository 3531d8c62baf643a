"""``vlembed eval``: evaluate an embedding model on MMEB, M-BEIR, CtrlBench-style or BEIR-style folders.

Writes ``results.json`` (every metric under its full name, the LLaVE similarity gap, skip counts and the
Hub model-index entries), ``results.md`` (a Markdown table) and, when asked, ``<task>_similarity.png``
(LLaVE Figure 1) and ``<task>_run.jsonl`` (top candidates per query, the input of ``vlembed rerank``).

Examples::

    vlembed eval --model out/my-embedder --format mbeir --data M-BEIR --task mscoco_task0 --task cirr_task7 --output eval/
    vlembed eval --model out/my-embedder --format mmeb --data MMEB-eval --task ImageNet-1K --output eval/ --plot
    vlembed eval --model out/my-embedder --format text --data scifact --output eval/ --save-run 10
    vlembed encode --model out/my-embedder --data scifact/corpus.jsonl --id-column _id --out emb/scifact
    vlembed eval --model out/my-embedder --format text --data scifact --output eval/ --corpus-store emb/scifact
"""

from __future__ import annotations

import argparse
import json
import os


def add_parser(subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_text, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A saved vlembed model, or a backbone folder/Hub id to wrap.")
    parser.add_argument("--format", required=True, choices=("mmeb", "mbeir", "ctrlbench", "text"), help="Layout of --data.")
    parser.add_argument("--data", required=True, help="The benchmark folder (layouts: vlembed.evaluation.tasks).")
    parser.add_argument("--task", action="append", default=[], help="MMEB subset / M-BEIR task / name; repeat for several.")
    parser.add_argument("--output", required=True, help="Folder for results.json, results.md, plots and runs.")
    parser.add_argument("--split", default="test", help="Split for M-BEIR, CtrlBench and text formats (default: test).")
    parser.add_argument("--pool", default="local", choices=("local", "union"), help="M-BEIR candidate pool (default: local).")
    parser.add_argument("--instruction-index", type=int, default=0, help="Which M-BEIR prompt per task (default: 0 = prompt_1).")
    parser.add_argument("--query-instruction", default=None, help="Instruction for every query of a text task.")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cache-dir", default=None, help="Keep corpus embeddings here (resumable).")
    parser.add_argument(
        "--corpus-store", action="append", default=[], metavar="DIR",
        help="Read the corpus embeddings from this store (vlembed encode, same model) instead of encoding: once for "
        "every task (e.g. the M-BEIR union pool), or once per --task in order. Model, template and ids are checked.",
    )
    parser.add_argument("--on-bad-image", default="error", choices=("error", "skip"), help="Unreadable images: fail, or skip and count.")
    parser.add_argument("--on-unknown", default="error", choices=("error", "skip"), help="Judgements naming unknown ids: fail, or skip and count.")
    parser.add_argument("--plot", action="store_true", help="Write the similarity histogram (LLaVE Figure 1) per task.")
    parser.add_argument("--save-run", type=int, default=0, metavar="K", help="Write each query's top K candidates (for vlembed rerank).")
    parser.add_argument("--index-type", default="flat", choices=("flat", "ivf", "hnsw"), help="FAISS index (default: exact).")
    add_model_arguments(parser)
    return parser


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of :func:`load_embedding_model`, shared by ``vlembed eval`` and ``vlembed mine``."""
    parser.add_argument("--pooling", default=None, choices=("last", "mean", "eos", "cls"),
                        help="Pooling when --model is a plain backbone rather than a saved vlembed model (default: last).")
    parser.add_argument("--device", default=None, help="torch device for the model (default: cuda when available).")


def _item_json(item) -> dict:
    if isinstance(item, str):
        return {"text": item}
    if isinstance(item, dict):
        return {key: (os.fspath(value) if isinstance(value, os.PathLike) else value) for key, value in item.items()}
    return {"image": os.fspath(item)}


def write_run(path: str, task, run: list[dict]) -> None:
    """One JSON line per query: the query, its top candidates (id, text, image, retriever score) and its relevant ids."""
    from vlembed.evaluation import atomic_output

    queries = dict(zip(task.query_ids, task.queries))
    corpus = dict(zip(task.corpus_ids, task.corpus))
    instructions = dict(zip(task.query_ids, task.query_instructions or [None] * len(task.query_ids)))
    with atomic_output(path) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        for entry in run:
            query_id = entry["query_id"]
            line = {
                "query_id": query_id,
                "query": _item_json(queries[query_id]),
                "instruction": instructions[query_id],
                "candidates": [
                    {"id": corpus_id, **_item_json(corpus[corpus_id]), "score": score}
                    for corpus_id, score in zip(entry["candidate_ids"], entry["scores"])
                ],
                "relevant": sorted(task.relevant[query_id]),
            }
            handle.write(json.dumps(line) + "\n")


def run(args: argparse.Namespace) -> int:
    from vlembed.evaluation import evaluate, load_task, write_report

    loader_kwargs = {"on_unknown": args.on_unknown}
    if args.format == "mbeir":
        loader_kwargs.update(split=args.split, pool=args.pool, instruction_index=args.instruction_index)
    elif args.format in ("ctrlbench", "text"):
        loader_kwargs["split"] = args.split
        if args.format == "text":
            loader_kwargs["query_instruction"] = args.query_instruction
    tasks = [name for value in args.task for name in value.split(",") if name] or [None]
    if len(args.corpus_store) not in (0, 1, len(tasks)):
        raise ValueError(f"Got {len(args.corpus_store)} --corpus-store for {len(tasks)} tasks: give one for all, or one per task.")
    stores = args.corpus_store * len(tasks) if len(args.corpus_store) == 1 else args.corpus_store or [None] * len(tasks)
    from vlembed.loading import load_embedding_model

    model = load_embedding_model(args.model, device=args.device, pooling=args.pooling)
    results = []
    for name, store in zip(tasks, stores):
        task = load_task(args.format, args.data, name, **loader_kwargs)
        plot = os.path.join(args.output, f"{task.name}_similarity.png") if args.plot else None
        result = evaluate(
            model, task, batch_size=args.batch_size, cache_dir=args.cache_dir, on_bad_image=args.on_bad_image,
            similarity_plot=plot, run_depth=args.save_run or None, index_type=args.index_type, corpus_store=store,
        )
        if args.save_run:
            write_run(os.path.join(args.output, f"{task.name}_run.jsonl"), task, result.pop("run"))
        main = result["main_metric"]
        print(f"{task.name}: {main} = {result['metrics'][main]:.4f} ({result['num_queries']} queries, {result['num_corpus']} candidates)")
        for reason, count in result["skipped"].items():
            print(f"  skipped {count} ({reason.replace('_', ' ')})")
        results.append(result)
    paths = write_report(results, args.output, model_name=args.model)
    print(f"Wrote {paths['json']} and {paths['markdown']}")
    return 0
