"""The main job: the papers' pipeline at small scale, compared row by row, offline.

Rows (each trained from the same backbone, each adding one idea to the previous):

1. zero-shot — the backbone as it is;
2. InfoNCE — in-batch negatives, τ = 0.02;
3. LLaVE — hardness-weighted InfoNCE, α = 9 (LLaVE eq. 5);
4. + ABC mined negatives — negatives mined with the InfoNCE model under ABC's threshold rule
   (ε = 0.95, pool 100; ABC §3.2, §4.1: the mining model is trained with in-batch negatives only);
5. + GradCache — the same at a 4× larger batch, embedded in mini-batches (more negatives per query at
   the memory of the small batch).

These rows use mean pooling, all-MiniLM-L6-v2's own (its sentence-transformers Pooling module), so
that zero-shot is the model as published. ``recipe=NAME`` compares zero-shot with one paper recipe
instead; both rows are built with the recipe's model settings (pooling, attention, head, templates),
so zero-shot is the untrained starting point of that recipe. A recipe that trains on mined negatives
(abc-pretrain: threshold, mm-embed: modality-aware) mines them with the zero-shot model, unless the
data has a ``negatives`` column.

Each row reports P@1, R@10, nDCG@10 on the held-out test split and the LLaVE Table 1 similarities
(positive, hard negative, easy negative). The row with the best dev-split P@1 is saved as a
Hub-ready model with its card.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_BACKBONE = "all-MiniLM-L6-v2"  # packaged: see vlembed.loading
# Mean pooling: all-MiniLM-L6-v2's own (see the module docstring); 96 tokens keep the CPU run short.
DEFAULT_MODEL = {"pooling": "mean", "max_length": 96}
# Which mining gives a recipe's num_negatives (ABC §3.2; MM-Embed §4.1.1), and the papers' settings.
RECIPE_MINING = {"abc-pretrain": "threshold", "mm-embed": "modality"}
MINING_SETTINGS = {"threshold": {"epsilon": 0.95, "pool_size": 100}, "modality": {"top_k": 50, "k_prime": 45}}
# What a run writes into its output folder; --overwrite removes exactly these before starting.
RUN_OUTPUTS = ("mining-cache", "checkpoints", "best-model", "results.json", "results.md", "similarity_zero_shot.png", "similarity_best.png")


@dataclass
class PipelineConfig:
    backbone: str = DEFAULT_BACKBONE
    data: str = "stdlib-code"
    recipe: str | None = None
    output_dir: str = "runs/default"
    model_name: str | None = None  # default: backbone-data[-recipe]
    overwrite: bool = False
    quick: bool = False
    max_steps: int | None = None
    train_samples: int = 1024
    dev_samples: int = 200
    test_samples: int = 500
    batch_size: int = 32
    gradcache_batch_size: int = 64
    mini_batch_size: int = 32
    # None: 1 for the default rows, the recipe's own count (ABC 7) with --recipe.
    mined_negatives: int | None = None
    # None: 1 epoch at 1e-4 and 96 tokens for the default rows, the recipe's own values with --recipe.
    epochs: float | None = None
    learning_rate: float | None = None
    max_length: int | None = None
    seed: int = 0
    training_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.quick:  # about 3 minutes on 2 CPU cores
            self.train_samples = min(self.train_samples, 256)
            self.dev_samples = min(self.dev_samples, 100)
            self.test_samples = min(self.test_samples, 200)
            self.batch_size = min(self.batch_size, 16)
            self.gradcache_batch_size = min(self.gradcache_batch_size, 32)
            self.mini_batch_size = min(self.mini_batch_size, 16)
            self.max_length = min(self.max_length or 64, 64)
        if self.model_name is not None and not re.fullmatch(r"[\w][\w.-]{0,95}", self.model_name):
            raise ValueError(f"--model-name {self.model_name!r}: a Hub repository name takes letters, digits, '-', '_' and '.' (at most 96).")

    @property
    def card_name(self) -> str:
        """The saved model's name (its card's title; the repository name the push command suggests)."""
        if self.model_name:
            return self.model_name
        parts = [Path(self.backbone.rstrip("/")).name, Path(self.data).stem, self.recipe]
        return re.sub(r"[^\w.-]+", "-", "-".join(part for part in parts if part))[:96]


@dataclass
class Row:
    name: str
    model: dict[str, Any]  # EmbeddingModel.from_backbone settings
    training: dict[str, Any] | None = None  # ContrastiveTrainingArguments settings; None: no training (zero-shot)
    mining: str | None = None  # "threshold" or "modality": train on negatives mined that way


def default_rows(config: PipelineConfig, backbone_family) -> list[Row]:
    if config.recipe is not None:
        return recipe_rows(config, backbone_family)
    mined = {"loss": "llave", "num_negatives": config.mined_negatives or 1}
    return [
        Row("zero-shot", DEFAULT_MODEL),
        Row("InfoNCE", DEFAULT_MODEL, {"loss": "infonce"}),
        Row("LLaVE (α = 9)", DEFAULT_MODEL, {"loss": "llave"}),
        Row("+ ABC mined negatives", DEFAULT_MODEL, mined, mining="threshold"),
        Row(
            f"+ GradCache (batch {config.gradcache_batch_size})",
            DEFAULT_MODEL,
            {**mined, "per_device_train_batch_size": config.gradcache_batch_size, "mini_batch_size": config.mini_batch_size},
            mining="threshold",
        ),
    ]


def recipe_rows(config: PipelineConfig, backbone_family) -> list[Row]:
    """Zero-shot and the recipe, both built with the recipe's model settings."""
    from vlembed.trainer.recipes import get_recipe

    recipe = get_recipe(config.recipe)
    training = dict(recipe["training"])
    if backbone_family.vision_tower is None and "vision_tower" in training.get("lora_targets", ()):
        # A text backbone has only its language model to put the recipe's LoRA on.
        training["lora_targets"] = [target for target in training["lora_targets"] if target != "vision_tower"]
    mining = RECIPE_MINING.get(config.recipe) if training.get("num_negatives") else None
    if mining == "threshold" and config.mined_negatives:
        training["num_negatives"] = config.mined_negatives
    return [Row("zero-shot", recipe["model"]), Row(config.recipe, recipe["model"], training, mining=mining)]


