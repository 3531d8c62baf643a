"""Training rows → processor batches for the contrastive loss.

A row is one query with its positive and any number of negatives (see `COLUMNS`). Each side is
text, image(s) or both (interleaved where the text holds ``<image>`` markers); a query may carry an
instruction; negatives may carry a hardness score, which becomes the loss's reward for that
query-negative pair. Images are PIL images, paths, or `datasets` images; they are loaded here.

A row with ``negative_types`` (MM-Embed §4.1.1, written by ``vlembed mine --strategy modality``)
lists all its type-1 then type-2 candidates; each time it is batched, one of them is drawn: a type
uniformly among the types it has, then a candidate uniformly within that type ("one negative from
type 1 or type 2 with equal probability"). The draw depends only on (seed, epoch, row index), so a
resumed run draws what the uninterrupted run drew.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from vlembed.modeling.processing_vlembed import EmbeddingInput, check_image_source

from .mining import draw_modality_aware

# column -> what it holds. "query" and "positive" (or their image columns) are required.
COLUMNS = {
    "query": "query text (may be empty when query_image is given)",
    "query_image": "an image or a list of images of the query",
    "query_instruction": "the query's task instruction (default: the training argument query_instruction)",
    "positive": "the positive's text",
    "positive_image": "an image or a list of images of the positive",
    "negatives": "a list of negative texts",
    "negative_images": "a list of negative images (None where a negative has none), aligned with negatives",
    "negative_hardness": "a list of hardness scores, aligned with negatives; × hardness_scale, added to that negative's logit",
    "negative_types": "MM-Embed's negative type of each negative (1 or 2), aligned with negatives: one is drawn per batch",
}
ROW_INDEX = "__row_index"  # added by the trainer so that errors name the dataset row
_WRONG_SIDE = ("positive_instruction", "negative_instruction", "negatives_instruction", "document_instruction")


def _images(value: Any) -> list:
    if value is None:
        return []
    return [image for image in value if image is not None] if isinstance(value, (list, tuple)) else [value]


def _checked(item: Any, row_name: str, column: str) -> Any:
    """An item the batch trains on, its images checked here so that a missing or unreadable one is named
    with its row and column (not its batch position), and marked validated so that the processor does
    not decode them again. Only the negatives drawn for the batch are checked, not a row's whole list."""
    if isinstance(item, str):
        return item
    for image in item["images"]:
        check_image_source(image, f"{row_name}, column '{column}'")
    return EmbeddingInput(item["text"], item["images"], validated=True)


def _list_cell(row: dict[str, Any], column: str, row_name: str) -> list | None:
    """A list column's cell (None when absent); a string or a number there is an error, not a sequence."""
    value = row.get(column)
    if value is None or isinstance(value, (list, tuple)):
        return value
    raise ValueError(f"{row_name}: column '{column}' must hold a list (one entry per negative), got {type(value).__name__} {value!r:.80}.")


def _item(text: str | None, images: list) -> Any:
    text = text or ""
    return {"text": text, "images": images} if images else text


def row_item(row: dict[str, Any], side: str) -> Any:
    """The ``"query"`` or ``"positive"`` side of a row as an input item (text, images or both)."""
    return _item(row.get(side), _images(row.get(f"{side}_image")))


def check_columns(column_names: Sequence[str]) -> None:
    """Refuse a dataset whose columns cannot be a contrastive training set, before training starts."""
    names = set(column_names)
    wrong_side = sorted(names & set(_WRONG_SIDE))
    if wrong_side:
        raise ValueError(
            f"Column(s) {wrong_side}: instructions belong to the query side ('query_instruction'). For an "
            "instruction on every document, set the training argument document_instruction."
        )
    if not names & {"query", "query_image"} or not names & {"positive", "positive_image"}:
        expected = "\n".join(f"  {name}: {meaning}" for name, meaning in COLUMNS.items())
        raise ValueError(f"The dataset has columns {sorted(names)}; a training set needs these:\n{expected}")
    for column in ("negative_hardness", "negative_types"):
        if column in names and "negatives" not in names and "negative_images" not in names:
            raise ValueError(f"Column '{column}' needs the negatives it describes ('negatives' / 'negative_images').")


