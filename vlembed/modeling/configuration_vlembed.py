"""Configuration of a vlembed embedding model: the backbone's config plus pooling, head and templates.

This file is copied next to the weights on ``save_pretrained`` and must only import torch,
transformers and the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

POOLING_MODES = ("last", "mean", "eos", "cls")
HEADS = (None, "linear", "residual_mlp")


@dataclass(frozen=True)
class Family:
    """Where a backbone family differs from the others; everything else is shared code.

    Attributes:
        image_placeholder: text its processor expands into image tokens (None: text-only backbone).
        video_placeholder: text its processor expands into video tokens (None: frames go in as images).
            SmolVLM has a video path ("<video>") but goes without: its processor (transformers 5.24)
            returns the frames under ``pixel_values``, the key of the images, so a batch holding an
            image item and a video item loses the images ("Image features and image tokens do not
            match"); and it needs the video's fps, which a list of frames lacks (it guesses 24).
        language_model: attribute path of the decoder inside the base model ("" = the model itself).
        vision_tower: attribute path of the vision encoder.
        projector: attribute path of the vision-to-language projector.
        decoder: whether the language model is a causal decoder (then instructions use the
            ``Instruct:/Query:`` form, and ``bidirectional`` has something to switch).
        positions_from_mask: whether vlembed passes position ids counted from the attention mask,
            so a left-padded row gets the positions it has alone (False: the model derives its
            own, as Qwen-VL's M-RoPE does).
    """

    image_placeholder: str | None = None
    video_placeholder: str | None = None
    language_model: str = ""
    vision_tower: str | None = None
    projector: str | None = None
    decoder: bool = True
    positions_from_mask: bool = True


_QWEN_VL = Family(
    image_placeholder="<|vision_start|><|image_pad|><|vision_end|>",
    video_placeholder="<|vision_start|><|video_pad|><|vision_end|>",
    language_model="language_model",
    vision_tower="visual",
    projector="visual.merger",
    positions_from_mask=False,
)
_LLAVA = dict(language_model="language_model", vision_tower="vision_tower", projector="multi_modal_projector")
# Idefics3 has no video path; SmolVLM's is not used (see `Family.video_placeholder`).
_IDEFICS = Family(image_placeholder="<image>", language_model="text_model", vision_tower="vision_model", projector="connector")

# model_type of the backbone -> how it differs. A backbone whose model_type is not here is refused
# with this list in the message: each entry is covered by the test suite.
FAMILIES: dict[str, Family] = {
    "qwen2_vl": _QWEN_VL,
    "qwen2_5_vl": _QWEN_VL,
    "qwen3_vl": _QWEN_VL,
    "llava_onevision": Family(image_placeholder="<image>", video_placeholder="<video>", **_LLAVA),
    "llava_next": Family(image_placeholder="<image>", **_LLAVA),
    "idefics3": _IDEFICS,
    "smolvlm": _IDEFICS,
    "qwen2": Family(),
    "qwen3": Family(),
    "llama": Family(),
    "mistral": Family(),
    "bert": Family(decoder=False),
}

# Named instruction templates. Placeholders: {instruction}, {image} (the item's images and video,
# when it has any, each followed by a newline) and {text}. A template is used when an instruction
# is given; without one an item is rendered as "{image}{text}".
TEMPLATES: dict[str, str] = {
    # e5-mistral / MM-Embed (MM-Embed §3, "Instruct: {instruction}\nQuery: ").
    "mm-embed": "Instruct: {instruction}\nQuery: {image}{text}",
    # ABC eq. 3: "<image> Instruction: <instruction>" (the image's newline gives way to the space
    # when the item has no text, see `render_template`).
    "abc": "{image}{text} Instruction: {instruction}",
    # VLM2Vec: "<image>\nRepresent the given image with the following question: ...".
    "vlm2vec": "{image}{instruction} {text}",
    # A plain prefix (E5 / BGE style, "query: {text}"); the default for encoders and documents.
    "prefix": "{instruction} {image}{text}",
}
TEMPLATES["llave"] = TEMPLATES["vlm2vec"]  # LLaVE §2.1: "Following VLM2Vec"
PLAIN_TEMPLATE = "{image}{text}"


def default_templates(family: Family) -> dict[str, str]:
    """Per-family defaults: decoders get the MM-Embed form for queries, encoders a plain prefix."""
    return {"query": TEMPLATES["mm-embed" if family.decoder else "prefix"], "document": TEMPLATES["prefix"]}


class VLEmbedConfig(PreTrainedConfig):
    r"""Configuration of [`VLEmbedModel`].

    Args:
        backbone_model_config (`dict` or `PreTrainedConfig`):
            Config of the wrapped backbone (any model type in `FAMILIES`).
        pooling (`str`, defaults to `"last"`):
            `"last"` (last real token, LLaVE §2.1), `"mean"` (average of real tokens, ABC eq. 1),
            `"eos"` (an EOS token is appended and its state taken, VLM2Vec) or `"cls"` (first real token).
        bidirectional (`bool`, defaults to `False`):
            Let a decoder's tokens attend both ways (ABC §3.1, LLM2Vec).
        head (`str`, *optional*):
            `None`, `"linear"` or `"residual_mlp"` (ABC eq. 2: x + A·SELU(B·x)).
        embedding_dim (`int`, *optional*):
            Output size; defaults to the backbone's hidden size. Only a `"linear"` head may change it.
        normalize (`bool`, defaults to `True`):
            L2-normalise the embeddings.
        templates (`dict`, *optional*):
            `{"query": ..., "document": ...}` instruction templates (see `TEMPLATES`).
        instructions (`dict`, *optional*):
            Default instruction per task (`{"query": "Find the code for this description."}`),
            used by `encode_query` / `encode_document` when none is given; sentence-transformers
            sees them as its `prompts`.
        max_length (`int`, *optional*):
            Token limit for text-only inputs (inputs with images are never truncated: that would cut
            image tokens).
        max_frames (`int`, defaults to 32):
            Frames uniformly sampled from a longer video (LLaVE §4.4).
        padding_side (`str`, *optional*):
            Overrides the tokenizer's padding side. Pooling is correct with either.
        adapters (`dict`, *optional*):
            LoRA adapters the model carries, by name: `{"instruction": {"r": 16, "lora_alpha": 32,
            "target_modules": [...], "tasks": ["query"]}}`. An adapter is active for its tasks only
            (ABC §3.1: the instruction adapter embeds queries; candidates are embedded without it).
            Loading a model with adapters needs `peft`.
        temperature (`float`, *optional*):
            The contrastive temperature, when the model learns it (ABC §3.1); the weights hold the
            trained value, this the initial one.
        training_summary (`dict`, *optional*):
            The recipe and hyperparameters the model was trained with (written by the trainer; the
            model card shows it).
        evaluation_results (`list`, *optional*):
            `{"task", "dataset", "split", "metrics"}` entries for the model card's results.
    """

    model_type = "vlembed"
    sub_configs_defaults = {
        "backbone_model_config": SubConfigSpec(config_class=AutoConfig, model_type="bert", optional=True)
    }

    backbone_model_config: dict | PreTrainedConfig | None = None
    pooling: str = "last"
    bidirectional: bool = False
    head: str | None = None
    embedding_dim: int | None = None
    normalize: bool = True
    templates: dict | None = None
    instructions: dict | None = None
    max_length: int | None = None
    max_frames: int = 32
    padding_side: str | None = None
    adapters: dict | None = None
    temperature: float | None = None
    training_summary: dict | None = None
    evaluation_results: list | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"Unknown pooling {self.pooling!r}; choose one of {', '.join(POOLING_MODES)}.")
        if self.head not in HEADS:
            raise ValueError(f"Unknown head {self.head!r}; choose one of None, 'linear', 'residual_mlp'.")
        if self.padding_side not in (None, "left", "right"):
            raise ValueError(f"padding_side must be 'left', 'right' or None, got {self.padding_side!r}.")
        if self.max_frames < 1:
            raise ValueError(f"max_frames must be at least 1, got {self.max_frames}.")
        if self.backbone_model_config is None:
            return
        family = self.family  # raises for unsupported architectures
        hidden_size = self.backbone_model_config.get_text_config().hidden_size
        if self.embedding_dim is None:
            self.embedding_dim = hidden_size
        elif self.embedding_dim != hidden_size and self.head != "linear":
            raise ValueError(
                f"embedding_dim={self.embedding_dim} differs from the backbone's hidden size {hidden_size}; "
                "only head='linear' can change the size."
            )
        if self.templates is None:
            self.templates = default_templates(family)
        unknown = set(self.templates) - {"query", "document"}
        if unknown:
            raise ValueError(f"templates takes the keys 'query' and 'document', got {sorted(unknown)}.")
        self.templates = {name: TEMPLATES.get(template, template) for name, template in self.templates.items()}
        for name, adapter in (self.adapters or {}).items():
            tasks = set(adapter.get("tasks", ()))
            if not tasks or not tasks <= {"query", "document"}:
                raise ValueError(f"Adapter {name!r}: 'tasks' must be a non-empty subset of ['query', 'document'], got {sorted(tasks)}.")
        for task in ("query", "document"):
            owners = [name for name, adapter in (self.adapters or {}).items() if task in adapter["tasks"]]
            if len(owners) > 1:
                raise ValueError(f"Adapters {owners} all apply to {task!r}; at most one adapter per task.")

    @property
    def family(self) -> Family:
        model_type = self.backbone_model_config.model_type
        if model_type not in FAMILIES:
            raise ValueError(
                f"Unsupported backbone architecture {model_type!r}. Supported model types: {', '.join(FAMILIES)}."
            )
        return FAMILIES[model_type]


__all__ = ["VLEmbedConfig", "FAMILIES", "TEMPLATES", "POOLING_MODES", "HEADS", "Family"]
