"""``vlembed train``: the built-in comparison run (no arguments: offline, all-MiniLM-L6-v2 on a code-search
set built from the Python standard library), or one paper recipe on your backbone and data."""

from __future__ import annotations

import argparse
import sys

from vlembed.trainer.recipes import RECIPES

EPILOG = """\
Rows of the default run: zero-shot; InfoNCE; LLaVE hardness-weighted (alpha = 9); + ABC threshold-mined
negatives; + GradCache at a larger batch, all with mean pooling (all-MiniLM-L6-v2's own). With --recipe
NAME: zero-shot against that recipe, both built with the recipe's model settings (llave: last-token
pooling; abc-pretrain: bidirectional attention, residual MLP head), negatives mined when it needs them.
Any other `--flag value` is a ContrastiveTrainingArguments / TrainingArguments setting applied to every
trained row (e.g. --weight_decay 0.01 --bf16 true). For multi-GPU training use examples/train.py
with accelerate launch or torchrun.

Examples:
  vlembed train                                   # the default run (about 9 minutes on 2 CPU cores)
  vlembed train --quick                           # a short version (under 3 minutes)
  vlembed train --backbone Qwen/Qwen2-VL-2B-Instruct --data rows.jsonl --recipe llave
"""


def add_parser(subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        name, help=help_text, description=help_text, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="all-MiniLM-L6-v2", help="Hub id or folder (default: the packaged all-MiniLM-L6-v2).")
    parser.add_argument(
        "--data", default="stdlib-code",
        help="Training rows: .jsonl/.json/.csv/.parquet or a datasets folder with query/positive columns (split 80/10/10); "
        "default: stdlib-code (built on the spot).",
    )
    parser.add_argument(
        "--recipe", choices=list(RECIPES),
        help="Compare zero-shot with this paper recipe; both rows are built with the recipe's model settings.",
    )
    parser.add_argument("--output-dir", default="runs/default", help="Where results and best-model/ go (default: runs/default).")
    parser.add_argument(
        "--model-name", help="Name of the saved model (its card's title, the suggested Hub repository); default: backbone-data[-recipe]."
    )
    parser.add_argument("--overwrite", action="store_true", help="Replace an earlier run in --output-dir (its results, caches and best-model/).")
    parser.add_argument("--quick", action="store_true", help="Small data and batches: about 3 minutes on 2 CPU cores.")
    parser.add_argument("--max-steps", type=int, help="Stop every training row after this many steps.")
    parser.add_argument("--train-samples", type=int, default=1024, help="Training pairs (default: 1024).")
    parser.add_argument("--dev-samples", type=int, default=200, help="Dev pairs that pick the best row (default: 200).")
    parser.add_argument("--test-samples", type=int, default=500, help="Held-out test pairs (default: 500).")
    parser.add_argument("--batch-size", type=int, default=32, help="Per-device batch (default: 32).")
    parser.add_argument("--gradcache-batch-size", type=int, default=64, help="Batch of the GradCache row (default: 64).")
    parser.add_argument("--mini-batch-size", type=int, default=32, help="GradCache mini-batch (default: 32).")
    parser.add_argument(
        "--mined-negatives", type=int, help="Threshold-mined negatives per query (default: 1; with --recipe abc-pretrain, ABC's 7)."
    )
    parser.add_argument("--epochs", type=float, help="Epochs per row (default: 1; with --recipe, the recipe's).")
    parser.add_argument("--learning-rate", type=float, help="Peak learning rate (default: 1e-4; with --recipe, the recipe's).")
    parser.add_argument("--max-length", type=int, help="Token limit (default: 96, --quick 64; with --recipe, the recipe's).")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def run(args: argparse.Namespace) -> int:
    from vlembed.pipeline import PipelineConfig, run_pipeline

    try:
        overrides = _training_overrides(getattr(args, "extra", []))
        config = PipelineConfig(
            backbone=args.backbone, data=args.data, recipe=args.recipe, output_dir=args.output_dir, model_name=args.model_name,
            overwrite=args.overwrite, quick=args.quick, max_steps=args.max_steps, train_samples=args.train_samples,
            dev_samples=args.dev_samples, test_samples=args.test_samples, batch_size=args.batch_size, gradcache_batch_size=args.gradcache_batch_size,
            mini_batch_size=args.mini_batch_size, mined_negatives=args.mined_negatives, epochs=args.epochs,
            learning_rate=args.learning_rate, max_length=args.max_length, seed=args.seed, training_overrides=overrides,
        )
        report = run_pipeline(config)
    except (FileNotFoundError, FileExistsError, NotADirectoryError, ValueError) as error:
        print(f"vlembed train: error: {error}", file=sys.stderr)
        return 2
    from vlembed.pipeline import markdown

    best = f"{args.output_dir}/best-model"
    print("\n" + markdown(report))
    print(f"Results: {args.output_dir}/results.json, results.md, similarity_zero_shot.png, similarity_best.png")
    print(f"Best row: {report['best']}, saved to {best}. Load it with")
    print(f'  AutoModel.from_pretrained("{best}", trust_remote_code=True)')
    print(f'  SentenceTransformer("{best}", trust_remote_code=True)')
    # vlembed push renders the card again with the repository id (its title and usage snippets).
    print(f"Push it to the Hub with\n  vlembed push {best} <your-name>/{report['model_name']}")
    return 0


def _training_overrides(extra: list[str]) -> dict:
    """Parse leftover `--flag value` pairs as ContrastiveTrainingArguments fields (validated)."""
    if not extra:
        return {}
    from transformers import HfArgumentParser

    from vlembed import ContrastiveTrainingArguments

    parser = HfArgumentParser(ContrastiveTrainingArguments)
    (parsed,) = parser.parse_args_into_dataclasses(args=["--output_dir", "unused", *extra])
    defaults = ContrastiveTrainingArguments(output_dir="unused")
    given = {arg.lstrip("-").split("=")[0] for arg in extra if arg.startswith("--")}
    return {name: getattr(parsed, name) for name in given if hasattr(defaults, name)}
