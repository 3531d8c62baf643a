"""Helpers for tests that need another process: a Python without vlembed, or torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# Makes `import vlembed` fail, as on a machine where only transformers (and maybe ST) is installed.
_BLOCK_VLEMBED = """
import importlib.abc, sys
class _BlockVlembed(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "vlembed" or name.startswith("vlembed."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None
sys.meta_path.insert(0, _BlockVlembed())
"""


def run_python(code: str, *, block_vlembed: bool = False, cwd: str | os.PathLike | None = None, timeout: int = 600) -> str:
    """Run ``code`` in a fresh interpreter (offline); return its stdout, failing with its stderr."""
    source = (_BLOCK_VLEMBED if block_vlembed else "") + textwrap.dedent(code)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", PYTHONWARNINGS="ignore")
    result = subprocess.run(
        [sys.executable, "-c", source], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )
    if result.returncode != 0:
        raise AssertionError(f"subprocess failed ({result.returncode}):\n{result.stderr[-6000:]}")
    return result.stdout


def run_torchrun(script: str | os.PathLike, *args: str, nproc: int = 2, cwd: str | os.PathLike | None = None, timeout: int = 600) -> str:
    """Run ``script`` under ``torchrun --nproc_per_node nproc`` (gloo on CPU); return stdout."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(script), *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"torchrun failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result.stdout


def run_cli(name: str, argv: list[str]) -> int:
    """Run ``vlembed <name> <argv...>`` in this process; return its exit code."""
    from vlembed.cli import main

    return main([name, *argv])


def unit(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32), as the models emit them."""
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
