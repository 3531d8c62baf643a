"""Gathering across two real processes (torchrun, gloo): the loss and the DDP-averaged gradients of a
small encoder equal those of one process holding the global batch (LLaVE eq. 8), with two explicit
negatives per query, a learnable temperature, rewards in both layouts, the symmetric term and
GradCache (also on a tiny Qwen2-VL whose last re-run mini-batch has no image); inconsistent inputs
across ranks raise on every rank. One launch runs every case."""

from __future__ import annotations

import json
from pathlib import Path

from tests.utils import run_torchrun

SCRIPT = Path(__file__).with_name("scripts") / "loss_ddp.py"


def test_two_processes_equal_one_process_with_the_global_batch(tiny_model_dir, tmp_path):
    """Gradient differences are relative to the largest entry of the reference's gradients."""
    out = tmp_path / "results.json"
    run_torchrun(SCRIPT, tiny_model_dir("bert"), tiny_model_dir("qwen2_vl"), str(out), nproc=2)
    output = json.loads(out.read_text())
    results = output["cases"]
    assert set(results) == {
        "llave_eq8", "symmetric_learnable_tau_local_reward", "symmetric_gathered_reward", "gradcache_symmetric_local_reward",
        "gradcache_qwen2_vl_last_mini_batch_without_image",
    }
    for case, result in results.items():
        assert result["loss"] > 0.1, case
        assert result["gradient_scale"] > 1e-3, case  # the comparison below is not of zeros
        assert result["loss_difference"] < 1e-5, (case, result)
        assert result["relative_gradient_difference"] < 1e-5, (case, result)
    assert results["symmetric_learnable_tau_local_reward"]["relative_temperature_gradient_difference"] < 1e-5
    assert results["llave_eq8"]["naive_eq8_difference"] < 1e-5
    # The vision tower's gradient is compared too, and is not zero.
    assert results["gradcache_qwen2_vl_last_mini_batch_without_image"]["vision_gradient_scale"] > 1e-3

    errors = output["inconsistent_inputs"]
    for message in errors["different_query_counts"]:  # one entry per rank
        assert message.startswith("ValueError: Gathering needs the same number of queries"), message
        assert "rank 0: queries [3, 8], candidates [9, 8], reward none; rank 1: queries [2, 8]" in message
    for message in errors["reward_on_one_rank_only"]:
        assert message.startswith("ValueError: Gathering needs"), message
        assert "rank 0: queries [3, 8], candidates [9, 8], reward [3, 9]; rank 1: queries [3, 8], candidates [9, 8], reward none" in message
    assert len(errors["different_query_counts"]) == len(errors["reward_on_one_rank_only"]) == 2
