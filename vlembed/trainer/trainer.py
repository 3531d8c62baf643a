"""`ContrastiveTrainer`: a `transformers.Trainer` for embedding models, with the papers' losses.

It overrides the loss, the data pipeline (collator, batch samplers) and evaluation, and leaves the
training loop to transformers: checkpoints and resume, logging, gradient accumulation, mixed
precision, activation checkpointing, DeepSpeed and FSDP work as with any Trainer.

Negatives per query: each query scores against ``per_device_train_batch_size × world_size ×
(1 + k)`` candidates (k explicit negatives per row) when the loss gathers across devices, all but
its positive being negatives. Gradient accumulation does *not* add negatives (each micro-batch is
its own contrastive problem); ``mini_batch_size`` (GradCache) does: it lets
``per_device_train_batch_size`` grow past what fits in memory.

Checkpoints are written into ``output_dir/_staging`` and renamed into place when complete, so an
interrupted save never leaves a partial ``checkpoint-N`` for resume to pick.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints
from transformers.utils import logging

from .collator import ROW_INDEX, ContrastiveDataCollator, check_columns, row_item
from .gradcache import CachedContrastiveLoss
from .losses import ContrastiveLoss
from .samplers import BATCH_SAMPLERS, build_batch_sampler

logger = logging.get_logger(__name__)
_DDP_TYPES = ("MULTI_GPU", "MULTI_CPU", "MULTI_XPU", "MULTI_NPU", "MULTI_MLU", "MULTI_HPU")
STAGING_FOLDER = "_staging"  # under output_dir; "_*" is also what push_to_hub leaves out


@dataclass
class ContrastiveTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus the contrastive settings. Loss settings left at None come from the
    ``loss`` preset (`ContrastiveLoss.from_preset`).

    ``hardness_scale``: a row's ``negative_hardness`` × this is added to that negative's logit s/τ as
    a reward (`ContrastiveLoss`'s ``reward``). Default 1.0, for hardness scores given as logit
    offsets. The ``abc-pretrain``, ``abc-instruct`` and ``mm-embed`` recipes set 0: the hardness that
    ``vlembed mine`` writes is the miner's similarity, and ABC eq. 4 and MM-Embed eq. 1 train on mined
    negatives without any reward (with 1.0 they would optimise s/τ + s_mined instead).
    """

    loss: str = field(default="llave", metadata={"help": "Loss preset: llave, abc, mm-embed or infonce."})
    temperature: float | None = field(default=None, metadata={"help": "τ (or its initial value when learnable)."})
    learnable_temperature: bool | None = field(default=None, metadata={"help": "Train τ (ABC §3.1)."})
    hardness_alpha: float | None = field(default=None, metadata={"help": "α of LLaVE eq. 5 (0 = InfoNCE)."})
    symmetric: bool | None = field(default=None, metadata={"help": "Add the candidate-to-query term."})
    gather_across_devices: bool | None = field(default=None, metadata={"help": "Score against all ranks' candidates (LLaVE eq. 8)."})
    mini_batch_size: int | None = field(
        default=None, metadata={"help": "GradCache mini-batch size: embed the per-device batch in chunks of this many rows."}
    )
    num_negatives: int | None = field(default=None, metadata={"help": "Negatives per row (the first ones); None = all given."})
    hardness_scale: float = field(
        default=1.0, metadata={"help": "negative_hardness × this = the negative's logit reward (0: none; the ABC and MM-Embed recipes)."}
    )
    batch_sampler: str = field(default="no_duplicates", metadata={"help": f"One of {', '.join(BATCH_SAMPLERS)}."})
    group_by_column: str | None = field(default=None, metadata={"help": "Column whose equal values share a batch (group_by)."})
    query_instruction: str | None = field(default=None, metadata={"help": "Instruction for queries without their own."})
    document_instruction: str | None = field(default=None, metadata={"help": "Instruction for every candidate."})
    lora_r: int = field(default=0, metadata={"help": "LoRA rank (0: no LoRA, the trainable parts are fine-tuned fully)."})
    lora_alpha: int | None = field(default=None, metadata={"help": "LoRA alpha (default 2·r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    lora_targets: list[str] = field(
        default_factory=lambda: ["language_model"], metadata={"help": "LoRA on: language_model and/or vision_tower."}
    )
    freeze_vision_tower: bool = field(default=False, metadata={"help": "Freeze the vision encoder (LLaVE §4.3)."})
    freeze_projector: bool = field(default=False, metadata={"help": "Freeze the vision-language projector."})
    freeze_head: bool = field(default=False, metadata={"help": "Freeze the embedding head (ABC stage 2)."})
    instruction_adapter: str | None = field(
        default=None,
        metadata={"help": "ABC stage 2: train a new adapter of this name on queries only, against candidates "
                  "embedded without it and without gradient."},
    )
    eval_k_values: list[int] = field(default_factory=lambda: [1, 5, 10], metadata={"help": "Cut-offs of eval metrics."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Kept False: the collator reads every column."})

    def __post_init__(self):
        super().__post_init__()
        if self.batch_sampler not in BATCH_SAMPLERS:
            raise ValueError(f"Unknown batch_sampler {self.batch_sampler!r}; choose one of {', '.join(BATCH_SAMPLERS)}.")
        unknown = set(self.lora_targets) - {"language_model", "vision_tower"}
        if unknown:
            raise ValueError(f"lora_targets must be among ['language_model', 'vision_tower'], got {self.lora_targets}.")
        if self.freeze_vision_tower and self.lora_r and "vision_tower" in self.lora_targets:
            raise ValueError(
                "freeze_vision_tower would also freeze the LoRA on the vision tower (lora_targets includes "
                "'vision_tower'): drop one of the two."
            )
        if self.instruction_adapter and not self.lora_r:
            raise ValueError("instruction_adapter needs lora_r > 0 (ABC stage 2 uses r = 16).")
        if self.mini_batch_size is not None and self.mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be at least 1, got {self.mini_batch_size}.")

    def loss_kwargs(self) -> dict[str, Any]:
        overrides = {
            "temperature": self.temperature,
            "learnable_temperature": self.learnable_temperature,
            "hardness_alpha": self.hardness_alpha,
            "symmetric": self.symmetric,
            "gather_across_devices": self.gather_across_devices,
        }
        return {name: value for name, value in overrides.items() if value is not None}


def prepare_model(model: nn.Module, args: ContrastiveTrainingArguments) -> None:
    """Set what trains: LoRA adapters (ABC, MM-Embed), frozen vision tower (LLaVE §4.3), projector, head.

    The projector trains whole (LLaVE Table 3 row 3, MM-Embed §5.1) unless frozen; ABC's stage 2
    trains its instruction adapter only.
    """
    family = model.config.family
    if args.lora_r:
        name = args.instruction_adapter or "default"
        if not (model.config.adapters and name in model.config.adapters):
            model.add_adapter(
                name, r=args.lora_r, lora_alpha=args.lora_alpha or 2 * args.lora_r, lora_dropout=args.lora_dropout,
                targets=args.lora_targets, tasks=("query",) if args.instruction_adapter else ("query", "document"),
            )
    base = model.backbone.get_base_model() if model.config.adapters else model.backbone
    adapter_only = args.instruction_adapter is not None
    if args.freeze_vision_tower and family.vision_tower:
        _submodule(base, family.vision_tower).requires_grad_(False)
    if family.projector:  # after the vision tower: Qwen-VL's projector (merger) sits inside it
        _submodule(base, family.projector).requires_grad_(not (args.freeze_projector or adapter_only))
    if model.head is not None:
        model.head.requires_grad_(not (args.freeze_head or adapter_only))


def _submodule(module: nn.Module, path: str) -> nn.Module:
    for part in path.split("."):
        module = getattr(module, part)
    return module


class ContrastiveTrainer(Trainer):
    """A `transformers.Trainer` that trains a `VLEmbedModel` with `ContrastiveLoss`.

    Args:
        model: the embedding model (``EmbeddingModel.from_backbone(...)`` or ``from_pretrained``).
        args: `ContrastiveTrainingArguments`.
        train_dataset / eval_dataset: `datasets.Dataset` of rows (see `vlembed.trainer.collator.COLUMNS`).
            Evaluation reports the loss and retrieval metrics (queries against the eval set's positives
            and negatives).
        loss: a `ContrastiveLoss` to use instead of the ``args.loss`` preset.

    Example:

    ```python
    >>> from vlembed import EmbeddingModel, ContrastiveTrainer, ContrastiveTrainingArguments
    >>> model = EmbeddingModel.from_backbone(path, pooling="mean")
    >>> args = ContrastiveTrainingArguments(output_dir="out", loss="llave", per_device_train_batch_size=64)
    >>> ContrastiveTrainer(model=model, args=args, train_dataset=rows).train()
    ```
    """

    def __init__(self, model=None, args: ContrastiveTrainingArguments | None = None, train_dataset=None, eval_dataset=None,
                 loss: ContrastiveLoss | None = None, data_collator=None, **kwargs):
        if args is None:
            raise ValueError("ContrastiveTrainer needs ContrastiveTrainingArguments.")
        for name, dataset in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
            if dataset is not None:
                check_columns(dataset.column_names)
                if ROW_INDEX not in dataset.column_names:
                    dataset = dataset.add_column(ROW_INDEX, list(range(len(dataset))))
                if name == "train_dataset":
                    train_dataset = dataset
                else:
                    eval_dataset = dataset
        prepare_model(model, args)
        self.loss_fn = loss if loss is not None else ContrastiveLoss.from_preset(args.loss, **args.loss_kwargs())
        self._share_temperature(model)
        world_size = max(args.world_size, 1)
        gathering = self.loss_fn.gather_across_devices and world_size > 1
        if gathering and not args.dataloader_drop_last:
            # Every rank must contribute the same number of queries to the gathered batch.
            args.dataloader_drop_last = True
        if args.mini_batch_size and args.ddp_find_unused_parameters is None and model.config.family.vision_tower:
            # GradCache reduces gradients in its last re-run only; when that mini-batch holds no image,
            # DDP without unused-parameter search would leave the vision tower's gradients unaveraged.
            args.ddp_find_unused_parameters = True
        draws_negatives = train_dataset is not None and "negative_types" in train_dataset.column_names
        if draws_negatives and args.dataloader_persistent_workers and args.dataloader_num_workers > 0:
            raise ValueError(
                "Column 'negative_types' draws negatives per epoch in the collator, which persistent workers would "
                "keep at the first epoch: set dataloader_persistent_workers=False."
            )
        data_collator = data_collator or ContrastiveDataCollator(
            model.processor,
            num_negatives=args.num_negatives,
            query_instruction=args.query_instruction,
            document_instruction=args.document_instruction,
            hardness_scale=args.hardness_scale,
            fixed_negative_count=gathering,
            seed=args.seed,
        )
        self._staging_root: str | None = None
        callbacks = [*(kwargs.pop("callbacks", None) or []), _EpochAndTemperatureCallback(data_collator, self._clamp_temperature)]
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         data_collator=data_collator, callbacks=callbacks, **kwargs)
        self.cached_loss = CachedContrastiveLoss(self.loss_fn, args.mini_batch_size) if args.mini_batch_size else None
        if train_dataset is not None:
            self._validate_sample(train_dataset)
        model.config.training_summary = self._training_summary()

    # ------------------------------------------------------------------ setup

    def _share_temperature(self, model) -> None:
        """A learnable τ lives in the model (ABC keeps it there too), so the optimiser, checkpoints,
        ZeRO and FSDP handle it like any weight; the loss uses that parameter (`_bind_temperature`).

        DDP is told to ignore it: τ is used by the loss, outside the model's forward, which DDP's
        unused-parameter bookkeeping cannot follow. `training_step` averages its gradient instead.
        """
        if self.loss_fn.temperature.requires_grad:
            if getattr(model, "temperature", None) is None:
                model.init_temperature(float(self.loss_fn.temperature.detach()))
            # DDP matches a root-level parameter as "temperature" in one place and ".temperature" in another.
            model._ddp_params_and_buffers_to_ignore = ["temperature", ".temperature"]
        elif getattr(model, "temperature", None) is not None:
            # A model trained with a learnable τ continues with its value, frozen (ABC stage 2).
            model.temperature.requires_grad_(False)
        self._bind_temperature(model)

    def _bind_temperature(self, model) -> None:
        """Point the loss at the (unwrapped) model's τ as it is now, when the model has one.

        Read at each use, never kept: FSDP2 replaces every parameter when it shards the model (and
        exposes the unsharded one during forward), so a reference taken earlier would be stale.
        """
        temperature = getattr(model, "temperature", None)
        if temperature is not None:
            self.loss_fn.temperature = temperature

    def _clamp_temperature(self) -> None:
        """After every optimizer step, a learnable τ goes back onto its floor (as CLIP clamps its scale)."""
        self._bind_temperature(self.accelerator.unwrap_model(self.model))
        if self.loss_fn.temperature.requires_grad:
            self.loss_fn.clamp_temperature_()

    def _validate_sample(self, dataset, sample_size: int = 64) -> None:
        """Collate the first rows before training, so that bad data fails before any step."""
        rows = [dataset[index] for index in range(min(sample_size, len(dataset)))]
        self.data_collator(rows)

    def _training_summary(self) -> dict[str, Any]:
        """What the model card reports. ``negatives_per_query``: the candidates a query is scored
        against besides its positive — every positive and explicit negative of its batch, gathered
        over devices when the loss gathers: per_device × world_size × (1 + k) − 1, k = explicit
        negatives per row (None when rows differ in k)."""
        args, loss = self.args, self.loss_fn
        negatives = self._negatives_per_row()
        per_device = args.per_device_train_batch_size
        world = max(args.world_size, 1) if loss.gather_across_devices else 1
        summary = {
            "loss": args.loss,
            "hardness_alpha": loss.hardness_alpha,
            "temperature": round(float(loss.temperature.detach()), 5),
            "learnable_temperature": bool(loss.temperature.requires_grad),
            "symmetric": loss.symmetric,
            "gathered_across_devices": loss.gather_across_devices,
            "per_device_batch_size": per_device,
            "global_batch_size": per_device * max(args.world_size, 1),
            "negatives_per_query": None if negatives is None else per_device * world * (1 + negatives) - 1,
            "explicit_negatives_per_row": negatives,
            "hardness_scale": args.hardness_scale,
            "mini_batch_size (GradCache)": args.mini_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "learning_rate": args.learning_rate,
            "epochs": args.num_train_epochs if args.max_steps <= 0 else None,
            "max_steps": args.max_steps if args.max_steps > 0 else None,
            "lora": f"r={args.lora_r}, alpha={args.lora_alpha or 2 * args.lora_r}, on {', '.join(args.lora_targets)}" if args.lora_r else None,
            "instruction_adapter": args.instruction_adapter,
            "frozen": ", ".join(
                part for part, frozen in (("vision tower", args.freeze_vision_tower), ("projector", args.freeze_projector), ("head", args.freeze_head)) if frozen
            ) or None,
        }
        return {name: value for name, value in summary.items() if value is not None}

    def _negatives_per_row(self) -> int | None:
        """k, the explicit negatives each training row contributes (None: rows differ, or no train set)."""
        dataset, fixed = self.train_dataset, self.args.num_negatives
        if dataset is None:
            return fixed
        columns = [name for name in ("negatives", "negative_images") if name in dataset.column_names]
        if not columns or fixed == 0:
            return 0  # in-batch negatives only
        if "negative_types" in dataset.column_names:
            return 1  # one drawn by type (MM-Embed)
        if fixed is not None:
            return fixed
        import pyarrow.compute as pc

        lengths = pc.unique(pc.fill_null(pc.list_value_length(dataset.with_format("arrow")[columns[0]]), 0)).to_pylist()
        return lengths[0] if len(lengths) == 1 else None

    # ------------------------------------------------------------------ data

    def get_train_dataloader(self):
        from torch.utils.data import DataLoader

        if self.train_dataset is None:
            raise ValueError("Training needs a train_dataset.")
        sampler = build_batch_sampler(
            self.args.batch_sampler, self.train_dataset, self.args.per_device_train_batch_size,
            drop_last=self.args.dataloader_drop_last, seed=self.args.seed, group_by_column=self.args.group_by_column,
            num_devices=max(self.args.world_size, 1),
        )
        dataloader = DataLoader(
            self.train_dataset,
            batch_sampler=sampler,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
            persistent_workers=self.args.dataloader_persistent_workers and self.args.dataloader_num_workers > 0,
        )
        return self.accelerator.prepare(dataloader)

    # ------------------------------------------------------------------ loss

    def compute_loss(self, model, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch=None):
        queries, candidates, reward = inputs["query_inputs"], inputs["candidate_inputs"], inputs.get("reward")
        step = self.state.global_step
        self._bind_temperature(self.accelerator.unwrap_model(model))
        if self.args.instruction_adapter:
            # ABC §3.1 stage 2: candidates come from the frozen stage-1 model, adapter off, no gradient.
            candidates = self._frozen_candidate_embeddings(model, candidates)
        if self.cached_loss is not None:
            loss = self.cached_loss(model, queries, candidates, reward=reward, step=step)
        else:
            query_embeddings = model(**queries).embeddings
            candidate_embeddings = candidates if isinstance(candidates, torch.Tensor) else model(**candidates).embeddings
            loss = self.loss_fn(query_embeddings, candidate_embeddings, reward=reward, step=step)
        return (loss, {}) if return_outputs else loss

    @torch.no_grad()
    def _frozen_candidate_embeddings(self, model, candidates) -> torch.Tensor:
        from .gradcache import mini_batch_ranges, slice_batch

        unwrapped = self.accelerator.unwrap_model(model)
        size = self.args.mini_batch_size or len(candidates["input_ids"])
        with unwrapped.adapter_scope("document", use_adapter=False):
            pieces = [unwrapped(**slice_batch(candidates, *bounds)).embeddings for bounds in mini_batch_ranges(candidates, size)]
        return torch.cat(pieces)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        temperature = self.loss_fn.temperature
        if temperature.requires_grad and temperature.grad is not None and self.accelerator.distributed_type in _DDP_TYPES:
            # Averaging after every backward is exact under gradient accumulation too (it is linear,
            # and the already-averaged part is the same on every rank).
            torch.distributed.all_reduce(temperature.grad)  # a sum: gloo has no average
            temperature.grad /= self.accelerator.num_processes
        return loss

    def prediction_step(self, model, inputs, prediction_loss_only: bool, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        # τ is a scale, not a weight: no weight decay on it.
        return [name for name in super().get_decay_parameter_names(model) if not name.endswith("temperature")]

    # ------------------------------------------------------------------ evaluation

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"):
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        dataset = dataloader.dataset if hasattr(dataloader, "dataset") else None
        if dataset is not None and hasattr(dataset, "column_names"):
            for name, value in self.retrieval_metrics(dataset).items():
                output.metrics[f"{metric_key_prefix}_{name}"] = value
        return output

    def retrieval_metrics(self, dataset) -> dict[str, float]:
        """Rank every eval query against the eval set's positives and negatives (deduplicated)."""
        from vlembed.evaluation import retrieval_metrics, similarity_gap

        model = self.accelerator.unwrap_model(self.model)
        collator: ContrastiveDataCollator = self.data_collator
        corpus, corpus_index, queries, instructions, relevant = [], {}, [], [], []

        def add(item) -> int:
            key = repr(item)
            if key not in corpus_index:
                corpus_index[key] = len(corpus)
                corpus.append(item)
            return corpus_index[key]

        for row in dataset:
            batch_row = {key: value for key, value in row.items()}
            queries.append(row_item(batch_row, "query"))
            instructions.append(batch_row.get("query_instruction") or collator.query_instruction)
            relevant.append({add(row_item(batch_row, "positive"))})
            for negative in collator.negatives(batch_row, f"Row {row.get(ROW_INDEX)}")[0]:
                add(negative)
        batch_size = self.args.per_device_eval_batch_size
        query_embeddings = model.encode(queries, instructions, task="query", batch_size=batch_size)
        corpus_embeddings = model.encode(corpus, collator.document_instruction, task="document", batch_size=batch_size)
        metrics = retrieval_metrics(query_embeddings, corpus_embeddings, relevant, k_values=self.args.eval_k_values)
        metrics.update(similarity_gap(query_embeddings, corpus_embeddings, relevant))
        return {name: value for name, value in metrics.items() if math.isfinite(value)}

    # ------------------------------------------------------------------ saving

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        # From the weights being saved: under FSDP the model's own τ may be a shard at this point.
        temperature = None if state_dict is None else state_dict.get("temperature")
        if temperature is None:
            self._bind_temperature(self.accelerator.unwrap_model(self.model))
            temperature = self.loss_fn.temperature
        summary = dict(self.model.config.training_summary or {})
        summary["temperature"] = round(max(float(temperature.detach()), self.loss_fn.min_temperature), 5)
        self.model.config.training_summary = summary
        super()._save(output_dir, state_dict)

    def _save_checkpoint(self, model, trial) -> None:
        """transformers' checkpoint, written into ``output_dir/_staging`` and renamed into place once
        complete (transformers writes in place: a crash mid-save would leave a partial checkpoint-N
        that resume picks). Rotation and the best checkpoint then refer to the final folder."""
        run_dir = self._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        self._staging_root = os.path.join(run_dir, STAGING_FOLDER)
        staged, final = os.path.join(self._staging_root, name), os.path.join(run_dir, name)
        if self.args.should_save and os.path.isdir(staged):
            shutil.rmtree(staged)  # left by an interrupted save
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_root = None
        self.accelerator.wait_for_everyone()  # sharded saves (FSDP, ZeRO) write from every rank
        if self.state.best_model_checkpoint == staged:
            self.state.best_model_checkpoint = final
        if self.args.should_save:
            self.state.save_to_json(os.path.join(staged, TRAINER_STATE_NAME))  # with the final best path
            if os.path.isdir(final):
                shutil.rmtree(final)  # the same step saved again
            os.replace(staged, final)
            rotate_checkpoints(run_dir, self.args.save_total_limit, self.state.best_model_checkpoint, use_mtime=True)
            if self.args.push_to_hub:
                super()._push_from_checkpoint(final)
        self.accelerator.wait_for_everyone()

    def _get_output_dir(self, trial) -> str:
        return self._staging_root or super()._get_output_dir(trial)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        # Deferred while staging: `_save_checkpoint` pushes the folder from its final place.
        if self._staging_root is None:
            super()._push_from_checkpoint(checkpoint_folder)


class _EpochAndTemperatureCallback(TrainerCallback):
    """Gives the collator the epoch (its negative-type draws depend on it), read from
    ``state.epoch``, which resume restores, and clamps a learnable τ after every optimizer step."""

    def __init__(self, collator, clamp_temperature):
        self.collator, self.clamp_temperature = collator, clamp_temperature

    def on_epoch_begin(self, args, state, control, **kwargs):
        if isinstance(self.collator, ContrastiveDataCollator):
            self.collator.epoch = math.floor(state.epoch or 0)

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.clamp_temperature()
