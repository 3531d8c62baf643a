"""GradCache (Gao et al. 2021): contrastive batches larger than memory allows, with exact gradients.

ABC (Appendix C) finds that larger batches help and names GradCache as the way there. A cached step
embeds every mini-batch without a graph, computes the loss and its gradients w.r.t. the embeddings,
then re-runs each mini-batch with a graph and backpropagates its slice of those gradients, so only
one mini-batch of activations is alive at a time. The re-run replays the first pass's random state
(sentence-transformers' `RandContext`), so dropout draws the same masks.

The mechanism is sentence-transformers' `CachedMultipleNegativesRankingLoss`: the returned loss is
detached and carries a backward hook that does the re-runs, so it plugs into a
`transformers.Trainer` whose ``compute_loss`` returns it and whose accelerator calls
``backward(loss)``; the hook scales by the gradient it receives, so gradient accumulation and loss
scaling reach every mini-batch. What differs: the model is called as ``model(**batch).embeddings``
on `VLEmbedProcessor` batches, which `slice_batch` splits by sample for every vision-language
layout (sentence-transformers' ``_create_minibatch`` misplaces LLaVA-OneVision's
``batch_num_images`` and gridless videos, and Qwen2.5-VL's ``second_per_grid_ts``, when some
samples have no image or video), and the loss's own parameters (a learnable temperature) get their
gradient through the same hook.
"""

from __future__ import annotations

from contextlib import nullcontext
from functools import partial
from typing import Any, Mapping

import torch
from sentence_transformers.base.losses.gradcache import RandContext
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from .losses import ContrastiveLoss

# Which axis each media tensor of a processor batch is laid out on; every other tensor is per sample.
# Qwen-VL flattens the patches of all images (videos) into one [patches, features] tensor, with one
# grid row (t, h, w) per image; LLaVA-NeXT/OneVision stack per image (and per video) tiles;
# Idefics3/SmolVLM pad images per sample, with a pixel_attention_mask.
_IMAGE_ROW_KEYS = ("image_grid_thw", "image_sizes")
_VIDEO_ROW_KEYS = ("video_grid_thw", "second_per_grid_ts")
_PIXEL_KEYS = ("pixel_values", "pixel_attention_mask", "pixel_values_videos")


def batch_size(batch: Mapping[str, Any]) -> int:
    """Number of samples in a processor batch."""
    for key in ("input_ids", "attention_mask", "inputs_embeds"):
        if isinstance(batch.get(key), Tensor):
            return batch[key].shape[0]
    raise ValueError(f"Cannot tell the batch size: no input_ids, attention_mask or inputs_embeds in {sorted(batch)}.")


def mini_batch_ranges(batch: Mapping[str, Any], mini_batch_size: int) -> list[tuple[int, int]]:
    """``(begin, end)`` sample ranges of at most ``mini_batch_size`` samples covering the batch."""
    size = batch_size(batch)
    return [(begin, min(begin + mini_batch_size, size)) for begin in range(0, size, mini_batch_size)]


def _media_range(batch: Mapping[str, Any], count_key: str, begin: int, end: int, needed_by: str) -> tuple[int, int]:
    """Rows [first, last) of the images (videos) that samples begin..end-1 hold."""
    counts = batch.get(count_key)
    if counts is None:
        raise ValueError(
            f"Splitting {needed_by!r} by sample needs {count_key!r} (VLEmbedProcessor adds it): the tensor is laid "
            "out per image or video, not per sample."
        )
    return int(counts[:begin].sum()), int(counts[:end].sum())


def _patch_range(grid: Tensor, first: int, last: int) -> tuple[int, int]:
    """Rows of the flattened patches of grid items first..last-1 (each has t·h·w patches)."""
    patches = grid.prod(dim=1)
    return int(patches[:first].sum()), int(patches[:last].sum())


