"""``vlembed encode``: encode a corpus file into a memory-mapped embedding store (see `vlembed.encoding`)."""

from __future__ import annotations

import argparse
import os
import sys

EPILOG = """\
On several processes or GPUs, launch the same command with torchrun or accelerate:
  torchrun --nproc_per_node 8 --no-python vlembed encode --model DIR --data corpus.jsonl --out emb/
  accelerate launch --multi_gpu --num_processes 8 --no_python vlembed encode ...
Each process encodes its share of the shards. A killed run, started again with the same arguments,
encodes only the shards that are missing.
"""


def add_parser(subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        name, help=help_text, description=help_text, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="A saved vlembed model folder (or a backbone folder, see --pooling).")
    parser.add_argument(
        "--data", required=True,
        help="Corpus: .jsonl/.json/.csv/.parquet file or a datasets save_to_disk folder, with columns "
        "'id' (optional), 'text', 'image' (path relative to the file) and/or 'images'.",
    )
    parser.add_argument("--out", required=True, help="Embedding store folder to create or resume.")
    parser.add_argument("--batch-size", type=int, default=32, help="Items per forward pass (default: 32).")
    parser.add_argument("--shard-size", type=int, default=10_000, help="Items per shard file (default: 10000).")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="Storage dtype (default: float32).")
    parser.add_argument("--instruction", default=None, help="Task instruction rendered with the model's template.")
    parser.add_argument("--task", choices=("query", "document"), default="document", help="Template to use (default: document).")
    parser.add_argument("--overwrite", action="store_true", help="Replace a store made with another model, template or corpus.")
    parser.add_argument(
        "--pooling", choices=("last", "mean", "eos", "cls"), default="last",
        help="Pooling when --model is a plain backbone folder rather than a saved vlembed model (default: last).",
    )
    parser.add_argument("--id-column", default="id", help="Column holding the ids (default: id).")
    parser.add_argument("--text-column", default="text", help="Column holding the text (default: text).")
    parser.add_argument("--image-column", default="image", help="Column holding one image path (default: image).")
    parser.add_argument("--image-root", default=None, help="Folder image paths are relative to (default: the corpus file's folder).")
    parser.add_argument("--no-progress", action="store_true", help="Hide the progress bars.")
    return parser


def run(args: argparse.Namespace) -> int:
    model_dir = args.model
    if not os.path.isdir(model_dir):
        return _error(f"model folder not found: '{model_dir}'.")
    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        return _error(f"'{model_dir}' is not a model folder (it has no config.json).")
    if not os.path.exists(args.data):
        return _error(f"corpus not found: '{args.data}'.")
    if args.batch_size < 1 or args.shard_size < 1:
        return _error("--batch-size and --shard-size must be at least 1.")

    from vlembed.encoding import CorpusError, StoreMismatchError, encode_corpus, load_corpus

    try:
        ids, items = load_corpus(
            args.data, id_column=args.id_column, text_column=args.text_column, image_column=args.image_column,
            image_root=args.image_root,
        )
    except CorpusError as error:
        return _error(str(error))
    from vlembed.loading import load_embedding_model

    model = load_embedding_model(model_dir, pooling=args.pooling)
    try:
        store = encode_corpus(
            model, items, args.out, ids=ids, instruction=args.instruction, task=args.task, batch_size=args.batch_size,
            shard_size=args.shard_size, dtype=args.dtype, show_progress_bar=False if args.no_progress else None,
            overwrite=args.overwrite,
        )
    except StoreMismatchError as error:
        return _error(str(error))
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"Embedding store: {store.path} ({len(store)} x {store.dim}, {store.manifest['dtype']})")
    return 0


def _error(message: str) -> int:
    print(f"vlembed encode: error: {message}", file=sys.stderr)
    return 2
