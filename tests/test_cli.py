"""The `vlembed` command: every subcommand has --help; `vlembed train --quick --max-steps` runs the main job
end to end (the CI smoke); bad input fails before any training and overwrites nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.utils import run_cli, run_python
from vlembed.cli import SUBCOMMANDS


def vlembed(*argv: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vlembed.cli", *argv], capture_output=True, text=True, timeout=timeout,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})


def test_every_subcommand_has_help():
    result = vlembed("--help")
    assert result.returncode == 0 and all(name in result.stdout for name in SUBCOMMANDS)
    for name in SUBCOMMANDS:
        result = vlembed(name, "--help")
        assert result.returncode == 0, result.stderr
        assert f"usage: vlembed {name}" in result.stdout


def test_train_quick_smoke(tmp_path):
    """The main job, shrunk: five rows, a report, histograms and a Hub-ready best model."""
    out = tmp_path / "run"
    result = vlembed("train", "--quick", "--max-steps", "2", "--train-samples", "64", "--dev-samples", "24",
                     "--test-samples", "40", "--output-dir", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())
    assert [row["row"] for row in report["rows"]] == [
        "zero-shot", "InfoNCE", "LLaVE (α = 9)", "+ ABC mined negatives", "+ GradCache (batch 32)"]
    for row in report["rows"]:
        assert set(row["test"]) >= {"precision@1", "recall@10", "ndcg@10", "positive_similarity",
                                    "hard_negative_similarity", "easy_negative_similarity"}
        assert 0.0 <= row["test"]["precision@1"] <= 1.0
    assert report["rows"][3]["training"]["explicit_negatives_per_row"] == 1
    assert report["rows"][4]["training"]["mini_batch_size (GradCache)"] == 16
    table = (out / "results.md").read_text()
    assert "| zero-shot |" in table and "**(best)**" in table and "| P@1 | R@10 | nDCG@10 |" in table
    assert table.splitlines()[4] in result.stdout  # the printed table is the written one
    for png in ("similarity_zero_shot.png", "similarity_best.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = out / "best-model"
    assert "trust_remote_code=True" in result.stdout and f"hf upload <your-name>/<model-name> {best}" in result.stdout
    card = (best / "README.md").read_text()
    assert "stdlib-code-search" in card and "precision_at_1" in card
    out_text = run_python(
        f"""
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(best)!r}, trust_remote_code=True)
        print(model.encode(["Close the file."]).shape)
        """,
        block_vlembed=True,
    )
    assert "(1, 384)" in out_text


def test_train_refuses_bad_input_before_training(tmp_path, capsys):
    no_columns = tmp_path / "rows.jsonl"
    no_columns.write_text('{"sentence": "a", "label": 1}\n' * 20)
    cases = [
        (["--data", str(tmp_path / "missing.jsonl")], "Data file not found"),
        (["--data", str(no_columns)], "a training set needs these"),
        (["--backbone", str(tmp_path / "no-such-model")], "Backbone not found"),
    ]
    for argv, message in cases:
        assert run_cli("train", [*argv, "--output-dir", str(tmp_path / "out")]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "out" / "results.json").exists()
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
