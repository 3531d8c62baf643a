"""Retrieval evaluation: metrics against hand-computed values and sentence-transformers'
InformationRetrievalEvaluator, the LLaVE similarity gap against brute force, loaders for small folders in
the MMEB / M-BEIR / CtrlBench / BEIR layouts, bad input, reports and the CLI."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from tests.utils import run_cli, unit
from vlembed.evaluation import (
    RetrievalTask,
    evaluate,
    load_ctrlbench,
    load_mbeir,
    load_mmeb,
    load_text_retrieval,
    markdown_table,
    model_index_results,
    pair_similarities,
    plot_similarity_histogram,
    ranking_metrics,
    retrieval_metrics,
    similarity_gap,
    write_report,
)

# ---------------------------------------------------------------------------------------------- metrics


def test_ranking_metrics_equal_hand_computed_values():
    rankings = [[3, 1, 7, 2, 9], [5, 4, 6, 8, 0], [2, 0, 1, 4, 3]]
    relevant = [{1, 2}, {0}, {2}]
    metrics = ranking_metrics(
        rankings, relevant, k_values=(1, 3, 5), ndcg_at=(3, 5), mrr_at=(5,), map_at=(5,), top1_modality_correct=[True, False, True]
    )
    d = lambda rank: 1 / math.log2(rank + 1)  # noqa: E731  discount of a 1-based rank
    # q0: hits at ranks 2 and 4 of 2 relevant; q1: rank 5 of 1; q2: rank 1 of 1.
    expected = {
        "precision@1": (0 + 0 + 1) / 3,
        "precision@3": (1 / 3 + 0 + 1 / 3) / 3,
        "precision@5": (2 / 5 + 1 / 5 + 1 / 5) / 3,
        "recall@1": (0 + 0 + 1) / 3,
        "recall@3": (1 / 2 + 0 + 1) / 3,
        "recall@5": 1.0,
        "hit@1": 1 / 3,
        "hit@3": 2 / 3,
        "hit@5": 1.0,
        "ndcg@3": (d(2) / (d(1) + d(2)) + 0 + 1) / 3,
        "ndcg@5": ((d(2) + d(4)) / (d(1) + d(2)) + d(5) + 1) / 3,
        "mrr@5": (1 / 2 + 1 / 5 + 1) / 3,
        "map@5": ((1 / 2 + 2 / 4) / 2 + 1 / 5 + 1) / 3,
        "modality_accuracy@1": 2 / 3,
    }
    assert metrics.keys() == expected.keys()
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, abs=1e-12), name


def test_retrieval_metrics_rank_by_score_then_index():
    corpus = np.eye(6, dtype=np.float32)
    # q0 ranks 2 > 4 > {0,1,3,5} (ties by index); q1 ranks 5 > 0 > 1 > ...; q2 has its own candidate list.
    queries = unit(np.array([[0, 0, 3, 0, 1, 0], [2, 1, 0, 0, 0, 3], [0, 2, 0, 1, 0, 0]]))
    relevant = [{4, 3}, {1}, {3}]
    metrics = retrieval_metrics(
        queries, corpus, relevant, k_values=(1, 3), ndcg_at=(3,), mrr_at=(3,),
        query_modalities=["text", "image", "image"], corpus_modalities=["text", "image"] * 3,
        candidates=[list(range(6)), list(range(6)), [3, 0, 5]],
    )
    expected = ranking_metrics([[2, 4, 0], [5, 0, 1], [3, 0, 5]], relevant, k_values=(1, 3), ndcg_at=(3,), mrr_at=(3,),
                               top1_modality_correct=[True, True, True])
    assert metrics == pytest.approx(expected)
    # Without candidate lists, q2 ranks 1 > 3 > ... over the whole corpus.
    whole = retrieval_metrics(queries[2:], corpus, [{3}], k_values=(1, 3), ndcg_at=(3,), mrr_at=(3,))
    assert whole["precision@1"] == 0 and whole["mrr@3"] == 0.5


def test_queries_without_relevant_items_raise_or_are_skipped():
    corpus = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="Query 1 has no relevant item"):
        retrieval_metrics(corpus, corpus, [{0}, set(), {2}])
    skipped = retrieval_metrics(corpus, corpus, [{0}, set(), {2}], skip_queries_without_relevant=True)
    assert skipped["hit@1"] == 1.0
    with pytest.raises(ValueError, match="relevant corpus id 'nope'"):
        retrieval_metrics(corpus, corpus, {"a": {"nope"}}, query_ids=["a", "b", "c"], corpus_ids=["x", "y", "z"])
    with pytest.raises(ValueError, match="relevant index 7 is outside"):
        retrieval_metrics(corpus, corpus, [{0}, {7}, {2}])
    with pytest.raises(ValueError, match="query_modalities has 2 entries for 3 query embeddings"):
        retrieval_metrics(corpus, corpus, [{0}, {1}, {2}], query_modalities=["text"] * 2, corpus_modalities=["text"] * 3)
    with pytest.raises(ValueError, match="corpus_modalities has 4 entries for 3 corpus embeddings"):
        retrieval_metrics(corpus, corpus, [{0}, {1}, {2}], query_modalities=["text"] * 3, corpus_modalities=["text"] * 4)


@pytest.fixture(scope="module")
def minilm_st(minilm_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(minilm_dir, device="cpu")


def test_metrics_equal_sentence_transformers_evaluator(minilm_st):
    """Real text: the email package's docstring summaries as queries, their code as documents; every
    fifth query is also relevant to the next function's code, and one query has no judgement."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    from sentence_transformers.util import cos_sim

    from vlembed.data.stdlib_code import load_stdlib_code_pairs, stdlib_root

    pairs = load_stdlib_code_pairs(stdlib_root() / "email")
    assert len(pairs) >= 200
    documents = ["\n".join(pair.code.splitlines()[:6]) for pair in pairs]
    query_ids = [f"q{i:04d}" for i in range(len(pairs))]
    corpus_ids = [f"d{i:04d}" for i in range(len(pairs))]  # id order = index order: both break ties alike
    relevant = {query_ids[i]: {corpus_ids[i]} | ({corpus_ids[i + 1]} if i % 5 == 0 else set()) for i in range(len(pairs) - 1)}
    corpus_embeddings = minilm_st.encode(documents, batch_size=64, convert_to_tensor=True)
    evaluator = InformationRetrievalEvaluator(
        dict(zip(query_ids, [pair.query for pair in pairs])), dict(zip(corpus_ids, documents)), relevant,
        accuracy_at_k=[1, 5, 10], precision_recall_at_k=[1, 5, 10], mrr_at_k=[10], ndcg_at_k=[10], map_at_k=[100], batch_size=64,
        score_functions={"cosine": cos_sim},
    )
    theirs = evaluator.compute_all_metrics(minilm_st, corpus_embeddings=corpus_embeddings)["cosine"]
    query_embeddings = minilm_st.encode([pair.query for pair in pairs], batch_size=64, normalize_embeddings=True)
    ours = retrieval_metrics(
        query_embeddings, corpus_embeddings.cpu().numpy(), relevant, query_ids=query_ids, corpus_ids=corpus_ids,
        k_values=(1, 5, 10), map_at=(100,), skip_queries_without_relevant=True,
    )
    names = {"hit": "accuracy@k", "precision": "precision@k", "recall": "recall@k", "ndcg": "ndcg@k", "mrr": "mrr@k", "map": "map@k"}
    compared = 0
    for name, value in ours.items():
        base, k = name.split("@")
        assert value == pytest.approx(float(theirs[names[base]][int(k)]), abs=1e-6), name
        compared += 1
    assert compared == 12 and 0.2 < ours["ndcg@10"] < 1.0


