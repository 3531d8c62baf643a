"""Shared fixtures: tiny random models of the real architectures (built once per session), the real
MiniLM folder, deterministic images and video frames."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """``tiny_model_dir(family)`` -> path of a tiny random checkpoint of that family (see vlembed.testing)."""
    from vlembed.testing import build_tiny_model

    root = tmp_path_factory.mktemp("tiny_models")
    built: dict[str, str] = {}

    def get(family: str) -> str:
        if family not in built:
            built[family] = build_tiny_model(family, root / family)
        return built[family]

    return get


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    from vlembed.testing import minilm_path

    return minilm_path()


def make_image(seed: int, size: tuple[int, int] = (64, 48)):
    from PIL import Image

    width, height = size
    pixels = np.random.RandomState(seed).randint(0, 255, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="session")
def images():
    """Four RGB images of different sizes."""
    return [make_image(0, (64, 48)), make_image(1, (40, 80)), make_image(2, (56, 56)), make_image(3, (96, 32))]


@pytest.fixture(scope="session")
def video_frames():
    """Six 56x56 frames."""
    return [make_image(10 + i, (56, 56)) for i in range(6)]