def check_output_dir(config: PipelineConfig) -> None:
    """Refuse a file, or an earlier run unless asked to replace it, before any work."""
    out = Path(config.output_dir)
    existing = next(path for path in (out, *out.parents) if path.exists())
    if not existing.is_dir():
        raise NotADirectoryError(f"--output-dir '{out}': '{existing}' is a file, not a folder.")
    if existing != out or not any(out.iterdir()) or config.overwrite:
        return
    model_config = out / "best-model" / "config.json"
    holds = "a vlembed model (best-model/)" if model_config.is_file() else f"{len(list(out.iterdir()))} entries"
    raise FileExistsError(f"Output folder '{out}' already holds {holds}; pass --overwrite to replace it, or choose --output-dir.")


def clear_previous_run(out: Path) -> None:
    """What an earlier run wrote (`RUN_OUTPUTS`, unfinished best-model copies), so none of it mixes with
    this run's outputs; other files in the folder stay."""
    for path in [out / name for name in RUN_OUTPUTS] + list(out.glob(".best-model.*")):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def load_splits(config: PipelineConfig):
    """Train, dev and test rows; a --data file is split 80/10/10 deterministically."""
    from vlembed.trainer.collator import check_columns
    from vlembed.trainer.launch import load_rows

    if config.data == "stdlib-code":
        from vlembed.data.stdlib_code import stdlib_code_dataset

        splits = stdlib_code_dataset()
    else:
        rows = load_rows(config.data)
        check_columns(rows.column_names)
        if len(rows) < 10:
            raise ValueError(f"--data '{config.data}' has {len(rows)} rows; at least 10 are needed to train and evaluate.")
        train_rest = rows.train_test_split(test_size=0.2, seed=config.seed)
        dev_test = train_rest["test"].train_test_split(test_size=0.5, seed=config.seed)
        splits = {"train": train_rest["train"], "dev": dev_test["train"], "test": dev_test["test"]}
    limits = {"train": config.train_samples, "dev": config.dev_samples, "test": config.test_samples}
    return {name: splits[name].shuffle(seed=config.seed).select(range(min(limit, len(splits[name])))) for name, limit in limits.items()}


def evaluate(model, rows, batch_size: int = 64) -> tuple[dict[str, float], Any]:
    """Queries against the split's positives: retrieval metrics, LLaVE similarities, and the embeddings."""
    from vlembed.evaluation import retrieval_metrics, similarity_gap
    from vlembed.trainer.collator import row_item

    queries = [row_item(row, "query") for row in rows]
    instructions = [row.get("query_instruction") for row in rows]
    documents = [row_item(row, "positive") for row in rows]
    query_embeddings = model.encode(queries, instructions if any(instructions) else None, task="query", batch_size=batch_size)
    document_embeddings = model.encode(documents, task="document", batch_size=batch_size)
    relevant = [{index} for index in range(len(rows))]
    metrics = retrieval_metrics(query_embeddings, document_embeddings, relevant, k_values=(1, 10))
    metrics.update(similarity_gap(query_embeddings, document_embeddings, relevant))
    return metrics, (query_embeddings, document_embeddings, relevant)


