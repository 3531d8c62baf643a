"""The contrastive loss's cost against plain cross-entropy and sentence-transformers' MNRL.

    python benchmarks/loss.py [--repeats 15] [--threads 1]

Forward + backward on random float32 embeddings, for an in-batch batch (N = M = 1024) and a batch
with three explicit negatives per query (N = 512, M = 2048), d = 1024:

- ``cross_entropy``: ``F.cross_entropy(F.normalize(q) @ F.normalize(c).T / τ, labels)``, the plain
  InfoNCE every implementation reduces to — the reference for the ratios;
- ``ours α=0`` / ``ours α=9``: `ContrastiveLoss` without and with LLaVE's hardness term (τ = 0.02);
- ``ST α=0`` / ``ST α=9``: ``MultipleNegativesRankingLoss(scale=50)`` without hardness and with
  ``hardness_mode="all_negatives", hardness_strength=9`` (negatives passed as its columns).

Configurations are timed in turn, ``--repeats`` rounds after a warm-up round, and the median is
shown, so that drift of a shared machine hits them alike. It also prints how far our loss and
gradients are from ST's on the same embeddings: one-directional with α = 0 and α = 9 (the same
loss), and symmetric (``directions=("query_to_doc", "doc_to_query")``): equal at α = 0, different
by design at α = 9, since ST's doc→query term gets no hardness weighting and LLaVE's code weights
both. One thread by default: on a shared 2-core machine two OpenMP threads contending with other
processes make timings erratic.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from vlembed.trainer.losses import ContrastiveLoss

TEMPERATURE, ALPHA, DIM = 0.02, 9.0, 1024


def ours(alpha: float, symmetric: bool = False) -> ContrastiveLoss:
    return ContrastiveLoss(temperature=TEMPERATURE, hardness_alpha=alpha, symmetric=symmetric)


def sentence_transformers(num_queries: int, alpha: float, symmetric: bool = False):
    """ST's MNRL on (queries, candidates), the candidates split into its columns (positives, negatives...)."""
    settings = dict(directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction") if symmetric else {}
    if alpha:
        settings.update(hardness_mode="all_negatives", hardness_strength=alpha)
    loss = MultipleNegativesRankingLoss(None, scale=1 / TEMPERATURE, **settings)
    return lambda q, c: loss.compute_loss_from_embeddings([q, *c.split(num_queries)], None)


def losses(num_queries: int) -> dict:
    """Name -> function of (queries, candidates) giving the loss."""
    labels = torch.arange(num_queries)
    return {
        "cross_entropy": lambda q, c: F.cross_entropy(F.normalize(q, dim=-1) @ F.normalize(c, dim=-1).T / TEMPERATURE, labels),
        "ours α=0": ours(0.0),
        "ours α=9": ours(ALPHA),
        "ST α=0": sentence_transformers(num_queries, 0.0),
        "ST α=9": sentence_transformers(num_queries, ALPHA),
    }


def print_differences_to_sentence_transformers(queries, candidates) -> None:
    """Loss and largest gradient difference, ours vs ST's MNRL, on the same embeddings."""
    print("difference to ST's MultipleNegativesRankingLoss on the same embeddings:")
    print(f"  {'setting':<34} {'ours':>9} {'ST':>9} {'|Δ loss|':>9} {'max |Δ grad|':>13} {'largest grad':>13}")
    for symmetric in (False, True):
        for alpha in (0.0, ALPHA):
            ours_loss = ours(alpha, symmetric)(queries, candidates)
            st_loss = sentence_transformers(len(queries), alpha, symmetric)(queries, candidates)
            ours_grads = torch.autograd.grad(ours_loss, [queries, candidates])
            st_grads = torch.autograd.grad(st_loss, [queries, candidates])
            gradient_difference = max((a - b).abs().max().item() for a, b in zip(ours_grads, st_grads))
            gradient_scale = max(g.abs().max().item() for g in st_grads)
            setting = f"{'symmetric' if symmetric else 'query→candidate'} α={alpha:g}"
            if symmetric and alpha:
                setting += " (differs by design)"
            print(f"  {setting:<34} {ours_loss.item():>9.4f} {st_loss.item():>9.4f} "
                  f"{abs(ours_loss.item() - st_loss.item()):>9.2e} {gradient_difference:>13.2e} {gradient_scale:>13.2e}")


def time_step(loss_fn, queries, candidates) -> float:
    queries.grad = candidates.grad = None
    start = time.perf_counter()
    loss_fn(queries, candidates).backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)

    for num_queries, num_candidates in ((1024, 1024), (512, 2048)):
        queries = torch.randn(num_queries, DIM, generator=generator).requires_grad_()
        candidates = torch.randn(num_candidates, DIM, generator=generator).requires_grad_()
        configurations = losses(num_queries)
        times: dict[str, list[float]] = {name: [] for name in configurations}
        for round_index in range(args.repeats + 1):
            for name, loss_fn in configurations.items():
                seconds = time_step(loss_fn, queries, candidates)
                if round_index:  # round 0 warms up
                    times[name].append(seconds)
        medians = {name: statistics.median(values) for name, values in times.items()}
        reference = medians["cross_entropy"]
        print(f"\nN = {num_queries} queries, M = {num_candidates} candidates, d = {DIM}, forward + backward, "
              f"median of {args.repeats}, {args.threads} thread(s)")
        print(f"{'loss':<14} {'time':>9} {'vs cross_entropy':>17}")
        for name, seconds in medians.items():
            print(f"{name:<14} {seconds * 1e3:>7.1f}ms {seconds / reference:>16.3f}x")
        print_differences_to_sentence_transformers(queries, candidates)
    print("\ngoal: ours α=0 <= 1.05x cross_entropy")


if __name__ == "__main__":
    main()
