"""``vlembed push``: upload a saved vlembed model to the Hub, its model card rendered for the repository."""

from __future__ import annotations

import argparse
import sys

EPILOG = """\
The card is rendered again for the repository (its title and usage snippets name REPO_ID). The token
comes from --token, HF_TOKEN or `hf auth login`, and is never printed.

Example:
  vlembed push runs/default/best-model your-name/all-MiniLM-L6-v2-stdlib-code --private
"""


def add_parser(subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        name, help=help_text, description=help_text, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="Folder of a saved vlembed model (e.g. runs/default/best-model).")
    parser.add_argument("repo_id", help="Hub repository, your-name/model-name (created if missing).")
    parser.add_argument("--private", action="store_true", help="Create the repository private.")
    parser.add_argument("--commit-message", default="Upload vlembed embedding model", help="Commit message.")
    parser.add_argument("--revision", help="Branch to push to (default: main).")
    parser.add_argument("--create-pr", action="store_true", help="Open a pull request instead of committing.")
    parser.add_argument("--token", help="Hub token (default: HF_TOKEN or the saved login).")
    return parser


def run(args: argparse.Namespace) -> int:
    from vlembed import EmbeddingModel
    from vlembed.loading import is_vlembed_model

    try:
        if not is_vlembed_model(args.model, role="Model"):
            raise ValueError(f"'{args.model}' is not a saved vlembed model (its config.json has another model_type).")
    except (FileNotFoundError, ValueError) as error:
        print(f"vlembed push: error: {error}", file=sys.stderr)
        return 2
    model = EmbeddingModel.from_pretrained(args.model)
    commit = model.push_to_hub(
        args.repo_id, private=args.private or None, token=args.token, commit_message=args.commit_message,
        revision=args.revision, create_pr=args.create_pr,
    )
    print(f"Pushed {args.model} to {args.repo_id}: {commit.commit_url}")
    return 0
