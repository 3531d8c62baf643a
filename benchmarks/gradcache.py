"""GradCache: peak memory and time of one training step on a global batch of 1,024 pairs.

    python benchmarks/gradcache.py [--pairs 1024] [--mini-batch-size 32] [--tokens 16] [--rounds 2] [--threads 1]

The model is the real all-MiniLM-L6-v2 (``vlembed.testing.minilm_path()``), in training mode
(dropout on); the pairs are real text read with ``ast`` from the Python standard library: a public
function's or class's docstring (query) and its source code (positive), each cut at ``--tokens``
tokens, keeping only pairs long enough to fill them. Equal lengths mean no padding, so the ratio
measures GradCache itself: with ragged texts the full batch pads every row to the longest one
while mini-batches drop the padding they share, which made the cached step *faster* than the
uncached one in a trial (ragged docstring lines: 0.5x time) — a property of the data, not of
GradCache. The loss is the LLaVE preset (τ = 0.02, α = 9). One step = forward, loss, backward, for:

- ``uncached``: `ContrastiveLoss` on the whole batch embedded with a graph;
- ``cached``: `CachedContrastiveLoss` in mini-batches of 32;
- ``st_cached``: sentence-transformers' ``CachedMultipleNegativesRankingLoss`` (same loss:
  ``scale=50, hardness_mode="all_negatives", hardness_strength=9``, mini-batches of 32) on the same
  weights and the same tokenised inputs.

Memory: each configuration runs in its own process. After loading the model and tokenising, it runs
a warm-up step on 32 pairs, then resets the kernel's peak-RSS counter (writing 5 to
``/proc/self/clear_refs``, Linux >= 4.0) and reads its resident set size; the figure is the peak RSS
during the measured step (``VmHWM`` from ``/proc/self/status``) minus that baseline: every byte the
step touched — activations, gradients (allocated on the first backward, so in every
configuration), allocator caches — not only live tensors. ``tracemalloc`` does not see torch's
allocations, hence RSS.

Time is the wall time of the step. The three configurations run in turn, ``--rounds`` times, one
process and one step each (the uncached step takes 30-45 s here). The table shows each one's
fastest time — other processes on a shared machine only ever add time (single rounds put the same
cached step at 1.01x and 1.40x) — and largest memory, which varies with the allocator (100 MB and
192 MB in two rounds of the cached step). One thread by default: two OpenMP threads contending with
other processes on a 2-core machine slowed tiny steps tenfold.

What the ratio means: the cached step costs one extra forward, about 1.35x where the whole batch
fits comfortably (``--pairs 128``: 1.37x, ST 1.39x). At 1,024 pairs the uncached step touches
about 7.5 GB, and its memory traffic makes it slower per token than 32-pair mini-batches, so the
cached step costs little or no extra time there (0.91x and 1.03x in two runs).
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

CONFIGURATIONS = ("uncached", "cached", "st_cached")


def stdlib_pairs(count: int, tokenizer, tokens: int) -> tuple[list[str], list[str]]:
    """``count`` (docstring, source code) pairs of public standard-library functions and classes, both
    at least ``tokens`` tokens long."""
    docstrings, sources = [], []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
            tree = ast.parse(text)
        except (SyntaxError, UnicodeDecodeError):
            continue
        lines = text.splitlines()
        candidates = [
            (" ".join((ast.get_docstring(node) or "").split()), "\n".join(lines[node.lineno - 1 : node.end_lineno]))
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_")
        ]
        candidates = [(doc, source) for doc, source in candidates if doc and doc not in docstrings]
        if not candidates:
            continue
        lengths = [len(ids) for ids in tokenizer([text for pair in candidates for text in pair])["input_ids"]]
        for index, (doc, source) in enumerate(candidates):
            if min(lengths[2 * index], lengths[2 * index + 1]) >= tokens and doc not in docstrings:
                docstrings.append(doc)
                sources.append(source)
                if len(docstrings) == count:
                    return docstrings, sources
    raise RuntimeError(f"Only {len(docstrings)} pairs have {tokens} tokens on both sides.")


def _memory_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def run_configuration(name: str, pairs: int, mini_batch_size: int, tokens: int, threads: int) -> dict:
    import torch

    from vlembed import EmbeddingModel
    from vlembed.testing import minilm_path
    from vlembed.trainer.gradcache import CachedContrastiveLoss
    from vlembed.trainer.losses import ContrastiveLoss

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    # One tokenisation for all three: the MiniLM tokenizer, texts cut at `tokens`.
    processor = EmbeddingModel.from_backbone(minilm_path(), max_length=tokens).processor
    queries, positives = stdlib_pairs(pairs, processor.tokenizer, tokens)
    if name == "st_cached":
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.losses import CachedMultipleNegativesRankingLoss

        model = SentenceTransformer(minilm_path(), device="cpu", local_files_only=True)
        model.train()
        st_loss = CachedMultipleNegativesRankingLoss(
            model, scale=50.0, mini_batch_size=mini_batch_size, hardness_mode="all_negatives", hardness_strength=9.0
        )

        def step(query_batch, positive_batch):
            st_loss([query_batch, positive_batch], None).backward()
    else:
        model = EmbeddingModel.from_backbone(minilm_path(), pooling="mean").train()
        loss_fn = ContrastiveLoss.from_preset("llave")
        cached = CachedContrastiveLoss(loss_fn, mini_batch_size)

        def step(query_batch, positive_batch):
            if name == "cached":
                loss = cached(model, query_batch, positive_batch)
            else:
                loss = loss_fn(model(**query_batch).embeddings, model(**positive_batch).embeddings)
            loss.backward()

    query_batch, positive_batch = dict(processor(queries)), dict(processor(positives))
    step(*(dict(processor(texts[:32])) for texts in (queries, positives)))  # warm-up; allocates the gradients

    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
    baseline = _memory_kb("VmRSS")
    start = time.perf_counter()
    step(query_batch, positive_batch)
    seconds = time.perf_counter() - start
    return {
        "configuration": name,
        "seconds": seconds,
        "peak_mb": (_memory_kb("VmHWM") - baseline) / 1024,
        "padding": 1 - float(torch.cat([query_batch["attention_mask"], positive_batch["attention_mask"]]).float().mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1024)
    parser.add_argument("--mini-batch-size", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--configuration", choices=CONFIGURATIONS, help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    if args.configuration:
        result = run_configuration(args.configuration, args.pairs, args.mini_batch_size, args.tokens, args.threads)
        print(json.dumps(result))
        return

    runs: dict[str, list[dict]] = {name: [] for name in CONFIGURATIONS}
    settings = ["--pairs", str(args.pairs), "--mini-batch-size", str(args.mini_batch_size), "--tokens", str(args.tokens),
                "--threads", str(args.threads)]
    for round_index in range(args.rounds):
        for name in CONFIGURATIONS:
            command = [sys.executable, __file__, "--configuration", name, *settings]
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            run = json.loads(output.strip().splitlines()[-1])
            runs[name].append(run)
            print(f"  round {round_index + 1}, {name}: {run['seconds']:.1f} s, {run['peak_mb']:.0f} MB", file=sys.stderr)
    # Fastest time (other processes only add time); largest memory (the allocator's luck varies).
    results = {
        name: {
            "seconds": min(run["seconds"] for run in runs[name]),
            "peak_mb": max(run["peak_mb"] for run in runs[name]),
            "padding": runs[name][0]["padding"],
        }
        for name in CONFIGURATIONS
    }

    uncached = results["uncached"]
    print(
        f"\nGradCache on all-MiniLM-L6-v2, {args.pairs} pairs (+{args.pairs} in-batch negatives), mini-batches of "
        f"{args.mini_batch_size}, {args.tokens} tokens per text ({uncached['padding']:.0%} padding), "
        f"{args.threads} thread(s); fastest time and largest memory of {args.rounds} rounds\n"
    )
    print(f"{'configuration':<12} {'step time':>10} {'time ratio':>11} {'peak memory':>12} {'memory ratio':>13}")
    for name, result in results.items():
        print(
            f"{name:<12} {result['seconds']:>9.1f}s {result['seconds'] / uncached['seconds']:>10.2f}x "
            f"{result['peak_mb']:>10.0f}MB {result['peak_mb'] / uncached['peak_mb']:>12.3f}x"
        )
    print("\ngoal: cached <= 0.25x memory at <= 1.4x time of uncached")


if __name__ == "__main__":
    main()