def slice_batch(batch: Mapping[str, Any], begin: int, end: int) -> dict[str, Any]:
    """Samples ``begin..end-1`` of a `VLEmbedProcessor` batch, each tensor cut along its own axis.

    Per-sample tensors are sliced by row; per-image and per-video tensors by the rows of the images
    (videos) those samples hold, from ``num_images_per_sample`` / ``num_videos_per_sample``: Qwen2-VL,
    Qwen2.5-VL and Qwen3-VL's flattened ``pixel_values`` / ``pixel_values_videos`` by the patch counts
    of ``image_grid_thw`` / ``video_grid_thw``; LLaVA-NeXT/OneVision's per-image tiles with
    ``image_sizes``, its per-video ``pixel_values_videos``, and ``batch_num_images`` recounted for
    the slice; Idefics3/SmolVLM's per-sample ``pixel_values`` and ``pixel_attention_mask``. Media
    tensors are left out when the slice holds no image (video). Padding columns at the end that
    every sample of the slice has are dropped (left padding is kept: positions may count from it).
    """
    size = batch_size(batch)
    if not 0 <= begin < end <= size:
        raise ValueError(f"Cannot take samples {begin}..{end - 1} of a batch of {size}.")
    ranges: dict[str, tuple[int, int] | None] = {}  # rows of non-sample tensors; None drops the key
    for pixel_key, grid_key, row_keys, count_key in (
        ("pixel_values", "image_grid_thw", _IMAGE_ROW_KEYS, "num_images_per_sample"),
        ("pixel_values_videos", "video_grid_thw", _VIDEO_ROW_KEYS, "num_videos_per_sample"),
    ):
        if pixel_key not in batch:
            continue
        if "pixel_attention_mask" in batch and pixel_key == "pixel_values":
            # Idefics3/SmolVLM: already per sample, but a slice without images must not carry padding images.
            counts = batch.get(count_key)
            if counts is not None and not counts[begin:end].any():
                ranges.update(pixel_values=None, pixel_attention_mask=None)
            continue
        first, last = _media_range(batch, count_key, begin, end, pixel_key)
        total = int(batch[count_key].sum())
        expected_rows = _patch_range(batch[grid_key], 0, total)[1] if grid_key in batch else total
        if batch[pixel_key].shape[0] != expected_rows:
            raise ValueError(
                f"{pixel_key!r} has {batch[pixel_key].shape[0]} rows, but {count_key!r} counts {total} items "
                f"({expected_rows} rows): the counts do not describe this batch."
            )
        media_rows = (first, last) if last > first else None
        for key in row_keys:
            if key in batch:
                ranges[key] = media_rows
        if grid_key in batch:
            ranges[pixel_key] = _patch_range(batch[grid_key], first, last) if media_rows else None
        else:
            ranges[pixel_key] = media_rows
        if pixel_key == "pixel_values" and "batch_num_images" in batch:
            ranges["batch_num_images"] = media_rows  # recounted below

    width = full_width = None
    attention_mask = batch.get("attention_mask")
    if isinstance(attention_mask, Tensor) and attention_mask.dim() == 2:
        full_width = attention_mask.shape[1]
        active_columns = attention_mask[begin:end].bool().any(dim=0).nonzero()
        if len(active_columns) and int(active_columns.max()) + 1 < full_width:
            width = int(active_columns.max()) + 1

    result: dict[str, Any] = {}
    for key, value in batch.items():
        if not isinstance(value, Tensor):
            result[key] = value
        elif key in ranges:
            if ranges[key] is not None:
                first, last = ranges[key]
                result[key] = value[first:last]
        elif value.shape[0] != size:
            raise ValueError(
                f"Cannot split {key!r} by sample: its first dimension is {value.shape[0]}, not the batch size {size}, "
                "and its layout is unknown."
            )
        elif width is not None and key not in _PIXEL_KEYS and value.dim() >= 2 and value.shape[1] == full_width:
            result[key] = value[begin:end, :width]
        else:
            result[key] = value[begin:end]
    if "batch_num_images" in result:
        # LLaVA-OneVision lists image counts of the samples that have images only.
        counts = batch["num_images_per_sample"][begin:end]
        result["batch_num_images"] = counts[counts > 0]
    return result


