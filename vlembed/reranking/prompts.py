"""Reranking prompts in the form of MM-Embed Table 13 (§4.2): the query and the candidate, then a yes/no
question that ends in "True or False".

A prompt is a string with the fields ``{query}`` and ``{candidate}`` (their texts) and the slots
``{query_image}`` and ``{candidate_image}`` (where their images go). Defaults are keyed by the M-BEIR
task, written "<query modality> -> <candidate modality>".

Exact: §4.2 quotes two of MM-Embed's prompts, used here word for word:

- image -> text (image caption retrieval): "<q_img>\nCaption <c_txt>\nDoes the above daily life image
  match the caption? True or False";
- image,text -> text (visual question answering): "<Qry image>\nQuestion:<Qry text>\nAnswer:<Doc text>\n
  Does the answer correctly answer the question? True or False".

Our copy of the paper typesets them as formulas, which loses the spacing around the fields; we write
"Caption: ", "Question: " and "Answer: " (a colon, as the second prompt has, and one space).

MM-Embed-style (Table 13 not in our copy): the table body is missing from the text we have (only its
caption, "Prompts for reranking tasks in M-BEIR"), so every other default follows the pattern of the two
exact prompts; the per-dataset domain words of the real table (such as "daily life" for MSCOCO) are unknown
for those tasks. Pass ``prompt=`` to use a dataset's exact wording.
"""

from __future__ import annotations

import re

from ..evaluation.tasks import MBEIR_TASKS
from ..trainer.mining import normalize_modality

QUERY_IMAGE = "{query_image}"
CANDIDATE_IMAGE = "{candidate_image}"
_TEXT_FIELD = re.compile(r"\{(query|candidate)\}")
_IMAGE_SLOT = re.compile(r"(\{query_image\}|\{candidate_image\})")

# "image -> text" and "image,text -> text" are §4.2's exact prompts; the others are MM-Embed-style (Table 13
# is not in our copy of the paper).
DEFAULT_PROMPTS: dict[str, str] = {
    "text -> image": "{candidate_image}\nCaption: {query}\nDoes the above image match the caption? True or False",
    "text -> text": "Question: {query}\nPassage: {candidate}\nDoes the passage answer the question? True or False",
    "text -> image,text": "{candidate_image}\n{candidate}\nQuery: {query}\nDo the above image and text match the query? True or False",
    "image -> text": "{query_image}\nCaption: {candidate}\nDoes the above daily life image match the caption? True or False",
    "image -> image": "{query_image}\n{candidate_image}\nDoes the second image show the same thing as the first image? True or False",
    "image,text -> text": "{query_image}\nQuestion: {query}\nAnswer: {candidate}\nDoes the answer correctly answer the question? True or False",
    "image,text -> image": (
        "{query_image}\nModification: {query}\n{candidate_image}\n"
        "Does the second image match the first image with the modification applied? True or False"
    ),
    "image,text -> image,text": (
        "{query_image}\nQuestion: {query}\n{candidate_image}\n{candidate}\n"
        "Does the above image and passage correctly answer the question? True or False"
    ),
}
# CtrlBench (ABC §4.6): an image with an instruction against text candidates.
DEFAULT_PROMPTS["ctrlbench"] = (
    "{query_image}\nInstruction: {query}\nCaption: {candidate}\nDoes the caption answer the instruction about the above image? True or False"
)


def task_key(query_modality: str, candidate_modality: str) -> str:
    return f"{normalize_modality(query_modality)} -> {normalize_modality(candidate_modality)}"


def resolve_prompt(task: str | int | None, query_modality: str, candidate_modality: str) -> str:
    """The prompt for a pair: ``task`` names a default (a key of ``DEFAULT_PROMPTS`` or an M-BEIR task id),
    or is None to pick the default of the pair's modalities."""
    if task is None:
        key = task_key(query_modality, candidate_modality)
    elif isinstance(task, int) or (isinstance(task, str) and task.isdigit()):
        if int(task) not in MBEIR_TASKS:
            raise ValueError(f"Unknown M-BEIR task id {task}; known: {sorted(MBEIR_TASKS)}.")
        key = task_key(*MBEIR_TASKS[int(task)])
    elif task in DEFAULT_PROMPTS:
        key = task
    elif "->" in task:
        key = task_key(*(part.strip() for part in task.split("->")))
    else:
        raise ValueError(f"Unknown reranking task {task!r}; choose one of {sorted(DEFAULT_PROMPTS)} or pass prompt=.")
    if key not in DEFAULT_PROMPTS:
        raise ValueError(f"No default reranking prompt for {key!r}; pass prompt= with your own.")
    return DEFAULT_PROMPTS[key]


def fill_text_fields(template: str, query: str, candidate: str) -> str:
    """Fill ``{query}`` and ``{candidate}`` in one pass (texts may contain braces)."""
    values = {"query": query, "candidate": candidate}
    return _TEXT_FIELD.sub(lambda match: values[match.group(1)], template)


def split_image_slots(template: str) -> list[str]:
    """The template cut at its image slots, slots kept: ["text", "{query_image}", "text", ...]."""
    return [part for part in _IMAGE_SLOT.split(template) if part]


__all__ = ["DEFAULT_PROMPTS", "resolve_prompt", "fill_text_fields", "split_image_slots", "task_key", "QUERY_IMAGE", "CANDIDATE_IMAGE"]
