"""Run by tests/test_loss_distributed.py under ``torchrun --nproc_per_node 2`` (gloo, CPU):
``loss_ddp.py TEXT_MODEL_DIR VLM_MODEL_DIR OUT_JSON``.

Each rank holds 3 queries, their 3 positives and 2 explicit negatives per query (M = 9). For every
case, the all-reduced loss and the DDP-averaged gradients of a small BERT encoder (and of a learnable
temperature) are compared with one process holding the whole global batch (6 queries, 18
candidates), and the loss with naive float64 loops over LLaVE eq. 8. One GradCache case runs a tiny
Qwen2-VL whose queries and positives hold an image but whose last re-run mini-batch has none. Two
cases give the ranks inconsistent inputs (different N; a reward on rank 0 only), which must raise
ValueError on both ranks rather than hang. Rank 0 writes the results to OUT_JSON.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from vlembed import EmbeddingModel
from vlembed.trainer.gradcache import CachedContrastiveLoss
from vlembed.trainer.losses import ContrastiveLoss

QUERIES_PER_RANK, NEGATIVES_PER_QUERY, TEMPERATURE = 3, 2, 0.02
WORDS = "red green blue cat dog bird runs sleeps jumps over under the big small old new".split()


def sentence(seed: int) -> str:
    generator = torch.Generator().manual_seed(seed)
    return " ".join(WORDS[i] for i in torch.randint(len(WORDS), (6,), generator=generator).tolist())


class ContrastiveStep(nn.Module):
    """Model and loss in one module, so that DDP also averages the temperature's gradient."""

    def __init__(self, model: nn.Module, loss_fn: ContrastiveLoss):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, query_batch, candidate_batch, reward=None):
        queries = self.model(**query_batch).embeddings
        candidates = self.model(**candidate_batch).embeddings
        return self.loss_fn(queries, candidates, reward=reward)


def image(seed: int, size: tuple[int, int]) -> Image.Image:
    width, height = size
    return Image.fromarray(np.random.RandomState(seed).randint(0, 255, (height, width, 3), dtype=np.uint8))


def global_data(world_size: int, with_images: bool = False):
    """Queries, positives and negatives of the global batch; ``with_images``: every rank's first query
    and positive hold an image (of different sizes), its negatives none."""
    count = QUERIES_PER_RANK * world_size
    queries = [sentence(i) for i in range(count)]
    positives = [sentence(1000 + i) for i in range(count)]
    negatives = [[sentence(2000 + 10 * i + k) for k in range(NEGATIVES_PER_QUERY)] for i in range(count)]
    if with_images:
        for first in range(0, count, QUERIES_PER_RANK):
            queries[first] = {"text": queries[first], "image": image(first, (56, 56))}
            positives[first] = {"text": positives[first], "image": image(100 + first, (64, 48))}
    return queries, positives, negatives


def rank_candidates(positives, negatives, rank: int) -> list[str]:
    rows = range(rank * QUERIES_PER_RANK, (rank + 1) * QUERIES_PER_RANK)
    return [positives[i] for i in rows] + [n for i in rows for n in negatives[i]]


def global_column(rank: int, local_column: int, world_size: int) -> int:
    """Where rank's local candidate sits in the single-process layout [all positives, all negatives]."""
    if local_column < QUERIES_PER_RANK:
        return rank * QUERIES_PER_RANK + local_column
    per_rank_negatives = QUERIES_PER_RANK * NEGATIVES_PER_QUERY
    return QUERIES_PER_RANK * world_size + rank * per_rank_negatives + local_column - QUERIES_PER_RANK


def naive_eq8(queries: torch.Tensor, candidates: torch.Tensor, positive_of, tau: float, alpha: float) -> float:
    """LLaVE eq. 8 in float64 loops over the global batch: each query against all devices' candidates."""
    q = torch.nn.functional.normalize(queries.double(), dim=-1).tolist()
    c = torch.nn.functional.normalize(candidates.double(), dim=-1).tolist()
    total = 0.0
    for i in range(len(q)):
        s = [sum(a * b for a, b in zip(q[i], c[j])) for j in range(len(c))]
        p = positive_of(i)
        denominator = math.exp(s[p] / tau) + sum(math.exp(s[j] / tau + alpha * s[j]) for j in range(len(c)) if j != p)
        total += -(s[p] / tau - math.log(denominator))
    return total / len(q)


