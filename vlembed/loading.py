"""One way to get an embedding model from a name, for the CLI, the launcher and the main job."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Names that stand for a backbone shipped on disk (no Hub access needed).
PACKAGED_BACKBONES = ("all-MiniLM-L6-v2",)


def resolve_backbone(name_or_path: str) -> str:
    """A packaged name -> its folder; a folder or Hub id (org/name) as is; anything else is an error."""
    if name_or_path in PACKAGED_BACKBONES:
        from vlembed.testing import minilm_path

        return minilm_path()
    if not Path(name_or_path).exists() and name_or_path.count("/") != 1:
        raise FileNotFoundError(f"Backbone not found: '{name_or_path}' is neither a folder nor a Hub id (org/name).")
    return name_or_path


def is_vlembed_model(name_or_path: str) -> bool:
    config = Path(name_or_path) / "config.json"
    if config.is_file():
        return json.loads(config.read_text(encoding="utf-8")).get("model_type") == "vlembed"
    if Path(name_or_path).exists():
        return False
    from transformers import AutoConfig  # a Hub id: ask its config

    return AutoConfig.from_pretrained(name_or_path, trust_remote_code=True).model_type == "vlembed"


def load_embedding_model(name_or_path: str, *, device: str | None = None, **backbone_kwargs: Any):
    """A saved vlembed model (loaded as saved), or any supported backbone wrapped with ``backbone_kwargs``
    (`EmbeddingModel.from_backbone`: pooling, head, templates, ...). Moved to ``device`` (default: CUDA when present)."""
    import torch

    from vlembed import EmbeddingModel

    path = resolve_backbone(name_or_path)
    if is_vlembed_model(path):
        model = EmbeddingModel.from_pretrained(path)
    else:
        model = EmbeddingModel.from_backbone(path, **{key: value for key, value in backbone_kwargs.items() if value is not None})
    return model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))


__all__ = ["PACKAGED_BACKBONES", "resolve_backbone", "is_vlembed_model", "load_embedding_model"]
