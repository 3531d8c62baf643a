"""The sentence-transformers module of a vlembed model, shipped next to the weights.

``modules.json`` names ``custom_st.VLEmbedTransformer``; ``SentenceTransformer(repo,
trust_remote_code=True)`` loads it without vlembed installed. It is sentence-transformers' own
`Transformer` module (loading, saving, devices, trainer integration) with two differences: inputs
are rendered by the model's `VLEmbedProcessor` (its instruction templates and media placeholders),
and the output is the model's pooled, headed, normalised embedding — so ``st.encode`` equals
``AutoModel.from_pretrained(repo, trust_remote_code=True).encode``.

An ST ``prompt`` (``prompts={"query": ...}``, ``encode_query``, ``encode_document``) is the
*instruction* given to that template: ``st.encode_query(x, prompt=p)`` equals
``model.encode_query(x, instruction=p)``.

Unlike the other files here, this one imports sentence-transformers: only sentence-transformers
loads it.
"""

from __future__ import annotations

from typing import Any

from sentence_transformers.base.modules import Transformer

_OUTPUT = {"method": "forward", "method_output_name": "embeddings"}
MODALITY_CONFIG = {
    modality: dict(_OUTPUT) for modality in ("text", "image", "video", ("image", "text"), ("text", "video"), "message")
}


class VLEmbedTransformer(Transformer):
    """sentence-transformers' `Transformer` over a vlembed model (see the module docstring)."""

    def __init__(self, model_name_or_path: str, **kwargs: Any):
        for key in ("model_kwargs", "processor_kwargs", "config_kwargs"):
            # The model class is the repository's own code (auto_map), so loading needs it trusted.
            kwargs[key] = {**(kwargs.get(key) or {}), "trust_remote_code": True}
        kwargs["modality_config"] = MODALITY_CONFIG
        kwargs["module_output_name"] = "sentence_embedding"
        kwargs["unpad_inputs"] = False
        kwargs.pop("max_seq_length", None)  # the vlembed config holds the length limit
        super().__init__(model_name_or_path, **kwargs)
        # ST loaded the processor again for itself; keep one, the model's, so that ST's tokenizer and
        # the one that renders inputs are the same object.
        self.processor = self.input_formatter.processor = self.model.processor.processor

    def on_model_ready(self, model: Any) -> None:
        # The card ST writes after fine-tuning (SentenceTransformerTrainer, then save) replaces the
        # vlembed card; its training record is ST's, and these tags keep the model findable as vlembed's.
        model.model_card_data.add_tags(["vlembed", "multimodal-embedding"])

    @property
    def max_seq_length(self) -> int | None:
        return self.model.processor.max_length

    @max_seq_length.setter
    def max_seq_length(self, value: int | None) -> None:
        self.model.processor.max_length = value
        self.model.config.max_length = value

    def get_embedding_dimension(self) -> int:
        return self.model.config.embedding_dim

    def preprocess(self, inputs: list, prompt: str | None = None, task: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """Render the inputs as `VLEmbedModel.encode` does; ``prompt`` is the instruction."""
        features = dict(self.model.processor(list(inputs), instruction=prompt or None, task=task))
        features["modality"] = "message"  # any mix of text, images and video
        return features

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        model_inputs = {key: value for key, value in features.items() if key not in ("modality", "prompt_length", "task")}
        features["sentence_embedding"] = self.model(**model_inputs).embeddings
        return features

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        # The vlembed model writes its weights, code, processor and sentence-transformers files.
        self.model.save_pretrained(output_path, safe_serialization=safe_serialization)
        self.save_config(output_path)
