"""Turning user inputs (text, images, interleaved image+text, video frames) into backbone inputs.

An input item is a ``str`` (text), a ``PIL.Image.Image`` or ``pathlib.Path`` (an image), or a dict
with ``"text"``, ``"image"`` (one image), ``"images"`` (several, interleaved where the text holds
``<image>`` markers) and/or ``"video"`` (a list of frames). Items are validated up front, image files
decoded once to prove they load, so that a bad one fails with its index before any batch is embedded.

This file is copied next to the weights on ``save_pretrained``: it imports only torch, transformers
and the standard library (PIL, which transformers' image processors need anyway, lazily).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from transformers import BatchFeature
from transformers.image_utils import is_pil_image, load_image

from .configuration_vlembed import PLAIN_TEMPLATE, VLEmbedConfig

IMAGE_MARKER = "<image>"
# Keys the processor adds for splitting batches by sample; not backbone inputs.
BOOKKEEPING_KEYS = ("num_images_per_sample", "num_videos_per_sample")
# Backbone inputs laid out per token ([batch, length]); the others (pixels, grids) are per image.
TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids")
_DICT_KEYS = {"text", "image", "images", "video"}
_TEMPLATE_FIELD = re.compile(r"\{(image|instruction|text)\}")


@dataclass
class EmbeddingInput:
    """One item to embed: text, images (PIL or paths) in order, and optionally one video's frames."""

    text: str = ""
    images: list = field(default_factory=list)
    video: list | None = None
    # Set by `to_embedding_input` once its images were decoded, so that parsing it again (a corpus
    # shard parsed, then encoded) does not decode every image a second time.
    validated: bool = field(default=False, repr=False, compare=False)

    @property
    def modality(self) -> str:
        """"text", "image" or "image,text" (a video counts as images), as MM-Embed's modality labels."""
        has_visual = bool(self.images) or bool(self.video)
        if has_visual and self.text:
            return "image,text"
        return "image" if has_visual else "text"


def _is_image(value: Any) -> bool:
    return is_pil_image(value) or isinstance(value, Path)


def _encoded_image(source: Any) -> bool:
    """An image as `datasets` stores it undecoded (e.g. inside a struct column): {"bytes", "path"}."""
    return isinstance(source, dict) and source.get("bytes") is not None


def check_image_source(source: Any, where: str, what: str = "image") -> None:
    """Fail early on an image that is not a PIL image, encoded bytes or an image file that decodes.

    Files and bytes are decoded in full and the pixels freed at once: the header alone misses a
    truncated file (PIL's ``verify()`` misses a truncated JPEG), and keeping the pixels would hold a
    whole corpus in memory. A lazily opened PIL image is loaded, as embedding it would. ``where``
    starts the message ("Input 3", "Row 17, column 'query_image'").
    """
    if isinstance(source, dict) and not _encoded_image(source) and source.get("path"):
        source = source["path"]
    if not (is_pil_image(source) or _encoded_image(source) or isinstance(source, (str, Path))):
        raise TypeError(f"{where}: {what} must be a PIL image or a file path, got {type(source).__name__}.")
    if is_pil_image(source):
        described = what
    elif _encoded_image(source):
        described = f"{what} bytes"
    else:
        path = Path(source)
        described = f"{what} file '{path}'"
        if not path.is_file():
            raise FileNotFoundError(f"{where}: {what} file not found: '{path}'.")
        if not os.access(path, os.R_OK):
            raise PermissionError(f"{where}: {what} file is not readable: '{path}'.")
    try:  # lazy, and inside try so that transformers' remote-code import check does not demand Pillow
        from PIL import Image
    except ImportError as error:
        raise ImportError("Embedding images needs Pillow: pip install pillow") from error
    try:
        if is_pil_image(source):
            source.load()
        else:
            from io import BytesIO

            with Image.open(BytesIO(source["bytes"]) if _encoded_image(source) else path) as image:
                image.load()
    except Exception as error:  # PIL raises many types for corrupt data
        raise ValueError(f"{where}: cannot read {described}: {error}") from error