# ---------------------------------------------------------------------------------------------- similarity gap


def test_similarity_gap_equals_brute_force(tmp_path):
    rng = np.random.default_rng(0)
    corpus = unit(rng.standard_normal((300, 16)))
    relevant = [{int(i)} | ({int(i) + 1} if i % 3 == 0 else set()) for i in rng.integers(0, 299, 40)]
    queries = unit(rng.standard_normal((40, 16)) + 2 * np.stack([corpus[min(r)] for r in relevant]))
    similarity = queries @ corpus.T
    positive, hard, easy = [], [], []
    for row, items in enumerate(relevant):
        others = sorted((j for j in range(300) if j not in items), key=lambda j: -similarity[row, j])
        positive += [similarity[row, j] for j in items]
        hard += [similarity[row, j] for j in others[:5]]
        easy += [similarity[row, j] for j in others[-5:]]
    gap = similarity_gap(queries, corpus, relevant)
    assert gap["positive_similarity"] == pytest.approx(np.mean(positive), abs=1e-5)
    assert gap["hard_negative_similarity"] == pytest.approx(np.mean(hard), abs=1e-5)
    assert gap["easy_negative_similarity"] == pytest.approx(np.mean(easy), abs=1e-5)
    assert gap["hard_negative_gap"] == pytest.approx(np.mean(hard) - np.mean(positive), abs=1e-5)
    # Per-query candidate lists (MMEB): only those are compared.
    candidates = [sorted(items | set(range(row, row + 20))) for row, items in enumerate(relevant)]
    pairs = pair_similarities(queries, corpus, relevant, candidates=candidates)
    hard_expected = [sorted((similarity[row, j] for j in cands if j not in relevant[row]), reverse=True)[:5] for row, cands in enumerate(candidates)]
    np.testing.assert_allclose(pairs["hard_negative"], np.concatenate(hard_expected), atol=1e-5)
    path = plot_similarity_histogram(queries, corpus, relevant, tmp_path / "plots" / "gap.png", title="random")
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 300


