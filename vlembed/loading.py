"""One way to get an embedding model from a name, for the CLI, the launcher and the main job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Names that stand for a backbone shipped on disk (no Hub access needed) -> the Hub id of the same
# weights, which model cards name as base_model.
PACKAGED_BACKBONES = {"all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2"}


def _packaged_folders() -> dict[str, str]:
    from vlembed.testing import minilm_path

    return {"all-MiniLM-L6-v2": minilm_path()}


def resolve_backbone(name_or_path: str) -> str:
    """A packaged name -> its folder; a model folder or a reachable Hub id as is. Refuses, before any
    weights load, a name with no config.json behind it and a model type vlembed cannot wrap."""
    from vlembed.modeling import FAMILIES

    folders = _packaged_folders()
    if name_or_path in folders:
        return folders[name_or_path]
    model_type = model_config_dict(name_or_path).get("model_type")
    if model_type != "vlembed" and model_type not in FAMILIES:
        raise ValueError(
            f"Backbone '{name_or_path}' is a {model_type!r} model, which vlembed cannot wrap. "
            f"Supported model types: {', '.join(FAMILIES)} (or a saved vlembed model)."
        )
    return name_or_path


def model_config_dict(name_or_path: str, role: str = "Backbone") -> dict[str, Any]:
    """The raw config.json of a model folder or Hub id (read, never executed), or a FileNotFoundError
    that names the ``role`` the model was given for."""
    from transformers import PreTrainedConfig

    location = Path(name_or_path)
    if location.exists():
        if not (location / "config.json").is_file():
            raise FileNotFoundError(f"{role} not found: '{name_or_path}' has no config.json, so it is not a model folder.")
    elif location.is_absolute() or name_or_path.count("/") != 1:
        raise FileNotFoundError(f"{role} not found: '{name_or_path}' is neither a folder nor a Hub id (org/name).")
    try:
        config, _ = PreTrainedConfig.get_config_dict(name_or_path)
    except OSError as error:  # no such repository, or the Hub cannot be reached
        reason = str(error).splitlines()[0]
        raise FileNotFoundError(
            f"{role} not found: '{name_or_path}' is not a folder here, and as a Hub id it could not be loaded ({reason})"
        ) from error
    return config


def packaged_hub_id(name_or_path: str) -> str | None:
    """The Hub id of a packaged backbone's weights, given its name or its folder; else None."""
    for name, folder in _packaged_folders().items():
        if name_or_path == name or Path(name_or_path).resolve() == Path(folder).resolve():
            return PACKAGED_BACKBONES[name]
    return None


def is_vlembed_model(name_or_path: str, role: str = "Backbone") -> bool:
    return model_config_dict(name_or_path, role).get("model_type") == "vlembed"


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


__all__ = ["PACKAGED_BACKBONES", "resolve_backbone", "model_config_dict", "packaged_hub_id", "is_vlembed_model", "load_embedding_model"]