def row_model_settings(row: Row, config: PipelineConfig) -> dict[str, Any]:
    """`EmbeddingModel.from_backbone` settings of a row: its own (the recipe's), the token limit given on
    the command line winning."""
    return {**row.model, **({"max_length": config.max_length} if config.max_length else {})}


def training_settings(row: Row, index: int, config: PipelineConfig) -> dict[str, Any]:
    """ContrastiveTrainingArguments of a trained row: the pipeline's defaults, then the row's (recipe's)
    settings, then what the command line gave explicitly (--epochs without --max-steps replaces a
    recipe's step count)."""
    import torch

    explicit = {"learning_rate": config.learning_rate, "num_train_epochs": config.epochs, "max_steps": config.max_steps}
    if config.epochs is not None and config.max_steps is None:
        explicit["max_steps"] = -1
    return {
        "output_dir": str(Path(config.output_dir) / "checkpoints" / f"row{index}"),
        "per_device_train_batch_size": config.batch_size,
        "num_train_epochs": 1.0,
        "learning_rate": 1e-4,
        "warmup_steps": 0.1,
        "batch_sampler": "no_duplicates",
        "logging_steps": 5,
        "save_strategy": "no",
        "eval_strategy": "no",
        "report_to": "none",
        "use_cpu": not torch.cuda.is_available(),
        "seed": config.seed,
        **row.training,
        **{name: value for name, value in explicit.items() if value is not None},
        **config.training_overrides,
    }