# ---------------------------------------------------------------------------------------------- loaders


@pytest.fixture()
def image_files(tmp_path, images):
    folder = tmp_path / "images"
    folder.mkdir()
    paths = []
    for index, image in enumerate(images):
        paths.append(folder / f"{index}.png")
        image.save(paths[-1])
    return paths


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def write_beir(root: Path, corpus: list[dict], queries: list[dict], qrels: list[tuple], split: str = "test") -> Path:
    write_jsonl(root / "corpus.jsonl", corpus)
    write_jsonl(root / "queries.jsonl", queries)
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    with open(root / "qrels" / f"{split}.tsv", "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["query-id", "corpus-id", "score"])
        writer.writerows(qrels)
    return root


@pytest.fixture(scope="module")
def vlm(tiny_model_dir):
    from vlembed import EmbeddingModel

    return EmbeddingModel.from_backbone(tiny_model_dir("qwen2_vl"))


def test_mmeb_layout_precision_at_1(tmp_path, image_files, vlm):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "MMEB-eval"
    (root / "eval_images" / "Sub").mkdir(parents=True)
    for index, path in enumerate(image_files):
        (root / "eval_images" / "Sub" / f"{index}.png").write_bytes(path.read_bytes())
    labels = ["cat", "dog", "bird", "fish"]
    rows = [
        {"qry_text": "<|image_1|>\nRepresent the given image for classification", "qry_img_path": f"Sub/{i}.png",
         "tgt_text": [labels[i]] + [label for label in labels if label != labels[i]], "tgt_img_path": [""] * 4}
        for i in range(4)
    ]
    (root / "Sub").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), root / "Sub" / "test-00000-of-00001.parquet")
    task = load_mmeb(root, "Sub")
    assert len(task.corpus) == 4  # the labels are shared: encoded once
    assert task.queries[0] == {"text": "Represent the given image for classification", "image": root / "eval_images" / "Sub" / "0.png"}
    assert [task.corpus[task.corpus_ids.index(task.candidates[q][0])] for q in task.query_ids] == labels
    result = evaluate(vlm, task)
    query_embeddings = vlm.encode(task.queries, task="query")
    label_embeddings = vlm.encode(labels, task="document")
    correct = [int(np.argmax(label_embeddings @ query_embeddings[i])) == i for i in range(4)]
    assert result["metrics"]["precision@1"] == pytest.approx(np.mean(correct))
    assert result["main_metric"] == "precision@1" and result["num_queries"] == 4


