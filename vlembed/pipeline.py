"""The main job: the papers' pipeline at small scale, compared row by row, offline.

Rows (each trained from the same backbone, each adding one idea to the previous):

1. zero-shot — the backbone as it is;
2. InfoNCE — in-batch negatives, τ = 0.02;
3. LLaVE — hardness-weighted InfoNCE, α = 9 (LLaVE eq. 5);
4. + ABC mined negatives — negatives mined with the InfoNCE model under ABC's threshold rule
   (ε = 0.95, pool 100; ABC §3.2, §4.1: the mining model is trained with in-batch negatives only);
5. + GradCache — the same at a 4× larger batch, embedded in mini-batches (more negatives per query at
   the memory of the small batch).

Each row reports P@1, R@10, nDCG@10 on the held-out test split and the LLaVE Table 1 similarities
(positive, hard negative, easy negative). The row with the best dev-split P@1 is saved as a
Hub-ready model with its card. ``recipe=NAME`` compares zero-shot with one paper recipe instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_BACKBONE = "all-MiniLM-L6-v2"  # packaged: see vlembed.loading


@dataclass
class PipelineConfig:
    backbone: str = DEFAULT_BACKBONE
    data: str = "stdlib-code"
    recipe: str | None = None
    output_dir: str = "runs/default"
    overwrite: bool = False
    quick: bool = False
    max_steps: int | None = None
    train_samples: int = 1536
    dev_samples: int = 200
    test_samples: int = 500
    batch_size: int = 32
    gradcache_batch_size: int = 64
    mini_batch_size: int = 32
    mined_negatives: int = 1
    epochs: float = 1.0
    learning_rate: float = 1e-4
    max_length: int = 96
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
            self.mined_negatives = min(self.mined_negatives, 1)
            self.max_length = min(self.max_length, 64)


@dataclass
class Row:
    name: str
    training: dict[str, Any] | None  # None: no training (zero-shot)
    mined_negatives: bool = False


def default_rows(config: PipelineConfig) -> list[Row]:
    if config.recipe is not None:
        from vlembed.trainer.recipes import get_recipe

        return [Row("zero-shot", None), Row(config.recipe, dict(get_recipe(config.recipe)["training"]))]
    mined = {"loss": "llave", "num_negatives": config.mined_negatives}
    return [
        Row("zero-shot", None),
        Row("InfoNCE", {"loss": "infonce"}),
        Row("LLaVE (α = 9)", {"loss": "llave"}),
        Row("+ ABC mined negatives", mined, mined_negatives=True),
        Row(
            f"+ GradCache (batch {config.gradcache_batch_size})",
            {**mined, "per_device_train_batch_size": config.gradcache_batch_size, "mini_batch_size": config.mini_batch_size},
            mined_negatives=True,
        ),
    ]


def check_output_dir(config: PipelineConfig) -> None:
    """Refuse to overwrite an earlier run unless asked, before any work."""
    out = Path(config.output_dir)
    if not out.exists() or not any(out.iterdir()):
        return
    if config.overwrite:
        return
    model_config = out / "best-model" / "config.json"
    holds = "a vlembed model (best-model/)" if model_config.is_file() else f"{len(list(out.iterdir()))} entries"
    raise FileExistsError(f"Output folder '{out}' already holds {holds}; pass --overwrite to replace it, or choose --output-dir.")


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


def run_pipeline(config: PipelineConfig) -> dict[str, Any]:
    """Run every row; write results.json, results.md, the similarity histograms and best-model/."""
    import datasets
    import torch

    from vlembed import ContrastiveTrainer, ContrastiveTrainingArguments, EmbeddingModel
    from vlembed.evaluation import plot_similarity_histogram, write_text_atomic
    from vlembed.trainer.mining import mine_hard_negatives

    from vlembed.loading import resolve_backbone

    check_output_dir(config)
    backbone = resolve_backbone(config.backbone)
    datasets.disable_progress_bars()  # per-row dataset bookkeeping would drown the training bars
    splits = load_splits(config)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows, results, trained_models = default_rows(config), [], {}
    best = None
    mined_train = None
    for index, row in enumerate(rows, 1):
        print(f"\n[{index}/{len(rows)}] {row.name}", flush=True)
        model = EmbeddingModel.from_backbone(backbone, pooling="mean", max_length=config.max_length)
        if row.training is not None:
            train = splits["train"]
            if row.mined_negatives:
                if mined_train is None:
                    miner = trained_models.get("InfoNCE", model)
                    print("  mining negatives (ABC §3.2: ε = 0.95, pool 100) with the InfoNCE model", flush=True)
                    mined_train = _mine(mine_hard_negatives, miner, train, config, out)
                train = mined_train
            settings = {
                "output_dir": str(out / "checkpoints" / f"row{index}"),
                "per_device_train_batch_size": config.batch_size,
                "num_train_epochs": config.epochs,
                "max_steps": config.max_steps or -1,
                "learning_rate": config.learning_rate,
                "warmup_steps": 0.1,
                "batch_sampler": "no_duplicates",
                "logging_steps": 5,
                "save_strategy": "no",
                "eval_strategy": "no",
                "report_to": "none",
                "use_cpu": not torch.cuda.is_available(),
                "seed": config.seed,
                **row.training,
                **config.training_overrides,
            }
            trainer = ContrastiveTrainer(model=model, args=ContrastiveTrainingArguments(**settings), train_dataset=train)
            trainer.train()
            trained_models[row.name] = model
        dev_metrics, _ = evaluate(model, splits["dev"])
        test_metrics, embeddings = evaluate(model, splits["test"])
        result = {"row": row.name, "test": test_metrics, "dev_precision@1": dev_metrics["precision@1"],
                  "training": model.config.training_summary}
        results.append(result)
        print(f"  test P@1 {test_metrics['precision@1']:.4f}  R@10 {test_metrics['recall@10']:.4f}  "
              f"nDCG@10 {test_metrics['ndcg@10']:.4f}  (dev P@1 {dev_metrics['precision@1']:.4f})", flush=True)
        if index == 1 or best is None or dev_metrics["precision@1"] > best[0]:
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
        "rows": results,
    }
    import json

    write_text_atomic(out / "results.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    write_text_atomic(out / "results.md", markdown(report))
    _save_best(best_model, best_name, best_test, config, out)
    return report


def _mine(mine_hard_negatives, model, train, config: PipelineConfig, out: Path):
    mined = mine_hard_negatives(
        train, model, strategy="threshold", epsilon=0.95, pool_size=100, num_negatives=config.mined_negatives,
        seed=config.seed, cache_dir=str(out / "mining-cache"), batch_size=64,
    )
    # A query whose threshold pool is smaller than the count cannot give a fixed-size row: drop it.
    complete = mined.filter(lambda row: len(row["negatives"]) >= config.mined_negatives)
    print(f"  {len(complete)} of {len(mined)} rows have {config.mined_negatives} mined negatives", flush=True)
    return complete


def _save_best(model, row_name: str, test_metrics: dict[str, float], config: PipelineConfig, out: Path) -> None:
    """The best row's model as a Hub-ready folder, its card filled from this run's results."""
    model.config.evaluation_results = [{
        "task": "information-retrieval",
        "dataset": "stdlib-code-search" if config.data == "stdlib-code" else Path(config.data).stem,
        "split": "test",
        "metrics": {name: test_metrics[name] for name in ("precision@1", "recall@10", "ndcg@10", "mrr@10")},
    }]
    summary = dict(model.config.training_summary or {})
    summary["recipe"] = row_name
    summary["datasets"] = None
    model.config.training_summary = {key: value for key, value in summary.items() if value is not None}
    target = out / "best-model"
    staging = Path(tempfile.mkdtemp(dir=out, prefix=".best-model."))
    model.save_pretrained(staging)
    if target.exists():
        shutil.rmtree(target)
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
    defaults = PipelineConfig()
    parts = ["vlembed train"]
    for name in ("backbone", "data", "recipe", "output_dir", "max_steps"):
        value = getattr(config, name)
        if value != getattr(defaults, name):
            parts.append(f"--{name.replace('_', '-')} {value}")
    if config.quick:
        parts.append("--quick")
    return " ".join(parts)