def max_gradient_difference(distributed: nn.Module, reference: nn.Module) -> float:
    worst = 0.0
    for (name, got), (_, expected) in zip(distributed.named_parameters(), reference.named_parameters()):
        if expected.grad is None:
            assert got.grad is None or not got.grad.any(), name
            continue
        worst = max(worst, (got.grad - expected.grad).abs().max().item())
    return worst


def fresh_model(model_dir: str) -> nn.Module:
    torch.manual_seed(0)
    model = EmbeddingModel.from_backbone(model_dir, pooling="mean")
    return model.eval()  # no dropout: the single-process reference must see the same function


def batches(model_dir: str, rank: int, world_size: int, with_images: bool = False) -> dict[str, dict]:
    """This rank's and the global query and candidate batches."""
    queries, positives, negatives = global_data(world_size, with_images)
    processor = fresh_model(model_dir).processor
    local_rows = slice(rank * QUERIES_PER_RANK, (rank + 1) * QUERIES_PER_RANK)
    return {
        "local_queries": dict(processor(queries[local_rows])),
        "local_candidates": dict(processor(rank_candidates(positives, negatives, rank))),
        "global_queries": dict(processor(queries)),
        "global_candidates": dict(processor(positives + [n for row in negatives for n in row])),
    }


def inconsistent_inputs_raise_on_every_rank(rank: int) -> dict[str, list[str]]:
    """Per case, every rank's error: a ValueError on all ranks, not a hang in a collective."""
    generator = torch.Generator().manual_seed(rank)
    queries, candidates = torch.randn(3, 8, generator=generator), torch.randn(9, 8, generator=generator)
    cases = {
        "different_query_counts": lambda: ContrastiveLoss(gather_across_devices=True)(queries[: 3 - rank], candidates),
        "reward_on_one_rank_only": lambda: ContrastiveLoss(gather_across_devices=True, symmetric=True)(
            queries, candidates, reward=torch.zeros(3, 9) if rank == 0 else None
        ),
    }
    errors = {}
    for name, call in cases.items():
        try:
            call()
            error = "no error"
        except ValueError as exception:
            error = f"ValueError: {exception}"
        errors[name] = [None] * dist.get_world_size()
        dist.all_gather_object(errors[name], error)
    return errors


