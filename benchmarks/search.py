"""Exact against approximate search over 1M random 384-d float16 vectors, the way `vlembed.search` does it.

    python benchmarks/search.py                       # 1M x 384, 1,000 queries, k=10 (about 10 min on 2 cores)
    python benchmarks/search.py --count 100000        # a quick run

The vectors are unit-normalised Gaussian samples written as a float16 ``.npy`` file and memory-mapped,
as an embedding store's shards are. Each method runs in its own process so that its peak resident
memory (which includes the memory-mapped pages it touched) is its own:

- exact, streamed: `exact_search` over the memmap, no index (float32 copies of one chunk at a time);
- exact, flat index: `build_index(..., "flat")`, the corpus as float32 inside FAISS;
- IVF (``nlist`` ~ sqrt(N)) at several ``nprobe``;
- HNSW at several ``efSearch``, built on the first ``--hnsw-count`` vectors (200,000 by default: its
  build runs at a few thousand vectors per second on 2 cores, so 1M would take the whole budget);
  its rows are compared with exact search over the same vectors, reported in an extra row.

Recall@k is measured against the exact top k of the same queries. Isotropic random vectors have no
cluster structure, the hardest case for IVF and HNSW: real embeddings reach higher recall at the same
settings (``--clustered`` draws vectors around 1,000 centres instead).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GIB = 1024**3


def generate(workdir: Path, count: int, dim: int, num_queries: int, clustered: bool, seed: int = 0) -> None:
    """Write unit-norm float16 corpus vectors (in chunks, never all in float32) and float32 queries."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1000, dim)) if clustered else None

    def draw(rows: int) -> np.ndarray:
        vectors = rng.standard_normal((rows, dim))
        if centres is not None:
            vectors = centres[rng.integers(0, len(centres), rows)] + 0.5 * vectors
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    corpus = np.lib.format.open_memmap(workdir / "corpus.npy", mode="w+", dtype=np.float16, shape=(count, dim))
    for start in range(0, count, 100_000):
        corpus[start : start + 100_000] = draw(min(100_000, count - start))
    corpus.flush()
    np.save(workdir / "queries.npy", draw(num_queries).astype(np.float32))


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB  # ru_maxrss is in KiB on Linux


def current_rss_gib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / GIB


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth)]))


def worker(method: str, workdir: Path, args: argparse.Namespace) -> list[dict]:
    """Run one method in this process; return one result row per search setting."""
    from vlembed.search import build_index, exact_search, search

    baseline = current_rss_gib()  # interpreter, numpy, FAISS and vlembed (which imports torch)
    corpus = np.load(workdir / "corpus.npy", mmap_mode="r")
    queries = np.load(workdir / "queries.npy")
    rows = []

    def add_row(name: str, build_seconds: float, search_seconds: float, found: np.ndarray, truth: np.ndarray) -> None:
        peak = peak_rss_gib()
        rows.append({
            "method": name, "vectors": len(corpus), "build_s": build_seconds, "search_s": search_seconds,
            "recall": recall(found, truth), "rss_gib": peak, "added_gib": peak - baseline,
        })

    def exact_streamed() -> np.ndarray:
        started = time.perf_counter()
        _, truth = exact_search(queries, corpus, args.k)
        add_row("exact, streamed over memmap", 0.0, time.perf_counter() - started, truth, truth)
        return truth

    if method == "exact-stream":
        np.save(workdir / "truth.npy", exact_streamed())
        return rows
    if method == "hnsw" and args.hnsw_count < len(corpus):
        corpus = corpus[: args.hnsw_count]
        truth = exact_streamed()
    else:
        truth = np.load(workdir / "truth.npy")
    started = time.perf_counter()
    if method == "flat":
        index = build_index(corpus, "flat")
        settings = [("exact, flat index", None)]
    elif method == "ivf":
        index = build_index(corpus, "ivf", report_recall=False)
        settings = [(f"IVF{index.nlist}, nprobe={nprobe}", nprobe) for nprobe in args.nprobe]
    else:
        index = build_index(corpus, "hnsw", hnsw_m=args.hnsw_m, ef_construction=args.ef_construction, report_recall=False)
        settings = [(f"HNSW{args.hnsw_m}, efSearch={ef}", ef) for ef in args.ef_search]
    build_seconds = time.perf_counter() - started
    for name, value in settings:
        if method == "ivf":
            index.nprobe = value
        elif method == "hnsw":
            index.hnsw.efSearch = value
        started = time.perf_counter()
        _, found = search(queries, index, args.k)
        add_row(name, build_seconds, time.perf_counter() - started, found, truth)
    return rows


def run_worker(method: str, workdir: Path, argv: list[str]) -> list[dict]:
    command = [sys.executable, __file__, *argv, "--worker", method, "--workdir", str(workdir)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def print_table(rows: list[dict], num_queries: int, k: int) -> None:
    """One row per method and setting; throughput and memory also as ratios to exact search over the
    same vectors (the flat index where it ran, else the streamed search)."""
    exact = {}
    for row in rows:
        if row["method"].startswith("exact") and (row["vectors"] not in exact or "flat" in row["method"]):
            exact[row["vectors"]] = row
    header = (
        f"{'method':<28} {'vectors':>9} {'build s':>8} {'queries/s':>10} {'x exact':>8} {'recall@' + str(k):>9} "
        f"{'peak RSS GiB':>13} {'added GiB':>10} {'x exact':>8}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        reference = exact[row["vectors"]]
        qps = num_queries / row["search_s"]
        print(
            f"{row['method']:<28} {row['vectors']:>9,} {row['build_s']:>8.1f} {qps:>10.0f} "
            f"{qps * reference['search_s'] / num_queries:>8.2f} {row['recall']:>9.3f} {row['rss_gib']:>13.2f} "
            f"{row['added_gib']:>10.2f} {row['added_gib'] / reference['added_gib']:>8.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--clustered", action="store_true", help="vectors around 1,000 random centres")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--hnsw-count", type=int, default=200_000, help="HNSW is built on the first N vectors (default: 200000)")
    parser.add_argument("--hnsw-m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=40)
    parser.add_argument("--ef-search", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--methods", nargs="+", default=["flat", "ivf", "hnsw"], choices=["flat", "ivf", "hnsw"])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, Path(args.workdir), args)))
        return

    import faiss

    with tempfile.TemporaryDirectory(prefix="vlembed-search-bench-") as workdir:
        workdir = Path(workdir)
        started = time.perf_counter()
        generate(workdir, args.count, args.dim, args.queries, args.clustered)
        size = os.path.getsize(workdir / "corpus.npy") / GIB
        print(
            f"{args.count:,} x {args.dim} {'clustered' if args.clustered else 'random'} unit vectors, float16 on disk "
            f"({size:.2f} GiB, written in {time.perf_counter() - started:.0f} s); {args.queries:,} queries, k={args.k}; "
            f"FAISS {faiss.__version__}, {faiss.omp_get_max_threads()} threads, GPUs: {faiss.get_num_gpus()}",
            flush=True,
        )
        rows = []
        for method in ["exact-stream", *args.methods]:
            started = time.perf_counter()
            rows += run_worker(method, workdir, sys.argv[1:])
            print(f"  {method}: {time.perf_counter() - started:.0f} s", flush=True)
    print()
    print_table(rows, args.queries, args.k)
    print(f"\nLargest peak RSS: {max(row['rss_gib'] for row in rows):.2f} GiB (limit 24 GiB)")


if __name__ == "__main__":
    main()
