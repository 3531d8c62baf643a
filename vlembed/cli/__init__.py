"""The ``vlembed`` command: one subcommand per stage, each in its own module with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> module under vlembed.cli (imported only when that subcommand runs, so --help is fast)
SUBCOMMANDS = {
    "train": "Train an embedding model (default: the built-in code-search run, offline).",
    "encode": "Encode a corpus into a memory-mapped embedding store (resumable, multi-process).",
    "mine": "Mine hard negatives (ABC threshold or MM-Embed modality-aware) into a training set.",
    "eval": "Evaluate retrieval (MMEB, M-BEIR, CtrlBench or plain text formats).",
    "rerank": "Rerank retrieval results with a generative (M)LLM (MM-Embed §4.2).",
    "push": "Upload a saved model to the Hugging Face Hub, its model card rendered for the repository.",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlembed", description="Universal multimodal embeddings on the Hugging Face stack.")
    subparsers = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for name, help_text in SUBCOMMANDS.items():
        module = _module(name)
        module.add_parser(subparsers, name, help_text)
    return parser


def _module(name: str):
    return importlib.import_module(f"vlembed.cli.{name}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv:
        argv = ["train"]  # the built-in default run
    if argv[0] == "train":
        # train forwards unknown --flags to ContrastiveTrainingArguments
        args, extra = parser.parse_known_args(argv)
        args.extra = extra
    else:
        args = parser.parse_args(argv)
    return int(_module(args.command).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