def write_mbeir(root: Path, image_files: list[Path], *, extra_qrel: str | None = None) -> Path:
    for index, path in enumerate(image_files):
        target = root / "mbeir_images" / "mscoco_images" / f"{index}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    pool = [{"did": f"9:{i}", "txt": None, "img_path": f"mbeir_images/mscoco_images/{i}.png", "modality": "image"} for i in range(4)]
    pool += [{"did": f"9:{4 + i}", "txt": text, "img_path": None, "modality": "text"} for i, text in enumerate(["a cat on a sofa", "a dog in a park"])]
    write_jsonl(root / "cand_pool" / "local" / "mbeir_mscoco_task0_test_cand_pool.jsonl", pool)
    write_jsonl(root / "cand_pool" / "global" / "mbeir_union_test_cand_pool.jsonl", pool + [{"did": "2:1", "txt": "web text", "img_path": None, "modality": "text"}])
    queries = [{"qid": f"9:{100 + i}", "query_txt": text, "query_img_path": None, "query_modality": "text",
                "pos_cand_list": [f"9:{i}"], "neg_cand_list": [], "task_id": 0}
               for i, text in enumerate(["a cat", "a dog", "a red bird", "a blue car"])]
    write_jsonl(root / "query" / "test" / "mbeir_mscoco_task0_test.jsonl", queries)
    (root / "qrels" / "test").mkdir(parents=True)
    lines = [f"9:{100 + i} 0 9:{i} 1 0" for i in range(4)] + ["9:101 0 9:4 0 0"] + ([extra_qrel] if extra_qrel else [])
    (root / "qrels" / "test" / "mbeir_mscoco_task0_test_qrels.txt").write_text("\n".join(lines) + "\n")
    (root / "instructions").mkdir()
    (root / "instructions" / "query_instructions.tsv").write_text(
        "query_modality\tcand_modality\tdataset\tdataset_id\tprompt_1\tprompt_2\n"
        "text\timage\tMSCOCO\t9\tFind me an everyday image that matches the given caption.\tIdentify the image.\n"
        "image\ttext\tMSCOCO\t9\tFind a caption for the image.\t\n"
    )
    return root


def test_mbeir_layout_with_instructions_and_modality_accuracy(tmp_path, image_files, vlm, monkeypatch):
    root = write_mbeir(tmp_path / "M-BEIR", image_files)
    task = load_mbeir(root, "mscoco_task0")
    assert task.query_instructions == ["Find me an everyday image that matches the given caption."] * 4
    assert task.query_modalities == ["image"] * 4 and task.main_metric == "hit@5"
    assert task.relevant["9:101"] == {"9:1"}  # relevance 0 is not relevant
    assert task.corpus[0] == {"image": root / "mbeir_images/mscoco_images/0.png"}
    result = evaluate(vlm, task)
    queries = vlm.encode(task.queries, task.query_instructions, task="query")
    corpus = vlm.encode(task.corpus, task="document")
    expected = retrieval_metrics(queries, corpus, [{i} for i in range(4)], query_modalities=["image"] * 4,
                                 corpus_modalities=["image"] * 4 + ["text"] * 2)
    assert result["metrics"] == pytest.approx(expected)
    assert "modality_accuracy@1" in result["metrics"]
    union = load_mbeir(root, "mscoco_task0", pool="union", instruction_index=1)
    assert len(union.corpus) == 7 and union.query_instructions[0] == "Identify the image."
    monkeypatch.chdir(tmp_path)  # a relative root gives the same absolute image paths that load_corpus makes
    assert load_mbeir("M-BEIR", "mscoco_task0").corpus == task.corpus


def test_text_and_ctrlbench_layouts(tmp_path, image_files, vlm, minilm_dir):
    from vlembed import EmbeddingModel

    text_root = write_beir(
        tmp_path / "scifact",
        [{"_id": "d1", "title": "Cats", "text": "Cats purr when content."}, {"_id": "d2", "text": "Dogs bark at strangers."},
         {"_id": "d3", "text": "The stock market fell."}],
        [{"_id": "q1", "text": "Why do cats purr?"}, {"_id": "q2", "text": "What do dogs do?"}, {"_id": "q9", "text": "unjudged"}],
        [("q1", "d1", 1), ("q2", "d2", 2), ("q2", "d3", 0)],
    )
    task = load_text_retrieval(text_root, query_instruction="Given a question, retrieve a passage.")
    assert task.query_ids == ["q1", "q2"] and task.corpus[0] == "Cats Cats purr when content."
    minilm = EmbeddingModel.from_backbone(minilm_dir, pooling="mean")
    result = evaluate(minilm, task)
    assert result["main_metric"] == "ndcg@10" and result["metrics"]["ndcg@10"] == pytest.approx(1.0)

    ctrl_root = tmp_path / "ctrlbench"
    for index, path in enumerate(image_files[:2]):
        (ctrl_root / "images").mkdir(parents=True, exist_ok=True)
        (ctrl_root / "images" / f"{index}.png").write_bytes(path.read_bytes())
    write_beir(
        ctrl_root,
        [{"_id": f"c{i}", "text": text} for i, text in enumerate(["a wooden bench", "blue water", "a sign with apples", "green grass"])],
        [{"_id": "i0", "image": "images/0.png", "instruction": "What is in the foreground?"},
         {"_id": "i1", "image": "images/1.png", "instruction": "What does the sign say?"}],
        [("i0", "c0", 1), ("i1", "c2", 1)],
    )
    ctrl = load_ctrlbench(ctrl_root)
    assert ctrl.queries[1] == {"image": ctrl_root / "images" / "1.png"} and ctrl.query_instructions[1] == "What does the sign say?"
    result = evaluate(vlm, ctrl)
    queries = vlm.encode(ctrl.queries, ctrl.query_instructions, task="query")
    corpus = vlm.encode(ctrl.corpus, task="document")
    assert result["metrics"] == pytest.approx(retrieval_metrics(queries, corpus, [{0}, {2}]))
    assert result["main_metric"] == "recall@1"


