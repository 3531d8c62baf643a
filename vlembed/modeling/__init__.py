"""Hub custom code. The flat files here are copied next to saved weights and import only torch and
transformers (custom_st.py, loaded only by sentence-transformers, imports it). This package file is
not copied: it wires the vlembed-only extras, such as writing the model card on save."""

from vlembed.model_cards import write_model_card

from .configuration_vlembed import FAMILIES, TEMPLATES, VLEmbedConfig
from .modeling_vlembed import EmbeddingOutput, ResidualMLPHead, VLEmbedModel, pool
from .processing_vlembed import EmbeddingInput, VLEmbedProcessor

# With vlembed installed, every save_pretrained / push_to_hub also writes the model card.
VLEmbedModel.model_card_writer = staticmethod(write_model_card)

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
