"""vlembed: any Hugging Face vision-language model, text LLM or encoder as a universal embedding model.

`VLEmbedModel` wraps the backbone's *base* model (no LM head: ABC §4.1 notes the logits cost up to
11 GB per device), pools its last hidden states, applies an optional head and L2-normalises.
`encode` embeds text, images, interleaved image+text and video frames, with task instructions.

This file is copied next to the weights on ``save_pretrained`` so that
``AutoModel.from_pretrained(repo, trust_remote_code=True)`` works where vlembed is not installed:
it imports only torch, transformers and the standard library (peft lazily, for adapters).
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, AutoProcessor, PreTrainedModel
from transformers.utils import ModelOutput, is_torchvision_available, logging

from .configuration_vlembed import FAMILIES, VLEmbedConfig
from .processing_vlembed import BOOKKEEPING_KEYS, VLEmbedProcessor, first_token_index, last_token_index

logger = logging.get_logger(__name__)


def pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Pool token states [B, L, H] into one vector per row, in at least float32, ignoring padding on either side."""
    hidden_states = hidden_states.to(torch.promote_types(hidden_states.dtype, torch.float32))
    rows = torch.arange(hidden_states.shape[0], device=hidden_states.device)
    if mode == "mean":  # ABC eq. 1, over real tokens only (ABC's code also averaged padding)
        mask = attention_mask.to(hidden_states.dtype).unsqueeze(-1)
        return (hidden_states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    if mode in ("last", "eos"):  # LLaVE §2.1; "eos" appended an EOS token first
        return hidden_states[rows, last_token_index(attention_mask)]
    if mode == "cls":
        return hidden_states[rows, first_token_index(attention_mask)]
    raise ValueError(f"Unknown pooling {mode!r}.")


class ResidualMLPHead(nn.Module):
    """ABC eq. 2: MLP(x) = x + A·SELU(B·x).

    B starts as the identity (as in ABC's code) and A at zero, so the head is exactly the identity at
    initialisation and training moves it away from the pooled backbone embedding only as it helps.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.up = nn.Linear(dim, dim)  # B
        self.down = nn.Linear(dim, dim)  # A
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.up.weight.copy_(torch.eye(self.up.in_features))
            self.up.bias.zero_()
            self.down.weight.zero_()
            self.down.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(F.selu(self.up(x)))


def _submodule(model: nn.Module, path: str) -> nn.Module:
    return functools.reduce(getattr, path.split("."), model) if path else model


def _make_bidirectional(language_model: nn.Module) -> None:
    """Let every token attend to every other, through public transformers switches only.

    ``config.is_causal = False`` makes transformers' mask utilities build a bidirectional padding
    mask instead of a causal one, and ``module.is_causal = False`` stops SDPA from falling back to
    its causal kernel when no mask is needed. No private attention class is replaced.
    """
    language_model.config.is_causal = False
    for module in language_model.modules():
        if hasattr(module, "is_causal"):
            module.is_causal = False


@dataclass
class EmbeddingOutput(ModelOutput):
    """Output of `VLEmbedModel.forward`: one embedding per input row (float32)."""

    embeddings: torch.Tensor | None = None


class VLEmbedPreTrainedModel(PreTrainedModel):
    config_class = VLEmbedConfig
    base_model_prefix = "vlembed"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _keep_in_fp32_modules = ["head"]  # ABC keeps its MLP head in float32

    def _init_weights(self, module: nn.Module) -> None:
        # Only the head is ours; the backbone initialises (or loads) its own weights.
        if isinstance(module, ResidualMLPHead):
            module.reset_parameters()
        elif isinstance(module, nn.Linear) and module is getattr(self, "head", None):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)


class VLEmbedModel(VLEmbedPreTrainedModel):
    r"""An embedding model over a backbone's base model.

    Build one with [`VLEmbedModel.from_backbone`], load a saved one with `from_pretrained` (or
    `AutoModel.from_pretrained(..., trust_remote_code=True)`), embed with [`VLEmbedModel.encode`].

    Example:

    ```python
    >>> model = VLEmbedModel.from_backbone("Qwen/Qwen2-VL-2B-Instruct", pooling="last")
    >>> queries = model.encode([{"image": "dog.jpg", "text": "What is the dog holding?"}], instruction="Find the answer.")
    >>> documents = model.encode(["a red frisbee", "a tennis ball"])
    >>> model.similarity(queries, documents)
    ```
    """

    def __init__(self, config: VLEmbedConfig, backbone: PreTrainedModel | None = None):
        super().__init__(config)
        self.backbone = backbone if backbone is not None else AutoModel.from_config(config.backbone_model_config)
        family = config.family
        if config.bidirectional and family.decoder:
            _make_bidirectional(_submodule(self.backbone, family.language_model))
        hidden_size = config.backbone_model_config.get_text_config().hidden_size
        if config.head == "residual_mlp":
            self.head = ResidualMLPHead(hidden_size)
        elif config.head == "linear":
            self.head = nn.Linear(hidden_size, config.embedding_dim)
        else:
            self.head = None
        # ABC §3.1 learns τ; it lives in the model so optimisers, DDP, checkpoints and ZeRO see it.
        if config.temperature is not None:
            self.init_temperature(config.temperature)
        self._processor: VLEmbedProcessor | None = None
        for name, adapter in (config.adapters or {}).items():
            self._inject_adapter(name, adapter)
        self.post_init()

    def init_temperature(self, value: float) -> None:
        """Give the model a learnable τ (ABC §3.1), saved with the weights and in ``config.temperature``.

        A one-element vector rather than a 0-d scalar: FSDP2's ``fully_shard`` refuses scalar parameters.
        """
        self.config.temperature = float(value)
        self.temperature = nn.Parameter(torch.tensor([float(value)]))

    # ------------------------------------------------------------------ building and loading

    @classmethod
    def from_backbone(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        pooling: Literal["last", "mean", "eos", "cls"] = "last",
        bidirectional: bool = False,
        head: Literal["linear", "residual_mlp"] | None = None,
        embedding_dim: int | None = None,
        normalize: bool = True,
        templates: dict[str, str] | None = None,
        instructions: dict[str, str] | None = None,
        max_length: int | None = None,
        max_frames: int = 32,
        padding_side: Literal["left", "right"] | None = None,
        processor: Any = None,
        **model_kwargs: Any,
    ) -> "VLEmbedModel":
        """Wrap a Hub model id or local folder (any model type in `FAMILIES`) as an embedding model.

        The backbone's base model is loaded through `AutoModel` (checkpoints of the
        ``*ForConditionalGeneration`` / ``*ForCausalLM`` classes load too; their LM head is dropped).
        ``templates`` takes ``{"query": ..., "document": ...}``, each a name in `TEMPLATES` or a
        template string; ``instructions`` the default instruction per task (see `encode_query`).
        ``max_length`` defaults to the ``max_seq_length`` of a sentence-transformers
        folder, else the tokenizer's limit. ``model_kwargs`` go to `AutoModel.from_pretrained`
        (``dtype``, ``attn_implementation``, ``revision``, ``token``, ...).
        """
        config_kwargs = dict(
            pooling=pooling, bidirectional=bidirectional, head=head, embedding_dim=embedding_dim,
            normalize=normalize, templates=templates, instructions=instructions, max_frames=max_frames,
            padding_side=padding_side,
        )
        # Validate our own arguments before loading any weights.
        VLEmbedConfig(**config_kwargs)
        hub_kwargs = {key: model_kwargs[key] for key in _HUB_KWARGS if key in model_kwargs}
        backbone_config = _load_backbone_config(pretrained_model_name_or_path, hub_kwargs)
        config = VLEmbedConfig(backbone_model_config=backbone_config, **config_kwargs)
        if processor is None:
            processor = _load_processor(pretrained_model_name_or_path, config, hub_kwargs)
        tokenizer = getattr(processor, "tokenizer", processor)
        config.max_length = max_length or _default_max_length(pretrained_model_name_or_path, tokenizer)
        if not isinstance(processor, VLEmbedProcessor):
            # Before the weights load: it refuses what the tokenizer cannot serve (pooling="eos" without EOS).
            processor = VLEmbedProcessor(processor, config)
        backbone = AutoModel.from_pretrained(pretrained_model_name_or_path, config=backbone_config, **model_kwargs)
        model = cls(config, backbone=backbone)
        model.processor = processor
        model.config.name_or_path = str(pretrained_model_name_or_path)
        return model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any) -> "VLEmbedModel":
        """Load a saved vlembed model together with the processor saved beside it.

        A model that carries adapters comes back with only the adapter weights trainable, as peft
        leaves a freshly adapted model (a plain reload would make every weight trainable).
        """
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        if model.config.adapters:
            for name, parameter in model.named_parameters():
                parameter.requires_grad = "lora_" in name
        hub_kwargs = {key: kwargs[key] for key in _HUB_KWARGS if key in kwargs}
        # This folder's config.json names our own code in auto_map; trusting it (as the caller did to
        # get here) keeps AutoProcessor from prompting. The processor itself is the backbone's.
        hub_kwargs["trust_remote_code"] = True
        model.processor = _load_processor(pretrained_model_name_or_path, model.config, hub_kwargs)
        return model

    # Set by the vlembed package (when installed) to write README.md: `writer(model, directory, **model_card)`.
    model_card_writer = None

    def save_pretrained(
        self, save_directory: str | os.PathLike, *args: Any, model_card: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        """Write everything a Hub repository needs: config (with ``auto_map``), safetensors weights,
        this code, the processor, the sentence-transformers files and, with vlembed installed, the
        model card (``model_card``: options of `vlembed.write_model_card`, e.g. ``repo_id``)."""
        kwargs.pop("safe_serialization", None)  # weights are always safetensors
        super().save_pretrained(save_directory, *args, **kwargs)
        if not kwargs.get("is_main_process", True):
            return
        if self._processor is not None:
            self._processor.processor.save_pretrained(save_directory)
        _write_sentence_transformers_files(self.config, save_directory)
        if type(self).model_card_writer is not None:
            type(self).model_card_writer(self, save_directory, **(model_card or {}))

    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str = "Upload vlembed embedding model",
        private: bool | None = None,
        token: str | bool | None = None,
        revision: str | None = None,
        create_pr: bool = False,
    ):
        """Create the repository if needed and upload everything `save_pretrained` writes, in one commit.

        The token comes from the usual places (``token=``, ``HF_TOKEN``, the saved login) and is
        handed to `huggingface_hub` only: never printed or logged. Returns the commit info.
        """
        import tempfile

        from huggingface_hub import HfApi  # a transformers dependency; only pushing needs it

        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id
        with tempfile.TemporaryDirectory() as directory:
            self.save_pretrained(directory, model_card={"repo_id": repo_id})
            return api.upload_folder(
                repo_id=repo_id,
                folder_path=directory,
                commit_message=commit_message,
                revision=revision,
                create_pr=create_pr,
                repo_type="model",
            )

    @property
    def processor(self) -> VLEmbedProcessor:
        """The input builder (templates, placeholders, the backbone's own processor)."""
        if self._processor is None:
            raise ValueError("This model has no processor; load it with from_pretrained/from_backbone or set model.processor.")
        return self._processor

    @processor.setter
    def processor(self, processor: Any) -> None:
        self._processor = processor if isinstance(processor, VLEmbedProcessor) else VLEmbedProcessor(processor, self.config)

    # ------------------------------------------------------------------ adapters

    def add_adapter(
        self,
        name: str,
        *,
        r: int,
        lora_alpha: int,
        lora_dropout: float = 0.0,
        targets: Sequence[str] = ("language_model",),
        tasks: Sequence[str] = ("query", "document"),
    ) -> None:
        """Add a LoRA adapter (needs peft) on the ``targets`` (``"language_model"``, ``"vision_tower"``).

        ``tasks`` says which side it embeds: ``("query",)`` for ABC's instruction adapter (§3.1),
        whose candidates are embedded without it. peft freezes every other weight.
        """
        family = self.config.family
        roots = {"language_model": family.language_model, "vision_tower": family.vision_tower}
        unknown = set(targets) - set(roots)
        if unknown or not targets:
            raise ValueError(f"LoRA targets must be among {sorted(roots)}, got {list(targets)}.")
        if "vision_tower" in targets and family.vision_tower is None:
            raise ValueError("This backbone has no vision tower to put LoRA on.")
        base = self.backbone.get_base_model() if hasattr(self.backbone, "get_base_model") else self.backbone
        excluded = family.projector or "\0"  # the projector is trained whole or frozen, never LoRA'd
        target_modules = sorted(
            module_name
            for module_name, module in base.named_modules()
            if isinstance(module, nn.Linear)
            and any(module_name.startswith(roots[target] + ".") if roots[target] else True for target in targets)
            and not module_name.startswith(excluded)
        )
        adapter = dict(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=target_modules, tasks=list(tasks))
        adapters = dict(self.config.adapters or {})
        adapters[name] = adapter
        self.config.adapters = adapters
        self.config.__post_init__()  # validates tasks (one adapter per task)
        self._inject_adapter(name, adapter)

    def _inject_adapter(self, name: str, adapter: dict) -> None:
        try:
            from peft import LoraConfig, PeftModel, get_peft_model
        except ImportError as error:
            raise ImportError("This model carries LoRA adapters: pip install peft") from error
        lora_config = LoraConfig(
            r=adapter["r"], lora_alpha=adapter["lora_alpha"], lora_dropout=adapter.get("lora_dropout", 0.0),
            target_modules=list(adapter["target_modules"]),
        )
        if isinstance(self.backbone, PeftModel):
            self.backbone.add_adapter(name, lora_config)
        else:
            self.backbone = get_peft_model(self.backbone, lora_config, adapter_name=name)

    def merge_adapters(self) -> None:
        """Fold every adapter into the base weights (ABC: stage 1's LoRA is merged before stage 2)."""
        if not self.config.adapters:
            return
        names = list(self.config.adapters)
        self.backbone = self.backbone.merge_and_unload(adapter_names=names)
        self.config.adapters = None

    def _adapter_for(self, task: str | None) -> str | None:
        for name, adapter in (self.config.adapters or {}).items():
            if (task or "document") in adapter["tasks"]:
                return name
        return None

    def adapter_scope(self, task: str | None, use_adapter: bool = True):
        """Context in which the backbone runs with ``task``'s adapter, or with none
        (``use_adapter=False``, or no adapter for that task)."""
        import contextlib

        if not self.config.adapters:
            return contextlib.nullcontext()
        name = self._adapter_for(task) if use_adapter else None
        if name is None:
            return self.backbone.disable_adapter()
        self.backbone.set_adapter(name)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        normalize: bool | None = None,
        **backbone_inputs: Any,
    ) -> EmbeddingOutput:
        """Embed a batch of processor outputs. Only the base model runs: no LM-head logits."""
        for key in BOOKKEEPING_KEYS:
            backbone_inputs.pop(key, None)
        family = self.config.family
        if family.decoder:
            backbone_inputs.setdefault("use_cache", False)
        if (
            family.positions_from_mask
            and attention_mask is not None
            and "position_ids" not in backbone_inputs
            and not attention_mask[:, 0].all()
        ):
            # A left-padded row: count positions over real tokens only, so it is embedded exactly as
            # it is alone. (Right-padded rows already start at 0; passing ids then only costs time.)
            backbone_inputs["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        outputs = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **backbone_inputs)
        embeddings = pool(outputs.last_hidden_state, attention_mask, self.config.pooling)
        if self.head is not None:
            embeddings = self.head(embeddings.to(self.head_dtype))
        if self.config.normalize if normalize is None else normalize:
            embeddings = F.normalize(embeddings, dim=-1)
        return EmbeddingOutput(embeddings=embeddings)

    @property
    def head_dtype(self) -> torch.dtype:
        return next(self.head.parameters()).dtype

    # ------------------------------------------------------------------ encode

    @torch.no_grad()
    def encode(
        self,
        inputs: Any,
        instruction: str | Sequence[str | None] | None = None,
        *,
        task: Literal["query", "document"] | None = None,
        batch_size: int = 32,
        normalize: bool | None = None,
        convert_to: Literal["numpy", "torch"] = "numpy",
        show_progress_bar: bool | None = None,
        use_adapter: bool = True,
    ):
        """Embed text, images, interleaved image+text or video frames.

        Args:
            inputs: one item or a list of items: ``str``, ``PIL.Image.Image``, ``pathlib.Path`` (an
                image file), ``{"text": ..., "image": ...}``, ``{"images": [...], "text": ...}``
                (``<image>`` in the text places an image) or ``{"video": [frames], "text": ...}``.
            instruction: a task instruction for all items, or one per item (None for none). With
                an instruction the ``task`` template of the config renders the item.
            task: ``"query"`` (default when an instruction is given) or ``"document"``.
            batch_size: items per forward pass. Items are sorted by length to waste little
                padding; the output keeps the input order.
            normalize: L2-normalise (default: the config's ``normalize``).
            convert_to: ``"numpy"`` (float32 array) or ``"torch"`` (float32 tensor on the model's device).
            show_progress_bar: default: shown when there are more than 4 batches.
            use_adapter: with a model that carries adapters, embed with the task's adapter (default)
                or, ``False``, with the base weights only.

        Returns:
            ``[len(inputs), embedding_dim]`` (``[embedding_dim]`` for a single item).
        """
        if convert_to not in ("numpy", "torch"):
            raise ValueError(f"convert_to must be 'numpy' or 'torch', got {convert_to!r}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        single = not isinstance(inputs, (list, tuple))
        items = self.processor.parse([inputs] if single else inputs)
        if instruction is not None and not isinstance(instruction, str) and len(instruction) != len(items):
            raise ValueError(f"Got {len(instruction)} instructions for {len(items)} inputs.")
        per_item = [instruction] * len(items) if instruction is None or isinstance(instruction, str) else list(instruction)
        task = task or ("query" if instruction is not None else "document")
        order = self.processor.length_order(items, per_item, task)
        embeddings = torch.empty(len(items), self.config.embedding_dim, dtype=torch.float32, device=self.device)
        if show_progress_bar is None:
            show_progress_bar = len(items) > 4 * batch_size
        was_training = self.training
        self.eval()
        try:
            with self.adapter_scope(task, use_adapter):
                self._encode_batches(items, per_item, order, task, batch_size, normalize, embeddings, show_progress_bar)
        finally:
            self.train(was_training)
        if single:
            embeddings = embeddings[0]
        return embeddings.cpu().numpy() if convert_to == "numpy" else embeddings

    def _encode_batches(self, items, instructions, order, task, batch_size, normalize, out, show_progress_bar) -> None:
        starts = range(0, len(items), batch_size)
        for start in logging.tqdm(starts, desc="Encoding", disable=not show_progress_bar):
            indices = order[start : start + batch_size]
            batch = self.processor(
                [items[i] for i in indices], [instructions[i] for i in indices], task=task, parsed=True, indices=indices
            )
            out[indices] = self(**batch.to(self.device), normalize=normalize).embeddings.float()

    def encode_query(self, inputs: Any, instruction: str | None = None, **kwargs: Any):
        """`encode` with the query template and, when none is given, the config's default query instruction."""
        instruction = instruction if instruction is not None else (self.config.instructions or {}).get("query")
        return self.encode(inputs, instruction, task="query", **kwargs)

    def encode_document(self, inputs: Any, instruction: str | None = None, **kwargs: Any):
        """`encode` with the document template and the config's default document instruction, if any."""
        instruction = instruction if instruction is not None else (self.config.instructions or {}).get("document")
        return self.encode(inputs, instruction, task="document", **kwargs)

    @staticmethod
    def similarity(embeddings_a: Any, embeddings_b: Any) -> torch.Tensor:
        """Cosine similarity matrix [len(a), len(b)] of numpy arrays or tensors."""
        a = torch.as_tensor(embeddings_a, dtype=torch.float32)
        b = torch.as_tensor(embeddings_b, dtype=torch.float32)
        a, b = (a.unsqueeze(0) if a.dim() == 1 else a), (b.unsqueeze(0) if b.dim() == 1 else b)
        return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T.to(a.device)


def _write_sentence_transformers_files(config: VLEmbedConfig, directory: str | os.PathLike) -> None:
    """modules.json naming the shipped `custom_st.VLEmbedTransformer`, its config, and the prompts."""
    import importlib.metadata
    import shutil

    def write_json(name: str, content: Any) -> None:
        path = os.path.join(directory, name)
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            json.dump(content, handle, indent=2)
        os.replace(path + ".tmp", path)

    def version(package: str) -> str:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    custom_st = os.path.join(os.path.dirname(os.path.abspath(__file__)), "custom_st.py")
    if not os.path.isfile(custom_st):
        source_folder = str(getattr(config, "_name_or_path", "") or "")
        custom_st = os.path.join(source_folder, "custom_st.py")
    if os.path.isfile(custom_st):
        if os.path.abspath(custom_st) != os.path.abspath(os.path.join(directory, "custom_st.py")):
            shutil.copyfile(custom_st, os.path.join(directory, "custom_st.py"))
    else:
        logger.warning("custom_st.py not found: the saved folder will not load in sentence-transformers.")
        return
    write_json("modules.json", [{"idx": 0, "name": "0", "path": "", "type": "custom_st.VLEmbedTransformer"}])
    write_json("sentence_bert_config.json", {"transformer_task": "feature-extraction"})
    instructions = config.instructions or {}
    write_json(
        "config_sentence_transformers.json",
        {
            "model_type": "SentenceTransformer",
            "__version__": {
                "sentence_transformers": version("sentence-transformers"),
                "transformers": version("transformers"),
                "pytorch": version("torch"),
            },
            "prompts": {"query": instructions.get("query", ""), "document": instructions.get("document", "")},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )


_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder")


def _load_backbone_config(name_or_path, hub_kwargs):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(name_or_path, **hub_kwargs)
    if config.model_type not in FAMILIES:
        raise ValueError(
            f"Unsupported backbone architecture {config.model_type!r} ({name_or_path}). "
            f"Supported model types: {', '.join(FAMILIES)}."
        )
    return config


def _load_processor(name_or_path, config: VLEmbedConfig, hub_kwargs) -> Any:
    """The backbone's processor (tokenizer for text backbones), with a clear torchvision message."""
    try:
        return AutoProcessor.from_pretrained(name_or_path, **hub_kwargs)
    except Exception as error:
        if config.family.image_placeholder is not None and not is_torchvision_available():
            raise ImportError(
                f"The {config.backbone_model_config.model_type} processor needs torchvision, which is not "
                f"installed: install the torchvision build that matches your torch ({torch.__version__}). "
                "Text-only backbones work without it."
            ) from error
        raise


def _default_max_length(name_or_path, tokenizer) -> int | None:
    """A sentence-transformers folder's ``max_seq_length``, else the tokenizer's (sane) limit."""
    st_config = os.path.join(str(name_or_path), "sentence_bert_config.json")
    if os.path.isfile(st_config):
        with open(st_config) as handle:
            max_seq_length = json.load(handle).get("max_seq_length")
        if max_seq_length:
            return int(max_seq_length)
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if limit is not None and limit < 1_000_000 else None


VLEmbedConfig.register_for_auto_class()
VLEmbedModel.register_for_auto_class("AutoModel")

__all__ = ["VLEmbedModel", "VLEmbedPreTrainedModel", "EmbeddingOutput", "ResidualMLPHead", "pool"]
