"""Corpus encoding into embedding stores: reading corpus files, one process against torchrun on two,
a killed run resumed, stores that refuse to mix models or templates, and the ``vlembed encode`` command.

Everything uses the real all-MiniLM-L6-v2 on a real corpus: the first lines of the docstrings of the
running interpreter's standard library (read with ``ast``, never imported).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import make_image
from tests.utils import REPO, run_torchrun
from vlembed import EmbeddingModel
from vlembed.encoding import (
    CorpusError,
    EmbeddingStore,
    IncompleteStoreError,
    ShardedEmbeddings,
    StoreMismatchError,
    encode_corpus,
    load_corpus,
)

SCRIPT = REPO / "tests" / "scripts" / "encode_corpus.py"
CORPUS_SIZE = 240
SHARD_SIZE = 24  # 10 shards
BATCH_SIZE = 8


def stdlib_docstrings(limit: int) -> list[dict]:
    """``limit`` rows {"id": "module:line", "text": first docstring line} from the stdlib, in file order."""
    rows = []
    for file in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        tree = ast.parse(file.read_text(encoding="utf-8", errors="replace"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                docstring = ast.get_docstring(node)
                if docstring and docstring.strip():
                    rows.append({"id": f"{file.stem}:{getattr(node, 'lineno', 0)}", "text": docstring.strip().splitlines()[0]})
                    if len(rows) == limit:
                        return rows
    raise AssertionError(f"the stdlib has fewer than {limit} docstrings")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def without_runs(manifest: dict) -> dict:
    return {key: value for key, value in manifest.items() if key != "runs"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The CPU is shared: two busy processes with two OpenMP threads each slow MiniLM down 20-fold.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "docstrings.jsonl", stdlib_docstrings(CORPUS_SIZE))


@pytest.fixture(scope="module")
def model(minilm_dir):
    return EmbeddingModel.from_backbone(minilm_dir, pooling="mean")


@pytest.fixture(scope="module")
def reference(model, corpus_file, tmp_path_factory) -> EmbeddingStore:
    """The corpus encoded by this process alone, in one uninterrupted run."""
    ids, items = load_corpus(corpus_file)
    out = tmp_path_factory.mktemp("stores") / "reference"
    return encode_corpus(model, items, out, ids=ids, shard_size=SHARD_SIZE, batch_size=BATCH_SIZE)


def assert_same_store(store: EmbeddingStore, reference: EmbeddingStore) -> None:
    assert store.ids == reference.ids
    assert without_runs(store.manifest) == without_runs(reference.manifest)
    np.testing.assert_allclose(np.asarray(store.embeddings), np.asarray(reference.embeddings), atol=1e-5, rtol=0)
    assert sorted(path.name for path in store.path.iterdir()) == sorted(path.name for path in reference.path.iterdir())


# ---------------------------------------------------------------------------------------------- corpus files


def test_load_corpus_reads_every_format(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for index in range(3):
        make_image(index).save(images / f"{index}.png")
    rows = [
        {"id": 7, "text": "a red frisbee"},
        {"id": 8, "image": "images/0.png"},
        {"id": 9, "text": "a dog", "image": "images/1.png"},
        {"id": 10, "text": "two pictures", "images": ["images/1.png", "images/2.png"]},
    ]
    expected_ids = ["7", "8", "9", "10"]
    expected_items = [
        "a red frisbee",
        images / "0.png",
        {"text": "a dog", "image": images / "1.png"},
        {"text": "two pictures", "images": [images / "1.png", images / "2.png"]},
    ]
    assert load_corpus(write_jsonl(tmp_path / "corpus.jsonl", rows)) == (expected_ids, expected_items)
    # Paths relative to another folder than the file's (M-BEIR's pool files name images from the dataset root).
    (tmp_path / "pool").mkdir()
    assert load_corpus(write_jsonl(tmp_path / "pool" / "corpus.jsonl", rows), image_root=tmp_path) == (expected_ids, expected_items)

    import datasets

    table = datasets.Dataset.from_list([dict({"text": None, "image": None, "images": None}, **row) for row in rows])
    table.to_parquet(str(tmp_path / "corpus.parquet"))
    assert load_corpus(tmp_path / "corpus.parquet") == (expected_ids, expected_items)
    table.to_json(str(tmp_path / "corpus.json"), lines=False)
    assert load_corpus(tmp_path / "corpus.json") == (expected_ids, expected_items)

    # CSV cells are text (ids such as "007" stay ids); lists are JSON; the id column is optional.
    (tmp_path / "corpus.csv").write_text(
        'text,images\n1.50,\n,"[""images/0.png"", ""images/2.png""]"\n', encoding="utf-8"
    )
    assert load_corpus(tmp_path / "corpus.csv") == (["0", "1"], ["1.50", {"text": "", "images": [images / "0.png", images / "2.png"]}])

    # A save_to_disk folder whose image column holds embedded images (datasets.Image).
    folder = tmp_path / "saved"
    embedded = datasets.Dataset.from_dict(
        {"id": ["a", "b"], "text": ["first", None], "image": [make_image(5), make_image(6)]},
        features=datasets.Features({"id": datasets.Value("string"), "text": datasets.Value("string"), "image": datasets.Image()}),
    )
    embedded.save_to_disk(str(folder))
    ids, items = load_corpus(folder)
    assert ids == ["a", "b"]
    assert items[0]["text"] == "first" and items[0]["image"].size == make_image(5).size
    assert np.array_equal(np.asarray(items[1].convert("RGB")), np.asarray(make_image(6)))


def test_load_corpus_names_the_bad_row_and_column(tmp_path):
    with pytest.raises(FileNotFoundError, match="Corpus not found"):
        load_corpus(tmp_path / "missing.jsonl")
    with pytest.raises(CorpusError, match=r"columns \['caption', 'id'\]; it needs 'text'"):
        load_corpus(write_jsonl(tmp_path / "columns.jsonl", [{"id": 1, "caption": "x"}]))
    cases = {
        "image": ([{"text": "fine"}, {"text": "x", "image": "nowhere.png"}], r"row 1 \(id '1'\), column 'image': image file not found"),
        "empty": ([{"text": "fine"}, {"text": "x"}, {"text": ""}], r"row 2 \(id '2'\): has neither text"),
        "duplicate": ([{"id": "a", "text": "x"}, {"id": "b", "text": "y"}, {"id": "a", "text": "z"}], r"row 2, column 'id': id 'a' repeats row 0"),
        "list": ([{"text": "x", "images": "a.png"}], r"row 0 \(id '0'\), column 'images': expected a JSON list of paths"),
        "type": ([{"text": 5}], r"row 0 \(id '0'\), column 'text': expected a string, got int"),
    }
    for name, (rows, message) in cases.items():
        with pytest.raises(CorpusError, match=message):
            load_corpus(write_jsonl(tmp_path / f"{name}.jsonl", rows))


# ---------------------------------------------------------------------------------------------- the store


def test_one_process_store(reference, model, corpus_file):
    ids, items = load_corpus(corpus_file)
    store = EmbeddingStore(reference.path)
    assert len(store) == CORPUS_SIZE and store.ids == ids and ids[0] == json.loads(corpus_file.read_text().splitlines()[0])["id"]
    assert store.embeddings.shape == (CORPUS_SIZE, 384) and store.embeddings.dtype == np.float32
    assert [len(shard) for shard in store.embeddings.shards] == [SHARD_SIZE] * 10
    assert all(isinstance(shard, np.memmap) for shard in store.embeddings.shards)
    direct = model.encode(items, batch_size=BATCH_SIZE)
    np.testing.assert_allclose(np.asarray(store.embeddings), direct, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(direct, axis=1), 1.0, atol=1e-5)
    manifest = store.manifest
    assert manifest["model"]["name_or_path"] == str(model.config.name_or_path)
    assert len(manifest["model"]["fingerprint"]) == 64
    assert manifest["encoding"] == {"task": "document", "instruction": None, "template": "{image}{text}", "normalize": True}
    assert (manifest["count"], manifest["dim"], manifest["dtype"], manifest["shard_size"]) == (CORPUS_SIZE, 384, "float32", SHARD_SIZE)
    assert manifest["shards"][3] == {"file": "embeddings-00003-of-00010.npy", "start": 72, "stop": 96}
    assert manifest["runs"][-1]["encoded_shards"] == 10 and manifest["runs"][-1]["items_per_second"] > 0
    assert not list(store.path.glob(".*")), "temporary files left behind"


def test_two_processes_under_torchrun_match_one(reference, corpus_file, tmp_path):
    out = tmp_path / "torchrun"
    stdout = run_torchrun(
        SCRIPT, str(corpus_file), str(out), "--shard-size", str(SHARD_SIZE), "--batch-size", str(BATCH_SIZE), "--capture-bars"
    )
    assert stdout.count("RESULT") == 2
    assert "[rank 0] encoded 120 items" in stdout and "[rank 1] encoded 120 items" in stdout
    assert "over 2 process(es)" in stdout
    # A bar per rank, on its own line (tqdm position = rank); rank 0 adds the whole corpus's below them.
    bars = {}
    decoder = json.JSONDecoder()
    # Each rank's line is one write, but another rank's output may still land right before it on a line.
    for match in re.finditer("RESULT ", stdout):
        text = decoder.raw_decode(stdout, match.end())[0]["bars"]
        bars[0 if "Encoding (rank 0)" in text else 1] = text
    assert "Encoding (rank 0): 100%" in bars[0] and "120/120" in bars[0]
    assert "Encoding (all ranks): 100%" in bars[0] and "240/240" in bars[0]
    assert "Encoding (rank 1): 100%" in bars[1] and "120/120" in bars[1] and "all ranks" not in bars[1]
    assert bars[1].startswith("\n") and bars[0].startswith("\r")  # position 1 is drawn one line down
    store = EmbeddingStore(out)
    assert_same_store(store, reference)
    run = store.manifest["runs"][-1]
    assert (run["world_size"], run["encoded_shards"], run["encoded_items"]) == (2, 10, CORPUS_SIZE)


def test_killed_run_restarts_with_only_the_missing_shards(reference, model, corpus_file, tmp_path, monkeypatch):
    out = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", PYTHONWARNINGS="ignore")
    command = [sys.executable, str(SCRIPT), str(corpus_file), str(out), "--shard-size", str(SHARD_SIZE), "--batch-size", "4"]
    with open(tmp_path / "log.txt", "w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while not list(out.glob("embeddings-*.npy")) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, (tmp_path / "log.txt").read_text()
    done = {path.name for path in out.glob("embeddings-*.npy")}
    assert 1 <= len(done) < 10, done
    with pytest.raises(IncompleteStoreError, match=f"{10 - len(done)} of 10 shards are missing"):
        EmbeddingStore(out)
    # What a kill during a write leaves: a partial temporary file, never a partial shard.
    partial = out / ".embeddings-00009-of-00010.npy.12345.tmp"
    partial.write_bytes(b"\x93NUMPY partial")

    encoded = []
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda inputs, *args, **kwargs: encoded.append(len(inputs)) or encode(inputs, *args, **kwargs))
    ids, items = load_corpus(corpus_file)
    store = encode_corpus(model, items, out, ids=ids, shard_size=SHARD_SIZE, batch_size=BATCH_SIZE)
    assert sum(encoded) == CORPUS_SIZE - SHARD_SIZE * len(done)
    assert not partial.exists()
    run = store.manifest["runs"][-1]
    assert (run["encoded_shards"], run["skipped_shards"], run["encoded_items"]) == (10 - len(done), len(done), sum(encoded))
    assert_same_store(store, reference)


def test_store_refuses_another_template_or_model(reference, model, corpus_file, minilm_dir, tmp_path, monkeypatch):
    ids, items = load_corpus(corpus_file)
    ids, items = ids[:30], items[:30]
    out = tmp_path / "store"
    first = encode_corpus(model, items, out, ids=ids, shard_size=SHARD_SIZE, batch_size=BATCH_SIZE)
    np.testing.assert_allclose(np.asarray(first.embeddings), np.asarray(reference.embeddings[:30]), atol=1e-5, rtol=0)

    encoded = []
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda inputs, *args, **kwargs: encoded.append(len(inputs)) or encode(inputs, *args, **kwargs))
    with pytest.raises(StoreMismatchError, match="another encoding"):
        encode_corpus(model, items, out, ids=ids, instruction="Represent the code docstring", shard_size=SHARD_SIZE)
    with pytest.raises(StoreMismatchError, match="another shard_size"):
        encode_corpus(model, items, out, ids=ids, shard_size=10)
    with pytest.raises(StoreMismatchError, match="another corpus"):
        encode_corpus(model, items[::-1], out, ids=ids, shard_size=SHARD_SIZE)
    assert encoded == []
    other = EmbeddingModel.from_backbone(minilm_dir, pooling="cls")
    with pytest.raises(StoreMismatchError, match="another model"):
        encode_corpus(other, items, out, ids=ids, shard_size=SHARD_SIZE)

    # overwrite=True replaces the store; float16 storage keeps the vectors to float16 precision.
    replaced = encode_corpus(model, items, out, ids=ids, shard_size=SHARD_SIZE, batch_size=BATCH_SIZE, dtype="float16", overwrite=True)
    assert replaced.embeddings.dtype == np.float16 and replaced.manifest["dtype"] == "float16"
    assert [run["encoded_items"] for run in replaced.manifest["runs"]] == [30]
    np.testing.assert_allclose(np.asarray(replaced.embeddings, dtype=np.float32), np.asarray(first.embeddings), atol=1e-3, rtol=0)


def test_open_store_checks_model_template_and_ids(reference, model, minilm_dir, tmp_path):
    from vlembed.encoding import open_store

    ids = reference.ids
    assert open_store(reference.path, model, ids) is not None
    assert isinstance(open_store(reference.path, model, ids), ShardedEmbeddings)  # memory-mapped, not copied
    subset = [ids[7], ids[3], ids[200]]  # another order or a subset: those rows
    np.testing.assert_array_equal(open_store(reference.path, model, subset), np.asarray(reference.embeddings)[[7, 3, 200]])
    with pytest.raises(StoreMismatchError, match=r"lacks 1 of the 2 ids needed \(first: 'nope'\)"):
        open_store(reference.path, model, [ids[0], "nope"])
    with pytest.raises(StoreMismatchError, match="encoded by another model"):
        open_store(reference.path, EmbeddingModel.from_backbone(minilm_dir, pooling="cls"), ids)
    with pytest.raises(StoreMismatchError, match="another instruction, template"):
        open_store(reference.path, model, ids, instruction="Represent the docstring")
    with pytest.raises(StoreMismatchError, match="another task"):
        open_store(reference.path, model, ids, task="query")
    with pytest.raises(ValueError, match=r"id 'b' is at rows 1 and 3"):
        encode_corpus(model, ["w", "x", "y", "z"], tmp_path / "dup", ids=["a", "b", "c", "b"])


def test_sharded_embeddings_index_like_one_array():
    array = np.arange(70 * 3, dtype=np.float32).reshape(70, 3)
    sharded = ShardedEmbeddings([array[:30], array[30:60], array[60:]])
    assert len(sharded) == 70 and sharded.shape == (70, 3) and sharded.dtype == np.float32
    for key in (5, -1, slice(25, 65), slice(None, None, 7), slice(69, 0, -3), slice(80, 90),
                [64, 3, 31, 3], np.array([0, 59, 60]), array[:, 0] % 2 == 0, (slice(10, 40), 1)):
        np.testing.assert_array_equal(sharded[key], array[key])
    np.testing.assert_array_equal(np.asarray(sharded), array)
    with pytest.raises(IndexError):
        sharded[70]


# ---------------------------------------------------------------------------------------------- the command


def parse(*argv: str) -> argparse.Namespace:
    from vlembed.cli import encode

    parser = argparse.ArgumentParser(prog="vlembed")
    encode.add_parser(parser.add_subparsers(dest="command"), "encode", "Encode a corpus.")
    return parser.parse_args(["encode", *argv])


def test_cli_help_lists_the_options(capsys):
    with pytest.raises(SystemExit):
        parse("--help")
    text = capsys.readouterr().out
    for option in ("--model", "--data", "--out", "--batch-size", "--shard-size", "--dtype", "--instruction", "--task", "--overwrite", "torchrun"):
        assert option in text


def test_cli_rejects_bad_input_before_encoding(minilm_dir, corpus_file, tmp_path, capsys):
    from vlembed.cli import encode

    no_columns = write_jsonl(tmp_path / "captions.jsonl", [{"caption": "x"}])
    cases = [
        (["--model", str(tmp_path / "no-model"), "--data", str(corpus_file)], "model folder not found"),
        (["--model", str(tmp_path), "--data", str(corpus_file)], "is not a model folder"),
        (["--model", minilm_dir, "--data", str(tmp_path / "none.jsonl")], "corpus not found"),
        (["--model", minilm_dir, "--data", str(no_columns)], "it needs 'text'"),
    ]
    for argv, message in cases:
        assert encode.run(parse(*argv, "--out", str(tmp_path / "out"))) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_encodes_a_corpus(reference, minilm_dir, corpus_file, tmp_path, capsys):
    from vlembed.cli import encode

    rows = [json.loads(line) for line in corpus_file.read_text().splitlines()[:40]]
    data = write_jsonl(tmp_path / "head.jsonl", rows)
    out = tmp_path / "out"
    argv = ["--model", minilm_dir, "--pooling", "mean", "--data", str(data), "--out", str(out), "--shard-size", "16", "--dtype", "float16"]
    assert encode.run(parse(*argv)) == 0
    assert f"Embedding store: {out} (40 x 384, float16)" in capsys.readouterr().out
    store = EmbeddingStore(out)
    assert store.ids == [row["id"] for row in rows] and len(store.embeddings.shards) == 3
    np.testing.assert_allclose(np.asarray(store.embeddings, dtype=np.float32), np.asarray(reference.embeddings[:40]), atol=1e-3, rtol=0)
    assert encode.run(parse(*argv, "--instruction", "Represent it")) == 2
    assert "another encoding" in capsys.readouterr().err