def main(text_model_dir: str, vlm_model_dir: str, out_path: str) -> None:
    dist.init_process_group("gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    model_dirs = {"text": text_model_dir, "vlm": vlm_model_dir}
    data = {"text": batches(text_model_dir, rank, world_size), "vlm": batches(vlm_model_dir, rank, world_size, True)}
    candidates_per_rank = QUERIES_PER_RANK * (1 + NEGATIVES_PER_QUERY)
    num_queries, num_candidates = QUERIES_PER_RANK * world_size, candidates_per_rank * world_size
    local_rows = slice(rank * QUERIES_PER_RANK, (rank + 1) * QUERIES_PER_RANK)

    # One reward over the global layout; each rank takes its part in the layout a case asks for.
    global_reward = torch.rand((num_queries, num_candidates), generator=torch.Generator().manual_seed(5)) * 2
    columns = [[global_column(r, j, world_size) for j in range(candidates_per_rank)] for r in range(world_size)]
    own_block = torch.zeros_like(global_reward)
    for r in range(world_size):
        rows = slice(r * QUERIES_PER_RANK, (r + 1) * QUERIES_PER_RANK)
        own_block[rows, columns[r]] = global_reward[rows, columns[r]]
    local_rewards = {
        "local": global_reward[local_rows][:, columns[rank]],
        "gathered": global_reward[local_rows][:, [c for r in range(world_size) for c in columns[r]]],
    }
    reference_rewards = {"local": own_block, "gathered": global_reward}

    cases = {
        "llave_eq8": dict(loss=dict(temperature=TEMPERATURE, hardness_alpha=9.0), reward=None),
        "symmetric_learnable_tau_local_reward": dict(
            loss=dict(temperature=0.07, learnable_temperature=True, hardness_alpha=9.0, symmetric=True), reward="local"
        ),
        "symmetric_gathered_reward": dict(loss=dict(temperature=TEMPERATURE, symmetric=True), reward="gathered"),
        "gradcache_symmetric_local_reward": dict(
            loss=dict(temperature=TEMPERATURE, hardness_alpha=9.0, symmetric=True), reward="local", mini_batch_size=2
        ),
        # Mini-batches of 2 over 9 candidates: the last re-run (a negative) has no image, so the vision
        # tower is unused in the one synchronised backward (see CachedContrastiveLoss on DDP).
        "gradcache_qwen2_vl_last_mini_batch_without_image": dict(
            loss=dict(temperature=TEMPERATURE, hardness_alpha=9.0), reward=None, mini_batch_size=2, model="vlm"
        ),
    }
    results = {}
    for name, case in cases.items():
        model_kind = case.get("model", "text")
        batch = data[model_kind]
        reward = None if case["reward"] is None else local_rewards[case["reward"]]
        distributed_loss_fn = ContrastiveLoss(**case["loss"], gather_across_devices=True)
        if "mini_batch_size" in case:
            distributed = DistributedDataParallel(fresh_model(model_dirs[model_kind]), find_unused_parameters=True)
            cached = CachedContrastiveLoss(distributed_loss_fn, case["mini_batch_size"])
            loss = cached(distributed, batch["local_queries"], batch["local_candidates"], reward=reward)
        else:
            step = ContrastiveStep(fresh_model(model_dirs[model_kind]), distributed_loss_fn)
            distributed = DistributedDataParallel(step, find_unused_parameters=True)
            loss = distributed(batch["local_queries"], batch["local_candidates"], reward=reward)
        loss.backward()
        mean_loss = loss.detach().clone()
        dist.all_reduce(mean_loss)
        mean_loss /= world_size

        reference_loss_fn = ContrastiveLoss(**case["loss"], gather_across_devices=False)
        reference = ContrastiveStep(fresh_model(model_dirs[model_kind]), reference_loss_fn)
        reference_reward = None if case["reward"] is None else reference_rewards[case["reward"]]
        reference_loss = reference(batch["global_queries"], batch["global_candidates"], reward=reference_reward)
        reference_loss.backward()

        module = distributed.module
        results[name] = {
            "loss": mean_loss.item(),
            "loss_difference": abs(mean_loss.item() - reference_loss.item()),
            "gradient_scale": max(p.grad.abs().max().item() for p in reference.model.parameters() if p.grad is not None),
        }
        # Relative to the largest gradient entry: the encoder's embeddings are float32, and the two
        # layouts sum the softmax in different orders.
        results[name]["relative_gradient_difference"] = max_gradient_difference(
            module.model if isinstance(module, ContrastiveStep) else module, reference.model
        ) / results[name]["gradient_scale"]
        if distributed_loss_fn.temperature.requires_grad:
            expected = reference_loss_fn.temperature.grad.item()
            results[name]["relative_temperature_gradient_difference"] = abs(
                distributed_loss_fn.temperature.grad.item() - expected
            ) / abs(expected)
        if model_kind == "vlm":
            results[name]["vision_gradient_scale"] = max(
                p.grad.abs().max().item() for n, p in reference.model.named_parameters() if "visual" in n and p.grad is not None
            )
        if case["reward"] is None and not distributed_loss_fn.symmetric:
            with torch.no_grad():
                all_queries = reference.model(**batch["global_queries"]).embeddings
                all_candidates = reference.model(**batch["global_candidates"]).embeddings
            naive = naive_eq8(all_queries, all_candidates, lambda i: i, TEMPERATURE, case["loss"]["hardness_alpha"])
            results[name]["naive_eq8_difference"] = abs(mean_loss.item() - naive)
    errors = inconsistent_inputs_raise_on_every_rank(rank)
    if rank == 0:
        with open(out_path, "w") as handle:
            json.dump({"cases": results, "inconsistent_inputs": errors}, handle, indent=1)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:4])
