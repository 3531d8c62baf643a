"""Hub custom code: the files here are copied next to saved weights (flat, torch + transformers only)."""

from .configuration_vlembed import FAMILIES, TEMPLATES, VLEmbedConfig
from .modeling_vlembed import EmbeddingOutput, ResidualMLPHead, VLEmbedModel, pool
from .processing_vlembed import EmbeddingInput, VLEmbedProcessor

__all__ = [
    "FAMILIES",
    "TEMPLATES",
    "VLEmbedConfig",
    "VLEmbedModel",
    "VLEmbedProcessor",
    "EmbeddingInput",
    "EmbeddingOutput",
    "ResidualMLPHead",
    "pool",
]
