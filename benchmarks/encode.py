"""Encoding throughput: vlembed `encode` vs `SentenceTransformer.encode` on the same MiniLM weights.

Both encode the same 2,000 real sentences (first lines of Python standard-library docstrings) with
the same batch size, alternately, several rounds; the medians are compared. The script also
measures this CPU's float32 matmul FLOP/s and reports the fraction of it that encoding reaches
(BERT forward FLOPs counted from the padded batches encode runs, in its order).

    python benchmarks/encode.py [--sentences 2000] [--batch-size 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def matmul_flops_per_second(size: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def bert_forward_flops(model, sentences: list[str], batch_size: int) -> tuple[float, int, int]:
    """FLOPs of the padded batches `encode` runs, in its order (by token count, `length_order`),
    with the real and the padded token counts."""
    config = model.backbone.config
    hidden, layers, intermediate = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    processor = model.processor
    items = processor.parse(sentences)
    order = processor.length_order(items, [None] * len(items), "document")
    total, real_tokens, padded_tokens = 0.0, 0, 0
    for start in range(0, len(order), batch_size):
        batch = processor([items[index] for index in order[start : start + batch_size]], parsed=True)
        rows, length = batch["input_ids"].shape
        real_tokens += int(batch["attention_mask"].sum())
        padded_tokens += rows * length
        per_token_linear = 2 * (4 * hidden * hidden + 2 * hidden * intermediate)  # QKV, output, FFN in/out
        per_token_attention = 2 * 2 * length * hidden  # QK^T and AV
        total += layers * rows * length * (per_token_linear + per_token_attention)
    return total, real_tokens, padded_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from sentence_transformers import SentenceTransformer

    from vlembed import EmbeddingModel
    from vlembed.data.stdlib_code import load_stdlib_code_pairs
    from vlembed.testing import minilm_path

    sentences = [pair.query for pair in load_stdlib_code_pairs()][: args.sentences]
    path = minilm_path()
    st_model = SentenceTransformer(path, device="cpu")
    model = EmbeddingModel.from_backbone(path, pooling="mean")
    encoders = {
        "vlembed": lambda: model.encode(sentences, batch_size=args.batch_size, show_progress_bar=False),
        "sentence-transformers": lambda: st_model.encode(
            sentences, batch_size=args.batch_size, normalize_embeddings=True, show_progress_bar=False
        ),
    }
    for encode in encoders.values():  # warm-up, and the two agree
        encode()
    seconds: dict[str, list[float]] = {name: [] for name in encoders}
    for _ in range(args.rounds):
        for name, encode in encoders.items():
            start = time.perf_counter()
            encode()
            seconds[name].append(time.perf_counter() - start)
    difference = abs(encoders["vlembed"]() - encoders["sentence-transformers"]()).max()

    rate = {name: len(sentences) / statistics.median(times) for name, times in seconds.items()}
    peak = matmul_flops_per_second()
    flops, real_tokens, padded_tokens = bert_forward_flops(model, sentences, args.batch_size)
    achieved = flops / statistics.median(seconds["vlembed"])
    print(f"{len(sentences)} sentences, batch size {args.batch_size}, {torch.get_num_threads()} threads, median of {args.rounds} rounds")
    print(f"| encoder | items/s |\n|---|---|")
    for name, value in rate.items():
        print(f"| {name} | {value:,.0f} |")
    print(f"vlembed / sentence-transformers throughput: {rate['vlembed'] / rate['sentence-transformers']:.3f}x (goal >= 1.05)")
    print(f"max |vlembed - ST| over all vectors: {difference:.2e}")
    print(f"tokens: {real_tokens:,} real, {padded_tokens:,} in the padded batches encode runs")
    print(f"matmul peak {peak / 1e9:.1f} GFLOP/s; encode reaches {achieved / 1e9:.1f} GFLOP/s = {achieved / peak:.1%} of it")


if __name__ == "__main__":
    main()
