"""The contrastive loss of LLaVE, ABC and MM-Embed: one InfoNCE over N queries and M >= N candidates.

The three papers train with the same objective and differ only in its settings, which are named
here as presets (`PRESETS`): LLaVE's hardness weighting (eq. 5) and cross-device gathering (eq. 8),
ABC's learnable temperature and mined negatives (eq. 4), MM-Embed's positives plus hard negatives
(eq. 1). Gathering uses sentence-transformers' differentiable all-gather; GradCache, for batches
larger than memory allows, wraps this loss in `vlembed.trainer.gradcache.CachedContrastiveLoss`.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers.util import all_gather, all_gather_with_grad, get_rank, get_world_size
from torch import Tensor, nn

PRESETS: dict[str, dict[str, Any]] = {
    # LLaVE §2.1, §3.1-3.2: fixed τ = 0.02, α = 9, negatives gathered from all devices (eq. 5, 8).
    "llave": dict(temperature=0.02, learnable_temperature=False, hardness_alpha=9.0, gather_across_devices=True),
    # ABC §3.1, §4.1: τ learned from 0.07, plain InfoNCE over the global candidates (eq. 4).
    "abc": dict(temperature=0.07, learnable_temperature=True, hardness_alpha=0.0, gather_across_devices=True),
    # MM-Embed eq. 1, trained with Tevatron across 8 GPUs; the paper does not state τ (see ContrastiveLoss).
    "mm-embed": dict(temperature=0.02, learnable_temperature=False, hardness_alpha=0.0, gather_across_devices=True),
    # LLaVE eq. 1: textbook InfoNCE over this device's batch.
    "infonce": dict(temperature=0.02, learnable_temperature=False, hardness_alpha=0.0, gather_across_devices=False),
}


def hardness_weighted_cross_entropy(logits: Tensor, labels: Tensor, reward: Tensor | None = None) -> Tensor:
    """LLaVE eq. 5 from logits, averaged over the rows.

    ``logits`` [N, M] are r_π(q_i, t_j) = s_ij / τ, ``labels`` [N] the positive's column p_i and
    ``reward`` [N, M] the hardness r_θ(q_i, t_j); the reward gets no gradient and the positive's
    entry is ignored::

        L_i = -log e^{l_ip} / (e^{l_ip} + Σ_{j≠p} e^{l_ij + r_ij})

    Its gradient w.r.t. a negative's logit is LLaVE eq. 6, e^{r_ij}·e^{l_ij} / Z_i (divided by N
    for the mean). A reward of -inf removes that negative (e.g. a known false negative).
    """
    if reward is None:
        return F.cross_entropy(logits, labels)
    # Zeroing the positive's reward (out of place: the caller's tensor stays as it was) costs less
    # than restoring the positive's logit, whose backward would materialise two [N, M] tensors.
    positives = (torch.arange(len(labels), device=logits.device), labels)
    reward = reward.detach().index_put(positives, torch.zeros((), dtype=reward.dtype, device=reward.device))
    return F.cross_entropy(logits + reward, labels)


class ContrastiveLoss(nn.Module):
    r"""InfoNCE over N queries and M >= N candidates with hardness-weighted negatives (LLaVE eq. 5, 8;
    ABC eq. 4; MM-Embed eq. 1).

    Candidate i is query i's positive; candidates N..M-1 are explicit negatives (mined or given, in
    any order and number), and every query scores against every candidate, so the other queries'
    positives and negatives serve as in-batch negatives. With s_ij the cosine similarity (the loss
    normalises the embeddings) and p the positive::

        L_i = -log e^{s_ip/τ} / (e^{s_ip/τ} + Σ_{j≠p} e^{s_ij/τ + r_ij})          (LLaVE eq. 5)
        r_ij = α · sg(s_ij) + reward_ij                                          (LLaVE §3.1)
        L   = mean_i L_i

    α·sg(s_ij) is LLaVE's self reward — the embedding model as its own reward model, without
    gradient; α = 0 gives plain InfoNCE (LLaVE eq. 1, ABC eq. 4, MM-Embed eq. 1). ``reward`` adds the
    caller's hardness: a different model's scores (LLaVE's decoupled reward model; set α = 0 to use
    them alone) or annotated per-negative hardness (0 where there is none). Entries for positives
    are ignored. The gradient w.r.t. a negative's logit is e^{r_ij}·e^{s_ij/τ} / Z_i (LLaVE eq. 6).

    Gathering (``gather_across_devices``, LLaVE eq. 8): every rank's candidates, positives and
    negatives alike, are all-gathered once, with gradients flowing back to the rank that produced
    them. Each rank keeps its candidates as one block, so its positives stay at columns
    rank·M + i, aligned with its queries (the layout bug of sentence-transformers PR #3453 cannot
    arise). Each rank returns the mean over its own queries; after DDP averages the gradients, every
    rank holds the gradient of one process with the whole global batch. All ranks must pass the same
    N, M and d and a reward of the same shape, or none: this is checked across ranks first, so that
    a mismatch raises the same `ValueError` on every rank instead of hanging a collective. Without a
    process group (or with one process) nothing is gathered.

    ``reward`` is [N, M] (this rank's queries × this rank's candidates: other ranks' candidates get
    no extra reward, since this rank has no scores for them) or [N, M·world_size] in the gathered
    layout (column r·M + j is rank r's candidate j), e.g. a reward model's query embeddings times its
    gathered candidate embeddings.

    Temperature: fixed, or learnable (ABC §3.1): then τ itself is the parameter, as in ABC's code,
    initialised at ``temperature`` (default 0.07 when learnable, as in ABC; 0.02 when fixed, as in
    LLaVE) and floored at ``min_temperature`` (0.01, the cap of 100 on CLIP's logit scale) so that it
    cannot collapse toward 0 (ABC §4.4). A log-parametrised scale (CLIP) would barely move at ABC's
    learning rate (4e-5); τ moves by about the learning rate per step. As CLIP and OpenCLIP do, the
    training loop calls `clamp_temperature_` after every optimizer step, which puts τ back on the
    floor in place; the forward pass also uses max(τ, floor), passing τ's gradient through at the
    floor itself, so a τ held there rises again as soon as the data favours a larger one. Freeze it
    for ABC's second stage with ``loss.temperature.requires_grad_(False)``. A trainer may replace the
    parameter by one its model owns (``loss.temperature = model.temperature``), so the optimiser and
    checkpoints see it; under DDP its gradient must then be averaged like any weight's.

    Numerics: similarities, log-sum-exp and loss are float32 for bf16/fp16/float32 embeddings (bf16
    logits at τ = 0.02 would be off by ~0.1), float64 for float64 ones, also under an enclosing
    `torch.autocast`, which is switched off inside. A non-finite loss raises `FloatingPointError`
    naming the step, the term and the cause.

    Presets (`from_preset`): ``"llave"`` τ = 0.02 fixed, α = 9, gathered; ``"abc"`` τ learnable from
    0.07, α = 0, gathered; ``"mm-embed"`` α = 0, gathered, τ = 0.02 fixed — MM-Embed does not state τ;
    it trains with Tevatron, whose multimodal (DSE) recipes use 0.02, as do LLaVE and VLM2Vec;
    ``"infonce"`` τ = 0.02, α = 0, local batch only.

    Args:
        temperature: τ, or the initial τ when learnable; None: 0.07 when learnable (ABC), else 0.02 (LLaVE).
        learnable_temperature: train τ (ABC); call `clamp_temperature_` after each optimizer step.
        hardness_alpha: α of the self reward (LLaVE: 9; 0 = plain InfoNCE).
        symmetric: add the candidate-to-query term — each positive against all (gathered) queries,
            with the same hardness weighting — and average the two, as LLaVE's released code does.
        gather_across_devices: score against the candidates of all ranks (LLaVE eq. 8).
        min_temperature: floor of τ.

    Example:

    ```python
    >>> import torch
    >>> from vlembed.trainer.losses import ContrastiveLoss
    >>> loss_fn = ContrastiveLoss.from_preset("llave")
    >>> queries, candidates = torch.randn(4, 64), torch.randn(12, 64)   # 4 positives + 8 mined negatives
    >>> loss = loss_fn(queries, candidates)
    >>> hardness = torch.zeros(4, 12); hardness[0, 4] = 1.5             # annotated hardness of query 0's negative
    >>> loss = loss_fn(queries, candidates, reward=hardness, step=10)
    ```
    """

    def __init__(
        self,
        temperature: float | None = None,
        learnable_temperature: bool = False,
        hardness_alpha: float = 0.0,
        symmetric: bool = False,
        gather_across_devices: bool = False,
        min_temperature: float = 0.01,
    ):
        super().__init__()
        if temperature is None:
            temperature = 0.07 if learnable_temperature else 0.02
        if not 0 < min_temperature <= temperature:
            raise ValueError(
                f"Need 0 < min_temperature <= temperature, got min_temperature={min_temperature}, "
                f"temperature={temperature}."
            )
        if hardness_alpha < 0:
            raise ValueError(f"hardness_alpha must be >= 0 (harder negatives weigh more), got {hardness_alpha}.")
        self.temperature = nn.Parameter(torch.tensor(float(temperature)), requires_grad=learnable_temperature)
        self.min_temperature = float(min_temperature)
        self.hardness_alpha = float(hardness_alpha)
        self.symmetric = symmetric
        self.gather_across_devices = gather_across_devices

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "ContrastiveLoss":
        """The settings of a paper (``"llave"``, ``"abc"``, ``"mm-embed"``, ``"infonce"``), with any overridden."""
        if name not in PRESETS:
            raise ValueError(f"Unknown loss preset {name!r}; choose one of {', '.join(PRESETS)}.")
        return cls(**{**PRESETS[name], **overrides})

    @torch.no_grad()
    def clamp_temperature_(self) -> None:
        """Put τ back on ``min_temperature`` where an optimizer step took it below, in place.

        Call it after every ``optimizer.step()`` when τ is learnable, as CLIP and OpenCLIP clamp their
        logit scale. It clamps whichever parameter ``self.temperature`` is, including a model's own
        τ that a trainer assigned to the loss (``loss.temperature = model.temperature``).
        """
        self.temperature.clamp_(min=self.min_temperature)

    def extra_repr(self) -> str:
        learnable = "learnable" if self.temperature.requires_grad else "fixed"
        return (
            f"temperature={self.temperature.item():.4g} ({learnable}, min {self.min_temperature}), "
            f"hardness_alpha={self.hardness_alpha}, symmetric={self.symmetric}, "
            f"gather_across_devices={self.gather_across_devices}"
        )

    def forward(
        self,
        query_embeddings: Tensor,
        candidate_embeddings: Tensor,
        reward: Tensor | None = None,
        step: int | None = None,
    ) -> Tensor:
        """The loss (a float32 or float64 scalar) of [N, d] queries against [M, d] candidates, the first N positive.

        ``reward``: [N, M] or [N, M·world_size] extra hardness (see the class docstring).
        ``step``: the training step, named in the error when the loss is not finite.
        """
        rank, world_size = (get_rank(), get_world_size()) if self.gather_across_devices else (0, 1)
        if world_size > 1:
            _check_same_shapes_on_all_ranks(query_embeddings, candidate_embeddings, reward, world_size)
        num_queries, num_candidates = _check_shapes(query_embeddings, candidate_embeddings)
        # At least float32 (bf16 logits at τ = 0.02 would be off by ~0.1); float64 stays float64.
        dtype = torch.promote_types(query_embeddings.dtype, candidate_embeddings.dtype)
        dtype = torch.promote_types(dtype, torch.float32)
        if reward is not None:
            reward = _check_reward(reward, num_queries, num_candidates, world_size).to(query_embeddings.device, dtype)

        # An enclosing autocast would run the matmuls in bf16 (the loss off by ~1e-3): keep `dtype`.
        device_type = query_embeddings.device.type
        with torch.autocast(device_type, enabled=False) if torch.amp.is_autocast_available(device_type) else nullcontext():
            queries = F.normalize(query_embeddings.to(dtype), dim=-1)
            candidates = F.normalize(candidate_embeddings.to(dtype), dim=-1)
            all_queries, all_candidates = _gather(queries, candidates, world_size, with_queries=self.symmetric)
            # max(τ, floor) by `where`, whose gradient reaches τ at the floor itself; `clamp`'s would be 0 there.
            temperature = torch.where(self.temperature >= self.min_temperature, self.temperature, self.min_temperature)
            inverse_temperature = 1.0 / temperature

            rows = torch.arange(num_queries, device=queries.device)
            # τ is folded into the [N, d] queries rather than the [N, M] logits: one small multiply.
            logits = (queries * inverse_temperature) @ all_candidates.T
            query_reward = None if reward is None else _in_gathered_layout(reward, rank, num_candidates, logits.shape[1])
            terms = {
                "query→candidate": hardness_weighted_cross_entropy(
                    logits, rows + rank * num_candidates, self._total_reward(logits, inverse_temperature, query_reward)
                )
            }
            if self.symmetric:
                positive_logits = (candidates[:num_queries] * inverse_temperature) @ all_queries.T
                candidate_reward = None
                if reward is not None:
                    candidate_reward = _reward_of_positives(reward, rank, num_queries, num_candidates, world_size)
                terms["candidate→query"] = hardness_weighted_cross_entropy(
                    positive_logits,
                    rows + rank * num_queries,
                    self._total_reward(positive_logits, inverse_temperature, candidate_reward),
                )
            loss = sum(terms.values()) / len(terms)
        if not torch.isfinite(loss):
            raise _non_finite_error(terms, step, query_embeddings, candidate_embeddings, all_candidates, reward, self)
        return loss

    def _total_reward(self, logits: Tensor, inverse_temperature: Tensor, reward: Tensor | None) -> Tensor | None:
        """r = α·sg(s) + reward, in the layout of ``logits`` (s = logits·τ)."""
        if not self.hardness_alpha:
            return reward
        self_reward = logits.detach() * (self.hardness_alpha / inverse_temperature.detach())
        return self_reward if reward is None else self_reward + reward


def _gather(queries: Tensor, candidates: Tensor, world_size: int, with_queries: bool) -> tuple[Tensor | None, Tensor]:
    """All ranks' queries (if asked) and candidates, in one all-gather with gradients.

    Rank r's rows stay together, so its positives sit at rows r·M + i of the gathered candidates.
    """
    if world_size == 1:
        return queries, candidates
    if not with_queries:
        return None, all_gather_with_grad(candidates)
    gathered = all_gather_with_grad(torch.cat([queries, candidates])).unflatten(0, (world_size, -1))
    return gathered[:, : len(queries)].flatten(0, 1), gathered[:, len(queries) :].flatten(0, 1)


def _check_shapes(query_embeddings: Tensor, candidate_embeddings: Tensor) -> tuple[int, int]:
    for name, embeddings in (("query_embeddings", query_embeddings), ("candidate_embeddings", candidate_embeddings)):
        if embeddings.dim() != 2:
            raise ValueError(f"{name} must be 2-D [rows, dim], got shape {list(embeddings.shape)}.")
    (num_queries, query_dim), (num_candidates, candidate_dim) = query_embeddings.shape, candidate_embeddings.shape
    if query_dim != candidate_dim:
        raise ValueError(f"Query embeddings have dimension {query_dim} but candidate embeddings {candidate_dim}.")
    if num_queries == 0:
        raise ValueError("Got no query embeddings.")
    if num_candidates < num_queries:
        raise ValueError(
            f"Got {num_candidates} candidates for {num_queries} queries: the first N candidates must be the "
            "queries' positives, so M >= N."
        )
    return num_queries, num_candidates


def _check_same_shapes_on_all_ranks(
    query_embeddings: Tensor, candidate_embeddings: Tensor, reward: Tensor | None, world_size: int
) -> None:
    """Raise on every rank unless all ranks pass the same shapes, and a reward of the same shape or none.

    all_gather needs equal shapes (unequal ones fail deep in the collective, or hang on NCCL), and a
    reward on some ranks only would run the symmetric term's all_gather on those ranks alone (a hang).
    This runs before any local check, so that a rank's bad input cannot leave the others waiting here.
    """
    tensors = {"queries": query_embeddings, "candidates": candidate_embeddings, "reward": reward}
    # Each tensor as [ndim, size 0, size 1], -1 where absent (ndim -1: no reward).
    summary = []
    for tensor in tensors.values():
        sizes = [] if tensor is None else list(tensor.shape[:2])
        summary += [-1 if tensor is None else tensor.dim(), *sizes, *[-1] * (2 - len(sizes))]
    summaries = all_gather(torch.tensor(summary, device=query_embeddings.device)).view(world_size, -1).tolist()
    if any(other != summaries[0] for other in summaries):
        per_rank = "; ".join(
            f"rank {r}: " + ", ".join(f"{name} {_describe_shape(*row[3 * i : 3 * i + 3])}" for i, name in enumerate(tensors))
            for r, row in enumerate(summaries)
        )
        raise ValueError(
            "Gathering needs the same number of queries and candidates (and embedding size) on every rank, and a "
            f"reward of the same shape on every rank or on none; got {per_rank}."
        )


def _describe_shape(ndim: int, *sizes: int) -> str:
    return "none" if ndim < 0 else str(list(sizes[:ndim])) if ndim <= 2 else f"{ndim}-D"


def _check_reward(reward: Tensor, num_queries: int, num_candidates: int, world_size: int) -> Tensor:
    shapes = [(num_queries, num_candidates), (num_queries, num_candidates * world_size)]
    if tuple(reward.shape) not in shapes:
        gathered = f" or [N, M·world_size] = {list(shapes[1])} (gathered layout)" if world_size > 1 else ""
        raise ValueError(
            f"reward must be [N, M] = {list(shapes[0])} (queries × candidates){gathered}; got {list(reward.shape)}."
        )
    return reward


def _in_gathered_layout(reward: Tensor, rank: int, num_candidates: int, width: int) -> Tensor:
    """This rank's [N, M] block at its candidates' columns of the [N, M·world_size] logits, 0 elsewhere."""
    if reward.shape[1] == width:
        return reward
    return F.pad(reward, (rank * num_candidates, width - (rank + 1) * num_candidates))


def _reward_of_positives(reward: Tensor, rank: int, num_queries: int, num_candidates: int, world_size: int) -> Tensor:
    """The reward of the candidate→query term: [N positives, N·world_size queries]."""
    if world_size == 1 or reward.shape[1] == num_candidates:
        # Only this rank's own queries have scores for its positives.
        own = reward[:, :num_queries].T
        return F.pad(own, (rank * num_queries, (world_size - rank - 1) * num_queries))
    # Gathered layout: every rank's rows hold the scores of its queries against this rank's positives.
    all_rows = all_gather(reward.contiguous())
    return all_rows[:, rank * num_candidates : rank * num_candidates + num_queries].T


def _non_finite_error(
    terms: dict[str, Tensor],
    step: int | None,
    query_embeddings: Tensor,
    candidate_embeddings: Tensor,
    all_candidates: Tensor,
    reward: Tensor | None,
    loss: ContrastiveLoss,
) -> FloatingPointError:
    bad_terms = ", ".join(f"{name} = {value.item()}" for name, value in terms.items() if not torch.isfinite(value))
    causes = []
    for name, embeddings in (("query", query_embeddings), ("candidate", candidate_embeddings)):
        bad_rows = (~torch.isfinite(embeddings)).any(dim=1).nonzero().flatten().tolist()
        if bad_rows:
            causes.append(f"{len(bad_rows)} {name} embedding(s) of this rank are non-finite (rows {bad_rows[:10]})")
    if not causes and not torch.isfinite(all_candidates).all():
        causes.append("candidate embeddings gathered from another rank are non-finite")
    if reward is not None and (torch.isnan(reward).any() or torch.isposinf(reward).any()):
        causes.append("the reward has NaN or +inf entries")
    if not causes:
        causes.append(f"overflow (temperature {loss.temperature.item():.4g}, hardness_alpha {loss.hardness_alpha})")
    where = f" at step {step}" if step is not None else ""
    return FloatingPointError(f"Non-finite contrastive loss{where}: {bad_terms}. Cause: {'; '.join(causes)}.")


__all__ = ["ContrastiveLoss", "PRESETS", "hardness_weighted_cross_entropy"]
