"""The three papers' recipes as named settings: how to build the model and how to train it.

Each recipe is ``{"model": kwargs for EmbeddingModel.from_backbone, "training": kwargs for
ContrastiveTrainingArguments}``; everything not named keeps its default, and every value can be
overridden (``examples/train.py --recipe llave --learning_rate 2e-5``). Section numbers refer to
the papers in ``shared/papers``.

What a recipe cannot set is the batch: the papers give global batches, and the global batch is
``per_device_train_batch_size × number of devices`` (the loss gathers candidates over devices;
gradient accumulation does not add negatives, ``mini_batch_size`` (GradCache) makes a large
per-device batch fit). Pass ``--per_device_train_batch_size`` for your device count:

| recipe | paper's global batch | on 8 devices |
|---|---|---|
| llave | 256 pairs (Table 5) | 32 |
| abc-pretrain | 512 image queries + 4,096 text candidates (512 positives + 7 × 512 mined negatives), §4.1 | 64 |
| abc-instruct | 128 images × 4 instructions = 512 queries (§4.1) | 64 |
| mm-embed | 64 × 8 with hard negatives, 128 × 8 with random ones (§5.1) | 64 (128 for M^rand) |

Image resolution is a processor setting, not a recipe one: LLaVE uses up to 672×672 (AnyRes),
ABC limits the vision encoder to 512 tokens, MM-Embed uses only the global image tile (576 tokens).
Text lengths are ``max_length`` (text-only inputs). Mined hardness is not a reward in ABC or
MM-Embed (``hardness_scale=0``); see `ContrastiveTrainingArguments`.
"""

from __future__ import annotations

from typing import Any

RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    # LLaVE §4.1, Table 5: last-token pooling, hardness-weighted InfoNCE (α = 9, τ = 0.02) gathered
    # over all devices, full fine-tuning with the vision encoder frozen (Table 3 row 2) and the
    # projector trained (row 3), lr 1e-5 cosine, warmup 3 %, no weight decay, one epoch, global
    # batch 256, length limit 4,096 tokens.
    "llave": {
        "model": {"pooling": "last", "templates": {"query": "llave", "document": "llave"}, "max_length": 4096},
        "training": {
            "loss": "llave",
            "freeze_vision_tower": True,
            "learning_rate": 1e-5,
            "lr_scheduler_type": "cosine",
            "warmup_steps": 0.03,
            "weight_decay": 0.0,
            "num_train_epochs": 1,
        },
    },
    # ABC §3.1–3.2, §4.1: bidirectional attention, mean pooling, residual MLP head (eq. 2), LoRA
    # r = 64 / α = 128 on the vision encoder and the LLM only (the projector is frozen), learnable τ
    # from 0.07, 7 mined negatives per image (threshold mining, `vlembed mine --strategy threshold`),
    # their mined similarity not a reward (eq. 4), AdamW lr 4e-5, betas (0.9, 0.999), weight decay
    # 1e-3, warmup 3 %, 4,000 steps of 512 image queries, activation checkpointing on every decoder
    # block. Merge the LoRA after this stage (`model.merge_adapters()`, `--merge_adapters_at_end`).
    "abc-pretrain": {
        "model": {"pooling": "mean", "bidirectional": True, "head": "residual_mlp", "templates": {"query": "abc", "document": "abc"}},
        "training": {
            "loss": "abc",
            "lora_r": 64,
            "lora_alpha": 128,
            "lora_targets": ["language_model", "vision_tower"],
            "freeze_projector": True,
            "num_negatives": 7,
            "hardness_scale": 0.0,
            "learning_rate": 4e-5,
            "weight_decay": 1e-3,
            "warmup_steps": 0.03,
            "adam_beta1": 0.9,
            "adam_beta2": 0.999,
            "max_steps": 4000,
            "activation_checkpointing": True,
        },
    },
    # ABC §3.1, §4.1 stage 2: a new LoRA (r = 16, α = 32) on the LLM for the query side only, trained
    # against candidates embedded without it and without gradient; the head and τ are frozen;
    # 100 steps; batches of 128 images × their 4 instructions (group by image); activation
    # checkpointing as in stage 1.
    "abc-instruct": {
        "model": {},
        "training": {
            "loss": "abc",
            "learnable_temperature": False,
            "instruction_adapter": "instruction",
            "lora_r": 16,
            "lora_alpha": 32,
            "lora_targets": ["language_model"],
            "freeze_head": True,
            "hardness_scale": 0.0,
            "batch_sampler": "group_by",
            "group_by_column": "query_image",
            "max_steps": 100,
            "learning_rate": 4e-5,
            "weight_decay": 1e-3,
            "activation_checkpointing": True,
        },
    },
    # MM-Embed §4.1, §5.1, App. A.1: InfoNCE over positives and one modality-aware hard negative per
    # query (eq. 1; drawn per batch from type 1 or type 2 with equal probability when the rows carry
    # `negative_types`), the mined similarity not a reward, projector trained and LoRA r = 8 / α = 64
    # on the LLM, lr 1e-4, 2 epochs, queries and documents limited to 128 tokens, gradient
    # checkpointing, instruction-prefixed queries ("Instruct: ...\nQuery: "). The continual stage
    # (§4.1.2): lr 2e-5, 4.5K steps, --mix_data text-to-text rows, max_length 512 for text documents.
    "mm-embed": {
        "model": {"pooling": "last", "templates": {"query": "mm-embed", "document": "prefix"}, "max_length": 128},
        "training": {
            "loss": "mm-embed",
            "lora_r": 8,
            "lora_alpha": 64,
            "lora_targets": ["language_model"],
            "freeze_vision_tower": True,
            "num_negatives": 1,
            "hardness_scale": 0.0,
            "learning_rate": 1e-4,
            "num_train_epochs": 2,
            "activation_checkpointing": True,
        },
    },
}


def get_recipe(name: str) -> dict[str, dict[str, Any]]:
    if name not in RECIPES:
        raise ValueError(f"Unknown recipe {name!r}; choose one of {', '.join(RECIPES)}.")
    return RECIPES[name]
