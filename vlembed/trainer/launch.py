"""One training run from command-line arguments: what ``examples/train.py`` and ``vlembed train
--backbone ...`` execute, under ``python``, ``torchrun`` or ``accelerate launch``.

Three argument groups, parsed with `transformers.HfArgumentParser`: `ModelArguments`,
`DataArguments` and `ContrastiveTrainingArguments`. ``--recipe`` (llave, abc-pretrain, abc-instruct,
mm-embed) sets the paper's defaults first; any flag given on the command line wins.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .recipes import RECIPES, get_recipe


@dataclass
class ModelArguments:
    backbone: str = field(default="all-MiniLM-L6-v2", metadata={"help": "Hub id or folder of the backbone, or a saved vlembed model; all-MiniLM-L6-v2 = the packaged weights."})
    recipe: str | None = field(default=None, metadata={"help": f"Paper recipe: {', '.join(RECIPES)}."})
    pooling: str = field(default="mean", metadata={"help": "last, mean, eos or cls."})
    bidirectional: bool = field(default=False, metadata={"help": "Bidirectional attention (ABC)."})
    head: str | None = field(default=None, metadata={"help": "None, linear or residual_mlp (ABC eq. 2)."})
    query_template: str | None = field(default=None, metadata={"help": "Template name or string for queries."})
    document_template: str | None = field(default=None, metadata={"help": "Template name or string for documents."})
    max_length: int | None = field(default=None, metadata={"help": "Token limit of text-only inputs."})
    merge_adapters_at_end: bool = field(default=False, metadata={"help": "Merge LoRA into the weights before saving (ABC after stage 1)."})


@dataclass
class DataArguments:
    train_data: str = field(default="stdlib-code", metadata={"help": "Training rows: a .jsonl/.json/.csv/.parquet file, a datasets folder, or stdlib-code (built-in)."})
    eval_data: str | None = field(default=None, metadata={"help": "Evaluation rows (same formats); for stdlib-code, its dev split by default; none = no evaluation."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use the first N evaluation rows."})
    mix_data: str | None = field(default=None, metadata={"help": "MM-Embed §4.1.2: a second set (e.g. text-to-text) mixed in with interleave_datasets."})
    mix_probability: float = field(default=0.5, metadata={"help": "Share of rows drawn from --mix_data."})


def load_rows(path: str, split: str = "train"):
    """Training rows from a file, a `save_to_disk` folder, or the built-in ``stdlib-code`` set."""
    from datasets import DatasetDict, load_dataset, load_from_disk

    if path == "stdlib-code":
        from vlembed.data.stdlib_code import stdlib_code_dataset

        return stdlib_code_dataset()[split]
    location = Path(path)
    if location.is_dir():
        rows = load_from_disk(str(location))
        return rows[split] if isinstance(rows, DatasetDict) else rows
    if not location.is_file():
        raise FileNotFoundError(f"Data file not found: '{path}'.")
    kind = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}.get(location.suffix)
    if kind is None:
        raise ValueError(f"Cannot read '{path}': use .jsonl, .json, .csv, .parquet or a datasets folder.")
    return load_dataset(kind, data_files=str(location), split="train")


def mix(rows, other, probability: float, seed: int):
    """MM-Embed's continual stage: draw rows from ``other`` with ``probability`` (interleave_datasets)."""
    from datasets import interleave_datasets

    shared = [name for name in rows.column_names if name in other.column_names]
    return interleave_datasets(
        [rows.select_columns(shared), other.select_columns(shared)],
        probabilities=[1 - probability, probability],
        seed=seed,
        stopping_strategy="first_exhausted",
    )


def build_model(model_args: ModelArguments):
    """The backbone wrapped with the model arguments, or a saved vlembed model to continue (stage 2, curriculum)."""
    from vlembed.loading import load_embedding_model

    templates = {
        side: template
        for side, template in (("query", model_args.query_template), ("document", model_args.document_template))
        if template is not None
    }
    return load_embedding_model(
        model_args.backbone, device="cpu", pooling=model_args.pooling, bidirectional=model_args.bidirectional,
        head=model_args.head, templates=templates or None, max_length=model_args.max_length,
    )


def parse_arguments(argv: list[str] | None = None):
    """Parse the three groups, with the ``--recipe`` defaults applied before the command line."""
    from transformers import HfArgumentParser

    from .trainer import ContrastiveTrainingArguments

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = HfArgumentParser((ModelArguments, DataArguments, ContrastiveTrainingArguments))
    recipe_name = _flag_value(argv, "--recipe")
    if recipe_name is not None:
        recipe = get_recipe(recipe_name)
        model_defaults = dict(recipe["model"])
        templates = model_defaults.pop("templates", {})
        model_defaults.update({f"{side}_template": name for side, name in templates.items()})
        parser.set_defaults(**model_defaults, **recipe["training"])
    if "--output_dir" not in argv and not any(arg.startswith("--output_dir=") for arg in argv):
        argv += ["--output_dir", os.path.join("runs", recipe_name or "train")]
    return parser.parse_args_into_dataclasses(args=argv)


def _flag_value(argv: list[str], flag: str) -> str | None:
    for index, arg in enumerate(argv):
        if arg == flag and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def run(model_args: ModelArguments, data_args: DataArguments, training_args) -> dict[str, Any]:
    """Train, evaluate and save; returns the final metrics."""
    from .trainer import ContrastiveTrainer

    train_rows = load_rows(data_args.train_data, "train")
    if data_args.max_train_samples:
        train_rows = train_rows.select(range(min(data_args.max_train_samples, len(train_rows))))
    if data_args.mix_data:
        train_rows = mix(train_rows, load_rows(data_args.mix_data, "train"), data_args.mix_probability, training_args.seed)
    eval_path = data_args.eval_data or ("stdlib-code" if data_args.train_data == "stdlib-code" else None)
    eval_rows = load_rows(eval_path, "dev") if eval_path and eval_path != "none" else None
    if eval_rows is not None and data_args.max_eval_samples:
        eval_rows = eval_rows.select(range(min(data_args.max_eval_samples, len(eval_rows))))
    model = build_model(model_args)
    trainer = ContrastiveTrainer(model=model, args=training_args, train_dataset=train_rows, eval_dataset=eval_rows)
    result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    metrics = dict(result.metrics)
    if eval_rows is not None:
        metrics.update(trainer.evaluate())
    if model_args.merge_adapters_at_end:
        model.merge_adapters()
    trainer.save_model(training_args.output_dir)
    trainer.save_state()  # trainer_state.json: the logged losses and metrics
    return metrics


def main(argv: list[str] | None = None) -> int:
    model_args, data_args, training_args = parse_arguments(argv)
    metrics = run(model_args, data_args, training_args)
    if training_args.process_index == 0:
        print({name: round(value, 4) if isinstance(value, float) else value for name, value in metrics.items()})
    return 0


__all__ = ["ModelArguments", "DataArguments", "parse_arguments", "run", "main", "load_rows", "mix", "build_model"]
