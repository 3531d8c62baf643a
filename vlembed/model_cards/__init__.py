"""Model cards: README.md with Hub metadata, runnable usage, the training recipe, evaluation results and
citations, rendered from a Jinja template with `huggingface_hub.ModelCard.from_template`.

What goes in comes from the model's config: ``training_summary`` (written by the trainer) and
``evaluation_results`` (a list of ``{"task", "dataset", "split", "metrics": {name: value}}``
entries, as `vlembed.evaluation` reports them).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

TEMPLATE_PATH = Path(__file__).with_name("model_card_template.md")

CITATIONS = {
    "llave": """@article{lan2025llave,
  title={LLaVE: Large Language and Vision Embedding Models with Hardness-Weighted Contrastive Learning},
  author={Lan, Zhibin and Niu, Liqiang and Meng, Fandong and Zhou, Jie and Su, Jinsong},
  journal={arXiv preprint arXiv:2503.04812},
  year={2025}
}""",
    "abc": """@article{schneider2025abc,
  title={ABC: Achieving Better Control of Visual Embeddings using VLLMs},
  author={Schneider, Benjamin and Kerschbaum, Florian and Chen, Wenhu},
  journal={arXiv preprint arXiv:2503.00329},
  year={2025}
}""",
    "mm-embed": """@inproceedings{lin2025mmembed,
  title={MM-Embed: Universal Multimodal Retrieval with Multimodal LLMs},
  author={Lin, Sheng-Chieh and Lee, Chankyu and Shoeybi, Mohammad and Lin, Jimmy and Catanzaro, Bryan and Ping, Wei},
  booktitle={International Conference on Learning Representations},
  year={2025}
}""",
    "gradcache": """@article{gao2021gradcache,
  title={Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup},
  author={Gao, Luyu and Zhang, Yunyi and Han, Jiawei and Callan, Jamie},
  journal={arXiv preprint arXiv:2101.06983},
  year={2021}
}""",
}

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def _papers_used(config, training: dict[str, Any]) -> list[str]:
    """Which papers' methods this model uses, from its architecture and its training summary (the
    trainer's settings plus ``negative_mining``: "threshold" (ABC §3.2) or "modality" (MM-Embed §4.1.1))."""
    recipe = str(training.get("recipe", "")).lower()
    mining = training.get("negative_mining")
    papers = []
    if float(training.get("hardness_alpha", 0) or 0) > 0 or recipe.startswith("llave"):
        papers.append("llave")
    if (
        recipe.startswith("abc")
        or config.head == "residual_mlp"
        or config.bidirectional
        or training.get("learnable_temperature")
        or mining == "threshold"
    ):
        papers.append("abc")
    if recipe.startswith("mm-embed") or mining == "modality":
        papers.append("mm-embed")
    if training.get("mini_batch_size (GradCache)"):
        papers.append("gradcache")
    return papers


def _usage(location: str, vision: bool) -> tuple[str, str]:
    location = json.dumps(location)  # a double-quoted Python string literal, also for Windows paths
    pil_import = "from PIL import Image\n" if vision else ""
    image_line = 'image = Image.new("RGB", (224, 224), color="red")  # or Image.open("photo.jpg")\n' if vision else ""
    queries = '[{"image": image, "text": "What color is it?"}]' if vision else '["How do I close a file?"]'
    automodel = (
        f"{pil_import}from transformers import AutoModel\n\n"
        f"model = AutoModel.from_pretrained({location}, trust_remote_code=True)\n"
        f"{image_line}"
        f'queries = model.encode({queries}, instruction="Find the matching description.")\n'
        'documents = model.encode(["a red square", "a blue circle"])\n'
        "print(model.similarity(queries, documents))"
    )
    sentence_transformers = (
        f"{pil_import}from sentence_transformers import SentenceTransformer\n\n"
        f"model = SentenceTransformer({location}, trust_remote_code=True)\n"
        f"{image_line}"
        f'queries = model.encode_query({queries}, prompt="Find the matching description.")\n'
        'documents = model.encode_document(["a red square", "a blue circle"])\n'
        "print(model.similarity(queries, documents))"
    )
    return automodel, sentence_transformers


