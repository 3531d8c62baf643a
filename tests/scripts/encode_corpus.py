"""Encode a corpus file with the real all-MiniLM-L6-v2 into an embedding store through the Python API.

Run under ``torchrun --nproc_per_node N`` (each rank encodes its shards) or plain ``python`` (one
process). Prints one ``RESULT {json}`` line per rank; with ``--capture-bars``, the progress bars the
rank drew (its stderr during encoding) are in that line under ``"bars"``.
"""

import argparse
import contextlib
import io
import json
import sys

from vlembed import EmbeddingModel
from vlembed.encoding import encode_corpus, load_corpus
from vlembed.testing import minilm_path

parser = argparse.ArgumentParser()
parser.add_argument("corpus")
parser.add_argument("out")
parser.add_argument("--shard-size", type=int, required=True)
parser.add_argument("--batch-size", type=int, default=8)
parser.add_argument("--dtype", default="float32")
parser.add_argument("--capture-bars", action="store_true")
args = parser.parse_args()

ids, items = load_corpus(args.corpus)
model = EmbeddingModel.from_backbone(minilm_path(), pooling="mean")
bars = io.StringIO()
with contextlib.redirect_stderr(bars) if args.capture_bars else contextlib.nullcontext():
    store = encode_corpus(
        model, items, args.out, ids=ids, shard_size=args.shard_size, batch_size=args.batch_size, dtype=args.dtype,
        show_progress_bar=True,
    )
result = {"count": len(store), "dim": store.dim, "runs": len(store.manifest["runs"]), "bars": bars.getvalue()}
# One write (print issues the text and the newline separately), so the other rank's output cannot split it.
sys.stdout.write("RESULT " + json.dumps(result) + "\n")
sys.stdout.flush()
