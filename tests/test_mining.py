"""Hard-negative mining: ABC §3.2 threshold pools and MM-Embed §4.1.1 modality-aware negatives against
brute-force computations, sentence-transformers' mine_hard_negatives on real text, the datasets front
end (hardness, co-relevant positives, images, resuming an interrupted run) and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.fake_faiss_gpu import fake_gpu  # noqa: F401  (a fixture)
from tests.utils import run_cli, unit
from vlembed.search import search
from vlembed.trainer.mining import (
    MODALITIES,
    mine_hard_negatives,
    mine_modality_aware_negatives,
    mine_threshold_negatives,
    random_modality_negatives,
    sample_modality_aware_negatives,
    threshold_negative_pools,
)


@pytest.fixture(scope="module")
def random_case():
    """300 queries, 1500 corpus items (d=24); mixed single and double positives; a few queries surrounded
    by 150 items above the threshold, so the first search holds no eligible candidate."""
    rng = np.random.default_rng(0)
    corpus = unit(rng.standard_normal((1500, 24)))
    positives = [[int(rng.integers(1500))] for _ in range(300)]
    for row in range(0, 300, 7):
        positives[row].append(int(rng.integers(1500)))
    queries = unit(rng.standard_normal((300, 24)) + 1.5 * corpus[[p[0] for p in positives]])
    for row in range(5):  # crowded queries: 150 items at similarity ~0.99 > 0.95 x positive
        crowd = np.arange(1000 + 30 * row, 1000 + 30 * row + 150) % 1500
        corpus[crowd] = unit(queries[row] + 0.02 * rng.standard_normal((150, 24)))
        positives[row] = [int(crowd[0])]
        corpus[crowd[0]] = queries[row]
    return queries, corpus, positives


def brute_force_pool(similarity_row: np.ndarray, positives, epsilon: float, pool_size: int) -> list[int]:
    positive_score = min(similarity_row[p] for p in positives)
    threshold = positive_score - (1 - epsilon) * abs(positive_score)
    ranked = sorted(range(len(similarity_row)), key=lambda j: (-similarity_row[j], j))
    return [j for j in ranked if j not in positives and similarity_row[j] <= threshold][:pool_size]


def test_faiss_search_equals_brute_force(random_case):
    queries, corpus, _ = random_case
    scores, indices = search(queries, corpus, 20)
    similarity = queries.astype(np.float64) @ corpus.astype(np.float64).T
    expected = np.argsort(-similarity, axis=1, kind="stable")[:, :20]
    # Exact: the same items in the same order. Ties aside: where two items score the same (within float32
    # rounding of the float64 brute force), either order is right, so such a swap is the only difference allowed.
    rows, positions = np.nonzero(indices != expected)
    found_scores, expected_scores = similarity[rows, indices[rows, positions]], similarity[rows, expected[rows, positions]]
    np.testing.assert_allclose(found_scores, expected_scores, atol=1e-6)
    assert len(rows) <= 2, (rows, positions)
    np.testing.assert_allclose(scores, np.take_along_axis(similarity, indices, 1), atol=1e-5)


def test_threshold_pools_deeper_than_the_gpu_limit(fake_gpu):
    """FAISS on a GPU returns at most 2048 neighbours: a query whose pool lies deeper is searched on the CPU."""
    rng = np.random.default_rng(5)
    corpus = unit(rng.standard_normal((3000, 16)))
    queries = unit(rng.standard_normal((3, 16)))
    corpus[:3] = queries  # each query's positive is itself
    corpus[3:2203] = unit(queries[0] + 0.02 * rng.standard_normal((2200, 16)))  # 2200 items above 0.95 x query 0's positive
    positives = [[0], [1], [2]]
    pools, pool_scores = threshold_negative_pools(queries, corpus, positives, epsilon=0.95, pool_size=100)
    similarity = queries @ corpus.T
    for row in range(3):
        assert set(pools[row].tolist()) == set(brute_force_pool(similarity[row], positives[row], 0.95, 100)), row
        np.testing.assert_allclose(pool_scores[row], similarity[row, pools[row]], atol=1e-5)
    assert min(pools[0]) >= 2203
    # Depths 101, 404 and 1616 on the GPU; the next (6464, capped at the corpus) on the CPU.
    assert fake_gpu == [101, 404, 1616]


def test_threshold_pools_and_negatives_equal_brute_force(random_case):
    queries, corpus, positives = random_case
    pools, pool_scores = threshold_negative_pools(queries, corpus, positives, epsilon=0.95, pool_size=100)
    negatives, hardness = mine_threshold_negatives(queries, corpus, positives, seed=3, return_scores=True)
    similarity = queries @ corpus.T
    for row, row_positives in enumerate(positives):
        expected_pool = brute_force_pool(similarity[row], row_positives, 0.95, 100)
        assert set(pools[row].tolist()) == set(expected_pool), row
        np.testing.assert_allclose(pool_scores[row], similarity[row, pools[row]], atol=1e-5)
        # The draw, as documented: numpy.random.default_rng([seed, row]) over the pool sorted by index.
        ordered = np.sort(expected_pool)
        drawn = ordered[np.random.default_rng([3, row]).choice(len(ordered), size=7, replace=False)]
        assert set(negatives[row]) == set(drawn.tolist())
        assert not set(negatives[row]) & set(row_positives)
        np.testing.assert_allclose(hardness[row], similarity[row, negatives[row]], atol=1e-5)
        assert hardness[row] == sorted(hardness[row], reverse=True)
    assert all(len(pool) == 100 for pool in pools[:5])  # the crowded queries searched deeper


def test_threshold_negatives_are_reproducible_and_seed_dependent(random_case):
    queries, corpus, positives = random_case
    first = mine_threshold_negatives(queries, corpus, positives, seed=0)
    assert first == mine_threshold_negatives(queries, corpus, positives, seed=0)
    assert first != mine_threshold_negatives(queries, corpus, positives, seed=1)
    # A query's draw does not depend on the queries after it.
    assert mine_threshold_negatives(queries[:20], corpus, positives[:20], seed=0) == first[:20]


def brute_force_modality(similarity_row, positives, corpus_modalities, asked, top_k, k_prime):
    ranked = sorted(range(len(similarity_row)), key=lambda j: (-similarity_row[j], j))[:top_k]
    positive_ranks = [rank for rank, j in enumerate(ranked) if j in positives]
    cutoff = top_k if len(positive_ranks) < len(positives) else max(positive_ranks)
    type1 = [j for rank, j in enumerate(ranked) if rank < cutoff and j not in positives and corpus_modalities[j] != asked]
    type2 = [j for rank, j in enumerate(ranked) if rank >= k_prime and j not in positives and corpus_modalities[j] == asked]
    return type1, type2


def test_modality_aware_negatives_equal_brute_force(random_case):
    queries, corpus, positives = random_case
    rng = np.random.default_rng(1)
    corpus_modalities = [MODALITIES[i] for i in rng.integers(0, 3, len(corpus))]
    asked = [MODALITIES[i] for i in rng.integers(0, 3, len(queries))]
    # Push some queries' positives out of the top 50 and others down to mid-list.
    queries = queries.copy()
    queries[200:260] = unit(rng.standard_normal((60, corpus.shape[1])))
    type1, type2, scores1, scores2 = mine_modality_aware_negatives(
        queries, corpus, positives, corpus_modalities, asked, top_k=50, k_prime=45, return_scores=True
    )
    similarity = queries @ corpus.T
    assert sum(map(len, type1)) > 100 and sum(map(len, type2)) > 100
    for row in range(len(queries)):
        expected1, expected2 = brute_force_modality(similarity[row], positives[row], corpus_modalities, asked[row], 50, 45)
        # Exact sets; within a list, rank order (neighbours may swap where scores differ by float noise).
        assert set(type1[row]) == set(expected1) and len(type1[row]) == len(expected1), row
        assert set(type2[row]) == set(expected2) and len(type2[row]) == len(expected2), row
        for mined, scores in ((type1[row], scores1[row]), (type2[row], scores2[row])):
            np.testing.assert_allclose(scores, similarity[row, mined], atol=1e-5)
            assert np.all(np.diff(scores) <= 1e-6)


def test_modality_aware_sampling_takes_each_type_half_the_time():
    type1 = [[10, 11, 12]] * 2000 + [[]] * 10 + [[1]] * 10
    type2 = [[20, 21]] * 2000 + [[5, 6]] * 10 + [[]] * 10
    draws = sample_modality_aware_negatives(type1, type2, num_negatives=1, seed=0)
    first_kind = np.array([draw[0][0] for draw in draws[:2000]])
    assert abs((first_kind == 1).mean() - 0.5) < 0.04
    assert all(draw == [(2, draw[0][1])] for draw in draws[2000:2010])  # type 1 empty: type 2
    assert all(draw == [(1, 0)] for draw in draws[2010:])
    many = sample_modality_aware_negatives([[1, 2]], [[3]], num_negatives=5, seed=0)[0]
    assert sorted(many) == [(1, 0), (1, 1), (2, 0)]  # without replacement, all used up


def test_random_negatives_for_queries_without_either_type():
    corpus_modalities = ["text"] * 6 + ["image"] * 3
    positives = [[0], [6, 7], [1], [6, 7, 8]]
    asked = ["text", "image", "text", "image"]
    drawn = random_modality_negatives(positives, corpus_modalities, asked, seed=0)
    assert drawn[0][1] == 2 and drawn[0][0] in {1, 2, 3, 4, 5}
    assert drawn[1] == (8, 2)  # the only image that is not a positive
    assert drawn[2][1] == 2 and drawn[2][0] in {0, 2, 3, 4, 5}
    assert drawn[3][1] == 1 and drawn[3][0] in range(6)  # every image is a positive: a text stands in for type 1
    # One stream per query index: a subset draws what the full call drew.
    assert random_modality_negatives(positives, corpus_modalities, asked, queries=[3, 1], seed=0) == [drawn[3], drawn[1]]
    # Uniform over the allowed items (500 seeds, 100 expected each).
    counts = np.bincount([random_modality_negatives([[0]], corpus_modalities, ["text"], seed=seed)[0][0] for seed in range(500)], minlength=9)
    assert counts[0] == 0 and counts[6:].sum() == 0 and counts[1:6].min() > 60
    with pytest.raises(ValueError, match="Query 0: every corpus item is one of its positives"):
        random_modality_negatives([[0, 1]], ["text", "image"], ["text"])


def test_mining_bad_input(random_case):
    queries, corpus, positives = random_case
    with pytest.raises(ValueError, match="Query 1: positive id 99999"):
        mine_threshold_negatives(queries[:2], corpus, [[0], [99999]])
    with pytest.raises(ValueError, match="Query 0 has no positive"):
        mine_threshold_negatives(queries[:1], corpus, [[]])
    with pytest.raises(ValueError, match="corpus is empty"):
        mine_threshold_negatives(queries[:1], corpus[:0], [[0]])
    with pytest.raises(ValueError, match="2 entries for 3 queries"):
        mine_threshold_negatives(queries[:3], corpus, positives[:2])
    with pytest.raises(ValueError, match="modality of corpus item 0"):
        mine_modality_aware_negatives(queries[:1], corpus[:3], [[0]], ["video", "text", "text"], ["text"])
    with pytest.raises(ValueError, match="k_prime < top_k"):
        mine_modality_aware_negatives(queries[:1], corpus[:3], [[0]], ["text"] * 3, ["text"], top_k=5, k_prime=5)


@pytest.fixture(scope="module")
def minilm_st(minilm_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(minilm_dir, device="cpu")


@pytest.fixture(scope="module")
def code_pairs():
    """Real (docstring summary, code) pairs of the email package, the code cut to its first lines (CPU time)."""
    from vlembed.data.stdlib_code import CodePair, load_stdlib_code_pairs, stdlib_root

    pairs = load_stdlib_code_pairs(stdlib_root() / "email")
    shortened = {pair.query: CodePair(pair.qualified_name, pair.query, "\n".join(pair.code.splitlines()[:4])) for pair in pairs}
    unique_code = {pair.code: pair for pair in shortened.values()}
    return list(unique_code.values())


def test_threshold_pools_agree_with_sentence_transformers(tmp_path, minilm_st, code_pairs):
    """ST retrieves a window of the top ``range_max + extra`` candidates (extra = 1 in ST 6.2, 1 + the number
    of positives from 6.3), drops the positive and whatever is above the threshold, and keeps the best 100;
    ours is the top 100 under the threshold over the whole corpus. So ST's pool = ours restricted to ST's
    window, for the window size ST uses."""
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives as st_mine

    queries = [pair.query for pair in code_pairs]
    documents = [pair.code for pair in code_pairs]
    mined = st_mine(
        Dataset.from_dict({"query": queries, "positive": documents}), minilm_st, relative_margin=0.05, range_max=100,
        num_negatives=100, sampling_strategy="random", output_format="labeled-list", batch_size=64, verbose=False,
        cache_folder=str(tmp_path),
    )
    st_pools = {row["query"]: set(row["positive"][1:]) for row in mined}
    # The very embeddings ST mined with (its cache; queries and documents are unique, so in our order).
    (query_file,), (corpus_file,) = tmp_path.glob("query_embeddings_*.npy"), tmp_path.glob("corpus_embeddings_*.npy")
    query_embeddings, corpus_embeddings = np.load(query_file), np.load(corpus_file)
    assert len(query_embeddings) == len(queries) and len(corpus_embeddings) == len(documents)
    pools, _ = threshold_negative_pools(query_embeddings, corpus_embeddings, list(range(len(documents))), epsilon=0.95, pool_size=100)
    similarity = query_embeddings @ corpus_embeddings.T

    def mismatches(window: int) -> tuple[int, list]:
        """Queries whose pools differ, and differences that do not sit on a boundary within float noise."""
        differing, off_boundary = 0, []
        for row, query in enumerate(queries):
            ranked = np.argsort(-similarity[row], kind="stable")
            ours = {documents[j] for j in pools[row] if j in set(ranked[:window].tolist())}
            theirs = st_pools.get(query, set())
            threshold = 0.95 * similarity[row, row]
            boundary = similarity[row, ranked[window - 1]]
            for text in ours ^ theirs:
                score = similarity[row, documents.index(text)]
                if min(abs(score - threshold), abs(score - boundary)) >= 1e-5:
                    off_boundary.append((window, row, text[:40]))
            differing += ours != theirs
        return differing, off_boundary

    differing, off_boundary = min(mismatches(101), mismatches(102))
    assert not off_boundary
    assert differing <= 2
    assert len(queries) >= 200


@pytest.fixture(scope="module")
def minilm_model(minilm_dir):
    from vlembed import EmbeddingModel

    return EmbeddingModel.from_backbone(minilm_dir, pooling="mean")


def test_dataset_front_end_threshold(tmp_path, minilm_model, code_pairs):
    from datasets import Dataset

    model = minilm_model
    pairs = code_pairs[:40]
    queries = [pair.query for pair in pairs] + [pairs[0].query]  # the first query twice: two positives
    positives = [pair.code for pair in pairs] + [pairs[1].code]
    dataset = Dataset.from_dict({"query": queries, "positive": positives, "extra": list(range(len(queries)))})
    mined = mine_hard_negatives(dataset, model, num_negatives=5, pool_size=20, cache_dir=tmp_path / "cache", batch_size=16)
    assert mined.column_names == ["query", "positive", "extra", "negatives", "negative_hardness"]
    for row in (0, len(queries) - 1):  # co-relevant: neither positive of the repeated query
        assert not {pairs[0].code, pairs[1].code} & set(mined[row]["negatives"])
    assert mined[0]["negatives"] == mined[len(queries) - 1]["negatives"]
    query_embeddings = model.encode(queries[:10], task="query")
    for row in range(10):
        negatives = mined[row]["negatives"]
        assert len(negatives) == 5 and positives[row] not in negatives
        expected = model.encode(negatives, task="document") @ query_embeddings[row]
        np.testing.assert_allclose(mined[row]["negative_hardness"], expected, atol=1e-5)
        assert max(expected) <= 0.95 * float(model.encode([positives[row]], task="document")[0] @ query_embeddings[row]) + 1e-5


def test_interrupted_mining_resumes_to_identical_output(tmp_path, minilm_model, code_pairs, monkeypatch):
    from datasets import Dataset

    pairs = code_pairs[:32]
    dataset = Dataset.from_dict({"query": [p.query for p in pairs], "positive": [p.code for p in pairs]})
    options = dict(num_negatives=3, pool_size=10, batch_size=8, shard_size=8)
    reference = mine_hard_negatives(dataset, minilm_model, cache_dir=tmp_path / "fresh", **options)

    real_encode, calls = minilm_model.encode, {"count": 0, "limit": 2}

    def counting_encode(*args, **kwargs):  # one call per shard of 8; a "kill" after `limit` calls
        calls["count"] += 1
        if calls["count"] > calls["limit"]:
            raise KeyboardInterrupt("killed")
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(minilm_model, "encode", counting_encode)
    with pytest.raises(KeyboardInterrupt):
        mine_hard_negatives(dataset, minilm_model, cache_dir=tmp_path / "resumed", **options)
    assert len(list((tmp_path / "resumed" / "corpus").glob("embeddings-*.npy"))) == 2  # 2 of 4 corpus shards done
    calls.update(count=0, limit=100)
    resumed = mine_hard_negatives(dataset, minilm_model, cache_dir=tmp_path / "resumed", **options)
    assert resumed.to_dict() == reference.to_dict()
    assert calls["count"] == 2 + 4  # the 2 missing corpus shards, then the 4 query shards


def test_dataset_front_end_modality_aware_with_images(tmp_path, tiny_model_dir, images, monkeypatch):
    """Every type-1 then type-2 candidate with its type, against brute force on the model's embeddings; the
    training set names its positives by relative paths, the corpus by absolute ones: one item either way."""
    from datasets import Dataset

    from vlembed import EmbeddingModel

    model = EmbeddingModel.from_backbone(tiny_model_dir("qwen2_vl"))
    paths = []
    for index, image in enumerate(images * 3):
        path = tmp_path / f"img{index}.png"
        image.rotate(30 * index).save(path)
        paths.append(str(path))
    captions = [f"a photo number {i} of a cat" for i in range(12)]
    monkeypatch.chdir(tmp_path)
    dataset = Dataset.from_dict({
        "query": captions[:8],
        "query_instruction": ["Find the image."] * 8,
        "positive": [""] * 8,
        "positive_image": [f"img{i}.png" for i in range(8)],
    })
    corpus = [{"image": p} for p in paths] + captions[8:] + [{"text": c, "image": p} for c, p in zip(captions[:4], paths[:4])]
    mined, report = mine_hard_negatives(
        dataset, model, strategy="modality", corpus=corpus, top_k=10, k_prime=6, cache_dir=tmp_path / "cache", return_report=True
    )
    assert {"negatives", "negative_images", "negative_hardness", "negative_types"} <= set(mined.column_names)
    query_embeddings = model.encode(captions[:8], "Find the image.", task="query")
    corpus_embeddings = model.encode(corpus, task="document")
    similarity = query_embeddings @ corpus_embeddings.T
    modalities = ["image"] * 12 + ["text"] * 4 + ["image,text"] * 4
    item = lambda t, i: ({"text": t, "image": i} if t else {"image": i}) if i else t  # noqa: E731
    random_rows = 0
    for row in range(8):
        negatives = [item(t, i) for t, i in zip(mined[row]["negatives"], mined[row]["negative_images"])]
        expected1, expected2 = brute_force_modality(similarity[row], [row], modalities, "image", 10, 6)
        if expected1 or expected2:
            assert negatives == [corpus[j] for j in expected1 + expected2], row
            assert mined[row]["negative_types"] == [1] * len(expected1) + [2] * len(expected2)
        else:  # neither type: one random image that is not the positive, standing in for type 2
            random_rows += 1
            assert len(negatives) == 1 and mined[row]["negative_types"] == [2]
            assert negatives[0] in [{"image": p} for p in paths[:row] + paths[row + 1 :]]
        assert {"image": paths[row]} not in negatives  # the positive (its image with a caption is another item)
        expected = model.encode(negatives, task="document") @ query_embeddings[row]
        np.testing.assert_allclose(mined[row]["negative_hardness"], expected, atol=1e-4)
    assert report == {"rows": 8, "negatives": sum(len(n) for n in mined["negatives"]), "rows_short": 0, "rows_with_random_negative": random_rows}
    assert sum(len(types) > 1 for types in mined["negative_types"]) >= 4  # most rows have several candidates to draw from


def test_modality_rows_without_candidates_get_a_random_negative(tmp_path, minilm_dir, code_pairs, capsys):
    """A text-only corpus smaller than k' has neither type for any row: each row gets one random negative
    of the asked-for modality (type 2), or of another when the corpus has none of it (type 1)."""
    pairs = code_pairs[:12]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"query": p.query, "positive": p.code, "asked": "image" if i == 0 else "text"}) + "\n"
                            for i, p in enumerate(pairs)))
    out = tmp_path / "mined.jsonl"
    assert run_cli("mine", ["--model", minilm_dir, "--data", str(data), "--output", str(out), "--strategy", "modality",
                            "--target-modality-column", "asked", "--pooling", "mean"]) == 0
    assert "12 rows had neither type and got one random negative" in capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    codes = [p.code for p in pairs]
    for i, row in enumerate(rows):
        assert len(row["negatives"]) == 1 and row["negatives"][0] in codes and row["negatives"][0] != row["positive"]
        assert row["negative_types"] == [1 if i == 0 else 2]
    with pytest.raises(ValueError, match="num_negatives is for the threshold strategy"):
        run_cli("mine", ["--model", minilm_dir, "--data", str(data), "--output", str(out), "--strategy", "modality", "--num-negatives", "2"])


def test_cli_mine_writes_jsonl_and_reads_a_corpus_store(tmp_path, minilm_dir, code_pairs, monkeypatch):
    import vlembed.encoding

    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"query": p.query, "positive": p.code}) + "\n" for p in code_pairs[:20]))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"c{i}", "text": p.code}) + "\n" for i, p in enumerate(code_pairs[:30])))
    options = ["--model", minilm_dir, "--data", str(data), "--corpus", str(corpus), "--num-negatives", "2", "--pool-size", "10", "--pooling", "mean"]
    out = tmp_path / "mined.jsonl"
    assert run_cli("mine", [*options, "--output", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 20 and all(len(row["negatives"]) == 2 == len(row["negative_hardness"]) for row in rows)
    assert not list(tmp_path.glob(".mined.jsonl.*"))  # no temporary left behind

    # The same corpus encoded beforehand by `vlembed encode`: mining reads it and encodes only the queries.
    assert run_cli("encode", ["--model", minilm_dir, "--pooling", "mean", "--data", str(corpus), "--out", str(tmp_path / "store")]) == 0
    tasks = []
    encode_corpus = vlembed.encoding.encode_corpus
    monkeypatch.setattr(vlembed.encoding, "encode_corpus", lambda *a, **k: tasks.append(k["task"]) or encode_corpus(*a, **k))
    reused = tmp_path / "reused.jsonl"
    assert run_cli("mine", [*options, "--output", str(reused), "--corpus-store", str(tmp_path / "store")]) == 0
    assert tasks == ["query"]
    assert [json.loads(line) for line in reused.read_text().splitlines()] == rows
