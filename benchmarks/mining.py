"""ABC threshold mining (epsilon 0.95, pool 100, 7 negatives) with embeddings given: vlembed against
sentence-transformers' ``mine_hard_negatives`` (``relative_margin=0.05, range_max=100,
sampling_strategy="random", use_faiss=True``), and the largest corpus of 384-d vectors mined in 24 GiB.

    python benchmarks/mining.py              # 100k corpus, 10k queries, then 1M corpus (about 15 minutes on 2 cores)
    python benchmarks/mining.py --quick      # 20k corpus, 2k queries (the memory fit is then too small to mean much)
    python benchmarks/mining.py --large 0    # without the 1M measurement

Corpus vectors are drawn around 1,000 random centres (unit norm, 384-d, float32 in memory); query i
is its positive corpus vector plus noise. sentence-transformers is given the same vectors: its model's
``encode_query`` / ``encode_document`` return them, so neither side encodes anything.

Times are for the mining call alone: both methods run on the same vectors in one process, alternating,
and each keeps the faster of two runs. Memory runs are separate processes, so each peak resident memory
is its own; the peak is reset after the embeddings are made, so it counts them (resident, as given) and
whatever the mining adds. Memory is measured at three (corpus, queries) sizes and fitted as
``base + a * corpus + b * queries``; the largest corpus mined in 24 GiB is the N with
``base + (a + b) * N = 24 GiB``, i.e. as many queries as corpus items (ABC: one query per caption).

The fit is an extrapolation from small corpora, so one vlembed run at ``--large`` (1,000,000) corpus items
and ``--large-queries`` (20,000) queries measures the peak directly and prints it beside the fit's
prediction for that size. (As many queries as items would take hours of search on 2 cores; and
sentence-transformers is not run at this size: its fit predicts more memory than a shared 24 GiB machine
can spare.)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

GIB = 1024**3
BUDGET_GIB = 24
DIM = 384


def make_embeddings(count: int, num_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(queries [Q, d], corpus [N, d], positive index of each query), unit-norm float32."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1000, DIM)).astype(np.float32)
    corpus = np.empty((count, DIM), dtype=np.float32)
    for start in range(0, count, 50_000):
        rows = min(50_000, count - start)
        corpus[start : start + rows] = centres[rng.integers(0, 1000, rows)] + rng.standard_normal((rows, DIM), dtype=np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    positives = rng.choice(count, size=num_queries, replace=num_queries > count)
    queries = corpus[positives] + 0.6 * rng.standard_normal((num_queries, DIM), dtype=np.float32) / np.sqrt(DIM)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return queries, corpus, positives


def reset_peak_rss() -> None:
    """Start the peak-RSS mark afresh (Linux), so that the data generation's temporaries do not count."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def peak_rss_gib() -> float:
    with open("/proc/self/status") as handle:
        line = next(line for line in handle if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024 / GIB  # kB


def run_vlembed(queries, corpus, positives) -> tuple[float, int]:
    from vlembed.trainer.mining import mine_threshold_negatives

    started = time.perf_counter()
    negatives = mine_threshold_negatives(queries, corpus, positives.tolist(), epsilon=0.95, pool_size=100, num_negatives=7)
    return time.perf_counter() - started, sum(map(len, negatives))


def run_sentence_transformers(queries, corpus, positives) -> tuple[float, int]:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    from vlembed.testing import minilm_path

    # Texts stand for the vectors: "d<row>" for corpus rows, "q<row>" for queries.
    model = SentenceTransformer(minilm_path(), device="cpu")
    model.encode_document = lambda texts, **kwargs: corpus[[int(text[1:]) for text in texts]]
    model.encode_query = lambda texts, **kwargs: queries[[int(text[1:]) for text in texts]]
    positive_set = set(positives.tolist())
    dataset = Dataset.from_dict({"anchor": [f"q{i}" for i in range(len(queries))], "positive": [f"d{p}" for p in positives]})
    others = [f"d{j}" for j in range(len(corpus)) if j not in positive_set]
    started = time.perf_counter()
    mined = mine_hard_negatives(
        dataset, model, corpus=others, relative_margin=0.05, range_max=100, num_negatives=7, sampling_strategy="random",
        output_format="n-tuple", use_faiss=True, batch_size=1024, verbose=False,
    )
    return time.perf_counter() - started, 7 * len(mined)


RUNS = {"vlembed": run_vlembed, "sentence-transformers": run_sentence_transformers}


def memory_worker(method: str, count: int, num_queries: int) -> dict:
    queries, corpus, positives = make_embeddings(count, num_queries)
    reset_peak_rss()  # the given embeddings stay resident and count; generating them does not
    seconds, mined = RUNS[method](queries, corpus, positives)
    return {"method": method, "corpus": count, "queries": num_queries, "seconds": seconds, "negatives": mined, "peak_rss_gib": peak_rss_gib()}


def timing_worker(count: int, num_queries: int, repeat: int) -> dict:
    """Both methods on the same vectors in one process, alternating, so that load from other processes on
    the shared machine hits both alike; each keeps its fastest run."""
    queries, corpus, positives = make_embeddings(count, num_queries)
    timings = {method: [] for method in RUNS}
    for _ in range(repeat):
        for method, run in RUNS.items():
            timings[method].append(run(queries, corpus, positives)[0])
    return {method: {"best": min(seconds), "all": seconds} for method, seconds in timings.items()}


def in_subprocess(*worker_args: str) -> dict:
    command = [sys.executable, __file__, "--worker", *worker_args]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[1:])} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def largest_corpus(rows: list[dict]) -> tuple[int, float, float, float]:
    """Fit peak RSS = base + a * corpus + b * queries; return (N with base + (a + b) N = budget, a, b, base) in bytes."""
    design = np.array([[1.0, row["corpus"], row["queries"]] for row in rows])
    base, per_item, per_query = np.linalg.lstsq(design, np.array([row["peak_rss_gib"] * GIB for row in rows]), rcond=None)[0]
    return int((BUDGET_GIB * GIB - base) / (per_item + per_query)), per_item, per_query, base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20k corpus and 2k queries instead of 100k and 10k.")
    parser.add_argument("--large", type=int, default=1_000_000, help="Corpus of the direct measurement (0: skip).")
    parser.add_argument("--large-queries", type=int, default=20_000, help="Queries of the direct measurement.")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, *numbers = args.worker
        result = timing_worker(*map(int, numbers)) if kind == "timing" else memory_worker(kind, *map(int, numbers))
        print(json.dumps(result))
        return
    count, num_queries = (20_000, 2_000) if args.quick else (100_000, 10_000)
    timing = in_subprocess("timing", str(count), str(num_queries), "2")
    ours, theirs = timing["vlembed"]["best"], timing["sentence-transformers"]["best"]
    print(f"Mining a {count:,}-item corpus for {num_queries:,} queries (best of 2, alternating): vlembed {ours:.2f} s, "
          f"sentence-transformers {theirs:.2f} s, ratio vlembed/ST = {ours / theirs:.2f}")
    print("  all runs (s): " + "; ".join(f"{method} {', '.join(f'{t:.2f}' for t in runs['all'])}" for method, runs in timing.items()))
    # Query sets larger than vlembed's query chunk (16,384), whose temporaries are then a constant, not a slope.
    memory_sizes = [(count // 5, 2 * num_queries), (3 * count // 5, 2 * num_queries), (count // 5, 6 * num_queries)]
    rows = {method: [in_subprocess(method, str(n), str(q)) for n, q in memory_sizes] for method in RUNS}
    print(f"\n{'method':<22} {'corpus':>8} {'queries':>8} {'seconds':>8} {'negatives':>10} {'peak RSS GiB':>13}")
    for method_rows in rows.values():
        for row in method_rows:
            print(f"{row['method']:<22} {row['corpus']:>8,} {row['queries']:>8,} {row['seconds']:>8.2f} {row['negatives']:>10,} {row['peak_rss_gib']:>13.2f}")
    for method, method_rows in rows.items():
        largest, per_item, per_query, base = largest_corpus(method_rows)
        print(f"{method}: {per_item:,.0f} bytes per corpus vector + {per_query:,.0f} per query -> largest corpus mined in "
              f"{BUDGET_GIB} GiB (as many queries as items, float32 in memory): {largest / 1e6:.1f}M")
        if method == "vlembed" and args.large:
            measured = in_subprocess("vlembed", str(args.large), str(args.large_queries))
            predicted = (base + per_item * args.large + per_query * args.large_queries) / GIB
            print(f"  measured at {args.large:,} corpus items and {args.large_queries:,} queries: peak RSS {measured['peak_rss_gib']:.2f} GiB "
                  f"(the fit predicts {predicted:.2f} GiB); {measured['negatives']:,} negatives in {measured['seconds']:.0f} s")


if __name__ == "__main__":
    main()
