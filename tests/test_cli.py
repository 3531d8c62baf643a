"""The `vlembed` command: every subcommand has --help; `vlembed train --quick --max-steps` runs the main job
end to end (the CI smoke); `--recipe` builds the recipe's model for both rows; `--overwrite` replaces an
earlier run; bad input fails before any training and overwrites nothing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.utils import run_cli, run_python
from vlembed.cli import SUBCOMMANDS


def vlembed(*argv: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vlembed.cli", *argv], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory) -> Path:
    """40 small query → code pairs: 32 train, 4 dev, 4 test."""
    words = "file socket buffer queue thread lock parse read write close open flush encode decode items string".split()
    rng = np.random.RandomState(0)
    path = tmp_path_factory.mktemp("data") / "pairs.jsonl"
    with open(path, "w") as handle:
        for index in range(40):
            verb, noun, attribute = rng.choice(words, 3, replace=False)
            row = {"query": f"{verb} the {noun} with {attribute} {index}", "positive": f"def {verb}_{noun}_{index}(self):\n    return self.{attribute}.{verb}()"}
            handle.write(json.dumps(row) + "\n")
    return path


def test_every_subcommand_has_help():
    result = vlembed("--help")
    assert result.returncode == 0 and all(name in result.stdout for name in SUBCOMMANDS)
    for name in SUBCOMMANDS:
        result = vlembed(name, "--help")
        assert result.returncode == 0, result.stderr
        assert f"usage: vlembed {name}" in result.stdout


# The papers each default row's methods come from (what its model card must cite).
PAPERS_OF_ROW = {
    "zero-shot": set(),
    "InfoNCE": set(),
    "LLaVE (α = 9)": {"lan2025llave"},
    "+ ABC mined negatives": {"lan2025llave", "schneider2025abc"},
    "+ GradCache (batch 32)": {"lan2025llave", "schneider2025abc", "gao2021gradcache"},
}


def test_train_quick_smoke(tmp_path):
    """The main job, shrunk: five rows, a report, histograms and a Hub-ready best model whose card names
    its base model, carries a real name, cites what the row used and has usage snippets that run."""
    from huggingface_hub import ModelCard

    from vlembed import EmbeddingModel
    from vlembed.model_cards import render_model_card

    out = tmp_path / "run"
    result = vlembed("train", "--quick", "--max-steps", "2", "--train-samples", "64", "--dev-samples", "24",
                     "--test-samples", "40", "--output-dir", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())
    assert [row["row"] for row in report["rows"]] == list(PAPERS_OF_ROW)
    for row in report["rows"]:
        assert set(row["test"]) >= {"precision@1", "recall@10", "ndcg@10", "positive_similarity",
                                    "hard_negative_similarity", "easy_negative_similarity"}
        assert 0.0 <= row["test"]["precision@1"] <= 1.0
        assert row["model"]["pooling"] == "mean"  # all-MiniLM-L6-v2's own pooling, in every row
    mined = report["rows"][3]["training"]
    assert mined["explicit_negatives_per_row"] == 1 and mined["loss"] == "llave"
    assert (mined["negative_mining"], mined["mining_epsilon"], mined["mining_pool_size"]) == ("threshold", 0.95, 100)
    assert mined["mined_with"] == "InfoNCE model"
    assert report["rows"][4]["training"]["mini_batch_size (GradCache)"] == 16
    table = (out / "results.md").read_text()
    assert "| zero-shot |" in table and "**(best)**" in table and "| P@1 | R@10 | nDCG@10 |" in table
    assert table.splitlines()[4] in result.stdout  # the printed table is the written one
    for png in ("similarity_zero_shot.png", "similarity_best.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "checkpoints").exists()  # no empty row folders left behind
    best = out / "best-model"
    assert "trust_remote_code=True" in result.stdout
    assert f"vlembed push {best} <your-name>/all-MiniLM-L6-v2-stdlib-code" in result.stdout

    card = ModelCard.load(best / "README.md")
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert card.data.model_name == "all-MiniLM-L6-v2-stdlib-code" and "# all-MiniLM-L6-v2-stdlib-code" in card.text
    assert "stdlib-code-search" in card.text and "precision_at_1" in str(card.data.to_dict())
    best_row = next(row for row in report["rows"] if row["row"] == report["best"])
    loss_tags = [tag for tag in card.data.tags if tag.startswith("loss:")]
    assert loss_tags == ([f"loss:{best_row['training']['loss']}"] if best_row["training"] else [])
    assert set(re.findall(r"@\w+\{(\w+),", card.text)) == PAPERS_OF_ROW[report["best"]]
    # Every row's recorded training, rendered on the pipeline's model, cites that row's papers.
    model = EmbeddingModel.from_pretrained(best)
    for row in report["rows"]:
        model.config.training_summary = row["training"]
        rendered = render_model_card(model, local_path=best).text
        assert set(re.findall(r"@\w+\{(\w+),", rendered)) == PAPERS_OF_ROW[row["row"]], row["row"]

    snippets = re.findall(r"```python\n(.*?)```", card.text, flags=re.S)
    assert len(snippets) == 2 and all(json.dumps(str(best)) in snippet for snippet in snippets)
    out_text = run_python(
        f"""
        for snippet in {snippets!r}:
            exec(snippet, {{}})
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(best)!r}, trust_remote_code=True)
        print(model.encode(["Close the file."]).shape)
        """,
        block_vlembed=True,
    )
    assert out_text.count("tensor([[") == 2 and "(1, 384)" in out_text


def _tiny_run(*argv: str) -> list[str]:
    return [*argv, "--max-steps", "1", "--batch-size", "8", "--gradcache-batch-size", "16", "--mini-batch-size", "8"]


def test_overwrite_replaces_the_earlier_run(tmp_path, tiny_model_dir, pairs_file, capsys):
    """A second run into the same folder is refused; with --overwrite it starts clean (a mining cache built
    for other rows or another model does not stop it) and leaves nothing of the first run behind."""
    out = tmp_path / "run"
    first = _tiny_run("--backbone", tiny_model_dir("bert"), "--data", str(pairs_file), "--output-dir", str(out))
    assert run_cli("train", first) == 0
    first_results = (out / "results.json").read_text()
    assert len(json.loads((out / "mining-cache" / "corpus" / "ids.json").read_text())) == 32

    assert run_cli("train", first) == 2
    assert "already holds a vlembed model" in capsys.readouterr().err
    assert (out / "results.json").read_text() == first_results

    (out / "checkpoints" / "row9").mkdir(parents=True)
    (out / "checkpoints" / "row9" / "stale.bin").write_bytes(b"old")
    (out / "notes.txt").write_text("mine")
    second = _tiny_run("--backbone", tiny_model_dir("qwen2"), "--data", str(pairs_file), "--output-dir", str(out),
                       "--recipe", "abc-pretrain", "--mined-negatives", "1", "--train-samples", "24", "--overwrite")
    assert run_cli("train", second) == 0
    report = json.loads((out / "results.json").read_text())
    assert report["data"]["train"] == 24 and [row["row"] for row in report["rows"]] == ["zero-shot", "abc-pretrain"]
    assert len(json.loads((out / "mining-cache" / "corpus" / "ids.json").read_text())) == 24
    assert not (out / "checkpoints").exists() and (out / "notes.txt").read_text() == "mine"
    # ABC's model settings on a decoder, in both rows: bidirectional attention, mean pooling, residual head.
    for row in report["rows"]:
        assert (row["model"]["pooling"], row["model"]["bidirectional"], row["model"]["head"]) == ("mean", True, "residual_mlp")
        assert row["model"]["templates"]["query"] == "{image}{text} Instruction: {instruction}"
    training = report["rows"][1]["training"]
    assert training["loss"] == "abc" and training["learnable_temperature"] is True and training["learning_rate"] == 4e-5
    assert training["lora"] == "r=64, alpha=128, on language_model"  # no vision tower to adapt on a text backbone
    assert (training["negative_mining"], training["mined_with"]) == ("threshold", "zero-shot model")
    saved = json.loads((out / "best-model" / "config.json").read_text())
    assert (saved["pooling"], saved["bidirectional"], saved["head"]) == ("mean", True, "residual_mlp")


def test_recipe_row_and_its_zero_shot_use_the_recipe_model(tmp_path, tiny_model_dir, pairs_file):
    """--recipe llave: both rows last-token pooled with LLaVE's template and length limit; the zero-shot
    row is exactly the untrained recipe model (recomputed here), not the mean-pooled default."""
    from vlembed import EmbeddingModel
    from vlembed.pipeline import PipelineConfig, load_splits
    from vlembed.trainer.recipes import RECIPES

    out = tmp_path / "llave"
    backbone = tiny_model_dir("qwen2")
    assert run_cli("train", _tiny_run("--backbone", backbone, "--data", str(pairs_file), "--recipe", "llave",
                                      "--output-dir", str(out))) == 0
    report = json.loads((out / "results.json").read_text())
    for row in report["rows"]:
        assert (row["model"]["pooling"], row["model"]["max_length"]) == ("last", 4096)
        assert row["model"]["templates"]["query"] == "{image}{instruction} {text}"
    assert report["rows"][1]["training"]["learning_rate"] == 1e-5 and report["rows"][1]["training"]["recipe"] == "llave"
    assert json.loads((out / "best-model" / "config.json").read_text())["pooling"] == "last"

    test_rows = load_splits(PipelineConfig(data=str(pairs_file)))["test"]

    def positive_similarity(**settings) -> float:
        model = EmbeddingModel.from_backbone(backbone, **{**RECIPES["llave"]["model"], **settings})
        queries = model.encode(list(test_rows["query"]), task="query")
        documents = model.encode(list(test_rows["positive"]), task="document")
        return float(np.mean(np.sum(queries * documents, axis=1)))

    zero_shot = report["rows"][0]["test"]["positive_similarity"]
    assert zero_shot == pytest.approx(positive_similarity(), abs=1e-5)
    assert abs(zero_shot - positive_similarity(pooling="mean")) > 1e-3


def test_train_refuses_bad_input_before_training(tmp_path, capsys, monkeypatch):
    no_columns = tmp_path / "rows.jsonl"
    no_columns.write_text('{"sentence": "a", "label": 1}\n' * 20)
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    monkeypatch.chdir(tmp_path)  # "models/nosuch" is relative to here, where it does not exist
    cases = [
        (["--data", str(tmp_path / "missing.jsonl")], "Data file not found"),
        (["--data", str(no_columns)], "a training set needs these"),
        (["--backbone", str(tmp_path / "no-such-model")], "Backbone not found: '" + str(tmp_path / "no-such-model")),
        (["--backbone", "models/nosuch"], "Backbone not found: 'models/nosuch' is not a folder here"),
        (["--backbone", str(tmp_path)], "has no config.json"),
        (["--model-name", "bad name/x"], "--model-name"),
        (["--output-dir", str(a_file)], "is a file, not a folder"),
        (["--output-dir", str(a_file / "run")], "is a file, not a folder"),
    ]
    for argv, message in cases:
        arguments = argv if "--output-dir" in argv else [*argv, "--output-dir", str(tmp_path / "out")]
        assert run_cli("train", arguments) == 2, argv
        captured = capsys.readouterr()
        assert message in captured.err, (argv, captured.err)
        assert "[1/" not in captured.out  # refused before the first row
        assert not (tmp_path / "out").exists()
    assert a_file.read_text() == "not a folder"
    with pytest.raises(SystemExit):  # argparse refuses an unknown recipe
        run_cli("train", ["--recipe", "sbert"])
    assert "invalid choice: 'sbert'" in capsys.readouterr().err

    # An output folder that holds an earlier model is not touched without --overwrite.
    earlier = tmp_path / "earlier"
    (earlier / "best-model").mkdir(parents=True)
    (earlier / "best-model" / "config.json").write_text('{"model_type": "vlembed"}')
    (earlier / "results.json").write_text("{}")
    assert run_cli("train", ["--output-dir", str(earlier)]) == 2
    assert "already holds a vlembed model (best-model/)" in capsys.readouterr().err
    assert (earlier / "results.json").read_text() == "{}"
    assert Path(earlier / "best-model" / "config.json").read_text() == '{"model_type": "vlembed"}'
