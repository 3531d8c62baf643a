"""Zero-shot (M)LLM reranking (MM-Embed §4.2).

A generative model reads a prompt that shows the query and one candidate and asks a question ending in
"True or False"; the relevance score is the softmax over the next-token logits of "True" and "False",
i.e. P(True) = sigmoid(logit_True - logit_False) (the log-odds sentence-transformers' ``LogitScore``
returns, passed through a sigmoid). The retriever's top k (10) candidates are re-ordered by it.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .prompts import CANDIDATE_IMAGE, QUERY_IMAGE, fill_text_fields, resolve_prompt, split_image_slots


def _single_token_id(tokenizer, token: str) -> int:
    ids = tokenizer.encode(token, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(
            f"The reranker needs {token!r} to be one token, but this tokenizer splits it into {len(ids)} "
            f"({tokenizer.convert_ids_to_tokens(ids)}); pass true_token=/false_token= that are single tokens."
        )
    return ids[0]


class MLLMReranker:
    """Rerank retrieval results with any ``AutoModelForImageTextToText`` or causal LM (MM-Embed §4.2).

    Args:
        model: the generative model (its next-token logits are read).
        processor: its processor (VLMs) or tokenizer (text LLMs).
        prompt: one prompt for every pair (fields ``{query}``, ``{candidate}``, slots ``{query_image}``,
            ``{candidate_image}``); default: MM-Embed Table 13's form per task (see
            :mod:`vlembed.reranking.prompts`).
        true_token, false_token: the answer tokens; each must be a single token of the tokenizer.
        batch_size: pairs per forward pass.

    Prompts are rendered with the processor's (or tokenizer's) chat template as one user turn followed
    by the generation prompt, when it has one, and tokenized without adding special tokens (the template
    renders them); otherwise the prompt text is used as is, followed by a newline, and the tokenizer adds
    its special tokens. Padding is on the left, so the next-token logits of every row are at position -1.

    Example (illustrative: MM-Embed reranks with this 7B Hub model; the tests use tiny local models):

    ```python
    >>> reranker = MLLMReranker.from_pretrained("llava-hf/llava-v1.6-mistral-7b-hf")
    >>> reranker.score([{"image": "dog.jpg"}], ["a dog with a frisbee"], task="image -> text")
    array([0.93], dtype=float32)
    >>> reranker.rerank(queries, retrieved_candidates, top_k=10)
    ```
    """

    def __init__(
        self,
        model,
        processor,
        *,
        prompt: str | None = None,
        true_token: str = "True",
        false_token: str = "False",
        batch_size: int = 8,
    ):
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.true_id = _single_token_id(self.tokenizer, true_token)
        self.false_id = _single_token_id(self.tokenizer, false_token)
        self.prompt = prompt
        self.batch_size = batch_size
        self.has_images = self.processor is not self.tokenizer
        self.image_placeholder = self._image_placeholder()
        self._keeps_last_logits = "logits_to_keep" in inspect.signature(self.model.forward).parameters

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        prompt: str | None = None,
        true_token: str = "True",
        false_token: str = "False",
        batch_size: int = 8,
        device: str | torch.device | None = None,
        **model_kwargs: Any,
    ) -> "MLLMReranker":
        """Load a vision-language model (``AutoModelForImageTextToText``) or a text LLM (``AutoModelForCausalLM``)
        with its processor. ``model_kwargs`` go to ``from_pretrained`` (e.g. ``dtype=torch.bfloat16``)."""
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor
        from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

        hub_kwargs = {key: model_kwargs[key] for key in ("revision", "token", "local_files_only", "trust_remote_code", "cache_dir") if key in model_kwargs}
        config = AutoConfig.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
        auto_class = AutoModelForImageTextToText if config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES else AutoModelForCausalLM
        model = auto_class.from_pretrained(pretrained_model_name_or_path, **model_kwargs)
        if device is not None:
            model = model.to(device)
        processor = AutoProcessor.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
        return cls(model, processor, prompt=prompt, true_token=true_token, false_token=false_token, batch_size=batch_size)

    # ------------------------------------------------------------------ prompts

    def _image_placeholder(self) -> str:
        """Text a plain (no chat template) prompt uses for one image."""
        from ..modeling.configuration_vlembed import FAMILIES

        family = FAMILIES.get(getattr(self.model.config, "model_type", None))
        if family is not None and family.image_placeholder:
            return family.image_placeholder
        return getattr(self.processor, "image_token", None) or "<image>"

    @property
    def chat_template(self) -> str | None:
        """The template ``render`` applies: the processor's for VLMs, the tokenizer's for text LLMs."""
        return getattr(self.processor, "chat_template", None)

    def render(self, query: Any, candidate: Any, task: str | int | None = None, prompt: str | None = None) -> tuple[str, list]:
        """The model's input text for one (query, candidate) pair and its images in order.

        ``query`` and ``candidate`` are items as :meth:`VLEmbedModel.encode` takes them (str, image,
        ``{"text", "image"}``). ``prompt`` overrides the default of ``task`` (or of the pair's modalities).
        """
        from ..modeling.processing_vlembed import to_embedding_input

        parsed_query, parsed_candidate = to_embedding_input(query, 0), to_embedding_input(candidate, 1)
        template = prompt or self.prompt or resolve_prompt(task, parsed_query.modality, parsed_candidate.modality)
        for parsed, slot, name in ((parsed_query, QUERY_IMAGE, "query"), (parsed_candidate, CANDIDATE_IMAGE, "candidate")):
            if parsed.images and slot not in template:
                raise ValueError(f"The {name} has an image but the prompt has no {slot} slot: {template!r}")
            if parsed.video:
                raise ValueError(f"The {name} is a video; the reranker takes text and images.")
        if not self.has_images and (parsed_query.images or parsed_candidate.images):
            raise ValueError("This reranker is a text-only model and cannot read images.")
        images, content = [], []
        for part in split_image_slots(fill_text_fields(template, parsed_query.text, parsed_candidate.text)):
            slot_images = parsed_query.images if part == QUERY_IMAGE else parsed_candidate.images if part == CANDIDATE_IMAGE else None
            if slot_images is None:
                content.append({"type": "text", "text": part})
            else:
                images.extend(slot_images)
                content.extend({"type": "image"} for _ in slot_images)
        if self.chat_template:
            messages = [{"role": "user", "content": content if self.has_images else "".join(c["text"] for c in content if c["type"] == "text")}]
            text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        else:
            text = "".join(c["text"] if c["type"] == "text" else self.image_placeholder for c in content) + "\n"
        return text, images

    # ------------------------------------------------------------------ scoring

    def _inputs(self, texts: list[str], images: list[list]):
        from transformers.image_utils import load_image

        # A chat template renders its own special tokens (BOS included): tokenizing them again would double
        # them, so they are added only to plain prompts (as apply_chat_template(tokenize=True) does).
        options = {"padding": True, "return_tensors": "pt", "add_special_tokens": not self.chat_template}
        if self.has_images:
            if any(images):
                options["images"] = [[load_image(i if not isinstance(i, os.PathLike) else os.fspath(i)).convert("RGB") for i in row] for row in images]
            return self.processor(text=texts, **options)
        return self.tokenizer(texts, **options)

    @torch.no_grad()
    def _true_probabilities(self, texts: list[str], images: list[list]) -> np.ndarray:
        batch = self._inputs(texts, images).to(self.model.device)
        extra = {"logits_to_keep": 1} if self._keeps_last_logits else {}
        logits = self.model(**batch, **extra).logits[:, -1, [self.true_id, self.false_id]].float()
        return torch.softmax(logits, dim=-1)[:, 0].cpu().numpy()

    def score(
        self,
        queries: Sequence[Any],
        candidates: Sequence[Any],
        *,
        task: str | int | None = None,
        prompt: str | None = None,
        batch_size: int | None = None,
        show_progress_bar: bool = False,
    ) -> np.ndarray:
        """P(True) for each (queries[i], candidates[i]) pair: softmax over the "True" and "False" logits.

        Args:
            queries, candidates: equally long lists of items.
            task: a default prompt's key (e.g. ``"image -> text"``, ``"ctrlbench"``) or an M-BEIR task id;
                None: chosen per pair from its modalities.
            prompt: a prompt of your own for every pair.
            batch_size: pairs per forward pass (default: the reranker's).

        Returns:
            float32 array of ``len(queries)`` probabilities.
        """
        from tqdm.auto import tqdm

        if len(queries) != len(candidates):
            raise ValueError(f"Got {len(queries)} queries for {len(candidates)} candidates; score takes pairs.")
        rendered = [self.render(query, candidate, task, prompt) for query, candidate in zip(queries, candidates)]
        # Similar lengths share a batch; the output keeps the input order.
        order = sorted(range(len(rendered)), key=lambda i: (len(rendered[i][1]), len(rendered[i][0])))
        batch_size = batch_size or self.batch_size
        scores = np.empty(len(rendered), dtype=np.float32)
        for start in tqdm(range(0, len(order), batch_size), desc="Reranking", disable=not show_progress_bar):
            indices = order[start : start + batch_size]
            scores[indices] = self._true_probabilities([rendered[i][0] for i in indices], [rendered[i][1] for i in indices])
        return scores

    def rerank(
        self,
        queries: Sequence[Any],
        candidate_lists: Sequence[Sequence[Any]],
        *,
        top_k: int = 10,
        task: str | int | None = None,
        prompt: str | None = None,
        batch_size: int | None = None,
        return_scores: bool = False,
        show_progress_bar: bool = False,
    ) -> list[list[int]] | tuple[list[list[int]], list[np.ndarray]]:
        """Re-order each query's first ``top_k`` candidates (retriever order) by P(True) (MM-Embed: top 10).

        Returns, per query, the new order as indices into its candidate list: the reranked ``top_k`` (ties
        keep the retriever's order) followed by the rest unchanged; with ``return_scores``, also each
        query's P(True) of its first ``top_k`` candidates, in retriever order.
        """
        if len(queries) != len(candidate_lists):
            raise ValueError(f"Got {len(queries)} queries for {len(candidate_lists)} candidate lists.")
        pairs = [(q, j) for q, candidates in enumerate(candidate_lists) for j in range(min(top_k, len(candidates)))]
        flat = self.score(
            [queries[q] for q, _ in pairs], [candidate_lists[q][j] for q, j in pairs], task=task, prompt=prompt,
            batch_size=batch_size, show_progress_bar=show_progress_bar,
        )
        orders, scores, start = [], [], 0
        for candidates in candidate_lists:
            count = min(top_k, len(candidates))
            query_scores = flat[start : start + count]
            start += count
            orders.append(np.argsort(-query_scores, kind="stable").tolist() + list(range(count, len(candidates))))
            scores.append(query_scores)
        return (orders, scores) if return_scores else orders


__all__ = ["MLLMReranker"]