def test_evaluation_reads_a_corpus_store(tmp_path, minilm_dir, monkeypatch):
    """A store from `vlembed encode` stands in for encoding the corpus: same metrics, only the queries encoded."""
    from vlembed import EmbeddingModel
    from vlembed.encoding import encode_corpus, load_corpus

    documents = ["Cats purr when content.", "Dogs bark at strangers.", "The stock market fell.", "Fish swim in schools."]
    root = write_beir(
        tmp_path / "toy", [{"_id": f"d{i}", "text": text} for i, text in enumerate(documents)],
        [{"_id": "q1", "text": "Why do cats purr?"}, {"_id": "q2", "text": "What do dogs do?"}, {"_id": "q3", "text": "Where do fish go?"}],
        [("q1", "d0", 1), ("q2", "d1", 1), ("q3", "d3", 1)],
    )
    model = EmbeddingModel.from_backbone(minilm_dir, pooling="mean")
    ids, items = load_corpus(root / "corpus.jsonl", id_column="_id")
    encode_corpus(model, items, tmp_path / "store", ids=ids, dtype="float16")
    task = load_text_retrieval(root)
    encoded = []
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda inputs, *args, **kwargs: encoded.append(len(inputs)) or encode(inputs, *args, **kwargs))
    reused = evaluate(model, task, corpus_store=tmp_path / "store")
    assert encoded == [3]  # the queries only
    fresh = evaluate(model, task)
    assert reused["metrics"] == pytest.approx(fresh["metrics"], abs=1e-6)
    assert reused["similarity_gap"] == pytest.approx(fresh["similarity_gap"], abs=2e-3)  # float16 store
    # Through the command, once for every task.
    out = tmp_path / "eval"
    assert run_cli("eval", ["--model", minilm_dir, "--pooling", "mean", "--format", "text", "--data", str(root), "--output", str(out),
                            "--corpus-store", str(tmp_path / "store")]) == 0
    assert json.loads((out / "results.json").read_text())["results"][0]["metrics"] == pytest.approx(fresh["metrics"], abs=1e-6)
    # A store of another corpus is refused by name.
    other = write_beir(tmp_path / "other", [{"_id": "x9", "text": "Birds fly."}], [{"_id": "q1", "text": "Who flies?"}], [("q1", "x9", 1)])
    from vlembed.encoding import StoreMismatchError

    with pytest.raises(StoreMismatchError, match="lacks 1 of the 1 ids needed \\(first: 'x9'\\)"):
        evaluate(model, load_text_retrieval(other), corpus_store=tmp_path / "store")


# ---------------------------------------------------------------------------------------------- bad input


def test_bad_judgements_and_empty_corpus(tmp_path, image_files):
    root = write_beir(tmp_path / "bad", [{"_id": "d1", "text": "x"}], [{"_id": "q1", "text": "y"}], [("q1", "d1", 1), ("q1", "ghost", 1)])
    with pytest.raises(ValueError, match="query 'q1' is judged against unknown corpus id 'ghost'"):
        load_text_retrieval(root)
    assert load_text_retrieval(root, on_unknown="skip").skipped == {"unknown_judgements": 1}
    root = write_beir(tmp_path / "bad_query", [{"_id": "d1", "text": "x"}], [{"_id": "q1", "text": "y"}], [("q7", "d1", 1)])
    with pytest.raises(ValueError, match="unknown query id 'q7'"):
        load_text_retrieval(root)
    root = write_beir(tmp_path / "empty", [], [{"_id": "q1", "text": "y"}], [])
    with pytest.raises(ValueError, match="the corpus is empty"):
        load_text_retrieval(root)
    mbeir = write_mbeir(tmp_path / "M-BEIR", image_files, extra_qrel="9:100 0 9:777 1 0")
    with pytest.raises(ValueError, match="unknown corpus id '9:777'"):
        load_mbeir(mbeir, "mscoco_task0")
    assert load_mbeir(mbeir, "mscoco_task0", on_unknown="skip").skipped == {"unknown_judgements": 1}


