"""Exact against approximate search over 1M 384-d float16 vectors, with `vlembed.search`'s defaults.

    python benchmarks/search.py                                   # clustered 1M, then random 1M (about 40 min on 2 cores)
    python benchmarks/search.py --data clustered --count 100000   # a quick run

Two corpora, written as float16 ``.npy`` files and memory-mapped as an embedding store's shards are:

- ``clustered`` (the main row): a Gaussian mixture of ``--centres`` (10,000) components in a random
  ``--intrinsic-dim`` (32)-dimensional subspace (centres standard normal, components of std ``--spread``
  0.5), plus full-rank noise of ``--noise`` (0.1) times the centres' norm, unit-normalised. Real embeddings
  are like this: clustered, and of an intrinsic dimension far below 384. (Isotropic blobs, 1,000 centres
  with isotropic 384-d noise, are a degenerate case: with IVF's 1,000 lists one probe finds the blob,
  while inside it the neighbours are as hard for HNSW as random vectors.)
- ``random``: isotropic Gaussian directions, no structure at all, where approximate search has nothing to
  exploit: reported to show that there it gives no useful speed-up at high recall.

Queries are fresh draws from the same distribution (not corpus vectors). Each index is built once with the
library defaults (`build_index`: IVF ``nlist`` ~ sqrt(N) trained on 64 vectors per list; HNSW ``M`` = 32,
``efConstruction`` = 40), then searched at each ``nprobe`` / ``efSearch`` of the sweep. Per index the
summary gives the cheapest setting whose recall@10 against exact search reaches ``--target`` (0.9), its
query throughput relative to exact search (FAISS's flat index over the same vectors) and its memory.

HNSW is built on the whole corpus when its build fits ``--hnsw-budget`` seconds (900): the build rate is
measured first on ``--hnsw-probe`` (100,000) vectors and projected, with a 25 % margin because insertion
slows as the graph grows; otherwise it is built on as many vectors as fit, compared with exact search over
those same vectors, and the summary says so.

Each method runs in its own process, so its peak resident memory (including the memory-mapped pages it
touched) is its own; ``added GiB`` is that peak minus the process's memory before the corpus was opened.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# The peak-memory probe of the mining benchmark (benchmarks/ is on sys.path when a script runs). Its reset
# matters here: a subprocess otherwise inherits its parent's peak across exec.
from mining import GIB, peak_rss_gib, reset_peak_rss

HNSW_GROWTH_MARGIN = 1.25


def generate(workdir: Path, data: str, count: int, dim: int, num_queries: int, args: argparse.Namespace, seed: int = 0) -> None:
    """Write unit-norm float16 corpus vectors (in chunks, never all in float32) and float32 queries."""
    rng = np.random.default_rng(seed)
    # clustered: a Gaussian mixture in a random `intrinsic_dim`-dimensional subspace, plus full-rank noise.
    basis = np.linalg.qr(rng.standard_normal((dim, args.intrinsic_dim)))[0].T
    centres = rng.standard_normal((args.centres, args.intrinsic_dim))

    def draw(rows: int) -> np.ndarray:
        noise = rng.standard_normal((rows, dim))
        if data == "clustered":
            latent = centres[rng.integers(0, len(centres), rows)] + args.spread * rng.standard_normal((rows, args.intrinsic_dim))
            vectors = latent @ basis + args.noise * np.sqrt(args.intrinsic_dim / dim) * noise
        else:
            vectors = noise
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    corpus = np.lib.format.open_memmap(workdir / "corpus.npy", mode="w+", dtype=np.float16, shape=(count, dim))
    for start in range(0, count, 100_000):
        corpus[start : start + 100_000] = draw(min(100_000, count - start))
    corpus.flush()
    np.save(workdir / "queries.npy", draw(num_queries).astype(np.float32))


def current_rss_gib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / GIB


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth)]))


def timed_search(index, queries: np.ndarray, k: int, min_seconds: float = 1.0) -> tuple[float, np.ndarray]:
    """Queries per second (repeating fast searches until ``min_seconds`` have passed) and the results."""
    from vlembed.search import search

    started, repeats = time.perf_counter(), 0
    while True:
        _, found = search(queries, index, k)
        repeats += 1
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return repeats * len(queries) / elapsed, found


def worker(method: str, workdir: Path, args: argparse.Namespace) -> list[dict]:
    """Run one method in this process; return one result row per search setting."""
    import faiss  # noqa: F401  (loaded before the baseline is taken)

    from vlembed.search import build_index, exact_search

    reset_peak_rss()
    baseline = current_rss_gib()  # interpreter, numpy, FAISS and vlembed
    corpus = np.load(workdir / "corpus.npy", mmap_mode="r")
    queries = np.load(workdir / "queries.npy")
    vectors = args.vectors or len(corpus)
    corpus = corpus[:vectors]
    rows = []

    def add_row(name: str, setting, build_seconds: float, qps: float, found: np.ndarray, truth: np.ndarray) -> None:
        peak = peak_rss_gib()
        rows.append({
            "method": method, "name": name, "setting": setting, "vectors": vectors, "build_s": build_seconds,
            "qps": qps, "recall": recall(found, truth), "rss_gib": peak, "added_gib": peak - baseline,
        })

    if method == "exact-stream":
        started = time.perf_counter()
        _, truth = exact_search(queries, corpus, args.k)
        add_row("exact, streamed over memmap", None, 0.0, len(queries) / (time.perf_counter() - started), truth, truth)
        np.save(workdir / f"truth-{vectors}.npy", truth)
        return rows
    truth = np.load(workdir / f"truth-{vectors}.npy")
    started = time.perf_counter()
    index = build_index(corpus, method, report_recall=False)
    build_seconds = time.perf_counter() - started
    if method == "flat":
        settings = [("exact, flat index", None)]
    elif method == "ivf":
        settings = [(f"IVF{index.nlist}, nprobe={n}", n) for n in args.nprobe if n <= index.nlist]
    else:
        settings = [(f"HNSW{index.hnsw.nb_neighbors(1)}, efSearch={ef}", ef) for ef in args.ef_search]
    for name, value in settings:
        if method == "ivf":
            index.nprobe = value
        elif method == "hnsw":
            index.hnsw.efSearch = value
        qps, found = timed_search(index, queries, args.k)
        add_row(name, value, build_seconds, qps, found, truth)
    return rows


def run_worker(method: str, workdir: Path, argv: list[str], vectors: int | None = None) -> list[dict]:
    command = [sys.executable, __file__, *argv, "--worker", method, "--workdir", str(workdir)]
    if vectors:
        command += ["--vectors", str(vectors)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def hnsw_size(workdir: Path, argv: list[str], count: int, probe: int, budget: float) -> tuple[int, float]:
    """(vectors to build HNSW on, measured build rate in vectors/s on ``probe`` vectors)."""
    if count <= probe:
        return count, float("nan")
    code = (
        "import sys, time, numpy as np; from vlembed.search import build_index\n"
        f"corpus = np.load({str(workdir / 'corpus.npy')!r}, mmap_mode='r')[:{probe}]\n"
        "started = time.perf_counter(); build_index(corpus, 'hnsw', report_recall=False)\n"
        "print(time.perf_counter() - started)\n"
    )
    seconds = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()[-1])
    rate = probe / seconds
    affordable = int(budget * rate / HNSW_GROWTH_MARGIN) // probe * probe
    return min(count, max(probe, affordable)), rate


def print_rows(rows: list[dict], exact: dict[int, dict], k: int) -> None:
    header = f"{'method':<30} {'vectors':>9} {'build s':>8} {'queries/s':>10} {'x exact':>8} {'recall@' + str(k):>9} {'peak RSS GiB':>13} {'added GiB':>10}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['name']:<30} {row['vectors']:>9,} {row['build_s']:>8.1f} {row['qps']:>10.0f} "
            f"{row['qps'] / exact[row['vectors']]['qps']:>8.2f} {row['recall']:>9.3f} {row['rss_gib']:>13.2f} {row['added_gib']:>10.2f}"
        )


def summary(rows: list[dict], exact: dict[int, dict], target: float) -> list[str]:
    """Per approximate index: the cheapest swept setting reaching ``target`` recall (settings grow in cost)."""
    lines = []
    for method, parameter in (("ivf", "nprobe"), ("hnsw", "efSearch")):
        swept = [row for row in rows if row["method"] == method]
        if not swept:
            continue
        reference = exact[swept[0]["vectors"]]
        reached = next((row for row in swept if row["recall"] >= target), None)
        where = f"{swept[0]['vectors']:,} vectors" + ("" if swept[0]["vectors"] == max(exact) else " (a subset: see above)")
        if reached is None:
            best = max(swept, key=lambda row: row["recall"])
            lines.append(
                f"{method.upper()}: no swept {parameter} reaches recall@10 {target} ({where}); best {best['recall']:.3f} at "
                f"{parameter}={best['setting']}, {best['qps'] / reference['qps']:.2f}x exact's throughput"
            )
        else:
            lines.append(
                f"{method.upper()}: {parameter}={reached['setting']} reaches recall@10 {reached['recall']:.3f} at "
                f"{reached['qps'] / reference['qps']:.2f}x exact's throughput ({reached['qps']:.0f} vs {reference['qps']:.0f} queries/s), "
                f"peak RSS {reached['rss_gib']:.2f} GiB (+{reached['added_gib']:.2f}; exact flat index +{reference['added_gib']:.2f}), "
                f"built in {reached['build_s']:.0f} s on {where}"
            )
    return lines


def benchmark(data: str, args: argparse.Namespace, argv: list[str]) -> None:
    import faiss

    with tempfile.TemporaryDirectory(prefix="vlembed-search-bench-") as workdir:
        workdir = Path(workdir)
        started = time.perf_counter()
        generate(workdir, data, args.count, args.dim, args.queries, args)
        size = os.path.getsize(workdir / "corpus.npy") / GIB
        shape = (
            f"Gaussian mixture of {args.centres:,} centres in a {args.intrinsic_dim}-d subspace, spread {args.spread}, noise {args.noise}"
            if data == "clustered" else "isotropic random"
        )
        print(
            f"\n== {data}: {args.count:,} x {args.dim} unit vectors ({shape}), float16 on disk ({size:.2f} GiB, written in "
            f"{time.perf_counter() - started:.0f} s); {args.queries:,} queries, k={args.k}; FAISS {faiss.__version__}, "
            f"{faiss.omp_get_max_threads()} threads, GPUs: {faiss.get_num_gpus()}",
            flush=True,
        )
        rows = []
        for method in ["exact-stream", *(m for m in args.methods if m != "hnsw")]:
            started = time.perf_counter()
            rows += run_worker(method, workdir, argv)
            print(f"  {method}: {time.perf_counter() - started:.0f} s", flush=True)
        if "hnsw" in args.methods:
            vectors, rate = hnsw_size(workdir, argv, args.count, args.hnsw_probe, args.hnsw_budget)
            projected = args.count / rate * HNSW_GROWTH_MARGIN
            if vectors < args.count:
                print(f"  HNSW build rate on {args.hnsw_probe:,} vectors: {rate:,.0f} vectors/s; {args.count:,} would take about "
                      f"{projected / 60:.0f} min > {args.hnsw_budget / 60:.0f} min, so HNSW is built on {vectors:,} vectors", flush=True)
                rows += run_worker("exact-stream", workdir, argv, vectors) + run_worker("flat", workdir, argv, vectors)
            elif not np.isnan(rate):
                print(f"  HNSW build rate on {args.hnsw_probe:,} vectors: {rate:,.0f} vectors/s (projected {projected / 60:.1f} min for "
                      f"{args.count:,}): built on all of them", flush=True)
            started = time.perf_counter()
            rows += run_worker("hnsw", workdir, argv, vectors if vectors < args.count else None)
            print(f"  hnsw: {time.perf_counter() - started:.0f} s", flush=True)
    exact = {row["vectors"]: row for row in rows if row["method"] == "flat"}
    print()
    print_rows(rows, exact, args.k)
    print()
    for line in summary(rows, exact, args.target):
        print(line)
    print(f"Largest peak RSS: {max(row['rss_gib'] for row in rows):.2f} GiB (limit 24 GiB)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["clustered", "random"], choices=["clustered", "random"])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--centres", type=int, default=10_000, help="clustered: mixture components (default 10000)")
    parser.add_argument("--intrinsic-dim", type=int, default=32, help="clustered: dimension of the mixture's subspace (default 32)")
    parser.add_argument("--spread", type=float, default=0.5, help="clustered: component std / centre scale (default 0.5)")
    parser.add_argument("--noise", type=float, default=0.1, help="clustered: full-rank noise norm / centre norm (default 0.1)")
    parser.add_argument("--target", type=float, default=0.9, help="recall@k the summary asks of each index (default 0.9)")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128, 256])
    parser.add_argument("--ef-search", type=int, nargs="+", default=[10, 16, 32, 64, 128, 256, 512])
    parser.add_argument("--hnsw-probe", type=int, default=100_000, help="vectors the HNSW build rate is measured on")
    parser.add_argument("--hnsw-budget", type=float, default=900.0, help="seconds an HNSW build may take (default 900)")
    parser.add_argument("--methods", nargs="+", default=["flat", "ivf", "hnsw"], choices=["flat", "ivf", "hnsw"])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--vectors", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, Path(args.workdir), args)))
        return
    if "flat" not in args.methods:
        args.methods.insert(0, "flat")  # the reference every ratio is taken against
    argv = sys.argv[1:]
    for data in args.data:
        benchmark(data, args, argv)


if __name__ == "__main__":
    main()
