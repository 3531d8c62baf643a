"""Training throughput: `ContrastiveTrainer` vs `SentenceTransformerTrainer` on the same MiniLM, data and batch.

Both train all-MiniLM-L6-v2 on the same docstring → code pairs (Python standard library) with the
same batch size, sequence limit, no-duplicates batches and the same loss: LLaVE's hardness-weighted
InfoNCE with α = 9 at τ = 0.02 (sentence-transformers: `MultipleNegativesRankingLoss(scale=50,
hardness_mode="in_batch_negatives", hardness_strength=9)`). Each trainer runs ``--warmup-steps``
steps, then is timed over ``--steps`` more; the runs alternate for ``--rounds`` rounds and the
medians are compared.

    python benchmarks/train.py [--steps 20] [--batch-size 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from transformers import TrainerCallback


class StepTimer(TrainerCallback):
    """Seconds of the steps after the first ``warmup`` (model loading and the first step excluded)."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.seconds = warmup, None, None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self.start = time.perf_counter()
        elif state.global_step == state.max_steps:
            self.seconds = time.perf_counter() - self.start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup-steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import datasets
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from vlembed import ContrastiveTrainer, ContrastiveTrainingArguments, EmbeddingModel
    from vlembed.data.stdlib_code import stdlib_code_dataset
    from vlembed.testing import minilm_path

    datasets.disable_progress_bars()
    total_steps = args.warmup_steps + args.steps
    pairs = stdlib_code_dataset()["train"].shuffle(seed=0).select(range(total_steps * args.batch_size))
    common = dict(
        per_device_train_batch_size=args.batch_size, max_steps=total_steps, learning_rate=2e-5, report_to="none",
        use_cpu=True, save_strategy="no", logging_steps=1000, disable_tqdm=True, seed=0,
    )

    def run_vlembed(output_dir: str) -> float:
        model = EmbeddingModel.from_backbone(minilm_path(), pooling="mean", max_length=args.max_length)
        timer = StepTimer(args.warmup_steps)
        training_args = ContrastiveTrainingArguments(output_dir=output_dir, loss="llave", batch_sampler="no_duplicates", **common)
        ContrastiveTrainer(model=model, args=training_args, train_dataset=pairs, callbacks=[timer]).train()
        return timer.seconds

    def run_sentence_transformers(output_dir: str) -> float:
        model = SentenceTransformer(minilm_path(), device="cpu")
        model.max_seq_length = args.max_length
        loss = MultipleNegativesRankingLoss(model, scale=50.0, hardness_mode="in_batch_negatives", hardness_strength=9.0)
        timer = StepTimer(args.warmup_steps)
        training_args = SentenceTransformerTrainingArguments(
            output_dir=output_dir, batch_sampler=BatchSamplers.NO_DUPLICATES, **common
        )
        trainer = SentenceTransformerTrainer(
            model=model, args=training_args, train_dataset=pairs.select_columns(["query", "positive"]), loss=loss,
            callbacks=[timer],
        )
        trainer.train()
        return timer.seconds

    runs = {"vlembed ContrastiveTrainer": run_vlembed, "sentence-transformers Trainer + MNRL": run_sentence_transformers}
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    with tempfile.TemporaryDirectory() as scratch:
        for round_index in range(args.rounds):
            for name, run in runs.items():
                seconds[name].append(run(f"{scratch}/{round_index}-{len(seconds[name])}"))
    rate = {name: args.steps * args.batch_size / statistics.median(times) for name, times in seconds.items()}
    print(f"MiniLM, batch {args.batch_size}, max length {args.max_length}, {args.steps} timed steps, median of {args.rounds} rounds")
    print("| trainer | samples/s |\n|---|---|")
    for name, value in rate.items():
        print(f"| {name} | {value:.1f} |")
    ours, theirs = rate["vlembed ContrastiveTrainer"], rate["sentence-transformers Trainer + MNRL"]
    print(f"vlembed / sentence-transformers: {ours / theirs:.3f}x (goal >= 1.0)")


if __name__ == "__main__":
    main()
