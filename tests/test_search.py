"""FAISS search over embeddings: exact search streamed over memory-mapped float16 shards, IVF and HNSW
indexes with their recall against exact search, and search over a real embedding store."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from tests.fake_faiss_gpu import FakeGpuIndex, fake_gpu  # noqa: F401  (a fixture)
from vlembed.encoding import ShardedEmbeddings
from vlembed.search import GPU_MAX_K, approximate_recall, build_index, exact_search, is_gpu_index, search


def normalised(array: np.ndarray) -> np.ndarray:
    return array / np.linalg.norm(array, axis=1, keepdims=True)


def clustered(count: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    """Unit vectors around ``clusters`` random centres: the structure real embeddings have."""
    rng = np.random.default_rng(seed)
    centres = normalised(rng.standard_normal((clusters, dim)))
    points = centres[rng.integers(0, clusters, count)] + 0.3 * rng.standard_normal((count, dim)) / np.sqrt(dim)
    return normalised(points).astype(np.float32)


def brute_force(queries: np.ndarray, corpus: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = queries.astype(np.float64) @ corpus.astype(np.float64).T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


@pytest.fixture(scope="module")
def float16_memmap(tmp_path_factory) -> np.memmap:
    """3000 x 32 clustered unit vectors in a float16 .npy file, memory-mapped."""
    path = tmp_path_factory.mktemp("vectors") / "corpus.npy"
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(3000, 32))
    array[:] = clustered(3000, 32, clusters=40, seed=0)
    array.flush()
    return np.load(path, mmap_mode="r")


def test_exact_search_matches_brute_force_across_chunks(float16_memmap):
    queries = clustered(50, 32, clusters=40, seed=1)
    corpus = np.asarray(float16_memmap, dtype=np.float32)
    expected_scores, expected_indices = brute_force(queries, corpus, 10)
    scores, indices = exact_search(queries, float16_memmap, 10, chunk_size=700)  # 5 chunks, the last partial
    assert scores.dtype == np.float32 and indices.dtype == np.int64 and indices.shape == (50, 10)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 0)

    # Every corpus form gives the same answer: array, memmap, shards, a built flat index.
    sharded = ShardedEmbeddings([float16_memmap[:1000], float16_memmap[1000:2500], float16_memmap[2500:]])
    for corpus_form in (corpus, float16_memmap, sharded, build_index(sharded, "flat", add_batch_size=512)):
        np.testing.assert_array_equal(search(queries, corpus_form, 10)[1], expected_indices)
    # k is capped at the corpus size.
    assert search(queries[:2], float16_memmap[:4], 10)[1].shape == (2, 4)


def test_building_an_index_reads_the_memmap_in_chunks(tmp_path):
    count, dim, chunk = 60_000, 64, 4096
    path = tmp_path / "big.npy"
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(count, dim))
    array[:] = clustered(count, dim, clusters=100, seed=2)
    array.flush()
    vectors = np.load(path, mmap_mode="r")
    whole_copy = count * dim * 4
    tracemalloc.start()
    index = build_index(vectors, "flat", add_batch_size=chunk)
    _, flat_peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    exact_search(vectors[:8], vectors, 5, chunk_size=chunk)
    _, search_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert index.ntotal == count
    # numpy temporaries stay within a few chunks (the index's own storage lives in FAISS, not numpy).
    assert flat_peak < 3 * chunk * dim * 4 < whole_copy / 4, flat_peak
    assert search_peak < 3 * chunk * dim * 4, search_peak


@pytest.mark.parametrize("index_type, options", [("ivf", {"nlist": 40, "nprobe": 8}), ("hnsw", {"hnsw_m": 16})])
def test_approximate_indexes_report_recall_against_exact(float16_memmap, index_type, options, capsys):
    index = build_index(float16_memmap, index_type, recall_queries=200, **options)
    report = capsys.readouterr().err
    assert f"{index_type} index over 3000 vectors: recall@10 = " in report
    reported = float(report.split("recall@10 = ")[1].split()[0])
    assert reported == pytest.approx(approximate_recall(index, float16_memmap, num_queries=200), abs=5e-4)
    assert reported > 0.9

    queries = clustered(100, 32, clusters=40, seed=3)
    recall = approximate_recall(index, float16_memmap, queries, k=10)
    _, truth = brute_force(queries, np.asarray(float16_memmap, dtype=np.float32), 10)
    _, found = search(queries, index, 10)
    manual = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)])
    assert recall == pytest.approx(manual) and recall > 0.9


def test_recall_of_a_starved_index_is_low_and_exact_is_one(float16_memmap):
    # One probed list of 40: most true neighbours sit in lists that are never scanned.
    starved = build_index(float16_memmap, "ivf", nlist=40, nprobe=1, report_recall=False)
    random_queries = normalised(np.random.default_rng(4).standard_normal((100, 32))).astype(np.float32)
    assert approximate_recall(starved, float16_memmap, random_queries) < 0.8
    # Leaving each sampled query out of its own results: a flat index is exactly right.
    assert approximate_recall(build_index(float16_memmap, "flat"), float16_memmap, num_queries=100) == 1.0


def test_searches_deeper_than_the_gpu_limit_run_on_the_cpu(fake_gpu):
    rng = np.random.default_rng(6)
    corpus = normalised(rng.standard_normal((2500, 16))).astype(np.float32)
    queries = normalised(rng.standard_normal((5, 16))).astype(np.float32)
    deep = GPU_MAX_K + 52
    expected_scores, expected_indices = brute_force(queries, corpus, deep)
    # Embeddings: a GPU index up to the limit, exact search on the CPU beyond it.
    _, shallow = search(queries, corpus, 100)
    np.testing.assert_array_equal(shallow, expected_indices[:, :100])
    scores, indices = search(queries, corpus, deep)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)
    assert fake_gpu == [100]
    # A GPU index given: copied to the CPU for the deep search, never asked for more than it can return.
    index = build_index(corpus, "flat")
    assert isinstance(index, FakeGpuIndex) and is_gpu_index(index)
    np.testing.assert_array_equal(search(queries, index, deep)[1], expected_indices)
    assert fake_gpu == [100]
    assert not is_gpu_index(index.cpu_index)


def test_search_over_a_real_store(minilm_dir, tmp_path):
    import torch

    from vlembed import EmbeddingModel
    from vlembed.encoding import EmbeddingStore, encode_corpus

    documents = [
        "Return the number of items in the queue.",
        "Close the file and release its descriptor.",
        "A dog is holding a red frisbee in its mouth.",
        "The stock market fell sharply today.",
        "Someone is strumming a guitar on stage.",
        "Compute the greatest common divisor of two integers.",
    ]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = EmbeddingModel.from_backbone(minilm_dir, pooling="mean")
        encode_corpus(model, documents, tmp_path / "store", ids=[f"doc{i}" for i in range(6)], shard_size=4, dtype="float16")
        queries = model.encode(["How many elements are in the queue?", "guitar concert", "gcd of numbers"])
    finally:
        torch.set_num_threads(threads)
    store = EmbeddingStore(tmp_path / "store")
    scores, indices = search(queries, store, 2)
    assert [store.ids[row[0]] for row in indices] == ["doc0", "doc4", "doc5"]
    assert np.all(scores[:, 0] > scores[:, 1]) and np.all(scores[:, 0] > 0.4)
    hnsw_scores, hnsw_indices = search(queries, store, 2, index_type="hnsw", report_recall=False)
    np.testing.assert_array_equal(hnsw_indices[:, 0], indices[:, 0])
