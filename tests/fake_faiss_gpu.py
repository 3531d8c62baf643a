"""A stand-in for FAISS's GPU build on a CPU-only machine: one "GPU", whose indexes are CPU indexes
wrapped in a `GpuIndex` class that refuses ``k > 2048`` as FAISS's GPU kernels do (GPU_MAX_SELECTION_K)."""

from __future__ import annotations

import faiss
import pytest

from vlembed.search import GPU_MAX_K


class FakeGpuIndex:
    """Delegates to a CPU index; records every ``k`` searched and fails beyond the GPU limit."""

    searched_k: list[int] = []

    def __init__(self, cpu_index):
        self.cpu_index = cpu_index

    def __getattr__(self, name):
        return getattr(self.cpu_index, name)

    def search(self, queries, k):
        FakeGpuIndex.searched_k.append(k)
        if k > GPU_MAX_K:
            raise RuntimeError(f"Error: 'k > 0 && k <= GPU_MAX_SELECTION_K' failed (k={k})")
        return self.cpu_index.search(queries, k)


@pytest.fixture()
def fake_gpu(monkeypatch) -> list[int]:
    """Make FAISS report one GPU and move indexes onto it; yields the list of ``k`` the GPU was asked for."""
    FakeGpuIndex.searched_k = []
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    monkeypatch.setattr(faiss, "GpuIndex", FakeGpuIndex, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", FakeGpuIndex, raising=False)
    monkeypatch.setattr(faiss, "index_gpu_to_cpu", lambda index: index.cpu_index, raising=False)
    return FakeGpuIndex.searched_k