def test_unreadable_images_and_unjudged_queries_are_errors_or_counted_skips(tmp_path, image_files, vlm):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    task = RetrievalTask(
        name="toy", format="text",
        queries=["a cat", "a dog", "a bird", {"image": broken}],
        query_ids=["q1", "q2", "q3", "q4"],
        corpus=[{"image": image_files[0]}, {"image": broken}, "a bird in a tree"],
        corpus_ids=["c1", "c2", "c3"],
        relevant={"q1": {"c1"}, "q2": {"c2"}, "q4": {"c1"}},
    ).check()
    with pytest.raises(ValueError, match="corpus item 'c2' cannot be read"):
        evaluate(vlm, task)
    result = evaluate(vlm, task, on_bad_image="skip")
    assert result["skipped"] == {
        "corpus_items_with_unreadable_images": 1,
        "queries_with_unreadable_images": 1,
        "queries_judged_on_unreadable_items": 1,
        "queries_without_relevant": 1,
    }
    assert result["num_queries"] == 1 and result["num_corpus"] == 2
    table = markdown_table([result])
    assert "1 corpus items with unreadable images" in table and "1 queries without relevant" in table


# ---------------------------------------------------------------------------------------------- reports and CLI


def test_report_json_markdown_and_model_index(tmp_path):
    result = {
        "task": "mscoco_task0", "format": "mbeir", "main_metric": "hit@5", "num_queries": 3, "num_corpus": 9,
        "dataset": {"name": "M-BEIR mscoco_task0 (local pool)", "type": "TIGER-Lab/M-BEIR", "config": "mscoco_task0", "split": "test"},
        "metrics": {"hit@5": 0.5, "recall@5": 0.25, "ndcg@10": 0.4, "modality_accuracy@1": 1.0},
        "similarity_gap": {"positive_similarity": 0.6, "hard_negative_similarity": 0.5, "easy_negative_similarity": 0.1,
                           "hard_negative_gap": -0.1, "easy_negative_gap": -0.5},
        "skipped": {},
    }
    paths = write_report([result], tmp_path / "report", model_name="org/model")
    payload = json.loads(Path(paths["json"]).read_text())
    assert payload["results"][0]["metrics"]["hit@5"] == 0.5
    entry = payload["model_index"][0]
    assert entry["task"]["type"] == "retrieval" and entry["dataset"]["type"] == "TIGER-Lab/M-BEIR"
    assert {"type": "hit_at_5", "value": 0.5, "name": "Hit@5"} in entry["metrics"]
    markdown = Path(paths["markdown"]).read_text()
    assert "| mscoco_task0 | mbeir | 3 | 9 | Hit@5 = 50.00 |" in markdown and "0.500 (-0.100)" in markdown
    assert model_index_results([result]) == payload["model_index"]


def test_cli_eval_text_folder(tmp_path, minilm_dir):
    root = write_beir(
        tmp_path / "toy",
        [{"_id": f"d{i}", "text": text} for i, text in enumerate(["Cats purr.", "Dogs bark.", "Fish swim.", "Birds fly."])],
        [{"_id": f"q{i}", "text": text} for i, text in enumerate(["Which animal purrs?", "Which animal barks?", "Which animal swims?"])],
        [(f"q{i}", f"d{i}", 1) for i in range(3)],
    )
    out = tmp_path / "eval"
    assert run_cli("eval", ["--model", minilm_dir, "--format", "text", "--data", str(root), "--output", str(out), "--plot", "--save-run", "2", "--pooling", "mean"]) == 0
    payload = json.loads((out / "results.json").read_text())
    assert payload["results"][0]["task"] == "toy" and "ndcg@10" in payload["results"][0]["metrics"]
    assert (out / "results.md").is_file() and (out / "toy_similarity.png").is_file()
    run = [json.loads(line) for line in (out / "toy_run.jsonl").read_text().splitlines()]
    assert len(run) == 3 and len(run[0]["candidates"]) == 2 and run[0]["relevant"] == ["d0"]
    assert run[0]["query"] == {"text": "Which animal purrs?"} and {"id", "text", "score"} <= set(run[0]["candidates"][0])
