"""``vlembed train``: the built-in comparison run (no arguments: offline, all-MiniLM-L6-v2 on a code-search
set built from the Python standard library), or one paper recipe on your backbone and data."""

from __future__ import annotations

import argparse
import sys

EPILOG = """\
Rows of the default run: zero-shot; InfoNCE; LLaVE hardness-weighted (alpha = 9); + ABC threshold-mined
negatives; + GradCache at a larger batch. With --recipe NAME: zero-shot against that recipe.
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
    parser.add_argument("--recipe", choices=("llave", "abc-pretrain", "abc-instruct", "mm-embed"), help="Compare zero-shot with this recipe.")
    parser.add_argument("--output-dir", default="runs/default", help="Where results and best-model/ go (default: runs/default).")
    parser.add_argument("--overwrite", action="store_true", help="Replace an earlier run in --output-dir.")
    parser.add_argument("--quick", action="store_true", help="Small data and batches: about 3 minutes on 2 CPU cores.")
    parser.add_argument("--max-steps", type=int, help="Stop every training row after this many steps.")
    parser.add_argument("--train-samples", type=int, default=1536, help="Training pairs (default: 1536).")
    parser.add_argument("--dev-samples", type=int, default=200, help="Dev pairs that pick the best row (default: 200).")
    parser.add_argument("--test-samples", type=int, default=500, help="Held-out test pairs (default: 500).")
    parser.add_argument("--batch-size", type=int, default=32, help="Per-device batch (default: 32).")
    parser.add_argument("--gradcache-batch-size", type=int, default=64, help="Batch of the GradCache row (default: 64).")
    parser.add_argument("--mini-batch-size", type=int, default=32, help="GradCache mini-batch (default: 32).")
    parser.add_argument("--mined-negatives", type=int, default=1, help="Mined negatives per query (default: 1; ABC uses 7).")
    parser.add_argument("--epochs", type=float, default=1.0, help="Epochs per row (default: 1).")
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="Peak learning rate (default: 1e-4).")
    parser.add_argument("--max-length", type=int, default=96, help="Token limit (default: 96).")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def run(args: argparse.Namespace) -> int:
    from vlembed.pipeline import PipelineConfig, run_pipeline

    try:
        overrides = _training_overrides(getattr(args, "extra", []))
        config = PipelineConfig(
            backbone=args.backbone, data=args.data, recipe=args.recipe, output_dir=args.output_dir,
            overwrite=args.overwrite, quick=args.quick, max_steps=args.max_steps, train_samples=args.train_samples,
            dev_samples=args.dev_samples, test_samples=args.test_samples, batch_size=args.batch_size, gradcache_batch_size=args.gradcache_batch_size,
            mini_batch_size=args.mini_batch_size, mined_negatives=args.mined_negatives, epochs=args.epochs,
            learning_rate=args.learning_rate, max_length=args.max_length, seed=args.seed, training_overrides=overrides,
        )
        report = run_pipeline(config)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"vlembed train: error: {error}", file=sys.stderr)
        return 2
    from vlembed.pipeline import markdown

    best = f"{args.output_dir}/best-model"
    print("\n" + markdown(report))
    print(f"Results: {args.output_dir}/results.json, results.md, similarity_zero_shot.png, similarity_best.png")
    print(f"Best row: {report['best']}, saved to {best}. Load it with")
    print(f'  AutoModel.from_pretrained("{best}", trust_remote_code=True)')
    print(f'  SentenceTransformer("{best}", trust_remote_code=True)')
    print(f"Push it to the Hub with\n  hf upload <your-name>/<model-name> {best}")
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