def run_pipeline(config: PipelineConfig) -> dict[str, Any]:
    """Run every row; write results.json, results.md, the similarity histograms and best-model/."""
    import datasets
    from transformers import set_seed

    from vlembed import ContrastiveTrainer, ContrastiveTrainingArguments
    from vlembed.evaluation import plot_similarity_histogram, write_text_atomic
    from vlembed.loading import model_config_dict, load_embedding_model, resolve_backbone
    from vlembed.modeling import FAMILIES

    # Every check before any work: output folder, backbone, rows and their settings, data.
    check_output_dir(config)
    backbone = resolve_backbone(config.backbone)
    backbone_config = model_config_dict(backbone)
    backbone_type = backbone_config.get("backbone_model_config", backbone_config)["model_type"]  # a saved vlembed model: its backbone
    rows = default_rows(config, FAMILIES[backbone_type])
    row_arguments = {
        index: ContrastiveTrainingArguments(**training_settings(row, index, config))
        for index, row in enumerate(rows, 1) if row.training is not None
    }
    datasets.disable_progress_bars()  # per-row dataset bookkeeping would drown the training bars
    splits = load_splits(config)
    out = Path(config.output_dir)
    if config.overwrite:
        clear_previous_run(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results, mined_sets, mining_model = [], {}, None
    best = None
    for index, row in enumerate(rows, 1):
        print(f"\n[{index}/{len(rows)}] {row.name}", flush=True)
        set_seed(config.seed)  # every row starts from the same weights, a new head included
        model = load_embedding_model(backbone, **row_model_settings(row, config))
        if row.training is not None:
            train, mining_summary = splits["train"], {}
            if row.mining and "negatives" not in train.column_names:
                if row.mining not in mined_sets:
                    miner, miner_name = (mining_model, "InfoNCE") if mining_model is not None else (model, "zero-shot")
                    mined_sets[row.mining] = _mine(row, miner, miner_name, train, config, out)
                train, mining_summary = mined_sets[row.mining]
            args = row_arguments[index]
            trainer = ContrastiveTrainer(model=model, args=args, train_dataset=train)
            trainer.train()
            _remove_empty_folders(Path(args.output_dir))
            model.config.training_summary = {
                **(model.config.training_summary or {}),
                **mining_summary,
                **({"recipe": config.recipe} if config.recipe else {}),
                "pipeline_row": row.name,
            }
            if row.name == "InfoNCE":
                mining_model = model  # ABC §3.2 mines with a model trained on in-batch negatives only
        dev_metrics, _ = evaluate(model, splits["dev"])
        test_metrics, embeddings = evaluate(model, splits["test"])
        results.append({
            "row": row.name,
            "test": test_metrics,
            "dev_precision@1": dev_metrics["precision@1"],
            "model": {name: getattr(model.config, name) for name in ("pooling", "bidirectional", "head", "templates", "max_length")},
            "training": model.config.training_summary,
        })
        print(f"  test P@1 {test_metrics['precision@1']:.4f}  R@10 {test_metrics['recall@10']:.4f}  "
              f"nDCG@10 {test_metrics['ndcg@10']:.4f}  (dev P@1 {dev_metrics['precision@1']:.4f})", flush=True)
        if best is None or dev_metrics["precision@1"] > best[0]:
            best = (dev_metrics["precision@1"], row.name, model, embeddings, test_metrics)
        if index == 1:
            plot_similarity_histogram(*embeddings, out / "similarity_zero_shot.png", title=f"{row.name}: test split")
    _, best_name, best_model, best_embeddings, best_test = best
    plot_similarity_histogram(*best_embeddings, out / "similarity_best.png", title=f"{best_name}: test split")
    seconds = time.perf_counter() - started
    report = {
        "command": config_command(config),
        "date": time.strftime("%Y-%m-%d"),
        "seconds": round(seconds, 1),
        "data": {"source": config.data, **{name: len(split) for name, split in splits.items()}},
        "backbone": config.backbone,
        "best": best_name,
        "model_name": config.card_name,
        "rows": results,
    }
    write_text_atomic(out / "results.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    write_text_atomic(out / "results.md", markdown(report))
    _save_best(best_model, best_test, config, out)
    return report


def _mine(row: Row, model, model_name: str, train, config: PipelineConfig, out: Path):
    """The training rows with mined negatives, and what the model card records about the mining."""
    from vlembed.trainer.mining import mine_hard_negatives

    settings = MINING_SETTINGS[row.mining]
    described = ", ".join(f"{name} {value}" for name, value in settings.items())
    print(f"  mining negatives ({row.mining}: {described}) with the {model_name} model", flush=True)
    # The modality strategy keeps every candidate of both types; the collator draws one per row (MM-Embed §4.1.1).
    count = row.training["num_negatives"] if row.mining == "threshold" else None
    mined = mine_hard_negatives(
        train, model, strategy=row.mining, num_negatives=count, seed=config.seed, cache_dir=str(out / "mining-cache"),
        batch_size=64, **settings,
    )
    # A query whose threshold pool is smaller than the count cannot give a fixed-size row: drop it.
    needed = count or 1
    complete = mined.filter(lambda mined_row: len(mined_row["negatives"]) >= needed)
    print(f"  {len(complete)} of {len(mined)} rows have {needed} mined negatives", flush=True)
    if len(complete) == 0:
        raise ValueError(f"No training row has {needed} mined negatives: use more --train-samples or fewer --mined-negatives.")
    summary = {"negative_mining": row.mining, **{f"mining_{name}": value for name, value in settings.items()}, "mined_with": f"{model_name} model"}
    return complete, summary


def _remove_empty_folders(row_folder: Path) -> None:
    """The trainer makes its output folder even when it saves nothing there (save_strategy "no")."""
    for folder in (row_folder, row_folder.parent):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _save_best(model, test_metrics: dict[str, float], config: PipelineConfig, out: Path) -> None:
    """The best row's model as a Hub-ready folder, its card filled from this run's results."""
    model.config.evaluation_results = [{
        "task": "information-retrieval",
        "dataset": "stdlib-code-search" if config.data == "stdlib-code" else Path(config.data).stem,
        "split": "test",
        "metrics": {name: test_metrics[name] for name in ("precision@1", "recall@10", "ndcg@10", "mrr@10")},
    }]
    target = out / "best-model"
    staging = Path(tempfile.mkdtemp(dir=out, prefix=".best-model."))
    # The card's usage snippets load the final folder, not the staging one.
    model.save_pretrained(staging, model_card={"local_path": target, "model_name": config.card_name})
    os.replace(staging, target)


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Backbone {report['backbone']}, data {report['data']['source']} "
        f"(train {report['data']['train']}, dev {report['data']['dev']}, test {report['data']['test']} pairs), "
        f"{report['date']}, {report['seconds'] / 60:.1f} min. Command: `{report['command']}`",
        "",
        "| row | P@1 | R@10 | nDCG@10 | positive sim | hard-negative sim | easy-negative sim |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for result in report["rows"]:
        metrics = result["test"]
        marker = " **(best)**" if result["row"] == report["best"] else ""
        lines.append(
            f"| {result['row']}{marker} | {metrics['precision@1']:.4f} | {metrics['recall@10']:.4f} | {metrics['ndcg@10']:.4f} | "
            f"{metrics['positive_similarity']:.3f} | {metrics['hard_negative_similarity']:.3f} | {metrics['easy_negative_similarity']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def config_command(config: PipelineConfig) -> str:
    """The `vlembed train` command line that reproduces ``config``."""
    defaults = PipelineConfig(quick=config.quick)
    parts = ["vlembed train"]
    for setting in dataclasses.fields(PipelineConfig):
        value = getattr(config, setting.name)
        if setting.name in ("overwrite", "quick", "training_overrides") or value == getattr(defaults, setting.name):
            continue
        parts.append(f"--{setting.name.replace('_', '-')} {value}")
    if config.quick:
        parts.append("--quick")
    parts += [f"--{name} {value}" for name, value in config.training_overrides.items()]
    return " ".join(parts)
