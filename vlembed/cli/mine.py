"""``vlembed mine``: add mined hard negatives to a training set (ABC §3.2 threshold, or MM-Embed §4.1.1
modality-aware).

The training set (JSON lines, CSV, Parquet or a ``datasets`` folder) has the trainer's columns: ``query``,
optional ``query_image`` / ``query_instruction``, ``positive``, optional ``positive_image``. The output
adds ``negatives``, ``negative_hardness`` (similarity to the query) and, when the corpus has images,
``negative_images``; it is written atomically in the format its name says (``.jsonl``, ``.parquet``, or
a ``datasets`` folder). With ``--strategy modality`` the negatives are every type-1 and type-2 candidate
of the row and ``negative_types`` says which (1 or 2): the collator draws one per row and epoch, each
type with equal probability (MM-Embed §4.1.1); a row with neither type gets one random negative of the
asked-for modality, and the report counts them. Embeddings are cached in ``--cache-dir``: rerun the same
command after an interruption and encoding resumes where it stopped; ``--corpus-store`` reads the corpus
embeddings from an existing ``vlembed encode`` store instead.

Examples::

    vlembed mine --model out/m-rand --data train.jsonl --output train_mined.jsonl --cache-dir cache/
    vlembed mine --model out/m-rand --data mbeir_train.parquet --strategy modality --corpus pool.jsonl --output mined/
    vlembed encode --model out/m-rand --data pool.jsonl --out emb/pool
    vlembed mine --model out/m-rand --data mbeir_train.parquet --strategy modality --corpus pool.jsonl --corpus-store emb/pool --output mined/
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
    parser.add_argument("--corpus-store", default=None, metavar="DIR",
                        help="Read --corpus's embeddings from this store (vlembed encode, same model) instead of encoding them.")
    parser.add_argument("--epsilon", type=float, default=0.95, help="ABC: negatives score at most epsilon x the positive (default 0.95).")
    parser.add_argument("--pool-size", type=int, default=100, help="ABC: sample from this many under-threshold candidates (default 100).")
    parser.add_argument("--num-negatives", type=int, default=None,
                        help="Threshold: negatives per row (default 7). Modality writes every candidate; the collator draws one.")
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
    if args.corpus_store and not args.corpus:
        raise ValueError("--corpus-store needs --corpus, the file the store was encoded from (its ids).")
    if args.corpus:
        from vlembed.encoding import load_corpus

        corpus_ids, corpus = load_corpus(args.corpus)
    model = load_embedding_model(args.model, device=args.device, pooling=args.pooling)
    mined, report = mine_hard_negatives(
        dataset, model, strategy=args.strategy, query_column=args.query_column, positive_column=args.positive_column,
        query_image_column=args.query_image_column, query_instruction_column=args.query_instruction_column,
        positive_image_column=args.positive_image_column, target_modality_column=args.target_modality_column,
        corpus=corpus, corpus_ids=corpus_ids, corpus_store=args.corpus_store, cache_dir=args.cache_dir, epsilon=args.epsilon,
        pool_size=args.pool_size, num_negatives=args.num_negatives, top_k=args.top_k, k_prime=args.k_prime, seed=args.seed,
        batch_size=args.batch_size, index_type=args.index_type, return_report=True,
    )
    save_training_set(mined, args.output)
    empty = sum(not negatives for negatives in mined["negatives"])
    print(f"Mined {report['negatives']} negatives for {report['rows']} rows ({empty} rows got none); wrote {args.output}")
    if args.strategy == "threshold" and report["rows_short"]:
        print(f"  {report['rows_short']} rows got fewer than {args.num_negatives or 7} negatives (small threshold pool)")
    if args.strategy == "modality":
        types = [t for row in mined["negative_types"] for t in row]
        print(f"  candidates: {types.count(1)} type 1 (wrong modality), {types.count(2)} type 2 (asked-for modality, ranked below "
              f"k'={args.k_prime}); the collator draws one per row and epoch")
        print(f"  {report['rows_with_random_negative']} rows had neither type and got one random negative (of the asked-for "
              "modality where the corpus has one, typed 2, else typed 1), as MM-Embed's first stage trains with")
    return 0