@dataclass
class ContrastiveDataCollator:
    """Builds ``{"query_inputs", "candidate_inputs", "reward"}`` from rows.

    Candidates are the N positives, then every row's negatives in row order, as `ContrastiveLoss`
    expects. ``reward`` ([N, M] or None) holds ``hardness_scale · negative_hardness`` at each row's
    own negatives.

    Args:
        processor: the model's `VLEmbedProcessor` (templates, placeholders, the backbone's processor).
        num_negatives: take exactly this many negatives per row (the first ones); a row with fewer
            is an error. None takes all a row has; rows then must agree when the loss gathers
            across processes. A row with ``negative_types`` gives one drawn negative (None or 1),
            or none (0).
        query_instruction / document_instruction: instruction for queries without their own, and
            for every candidate (rendered with the document template).
        hardness_scale: factor from a hardness score to a logit reward (0: no reward).
        fixed_negative_count: require the same number of negatives in every row (gathering).
        seed / epoch: the negative-type draw's seed and the current epoch (the trainer sets it).
    """

    processor: Any
    num_negatives: int | None = None
    query_instruction: str | None = None
    document_instruction: str | None = None
    hardness_scale: float = 1.0
    fixed_negative_count: bool = False
    seed: int = 0
    epoch: int = 0

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        queries, query_instructions, positives, negatives, hardness = [], [], [], [], []
        for position, row in enumerate(rows):
            row_index = row.get(ROW_INDEX, position)
            row_name = f"Row {row_index}"
            query, positive = row_item(row, "query"), row_item(row, "positive")
            if not positive:
                raise ValueError(f"{row_name}: no positive (columns 'positive' and 'positive_image' are empty).")
            if not query:
                raise ValueError(f"{row_name}: an empty query (columns 'query' and 'query_image' are empty).")
            row_negatives, row_hardness = self._training_negatives(row, row_name, row_index)
            queries.append(_checked(query, row_name, "query_image"))
            query_instructions.append(row.get("query_instruction") or self.query_instruction)
            positives.append(_checked(positive, row_name, "positive_image"))
            negatives.append([_checked(negative, row_name, "negative_images") for negative in row_negatives])
            hardness.append(row_hardness)
        if self.fixed_negative_count and len({len(row_negatives) for row_negatives in negatives}) > 1:
            counts = {rows[i].get(ROW_INDEX, i): len(n) for i, n in enumerate(negatives)}
            raise ValueError(
                f"Rows of one batch have different numbers of negatives in column 'negatives' / 'negative_images' "
                f"(row: count) {counts}, but the loss gathers across processes and needs the same count everywhere: "
                "set num_negatives."
            )
        candidates = positives + [negative for row_negatives in negatives for negative in row_negatives]
        return {
            "query_inputs": self.processor(queries, query_instructions, task="query"),
            "candidate_inputs": self.processor(candidates, self.document_instruction, task="document"),
            "reward": self._reward(negatives, hardness, len(candidates)),
        }

    def negatives(self, row: dict[str, Any], row_name: str) -> tuple[list, list[float] | None]:
        """All of a row's negatives as input items, and their hardness scores (None without the column)."""
        texts = _list_cell(row, "negatives", row_name)
        images = _list_cell(row, "negative_images", row_name)
        if texts is not None and images is not None and len(images) != len(texts):
            raise ValueError(f"{row_name}: {len(texts)} 'negatives' but {len(images)} 'negative_images'.")
        count = len(texts if texts is not None else images if images is not None else [])
        found = [
            _item(texts[i] if texts is not None else None, _images(images[i]) if images is not None else [])
            for i in range(count)
        ]
        for i, negative in enumerate(found):
            if not negative:
                raise ValueError(f"{row_name}: negative {i} is empty in 'negatives' / 'negative_images'.")
        scores = _list_cell(row, "negative_hardness", row_name)
        if scores is not None and len(scores) != count:
            raise ValueError(f"{row_name}: column 'negative_hardness' has {len(scores)} scores for {count} negatives.")
        return found, scores

    def _training_negatives(self, row: dict[str, Any], row_name: str, row_index: int) -> tuple[list, list[float] | None]:
        """The negatives this batch trains on: the first ``num_negatives``, or one drawn by type."""
        found, scores = self.negatives(row, row_name)
        types = _list_cell(row, "negative_types", row_name)
        if types is not None and self.num_negatives != 0:
            if self.num_negatives not in (None, 1):
                raise ValueError(
                    f"{row_name}: column 'negative_types' draws one negative per row, but num_negatives={self.num_negatives}."
                )
            chosen = [self._draw_by_type(types, len(found), row_name, row_index)]
        else:
            if self.num_negatives is not None and len(found) < self.num_negatives:
                raise ValueError(
                    f"{row_name}: column 'negatives' has {len(found)} negatives, but num_negatives={self.num_negatives}."
                )
            chosen = range(len(found) if self.num_negatives is None else self.num_negatives)
        return [found[i] for i in chosen], None if scores is None else [scores[i] for i in chosen]

    def _draw_by_type(self, types: list, count: int, row_name: str, row_index: int) -> int:
        """MM-Embed §4.1.1: a type uniformly among those present, then a candidate uniformly within it."""
        if len(types) != count:
            raise ValueError(f"{row_name}: column 'negative_types' has {len(types)} types for {count} negatives.")
        if any(kind not in (1, 2) for kind in types):
            raise ValueError(f"{row_name}: column 'negative_types' must hold 1 or 2 for each negative, got {types}.")
        by_type = {wanted: [i for i, kind in enumerate(types) if kind == wanted] for wanted in (1, 2)}
        if not types:
            raise ValueError(f"{row_name}: no negative of type 1 or 2 to draw from (columns 'negatives' / 'negative_types').")
        rng = np.random.default_rng((self.seed, self.epoch, int(row_index)))
        [(kind, position)] = draw_modality_aware(len(by_type[1]), len(by_type[2]), rng)
        return by_type[kind][position]

    def _reward(self, negatives: list[list], hardness: list[list[float] | None], num_candidates: int) -> torch.Tensor | None:
        if self.hardness_scale == 0 or all(scores is None for scores in hardness):
            return None
        reward = torch.zeros(len(negatives), num_candidates)
        column = len(negatives)
        for row, (row_negatives, scores) in enumerate(zip(negatives, hardness)):
            if scores is not None:
                reward[row, column : column + len(row_negatives)] = torch.tensor(scores, dtype=torch.float32) * self.hardness_scale
            column += len(row_negatives)
        return reward
