"""Retrieval tasks and loaders for the public on-disk layouts of MMEB, M-BEIR, CtrlBench-style and BEIR-style data.

Every loader returns a :class:`RetrievalTask`: query items and corpus items as
:meth:`VLEmbedModel.encode` takes them (text, ``{"text", "image"}`` dicts with ``pathlib.Path`` images),
ids, relevance judgements, per-query instructions and the modality each query asks for.

Expected layouts (relative to the ``root`` folder given to each loader)
=======================================================================

MMEB (``TIGER-Lab/MMEB-eval`` on the Hub), :func:`load_mmeb`::

    <root>/<Subset>/*.parquet           e.g. ImageNet-1K/test-00000-of-00001.parquet
    <root>/<Subset>.parquet             (alternative: one file per subset)
    <image_root>/<qry_img_path>         image_root: <root>/eval_images, else <root>/images, else <root>

  Columns: ``qry_text`` (str; the instruction is part of it, Phi-3-V's ``<|image_1|>`` marks the image),
  ``qry_img_path`` (str, "" for none), ``tgt_text`` (list of str), ``tgt_img_path`` (list of str, "" for
  none). Each row is a query with its own candidate list; the first target is the positive. Metric:
  Precision@1 (``precision@1``) over that list (LLaVE §4.1, VLM2Vec).

M-BEIR (``TIGER-Lab/M-BEIR``, UniIR), :func:`load_mbeir` for a task such as ``mscoco_task0``::

    <root>/query/<split>/mbeir_<task>_<split>.jsonl
        {"qid": "9:1", "query_txt": str|null, "query_img_path": str|null, "query_modality": "text"|"image"|"image,text",
         "pos_cand_list": ["9:5", ...], "neg_cand_list": [...], "task_id": 0}
    <root>/cand_pool/local/mbeir_<task>_cand_pool.jsonl     (or mbeir_<task>_<split>_cand_pool.jsonl, e.g. MSCOCO)
    <root>/cand_pool/global/mbeir_union_<split>_cand_pool.jsonl      (pool="union": the merged 5.6M pool)
        {"did": "9:5", "txt": str|null, "img_path": str|null, "modality": "text"|"image"|"image,text"}
    <root>/qrels/<split>/mbeir_<task>_<split>_qrels.txt   TREC lines "qid 0 did relevance task_id" (relevant: > 0);
                                                          without it, each query's pos_cand_list is used
    <root>/instructions/query_instructions.tsv            tab-separated, header row; columns query_modality,
                                                          cand_modality, dataset_id, prompt_1 ... prompt_n
    images: <root>/<img_path>

  The instruction of a query is the ``prompt_<instruction_index + 1>`` of its (dataset id = qid prefix,
  query modality, positive's modality) row. Metrics: ``hit@5`` (M-BEIR's Recall@5; ``hit@10`` for
  Fashion200K and FashionIQ, MM-Embed §5.1), ``modality_accuracy@1``.

BEIR-style text retrieval (BEIR / MTEB folders), :func:`load_text_retrieval`::

    <root>/corpus.jsonl      {"_id": str, "title": str (optional), "text": str}
    <root>/queries.jsonl     {"_id": str, "text": str}
    <root>/qrels/<split>.tsv header "query-id<TAB>corpus-id<TAB>score", then one judgement per line (relevant: > 0)

  Only queries named in the qrels are evaluated. Metric: ``ndcg@10`` (MM-Embed §5.1, MTEB).

CtrlBench-style (ABC §4.6: image + instruction -> text candidates), :func:`load_ctrlbench`: the BEIR
layout, where each query line also has ``"image"`` (path relative to ``root``) and ``"instruction"``::

    <root>/queries.jsonl     {"_id": str, "image": "images/123.jpg", "instruction": str}
    <root>/corpus.jsonl      {"_id": str, "text": str}
    <root>/qrels/<split>.tsv

  Metrics: ``recall@1``, ``recall@5``, ``recall@10`` (ABC Table 5; one relevant caption per instruction,
  so these equal ``hit@k``).
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

OnUnknown = Literal["error", "skip"]
# Phi-3-V's image marker, which MMEB's texts carry.
_MMEB_IMAGE_TOKEN = re.compile(r"<\|image_\d+\|>\s*")
# M-BEIR datasets reported at R@10 instead of R@5 (MM-Embed §5.1).
_MBEIR_AT_10 = ("fashion200k", "fashioniq")
# M-BEIR task id -> (query modality, candidate modality), as UniIR numbers its tasks.
MBEIR_TASKS = {
    0: ("text", "image"),
    1: ("text", "text"),
    2: ("text", "image,text"),
    3: ("image", "text"),
    4: ("image", "image"),
    6: ("image,text", "text"),
    7: ("image,text", "image"),
    8: ("image,text", "image,text"),
}


@dataclass
class RetrievalTask:
    """One retrieval evaluation: queries, a corpus and relevance judgements.

    Attributes:
        name: task name (e.g. ``"mscoco_task0"``).
        format: ``"mmeb"``, ``"mbeir"``, ``"ctrlbench"`` or ``"text"``.
        queries, query_ids: query items (as ``encode`` takes them) and their ids.
        corpus, corpus_ids: candidate items and their ids.
        relevant: query id -> set of relevant corpus ids.
        query_instructions: per query, its instruction (None: none).
        corpus_instruction: instruction for the candidates (usually None).
        query_modalities: per query, the modality it asks for ("text", "image", "image,text").
        candidates: query id -> its own candidate ids (MMEB); None: the whole corpus.
        k_values: cut-offs for precision/recall/hit.
        main_metric: the headline metric's name.
        dataset: Hub model-index dataset entry (name, type, split, config).
        skipped: reason -> count of what was left out (queries, judgements, corpus items).
    """

    name: str
    format: str
    queries: list[Any]
    query_ids: list[str]
    corpus: list[Any]
    corpus_ids: list[str]
    relevant: dict[str, set[str]]
    query_instructions: list[str | None] | None = None
    corpus_instruction: str | None = None
    query_modalities: list[str] | None = None
    candidates: dict[str, list[str]] | None = None
    k_values: tuple[int, ...] = (1, 5, 10)
    main_metric: str = "ndcg@10"
    dataset: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def corpus_modalities(self) -> list[str]:
        return [item_modality(item) for item in self.corpus]

    def check(self, on_unknown: OnUnknown = "error") -> "RetrievalTask":
        """Validate ids and judgements. Judgements naming unknown ids raise, or are dropped and counted
        under ``skipped["unknown_judgements"]`` with ``on_unknown="skip"``."""
        if len(self.queries) != len(self.query_ids):
            raise ValueError(f"{self.name}: {len(self.queries)} queries but {len(self.query_ids)} query ids.")
        if len(self.corpus) != len(self.corpus_ids):
            raise ValueError(f"{self.name}: {len(self.corpus)} corpus items but {len(self.corpus_ids)} corpus ids.")
        if not self.corpus:
            raise ValueError(f"{self.name}: the corpus is empty.")
        for kind, ids in (("query", self.query_ids), ("corpus", self.corpus_ids)):
            duplicate = _first_duplicate(ids)
            if duplicate is not None:
                raise ValueError(f"{self.name}: {kind} id {duplicate!r} appears more than once.")
        for values, what in ((self.query_instructions, "query_instructions"), (self.query_modalities, "query_modalities")):
            if values is not None and len(values) != len(self.queries):
                raise ValueError(f"{self.name}: {what} has {len(values)} entries for {len(self.queries)} queries.")
        known_queries, known_corpus = set(self.query_ids), set(self.corpus_ids)
        relevant: dict[str, set[str]] = {}
        unknown = 0
        for query_id, corpus_ids in self.relevant.items():
            if query_id not in known_queries:
                if on_unknown == "error":
                    raise ValueError(f"{self.name}: relevance judgements name unknown query id {query_id!r}.")
                unknown += len(corpus_ids)
                continue
            for corpus_id in corpus_ids:
                if corpus_id not in known_corpus:
                    if on_unknown == "error":
                        raise ValueError(f"{self.name}: query {query_id!r} is judged against unknown corpus id {corpus_id!r}.")
                    unknown += 1
                else:
                    relevant.setdefault(query_id, set()).add(corpus_id)
        for query_id, candidate_ids in (self.candidates or {}).items():
            missing = [corpus_id for corpus_id in candidate_ids if corpus_id not in known_corpus]
            if missing:
                raise ValueError(f"{self.name}: query {query_id!r} has unknown candidate id {missing[0]!r}.")
        skipped = dict(self.skipped)
        if unknown:
            skipped["unknown_judgements"] = skipped.get("unknown_judgements", 0) + unknown
        return replace(self, relevant=relevant, skipped=skipped)

    def select_queries(self, keep: list[int]) -> "RetrievalTask":
        """The task restricted to the queries at positions ``keep``."""
        def pick(values: list | None) -> list | None:
            return None if values is None else [values[i] for i in keep]

        kept_ids = set(pick(self.query_ids))
        return replace(
            self,
            queries=pick(self.queries),
            query_ids=pick(self.query_ids),
            query_instructions=pick(self.query_instructions),
            query_modalities=pick(self.query_modalities),
            relevant={q: ids for q, ids in self.relevant.items() if q in kept_ids},
            candidates=None if self.candidates is None else {q: c for q, c in self.candidates.items() if q in kept_ids},
        )


def _first_duplicate(ids: list[str]) -> str | None:
    seen = set()
    for item_id in ids:
        if item_id in seen:
            return item_id
        seen.add(item_id)
    return None


def item_modality(item: Any) -> str:
    """"text", "image" or "image,text" of an item as ``encode`` takes it."""
    from ..modeling.processing_vlembed import EmbeddingInput

    if isinstance(item, str):
        return "text"
    if isinstance(item, dict):
        images = [item["image"]] if item.get("image") is not None else []
        return EmbeddingInput(text=item.get("text") or "", images=images + list(item.get("images") or []), video=item.get("video")).modality
    return "image"


def make_item(text: str | None, image: str | os.PathLike | None, image_root: str | os.PathLike | None = None) -> Any:
    """A text (``str``), an image (``{"image": Path}``) or both (``{"text", "image"}``); the image path is
    ``image_root / image`` (loaders pass their resolved root, so the paths are absolute)."""
    text = text or ""
    if not image:
        return text
    path = Path(image_root, image) if image_root is not None else Path(image)
    return {"text": text, "image": path} if text else {"image": path}


def read_jsonl(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Rows of a JSON-lines file; a malformed line raises with its line number."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {number}: not valid JSON ({error.msg}).") from error


def _required(row: dict, key: str, where: str) -> Any:
    if key not in row:
        raise ValueError(f"{where}: missing field {key!r}.")
    return row[key]


# ---------------------------------------------------------------------------------------------- MMEB


def load_mmeb(root: str | os.PathLike, subset: str, *, image_root: str | os.PathLike | None = None) -> RetrievalTask:
    """An MMEB subset (per-query candidate lists, Precision@1). See the module docstring for the layout."""
    import pyarrow.parquet as pq

    root = Path(root).resolve()  # absolute image paths, as `load_corpus` makes them
    files = sorted((root / subset).glob("*.parquet")) if (root / subset).is_dir() else [root / f"{subset}.parquet"]
    if not files or not files[0].is_file():
        raise FileNotFoundError(f"No parquet file for MMEB subset {subset!r} under {root} (expected {root / subset}/*.parquet).")
    if image_root is None:
        image_root = next((root / name for name in ("eval_images", "images") if (root / name).is_dir()), root)
    image_root = Path(image_root).resolve()
    rows = [row for file in files for row in pq.read_table(file).to_pylist()]
    queries, query_ids, modalities, candidates, relevant = [], [], [], {}, {}
    corpus, corpus_ids, position = [], [], {}
    for number, row in enumerate(rows):
        where = f"MMEB {subset}, row {number}"
        texts, images = list(_required(row, "tgt_text", where) or []), list(row.get("tgt_img_path") or [])
        if not texts:
            raise ValueError(f"{where}: empty tgt_text (the first target is the positive).")
        images += [""] * (len(texts) - len(images))
        query_id = f"{subset}:{number}"
        row_candidates = []
        for text, image in zip(texts, images):
            item = make_item(_MMEB_IMAGE_TOKEN.sub("", text or ""), image, image_root)
            key = (text or "", image or "")
            if key not in position:  # candidates repeat across queries (e.g. class labels): encode once
                position[key] = f"{subset}:c{len(corpus)}"
                corpus.append(item)
                corpus_ids.append(position[key])
            if position[key] not in row_candidates:
                row_candidates.append(position[key])
        queries.append(make_item(_MMEB_IMAGE_TOKEN.sub("", _required(row, "qry_text", where) or ""), row.get("qry_img_path"), image_root))
        query_ids.append(query_id)
        candidates[query_id] = row_candidates
        relevant[query_id] = {row_candidates[0]}
        modalities.append(item_modality(make_item(texts[0], images[0])))
    return RetrievalTask(
        name=subset, format="mmeb", queries=queries, query_ids=query_ids, corpus=corpus, corpus_ids=corpus_ids,
        relevant=relevant, query_modalities=modalities, candidates=candidates, k_values=(1,), main_metric="precision@1",
        dataset={"name": f"MMEB {subset}", "type": "TIGER-Lab/MMEB-eval", "config": subset, "split": "test"},
    ).check()


# ---------------------------------------------------------------------------------------------- M-BEIR


def _mbeir_instructions(path: Path) -> dict[tuple[str, str, str], list[str]]:
    """(dataset id, query modality, candidate modality) -> prompts, from query_instructions.tsv."""
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader)
        columns = {name.strip(): index for index, name in enumerate(header)}
        for needed in ("query_modality", "cand_modality", "dataset_id"):
            if needed not in columns:
                raise ValueError(f"{path}: header lacks column {needed!r} (got {header}).")
        prompt_columns = [index for name, index in sorted(columns.items(), key=lambda item: item[1]) if name.startswith("prompt")]
        table = {}
        for row in reader:
            if not row:
                continue
            key = (row[columns["dataset_id"]].strip(), row[columns["query_modality"]].strip(), row[columns["cand_modality"]].strip())
            table[key] = [row[index].strip() for index in prompt_columns if index < len(row) and row[index].strip()]
    return table


def load_mbeir(
    root: str | os.PathLike,
    task: str,
    *,
    split: str = "test",
    pool: Literal["local", "union"] = "local",
    instruction_index: int = 0,
    with_instructions: bool = True,
    on_unknown: OnUnknown = "error",
) -> RetrievalTask:
    """An M-BEIR task (e.g. ``"mscoco_task0"``): instruction per query, one pool of mixed-modality candidates.

    Args:
        root: the M-BEIR folder (layout in the module docstring).
        task: ``<dataset>_task<id>`` as in the file names.
        split: ``"test"`` or ``"val"``.
        pool: ``"local"`` (the task's own pool) or ``"union"`` (the merged pool of all tasks, MM-Embed §5.1).
        instruction_index: which of the task's prompts to use (UniIR draws one at random; 0 = ``prompt_1``).
        with_instructions: False evaluates without instructions.
        on_unknown: judgements naming ids missing from the queries or pool: ``"error"`` or ``"skip"`` (counted).
    """
    from ..trainer.mining import normalize_modality

    root = Path(root).resolve()  # absolute image paths, as `load_corpus` makes them
    query_path = root / "query" / split / f"mbeir_{task}_{split}.jsonl"
    if pool == "union":
        pool_paths = [root / "cand_pool" / "global" / f"mbeir_union_{split}_cand_pool.jsonl"]
    else:
        pool_paths = [root / "cand_pool" / "local" / f"mbeir_{task}_cand_pool.jsonl", root / "cand_pool" / "local" / f"mbeir_{task}_{split}_cand_pool.jsonl"]
    pool_path = next((path for path in pool_paths if path.is_file()), None)
    for path, what in ((query_path, "query file"), (pool_path or pool_paths[0], "candidate pool")):
        if not path.is_file():
            raise FileNotFoundError(f"M-BEIR {what} not found: {path}")
    corpus, corpus_ids, corpus_modality = [], [], {}
    for number, row in enumerate(read_jsonl(pool_path), start=1):
        did = str(_required(row, "did", f"{pool_path}, line {number}"))
        corpus.append(make_item(row.get("txt"), row.get("img_path"), root))
        corpus_ids.append(did)
        corpus_modality[did] = normalize_modality(row.get("modality") or item_modality(corpus[-1]), f"modality of candidate {did}")
    query_rows = list(read_jsonl(query_path))
    qrels_path = root / "qrels" / split / f"mbeir_{task}_{split}_qrels.txt"
    if qrels_path.is_file():
        relevant: dict[str, set[str]] = {}
        with open(qrels_path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) < 4:
                    raise ValueError(f"{qrels_path}, line {number}: expected 'qid 0 did relevance [task_id]'.")
                if float(parts[3]) > 0:
                    relevant.setdefault(parts[0], set()).add(parts[2])
    else:
        relevant = {str(row["qid"]): {str(did) for did in row.get("pos_cand_list") or []} for row in query_rows}
    instructions_path = root / "instructions" / "query_instructions.tsv"
    if with_instructions and not instructions_path.is_file():
        raise FileNotFoundError(f"M-BEIR instructions not found: {instructions_path} (or pass with_instructions=False).")
    prompts = _mbeir_instructions(instructions_path) if with_instructions else {}
    queries, query_ids, instructions, asked = [], [], [], []
    for number, row in enumerate(query_rows, start=1):
        where = f"{query_path}, line {number}"
        qid = str(_required(row, "qid", where))
        query_modality = normalize_modality(_required(row, "query_modality", where), f"query_modality of query {qid}")
        target = _mbeir_target_modality(row, relevant.get(qid, ()), corpus_modality, where)
        queries.append(make_item(row.get("query_txt"), row.get("query_img_path"), root))
        query_ids.append(qid)
        asked.append(target)
        if with_instructions:
            key = (qid.split(":")[0], query_modality, target)
            options = prompts.get(key)
            if not options:
                raise ValueError(f"{where}: no instruction for dataset id {key[0]}, {query_modality} -> {target} in {instructions_path}.")
            instructions.append(options[min(instruction_index, len(options) - 1)])
    dataset_name = task.split("_task")[0]
    return RetrievalTask(
        name=task, format="mbeir", queries=queries, query_ids=query_ids, corpus=corpus, corpus_ids=corpus_ids,
        relevant=relevant, query_instructions=instructions if with_instructions else None, query_modalities=asked,
        main_metric="hit@10" if dataset_name.lower() in _MBEIR_AT_10 else "hit@5",
        dataset={"name": f"M-BEIR {task} ({pool} pool)", "type": "TIGER-Lab/M-BEIR", "config": task, "split": split},
    ).check(on_unknown)


def _mbeir_target_modality(row: dict, relevant_ids, corpus_modality: dict[str, str], where: str) -> str:
    """The modality a query asks for: its task id's candidate modality, else its first known positive's."""
    task_id = row.get("task_id")
    if task_id is not None and int(task_id) in MBEIR_TASKS:
        return MBEIR_TASKS[int(task_id)][1]
    for did in list(row.get("pos_cand_list") or []) + sorted(relevant_ids):
        if str(did) in corpus_modality:
            return corpus_modality[str(did)]
    raise ValueError(f"{where}: cannot tell which modality the query asks for (no task_id and no positive in the pool).")


# ---------------------------------------------------------------------------------------------- BEIR-style


def _load_beir(
    root: str | os.PathLike,
    *,
    split: str,
    name: str | None,
    task_format: str,
    query_instruction: str | None,
    on_unknown: OnUnknown,
) -> RetrievalTask:
    root = Path(root).resolve()  # absolute image paths, as `load_corpus` makes them
    paths = {"corpus": root / "corpus.jsonl", "queries": root / "queries.jsonl", "qrels": root / "qrels" / f"{split}.tsv"}
    for what, path in paths.items():
        if not path.is_file():
            raise FileNotFoundError(f"{task_format} layout: {what} file not found: {path}")
    corpus, corpus_ids = [], []
    for number, row in enumerate(read_jsonl(paths["corpus"]), start=1):
        where = f"{paths['corpus']}, line {number}"
        corpus_ids.append(str(row["_id"] if "_id" in row else _required(row, "id", where)))
        text = " ".join(part for part in (row.get("title") or "", row.get("text") or "") if part)
        corpus.append(make_item(text, row.get("image"), root))
    query_rows = {}
    for number, row in enumerate(read_jsonl(paths["queries"]), start=1):
        query_rows[str(row["_id"] if "_id" in row else _required(row, "id", f"{paths['queries']}, line {number}"))] = row
    relevant: dict[str, set[str]] = {}
    with open(paths["qrels"], encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, None)
        if header is None or [column.strip() for column in header[:2]] != ["query-id", "corpus-id"]:
            raise ValueError(f"{paths['qrels']}: expected the header 'query-id<TAB>corpus-id<TAB>score', got {header}.")
        for number, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) < 3:
                raise ValueError(f"{paths['qrels']}, line {number}: expected 3 tab-separated fields.")
            if float(row[2]) > 0:
                relevant.setdefault(row[0].strip(), set()).add(row[1].strip())
    skipped = {}
    query_ids = [query_id for query_id in relevant if query_id in query_rows]
    if len(query_ids) < len(relevant):
        missing = next(query_id for query_id in relevant if query_id not in query_rows)
        if on_unknown == "error":
            raise ValueError(f"{paths['qrels']}: relevance judgements name unknown query id {missing!r}.")
        skipped["unknown_judgements"] = sum(len(relevant[q]) for q in relevant if q not in query_rows)
    queries, instructions = [], []
    for query_id in query_ids:
        row = query_rows[query_id]
        if task_format == "ctrlbench" and not row.get("image"):
            raise ValueError(f"{paths['queries']}: CtrlBench query {query_id!r} has no 'image'.")
        queries.append(make_item(row.get("text"), row.get("image"), root))
        instructions.append(row.get("instruction") or query_instruction)
    task_name = name or root.name
    ctrlbench = task_format == "ctrlbench"
    return RetrievalTask(
        name=task_name, format=task_format, queries=queries, query_ids=query_ids, corpus=corpus, corpus_ids=corpus_ids,
        relevant={q: relevant[q] for q in query_ids},
        query_instructions=instructions if any(instructions) else None,
        query_modalities=["text"] * len(queries) if ctrlbench else None,
        main_metric="recall@1" if ctrlbench else "ndcg@10",
        dataset={"name": task_name, "type": "CtrlBench" if ctrlbench else task_name, "split": split},
        skipped=skipped,
    ).check(on_unknown)


def load_text_retrieval(
    root: str | os.PathLike,
    *,
    split: str = "test",
    name: str | None = None,
    query_instruction: str | None = None,
    on_unknown: OnUnknown = "error",
) -> RetrievalTask:
    """A BEIR / MTEB-style text retrieval folder (nDCG@10). ``query_instruction`` applies to every query."""
    return _load_beir(root, split=split, name=name, task_format="text", query_instruction=query_instruction, on_unknown=on_unknown)


def load_ctrlbench(
    root: str | os.PathLike,
    *,
    split: str = "test",
    name: str | None = None,
    on_unknown: OnUnknown = "error",
) -> RetrievalTask:
    """A CtrlBench-style folder: image + instruction queries against text candidates (R@1/5/10, ABC §4.6)."""
    return _load_beir(root, split=split, name=name or "CtrlBench", task_format="ctrlbench", query_instruction=None, on_unknown=on_unknown)


def load_task(format: str, root: str | os.PathLike, task: str | None = None, **kwargs: Any) -> RetrievalTask:
    """Dispatch to a loader by format name: ``"mmeb"`` and ``"mbeir"`` need ``task`` (subset / task name)."""
    if format == "mmeb":
        return load_mmeb(root, _needs_task(format, task), **kwargs)
    if format == "mbeir":
        return load_mbeir(root, _needs_task(format, task), **kwargs)
    if format == "ctrlbench":
        return load_ctrlbench(root, name=task, **kwargs)
    if format == "text":
        return load_text_retrieval(root, name=task, **kwargs)
    raise ValueError(f"Unknown task format {format!r}; choose 'mmeb', 'mbeir', 'ctrlbench' or 'text'.")


def _needs_task(format: str, task: str | None) -> str:
    if not task:
        raise ValueError(f"The {format} format needs a task (subset) name.")
    return task


__all__ = [
    "RetrievalTask",
    "load_mmeb",
    "load_mbeir",
    "load_text_retrieval",
    "load_ctrlbench",
    "load_task",
    "item_modality",
    "make_item",
    "read_jsonl",
    "MBEIR_TASKS",
]
