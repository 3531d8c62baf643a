"""The three papers' recipes as named settings: how to build the model and how to train it.

Each recipe is ``{"model": kwargs for EmbeddingModel.from_backbone, "training": kwargs for
ContrastiveTrainingArguments}``; everything not named keeps its default, and every value can be
overridden (``examples/train.py --recipe llave --learning_rate 2e-5``). Section numbers refer to
the papers in ``shared/papers``.
"""

from __future__ import annotations

from typing import Any

RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    # LLaVE §4.1, Table 5: last-token pooling, hardness-weighted InfoNCE (α = 9, τ = 0.02) gathered
    # over all devices, full fine-tuning with the vision encoder frozen (Table 3 row 2) and the
    # projector trained (row 3), lr 1e-5 cosine, warmup 3 %, no weight decay, one epoch, batch 256.
    "llave": {
        "model": {"pooling": "last", "templates": {"query": "llave", "document": "llave"}},
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
    # r = 64 / α = 128 on the vision encoder and the LLM, learnable τ from 0.07, 7 mined negatives per
    # image (threshold mining, `vlembed mine --method threshold`), AdamW lr 4e-5, weight decay 1e-3,
    # warmup 3 %. Merge the LoRA after this stage (`model.merge_adapters()`).
    "abc-pretrain": {
        "model": {"pooling": "mean", "bidirectional": True, "head": "residual_mlp", "templates": {"query": "abc", "document": "abc"}},
        "training": {
            "loss": "abc",
            "lora_r": 64,
            "lora_alpha": 128,
            "lora_targets": ["language_model", "vision_tower"],
            "num_negatives": 7,
            "learning_rate": 4e-5,
            "weight_decay": 1e-3,
            "warmup_steps": 0.03,
            "adam_beta1": 0.9,
            "adam_beta2": 0.999,
        },
    },
    # ABC §3.1, §4.1 stage 2: a new LoRA (r = 16, α = 32) on the LLM for the query side only, trained
    # against candidates embedded without it and without gradient; the head and τ are frozen;
    # 100 steps; batches of images × their 4 instructions (group by image).
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
            "batch_sampler": "group_by",
            "group_by_column": "query_image",
            "max_steps": 100,
            "learning_rate": 4e-5,
            "weight_decay": 1e-3,
        },
    },
    # MM-Embed §4.1, §5.1: InfoNCE over positives and one modality-aware hard negative per query
    # (eq. 1), projector trained and LoRA r = 8 / α = 64 on the LLM, lr 1e-4, 2 epochs,
    # instruction-prefixed queries ("Instruct: ...\nQuery: ").
    "mm-embed": {
        "model": {"pooling": "last", "templates": {"query": "mm-embed", "document": "prefix"}},
        "training": {
            "loss": "mm-embed",
            "lora_r": 8,
            "lora_alpha": 64,
            "lora_targets": ["language_model"],
            "freeze_vision_tower": True,
            "num_negatives": 1,
            "learning_rate": 1e-4,
            "num_train_epochs": 2,
        },
    },
}


def get_recipe(name: str) -> dict[str, dict[str, Any]]:
    if name not in RECIPES:
        raise ValueError(f"Unknown recipe {name!r}; choose one of {', '.join(RECIPES)}.")
    return RECIPES[name]
