"""vlembed: vision-language models (and text LLMs or encoders) as universal embedding models."""

from .modeling import TEMPLATES, VLEmbedConfig, VLEmbedModel

EmbeddingModel = VLEmbedModel

__version__ = "0.1.0"
__all__ = ["EmbeddingModel", "VLEmbedModel", "VLEmbedConfig", "TEMPLATES", "__version__"]
