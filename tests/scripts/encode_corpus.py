"""Encode a corpus file with the real all-MiniLM-L6-v2 into an embedding store through the Python API.

Run under ``torchrun --nproc_per_node N`` (each rank encodes its shards) or plain ``python`` (one
process). Prints one ``RESULT {json}`` line per rank.
"""

import argparse
import json

from vlembed import EmbeddingModel
from vlembed.encoding import encode_corpus, load_corpus
from vlembed.testing import minilm_path

parser = argparse.ArgumentParser()
parser.add_argument("corpus")
parser.add_argument("out")
parser.add_argument("--shard-size", type=int, required=True)
parser.add_argument("--batch-size", type=int, default=8)
parser.add_argument("--dtype", default="float32")
args = parser.parse_args()

ids, items = load_corpus(args.corpus)
model = EmbeddingModel.from_backbone(minilm_path(), pooling="mean")
store = encode_corpus(
    model, items, args.out, ids=ids, shard_size=args.shard_size, batch_size=args.batch_size, dtype=args.dtype,
    show_progress_bar=True,
)
print("RESULT " + json.dumps({"count": len(store), "dim": store.dim, "runs": len(store.manifest["runs"])}), flush=True)
