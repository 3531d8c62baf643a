"""vlembed: vision-language models (and text LLMs or encoders) as universal embedding models.

Attributes load on first use, so that `vlembed --help` and light imports stay fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "EmbeddingModel": ("vlembed.modeling", "VLEmbedModel"),
    "VLEmbedModel": ("vlembed.modeling", "VLEmbedModel"),
    "VLEmbedConfig": ("vlembed.modeling", "VLEmbedConfig"),
    "TEMPLATES": ("vlembed.modeling", "TEMPLATES"),
    "ContrastiveTrainer": ("vlembed.trainer.trainer", "ContrastiveTrainer"),
    "ContrastiveTrainingArguments": ("vlembed.trainer.trainer", "ContrastiveTrainingArguments"),
    "ContrastiveLoss": ("vlembed.trainer.losses", "ContrastiveLoss"),
    "write_model_card": ("vlembed.model_cards", "write_model_card"),
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vlembed' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    return getattr(importlib.import_module(module), attribute)
