"""``vlembed mine``: add mined hard negatives to a training set (ABC §3.2 threshold, or MM-Embed §4.1.1
modality-aware).

The training set (JSON lines, CSV, Parquet or a ``datasets`` folder) has the trainer's columns: ``query``,
optional ``query_image`` / ``query_instruction``, ``positive``, optional ``positive_image``. The output
adds ``negatives``, ``negative_hardness`` (similarity to the query) and, when the corpus has images,
``negative_images``; it is written atomically in the format its name says (``.jsonl``, ``.parquet``, or
a ``datasets`` folder). Embeddings are cached in ``--cache-dir``: rerun the same command after an
interruption and encoding resumes where it stopped.

Examples::

    vlembed mine --model out/m-rand --data train.jsonl --output train_mined.jsonl --cache-dir cache/
    vlembed mine --model out/m-rand --data mbeir_train.parquet --strategy modality --corpus pool.jsonl --output mined/
"""

from __future__ import annotations

import argparse
import os


def add_parser(subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    from vlembed.cli.eval import add_model_arguments

    parser = subparsers.add_parser(name, help=help_text, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="The embedding model that mines (a saved vlembed model or a backbone).")
    parser.add_argument("--data", required=True, help="Training set: .jsonl, .csv, .parquet or a datasets folder.")
    parser.add_argument("--output", required=True, help="Where the mined set goes: .jsonl, .parquet, or a folder.")
    parser.add_argument("--strategy", default="threshold", choices=("threshold", "modality"), help="ABC threshold (default) or MM-Embed modality-aware.")
    parser.add_argument("--corpus", default=None, help="Candidate corpus (vlembed.encoding.load_corpus formats); default: the set's positives.")
    parser.add_argument("--cache-dir", default=None, help="Embedding cache; reruns resume from it.")
    parser.add_argument("--epsilon", type=float, default=0.95, help="ABC: negatives score at most epsilon x the positive (default 0.95).")
    parser.add_argument("--pool-size", type=int, default=100, help="ABC: sample from this many under-threshold candidates (default 100).")
    parser.add_argument("--num-negatives", type=int, default=None, help="Negatives per row (default: 7 threshold, 1 modality).")
    parser.add_argument("--top-k", type=int, default=50, help="MM-Embed: candidates retrieved per query (default 50).")
    parser.add_argument("--k-prime", type=int, default=45, help="MM-Embed: type-2 negatives rank below this (default 45).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--index-type", default="flat", choices=("flat", "ivf", "hnsw"), help="FAISS index (default: exact).")
    parser.add_argument("--query-column", default="query")
    parser.add_argument("--positive-column", default="positive")
    parser.add_argument("--query-image-column", default="query_image")
    parser.add_argument("--query-instruction-column", default="query_instruction")
    parser.add_argument("--positive-image-column", default="positive_image")
    parser.add_argument("--target-modality-column", default=None, help="MM-Embed: column with the modality each query asks for.")
    add_model_arguments(parser)
    return parser


def load_training_set(path: str):
    """A ``datasets.Dataset`` from a .jsonl/.json, .csv or .parquet file or a ``save_to_disk`` folder."""
    from datasets import Dataset, load_from_disk

    if os.path.isdir(path):
        return load_from_disk(path)
    extension = os.path.splitext(path)[1].lower()
    if extension in (".jsonl", ".json"):
        return Dataset.from_json(path)
    if extension == ".csv":
        return Dataset.from_csv(path)
    if extension == ".parquet":
        return Dataset.from_parquet(path)
    raise ValueError(f"Cannot read training set {path!r}: use .jsonl, .csv, .parquet or a datasets folder.")


def save_training_set(dataset, path: str) -> None:
    """Write atomically: a .jsonl/.parquet file, or a ``save_to_disk`` folder for any other name."""
    from vlembed.evaluation import atomic_output

    extension = os.path.splitext(path)[1].lower()
    if extension in (".jsonl", ".json"):
        with atomic_output(path) as temporary:
            dataset.to_json(temporary, lines=True)
    elif extension == ".parquet":
        with atomic_output(path) as temporary:
            dataset.to_parquet(temporary)
    else:
        with atomic_output(path, directory=True) as temporary:
            dataset.save_to_disk(temporary)


def run(args: argparse.Namespace) -> int:
    from vlembed.loading import load_embedding_model
    from vlembed.trainer.mining import mine_hard_negatives

    dataset = load_training_set(args.data)
    corpus = corpus_ids = None
    if args.corpus:
        from vlembed.encoding import load_corpus

        corpus_ids, corpus = load_corpus(args.corpus)
    model = load_embedding_model(args.model, device=args.device, pooling=args.pooling)
    mined = mine_hard_negatives(
        dataset, model, strategy=args.strategy, query_column=args.query_column, positive_column=args.positive_column,
        query_image_column=args.query_image_column, query_instruction_column=args.query_instruction_column,
        positive_image_column=args.positive_image_column, target_modality_column=args.target_modality_column,
        corpus=corpus, corpus_ids=corpus_ids, cache_dir=args.cache_dir, epsilon=args.epsilon, pool_size=args.pool_size,
        num_negatives=args.num_negatives, top_k=args.top_k, k_prime=args.k_prime, seed=args.seed,
        batch_size=args.batch_size, index_type=args.index_type,
    )
    save_training_set(mined, args.output)
    counts = [len(negatives) for negatives in mined["negatives"]]
    print(f"Mined {sum(counts)} negatives for {len(counts)} rows ({sum(c == 0 for c in counts)} rows got none); wrote {args.output}")
    return 0
