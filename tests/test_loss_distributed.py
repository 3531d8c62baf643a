"""Gathering across two real processes (torchrun, gloo): the loss and the DDP-averaged gradients of a
small encoder equal those of one process holding the global batch (LLaVE eq. 8), with two explicit
negatives per query, a learnable temperature, rewards in both layouts, the symmetric term and
GradCache."""

from __future__ import annotations

import json
from pathlib import Path

from tests.utils import run_torchrun

SCRIPT = Path(__file__).with_name("scripts") / "loss_ddp.py"


def test_two_processes_equal_one_process_with_the_global_batch(tiny_model_dir, tmp_path):
    out = tmp_path / "results.json"
    run_torchrun(SCRIPT, tiny_model_dir("bert"), str(out), nproc=2)
    results = json.loads(out.read_text())
    assert set(results) == {
        "llave_eq8", "symmetric_learnable_tau_local_reward", "symmetric_gathered_reward", "gradcache_symmetric_local_reward",
    }
    for case, result in results.items():
        assert result["loss"] > 0.1, case
        assert result["gradient_scale"] > 1e-3, case  # the comparison below is not of zeros
        assert result["loss_difference"] < 1e-5, (case, result)
        assert result["relative_gradient_difference"] < 1e-5, (case, result)
    assert results["symmetric_learnable_tau_local_reward"]["relative_temperature_gradient_difference"] < 1e-5
    assert results["llave_eq8"]["naive_eq8_difference"] < 1e-5