def to_embedding_input(item: Any, index: int, max_frames: int | None = None) -> EmbeddingInput:
    """Validate one raw item and return it as an `EmbeddingInput`; errors name the item's index.

    With ``max_frames``, only the video frames that will be embedded (see `sample_frames`) are decoded.
    """
    if isinstance(item, EmbeddingInput):
        parsed = EmbeddingInput(item.text, list(item.images), item.video, item.validated)
    elif isinstance(item, str):
        parsed = EmbeddingInput(text=item)
    elif _is_image(item):
        parsed = EmbeddingInput(images=[item])
    elif isinstance(item, dict):
        unknown = set(item) - _DICT_KEYS
        if unknown:
            raise ValueError(
                f"Input {index}: unknown key(s) {sorted(unknown)}; a dict takes 'text', 'image', 'images' and 'video'."
            )
        text = item.get("text") or ""
        if not isinstance(text, str):
            raise TypeError(f"Input {index}: 'text' must be a string, got {type(text).__name__}.")
        for key, what in (("images", "a list of images"), ("video", "a list of frames")):
            if item.get(key) is not None and not isinstance(item[key], (list, tuple)):
                raise TypeError(f"Input {index}: '{key}' must be {what}, got {type(item[key]).__name__}.")
        images = list(item.get("images") or [])
        if item.get("image") is not None:
            images.insert(0, item["image"])
        video = item.get("video")
        if video is not None:
            video = list(video)
            if not video:
                raise ValueError(f"Input {index}: the video has zero frames.")
        if not text and not images and video is None:
            raise ValueError(f"Input {index}: a dict needs 'text', 'image', 'images' or 'video'; got {sorted(item)}.")
        parsed = EmbeddingInput(text=text, images=images, video=video)
    else:
        raise TypeError(
            f"Input {index}: unsupported input type {type(item).__name__}; expected str, PIL.Image.Image, "
            "pathlib.Path or a dict with 'text', 'image', 'images' or 'video'."
        )
    if not parsed.text and not parsed.images and not parsed.video:
        raise ValueError(f"Input {index}: empty text; an item needs text, an image or a video.")
    if not parsed.validated:
        for image in parsed.images:
            check_image_source(image, f"Input {index}")
        for frame in sample_frames(parsed.video or [], max_frames or len(parsed.video or [])):
            check_image_source(frame, f"Input {index}", "video frame")
        parsed.validated = True
    markers = parsed.text.count(IMAGE_MARKER)
    if markers > len(parsed.images):
        raise ValueError(f"Input {index}: the text has {markers} '{IMAGE_MARKER}' markers but only {len(parsed.images)} images.")
    return parsed