class CachedContrastiveLoss(nn.Module):
    """`ContrastiveLoss` computed with GradCache: the batch is embedded in mini-batches of
    ``mini_batch_size`` samples, so memory is that of one mini-batch while the loss and gradients are
    those of the whole batch (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under
    Memory Limited Setup"; ABC Appendix C).

    ``forward(model, query_batch, candidate_batch, reward=None, step=None)`` takes the model (plain,
    or wrapped in DDP) and two processor batches (dicts of tensors as `VLEmbedProcessor` returns;
    candidates: the N positives first, then the explicit negatives) and returns the loss. Steps:

    1. embed every mini-batch without a graph, keeping each one's random state;
    2. compute the loss on the detached embeddings and its gradients w.r.t. them (and w.r.t. the
       loss's learnable temperature);
    3. on ``loss.backward()``, a hook re-runs each mini-batch with a graph under its saved random
       state and backpropagates its slice of the cached gradients, times the incoming gradient.
       Under DDP every re-run but the last is inside ``no_sync``, so gradients are reduced once.

    A side may also be a tensor of precomputed embeddings without gradient, e.g. ABC stage 2's
    frozen candidates: it is used as is and not re-run. Without gradients enabled (evaluation) the
    loss is computed from mini-batched embeddings and nothing is cached.

    DDP: build the wrapper with ``find_unused_parameters=True`` (``TrainingArguments``'
    ``ddp_find_unused_parameters``; transformers' Trainer sets it unless activation checkpointing is
    on) when a mini-batch may leave part of the model unused, e.g. a vision-language model's
    mini-batch without images. Gradients are reduced in the last re-run's backward only; if that
    mini-batch has no image, the vision tower is unused there, and with
    ``find_unused_parameters=False`` DDP leaves its gradients unaveraged (they differ across ranks)
    and fails at the next step with "Expected to have finished reduction in the prior iteration".
    With ``True`` the gradients that earlier re-runs accumulated are averaged
    (tests/scripts/loss_ddp.py checks this on a Qwen2-VL).

    Example:

    ```python
    >>> from vlembed import EmbeddingModel
    >>> from vlembed.testing import minilm_path
    >>> from vlembed.trainer.gradcache import CachedContrastiveLoss
    >>> from vlembed.trainer.losses import ContrastiveLoss
    >>> model = EmbeddingModel.from_backbone(minilm_path(), pooling="mean")
    >>> cached = CachedContrastiveLoss(ContrastiveLoss.from_preset("llave"), mini_batch_size=2)
    >>> queries = ["what is the capital of france", "who wrote hamlet", "how do bees fly"]
    >>> candidates = ["paris is the capital", "shakespeare wrote it", "wings beat fast", "berlin is in germany"]
    >>> loss = cached(model, model.processor(queries), model.processor(candidates))  # 3 positives, 1 negative
    >>> loss.backward()  # re-runs each mini-batch with a graph; in a Trainer: accelerator.backward(loss)
    ```
    """

    def __init__(self, loss_fn: ContrastiveLoss, mini_batch_size: int = 32):
        super().__init__()
        if mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be at least 1, got {mini_batch_size}.")
        self.loss_fn = loss_fn
        self.mini_batch_size = mini_batch_size

    def forward(
        self,
        model: nn.Module,
        query_batch: Mapping[str, Any] | Tensor,
        candidate_batch: Mapping[str, Any] | Tensor,
        reward: Tensor | None = None,
        step: int | None = None,
    ) -> Tensor:
        sides = [query_batch, candidate_batch]
        if any(isinstance(side, Tensor) and side.requires_grad for side in sides):
            raise ValueError("Precomputed embeddings must not require grad: GradCache cannot backpropagate into them.")
        mini_batches = [
            [slice_batch(side, begin, end) for begin, end in mini_batch_ranges(side, self.mini_batch_size)]
            if isinstance(side, Mapping)
            else []
            for side in sides
        ]
        if not torch.is_grad_enabled():
            embeddings = [_embed(model, side, pieces)[0] for side, pieces in zip(sides, mini_batches)]
            return self.loss_fn(*embeddings, reward=reward, step=step)

        # Step 1: embed without a graph, saving each mini-batch's random state for the re-run.
        embeddings, random_states = [], []
        with torch.no_grad():
            for side, pieces in zip(sides, mini_batches):
                side_embeddings, states = _embed(model, side, pieces, save_random_states=True)
                embeddings.append(side_embeddings.detach().requires_grad_())
                random_states.append(states)

        # Step 2: the loss and its gradients w.r.t. the embeddings and the loss's own parameters.
        loss = self.loss_fn(*embeddings, reward=reward, step=step)
        parameters = [parameter for parameter in self.loss_fn.parameters() if parameter.requires_grad]
        gradients = torch.autograd.grad(loss, [*embeddings, *parameters])
        cached_loss = loss.detach().requires_grad_()
        # Step 3 runs in the hook, with this step's cache bound, so a second forward cannot swap it.
        cached_loss.register_hook(
            partial(
                _backpropagate_cache,
                model=model,
                mini_batches=mini_batches,
                random_states=random_states,
                embedding_gradients=gradients[:2],
                parameters=parameters,
                parameter_gradients=gradients[2:],
            )
        )
        return cached_loss


def _embed(
    model: nn.Module, side: Mapping[str, Any] | Tensor, pieces: list[dict[str, Any]], save_random_states: bool = False
) -> tuple[Tensor, list[RandContext]]:
    """A side's embeddings (a tensor side as it is), and the random state each mini-batch started from."""
    if isinstance(side, Tensor):
        return side, []
    outputs, states = [], []
    for piece in pieces:
        if save_random_states:
            states.append(RandContext(*(value for value in piece.values() if isinstance(value, Tensor))))
        outputs.append(model(**piece).embeddings)
    return torch.cat(outputs), states


def _backpropagate_cache(
    grad_output: Tensor,
    model: nn.Module,
    mini_batches: list[list[dict[str, Any]]],
    random_states: list[list[RandContext]],
    embedding_gradients: tuple[Tensor, ...],
    parameters: list[Tensor],
    parameter_gradients: tuple[Tensor, ...],
) -> None:
    """Re-run each mini-batch with a graph and backpropagate its cached gradient times ``grad_output``."""
    if parameters:
        torch.autograd.backward(parameters, [gradient * grad_output for gradient in parameter_gradients])
    replays = []
    for pieces, states, side_gradient in zip(mini_batches, random_states, embedding_gradients):
        begin = 0
        for piece, state in zip(pieces, states):
            end = begin + batch_size(piece)
            replays.append((piece, state, side_gradient[begin:end] * grad_output))
            begin = end
    with torch.enable_grad():
        for index, (piece, state, gradient) in enumerate(replays):
            # Reduce DDP gradients once, after the last re-run (an outer no_sync still defers it).
            last = index == len(replays) - 1
            sync = nullcontext() if last or not isinstance(model, DistributedDataParallel) else model.no_sync()
            with sync:
                with state:
                    embeddings = model(**piece).embeddings
                if embeddings.requires_grad:  # a frozen model has nothing to backpropagate into
                    embeddings.backward(gradient.to(embeddings.dtype))