def _base_model(backbone_config) -> str | None:
    """The backbone's Hub id: as loaded, or the original repository of a packaged backbone's folder."""
    from vlembed.loading import packaged_hub_id

    name_or_path = str(getattr(backbone_config, "_name_or_path", "") or "")
    if _HUB_ID.match(name_or_path) and not os.path.exists(name_or_path):
        return name_or_path
    return packaged_hub_id(name_or_path) if name_or_path else None


def _eval_results(evaluation: list[dict[str, Any]], model_name: str) -> list[EvalResult]:
    results = []
    for entry in evaluation:
        for metric, value in entry["metrics"].items():
            results.append(
                EvalResult(
                    task_type=entry.get("task", "information-retrieval"),
                    dataset_type=entry.get("dataset_id", entry["dataset"]),
                    dataset_name=entry["dataset"],
                    dataset_split=entry.get("split"),
                    metric_type=metric.replace("@", "_at_"),
                    metric_name=metric,
                    metric_value=float(value),
                )
            )
    return results


def render_model_card(
    model,
    *,
    repo_id: str | None = None,
    local_path: str | os.PathLike | None = None,
    model_name: str | None = None,
    license: str | None = "apache-2.0",
    language: str | list[str] | None = "en",
    datasets: list[str] | None = None,
) -> ModelCard:
    """The card of ``model`` (a `VLEmbedModel`). The usage snippets load ``repo_id`` (a Hub repository)
    or else ``local_path`` (the saved folder); the title is ``model_name``, else the repository's or the
    folder's name (as transformers' Trainer names its cards)."""
    location = repo_id or (str(local_path) if local_path is not None else None)
    if location is None:
        raise ValueError("render_model_card needs repo_id (a Hub repository) or local_path (the saved folder).")
    config = model.config
    backbone = config.backbone_model_config
    training = dict(config.training_summary or {}) if hasattr(config, "training_summary") else {}
    evaluation = list(getattr(config, "evaluation_results", None) or [])
    base_model = _base_model(backbone)
    vision = config.family.image_placeholder is not None
    model_name = model_name or Path(location).name
    usage_automodel, usage_sentence_transformers = _usage(location, vision)
    papers = _papers_used(config, training)
    tags = ["vlembed", "sentence-transformers", "multimodal-embedding", "feature-extraction", "sentence-similarity"]
    tags += [f"loss:{training['loss']}"] if training.get("loss") else []  # the loss preset, as ST tags its loss class
    card_data = ModelCardData(
        language=language,
        license=license,
        library_name="sentence-transformers",
        pipeline_tag="feature-extraction" if vision else "sentence-similarity",
        tags=tags,
        base_model=base_model,
        datasets=datasets or training.get("datasets"),
        model_name=model_name,
        eval_results=_eval_results(evaluation, model_name) or None,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        model_name=model_name,
        vision=vision,
        base_model=base_model,
        backbone_type=backbone.model_type,
        backbone_architecture=", ".join(backbone.architectures or [type(model.backbone).__name__]),
        pooling=config.pooling,
        bidirectional=config.bidirectional,
        head=config.head,
        embedding_dim=config.embedding_dim,
        normalize=config.normalize,
        modalities_text="text, images, interleaved image+text and video frames" if vision else "text",
        query_template=config.templates["query"].replace("\n", "\\n"),
        document_template=config.templates["document"].replace("\n", "\\n"),
        default_instructions=config.instructions,
        usage_automodel=usage_automodel,
        usage_sentence_transformers=usage_sentence_transformers,
        training={name.replace("_", " "): value for name, value in training.items() if name != "datasets"},
        evaluation=evaluation,
        citations=[CITATIONS[paper] for paper in papers],
    )


def write_model_card(model, directory: str | os.PathLike, repo_id: str | None = None, **card_kwargs: Any) -> Path:
    """Render the card and write ``directory/README.md`` atomically; without ``repo_id`` (or
    ``local_path``) its usage snippets load ``directory``."""
    path = Path(directory) / "README.md"
    card_kwargs.setdefault("local_path", directory)
    temporary = path.with_suffix(".md.tmp")
    temporary.write_text(str(render_model_card(model, repo_id=repo_id, **card_kwargs)), encoding="utf-8")
    os.replace(temporary, path)
    return path


__all__ = ["render_model_card", "write_model_card", "CITATIONS"]
