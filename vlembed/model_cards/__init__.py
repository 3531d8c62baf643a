"""Model cards: README.md with Hub metadata, runnable usage, the training recipe, evaluation results and
citations, rendered from a Jinja template with `huggingface_hub.ModelCard.from_template`.

What goes in comes from the model's config: ``training_summary`` (written by the trainer) and
``evaluation_results`` (a list of ``{"task", "dataset", "split", "metrics": {name: value}}``
entries, as `vlembed.evaluation` reports them).
"""

from __future__ import annotations

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
}

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def _papers_used(config, training: dict[str, Any]) -> list[str]:
    """Which papers' methods this model uses, from its architecture and its training recipe."""
    recipe = str(training.get("recipe", "")).lower()
    papers = []
    if float(training.get("hardness_alpha", 0) or 0) > 0 or recipe.startswith("llave"):
        papers.append("llave")
    if (
        recipe.startswith("abc")
        or config.head == "residual_mlp"
        or config.bidirectional
        or training.get("learnable_temperature")
        or "threshold" in str(training.get("negatives", "")).lower()
    ):
        papers.append("abc")
    if recipe.startswith("mm-embed") or "modality" in str(training.get("negatives", "")).lower():
        papers.append("mm-embed")
    return papers


def _usage(repo_id: str, vision: bool) -> tuple[str, str]:
    pil_import = "from PIL import Image\n" if vision else ""
    image_line = 'image = Image.new("RGB", (224, 224), color="red")  # or Image.open("photo.jpg")\n' if vision else ""
    queries = '[{"image": image, "text": "What color is it?"}]' if vision else '["How do I close a file?"]'
    automodel = (
        f"{pil_import}from transformers import AutoModel\n\n"
        f'model = AutoModel.from_pretrained("{repo_id}", trust_remote_code=True)\n'
        f"{image_line}"
        f'queries = model.encode({queries}, instruction="Find the matching description.")\n'
        'documents = model.encode(["a red square", "a blue circle"])\n'
        "print(model.similarity(queries, documents))"
    )
    sentence_transformers = (
        f"{pil_import}from sentence_transformers import SentenceTransformer\n\n"
        f'model = SentenceTransformer("{repo_id}", trust_remote_code=True)\n'
        f"{image_line}"
        f'queries = model.encode_query({queries}, prompt="Find the matching description.")\n'
        'documents = model.encode_document(["a red square", "a blue circle"])\n'
        "print(model.similarity(queries, documents))"
    )
    return automodel, sentence_transformers


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
    model_name: str | None = None,
    license: str | None = "apache-2.0",
    language: str | list[str] | None = "en",
    datasets: list[str] | None = None,
) -> ModelCard:
    """The card of ``model`` (a `VLEmbedModel`); ``repo_id`` goes into the usage snippets."""
    config = model.config
    backbone = config.backbone_model_config
    training = dict(config.training_summary or {}) if hasattr(config, "training_summary") else {}
    evaluation = list(getattr(config, "evaluation_results", None) or [])
    base_model = str(getattr(backbone, "_name_or_path", "") or "")
    base_model = base_model if _HUB_ID.match(base_model) and not os.path.exists(base_model) else None
    vision = config.family.image_placeholder is not None
    repo_id = repo_id or model_name or "path/to/this-model"
    model_name = model_name or repo_id.split("/")[-1]
    usage_automodel, usage_sentence_transformers = _usage(repo_id, vision)
    papers = _papers_used(config, training)
    tags = ["vlembed", "sentence-transformers", "multimodal-embedding", "feature-extraction", "sentence-similarity"]
    tags += [f"loss:{training['recipe']}"] if training.get("recipe") else []
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
    """Render the card and write ``directory/README.md`` atomically."""
    path = Path(directory) / "README.md"
    temporary = path.with_suffix(".md.tmp")
    temporary.write_text(str(render_model_card(model, repo_id=repo_id, **card_kwargs)), encoding="utf-8")
    os.replace(temporary, path)
    return path


__all__ = ["render_model_card", "write_model_card", "CITATIONS"]