def sample_frames(frames: Sequence, max_frames: int) -> list:
    """Uniformly sample at most ``max_frames`` frames, keeping the first and the last (LLaVE §4.4)."""
    count = len(frames)
    if count <= max_frames:
        return list(frames)
    if max_frames == 1:
        return [frames[count // 2]]
    return [frames[round(i * (count - 1) / (max_frames - 1))] for i in range(max_frames)]


def _load(source: Any, index: int):
    # `to_embedding_input` decoded this image already; this fails only if the file changed since.
    try:
        if _encoded_image(source):
            from io import BytesIO

            from PIL import Image

            image = Image.open(BytesIO(source["bytes"]))
            image.load()
        else:
            if isinstance(source, dict):
                source = source["path"]
            image = load_image(source if is_pil_image(source) else str(source))
    except Exception as error:  # PIL raises many types for corrupt files
        raise ValueError(f"Input {index}: cannot load image '{source}': {error}") from error
    return image if image.mode == "RGB" else image.convert("RGB")


def render_template(template: str, instruction: str, image: str, text: str) -> str:
    """Fill ``{instruction}``, ``{image}`` and ``{text}`` in one pass (texts may contain braces).

    ``image`` holds the media placeholders, each followed by a newline (LLaVA's "<image>\\n" form);
    where the rendered prompt goes on with a space, the last newline gives way to it, so that ABC's
    eq. 3 reads "<image> Instruction: ..." for an item without text.
    """
    values = {"instruction": instruction, "image": image, "text": text}
    pieces = _TEMPLATE_FIELD.split(template)  # literal, field name, literal, ..., literal
    rendered = [values[piece] if position % 2 else piece for position, piece in enumerate(pieces)]
    for position in range(1, len(pieces), 2):
        if pieces[position] == "image" and "".join(rendered[position + 1 :]).startswith(" "):
            rendered[position] = rendered[position].removesuffix("\n")
    return "".join(rendered)


class VLEmbedProcessor:
    """Builds backbone inputs from items: templates, media placeholders, frame sampling, padding.

    Wraps the backbone's own processor (or tokenizer, for text backbones); one instance serves
    `VLEmbedModel.encode`, the training collator and the sentence-transformers module alike, so all
    three render inputs identically.
    """

    def __init__(self, processor: Any, config: VLEmbedConfig):
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.family = config.family
        self.templates = dict(config.templates)
        self.pooling = config.pooling
        self.max_length = config.max_length
        self.max_frames = config.max_frames
        if config.padding_side is not None:
            self.tokenizer.padding_side = config.padding_side
        if self.pooling == "eos" and self.tokenizer.eos_token is None:
            raise ValueError("pooling='eos' needs a tokenizer with an EOS token; this one has none.")

    def parse(self, items: Sequence[Any]) -> list[EmbeddingInput]:
        """Validate every item before any work is done."""
        parsed = [to_embedding_input(item, index, self.max_frames) for index, item in enumerate(items)]
        if self.family.image_placeholder is None:
            for index, item in enumerate(parsed):
                if item.images or item.video:
                    raise ValueError(
                        f"Input {index}: this backbone is text-only and cannot embed images or video."
                    )
        return parsed

    def render(self, item: EmbeddingInput, instruction: str | None, task: str | None) -> tuple[str, list, list]:
        """Return the prompt string, the item's images and its video frames (or no video) in order.

        Images without a marker in the text, and the video, go into the template's ``{image}`` slot.
        Families without a video path get the frames as a multi-image sequence.
        """
        frames = sample_frames(item.video, self.max_frames) if item.video else []
        image_marker = self.family.image_placeholder or IMAGE_MARKER
        inline = item.text.count(IMAGE_MARKER)
        # Images referenced inline keep their place; the rest lead, as in LLaVA's "<image>\n" form.
        images = item.images[inline:] + item.images[:inline]
        leading = [image_marker] * (len(item.images) - inline)
        videos = []
        if frames and self.family.video_placeholder is not None:
            leading.insert(0, self.family.video_placeholder)
            videos = [frames]
        elif frames:
            leading[:0] = [image_marker] * len(frames)
            images = frames + images
        text = item.text.replace(IMAGE_MARKER, image_marker) if image_marker != IMAGE_MARKER else item.text
        media = "".join(marker + "\n" for marker in leading)
        if instruction:
            template = self.templates["query" if task in (None, "query") else "document"]
        else:
            template = PLAIN_TEMPLATE
        if inline and template.find("{text}") < template.find("{image}"):
            # A template that puts the text first: its inline images come before the leading ones.
            images = images[len(images) - inline :] + images[: len(images) - inline]
        prompt = render_template(template, instruction or "", media, text)
        if self.pooling == "eos":
            prompt += self.tokenizer.eos_token
        return prompt, images, videos

    def length_order(self, items: Sequence[EmbeddingInput], instructions: Sequence[str | None], task: str | None) -> list[int]:
        """Item indices longest first (by `sort_keys`): the order `VLEmbedModel.encode` batches them in.

        Longest first so that an out-of-memory batch shows up at once; neighbours share a batch
        because they pad little.
        """
        keys = self.sort_keys(items, instructions, task)
        return sorted(range(len(items)), key=lambda index: -keys[index])

    def sort_keys(self, items: Sequence[EmbeddingInput], instructions: Sequence[str | None], task: str | None) -> list[int]:
        """Token counts of the rendered prompts, so batches of similar length pad little.

        Characters are a poor proxy (on docstrings, sorting by characters pads ~60 % more tokens
        than sorting by tokens). Items with images or video sort after text-only ones, by media
        count, since their length is only known after the processor expands the placeholders.
        """
        keys = []
        for start in range(0, len(items), 8192):
            chunk = range(start, min(start + 8192, len(items)))
            prompts = [self.render(items[index], instructions[index], task)[0] for index in chunk]
            limit = {"truncation": True, "max_length": self.max_length} if self.max_length else {}
            token_ids = self.tokenizer(prompts, add_special_tokens=True, **limit)["input_ids"]
            for index, ids in zip(chunk, token_ids):
                media = len(items[index].images) + (len(items[index].video) if items[index].video else 0)
                keys.append(len(ids) + 1_000_000 * media)
        return keys

    def __call__(
        self,
        items: Sequence[Any],
        instruction: str | Sequence[str | None] | None = None,
        task: str | None = None,
        parsed: bool = False,
        indices: Sequence[int] | None = None,
    ) -> BatchFeature:
        """Embed-ready tensors for a batch. ``instruction`` is one for all items or one per item.

        ``indices``: the items' positions in the caller's input, for error messages (default: their
        positions in ``items``). Text-only items are truncated to ``max_length`` as they are alone,
        also in a batch with media (whose items are never truncated).
        """
        entries = list(items) if parsed else self.parse(items)
        instructions = [instruction] * len(entries) if instruction is None or isinstance(instruction, str) else list(instruction)
        if len(instructions) != len(entries):
            raise ValueError(f"Got {len(instructions)} instructions for {len(entries)} inputs.")
        indices = range(len(entries)) if indices is None else indices
        prompts, images, videos, videos_per_entry = [], [], [], []
        for index, entry, entry_instruction in zip(indices, entries, instructions):
            prompt, entry_images, entry_videos = self.render(entry, entry_instruction, task)
            prompts.append(prompt)
            images.append([_load(image, index) for image in entry_images])
            videos.extend([_load(frame, index) for frame in video] for video in entry_videos)
            videos_per_entry.append(entry_videos)
        text_only = [row for row in range(len(entries)) if not images[row] and not videos_per_entry[row]]
        has_media = len(text_only) < len(entries)
        text_kwargs: dict[str, Any] = {"padding": True}
        if self.max_length is not None and not has_media:
            text_kwargs.update(truncation=True, max_length=self.max_length)
        if self.processor is self.tokenizer:
            batch = self.tokenizer(prompts, return_tensors="pt", **text_kwargs)
        else:
            media = {}
            if any(images):
                media["images"] = images
            if videos:
                media["videos"] = videos
            batch = self.processor(text=prompts, return_tensors="pt", **media, **text_kwargs)
            if self.max_length is not None and has_media and text_only:
                self._truncate_rows(batch, {row: prompts[row] for row in text_only})
            # Bookkeeping for code that splits a batch by sample (GradCache): the backbones' pixel
            # tensors are laid out per image, not per sample. `VLEmbedModel.forward` drops these.
            batch["num_images_per_sample"] = torch.tensor([len(entry_images) for entry_images in images])
            batch["num_videos_per_sample"] = torch.tensor([len(entry) for entry in videos_per_entry])
        if self.pooling == "eos":
            # Truncation may have cut the appended EOS: put it back on the last real token.
            last = last_token_index(batch["attention_mask"])
            batch["input_ids"][torch.arange(len(prompts)), last] = self.tokenizer.eos_token_id
        return batch

    def _truncate_rows(self, batch: BatchFeature, prompts: dict[int, str]) -> None:
        """Cut the rows ``prompts`` names (text-only rows of a batch with media) to ``max_length``.

        The backbone's processor truncates a whole batch or nothing, and cutting a row with media
        would drop image tokens. A text-only row is the tokenizer's output for its prompt, so each
        is tokenised again with truncation, as alone, and the per-token tensors are re-padded.
        """
        token_ids = self.tokenizer(list(prompts.values()), truncation=True, max_length=self.max_length)["input_ids"]
        mask = batch["attention_mask"].bool()
        lengths = mask.sum(dim=1).tolist()
        cut = {row: ids for row, ids in zip(prompts, token_ids) if len(ids) < lengths[row]}
        if not cut:
            return
        for row, ids in cut.items():
            lengths[row] = len(ids)
        width = max(lengths)
        left = self.tokenizer.padding_side == "left"
        for key in TOKEN_KEYS:
            if key not in batch:
                continue
            fill = self.tokenizer.pad_token_id if key == "input_ids" else 0
            padded = batch[key].new_full((len(lengths), width), fill)
            for row, length in enumerate(lengths):
                if key == "input_ids" and row in cut:
                    values = torch.tensor(cut[row], dtype=padded.dtype)
                else:  # a text row's other per-token values (mask, token types) are the same throughout
                    values = batch[key][row][mask[row]][:length]
                padded[row, slice(width - length, width) if left else slice(0, length)] = values
            batch[key] = padded


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real token, for left and right padding alike."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (positions * attention_mask.bool()).amax(dim=1)


def first_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's first real token (not position 0 under left padding)."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return torch.where(attention_mask.bool(), positions, attention_mask.shape[1]).amin(dim=1)


__all__ = ["EmbeddingInput", "VLEmbedProcessor", "to_embedding_input", "sample_frames", "render_template"]
