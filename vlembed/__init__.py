"""vlembed: vision-language models (and text LLMs or encoders) as universal embedding models."""

from .model_cards import write_model_card
from .modeling import TEMPLATES, VLEmbedConfig, VLEmbedModel

EmbeddingModel = VLEmbedModel
# With vlembed installed, every save_pretrained / push_to_hub also writes the model card.
VLEmbedModel.model_card_writer = staticmethod(write_model_card)

__version__ = "0.1.0"
__all__ = [
    "EmbeddingModel",
    "VLEmbedModel",
    "VLEmbedConfig",
    "TEMPLATES",
    "ContrastiveTrainer",
    "ContrastiveTrainingArguments",
    "write_model_card",
    "__version__",
]


def __getattr__(name: str):
    # The trainer pulls in transformers.Trainer and accelerate: imported only when asked for.
    if name in ("ContrastiveTrainer", "ContrastiveTrainingArguments"):
        from .trainer import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'vlembed' has no attribute {name!r}")
