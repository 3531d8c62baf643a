"""The Hub-native embedding model: every family builds, encodes every input kind, saves, and reloads
through `AutoModel(..., trust_remote_code=True)` in a process where vlembed cannot be imported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import make_image
from tests.utils import run_python
from vlembed import EmbeddingModel
from vlembed.modeling import FAMILIES as SUPPORTED
from vlembed.testing import FAMILIES, VISION_FAMILIES

# Each family saved with different options, so the reload covers pooling modes, heads and bidirectional.
OPTIONS = {
    "qwen2_vl": dict(pooling="last", head="residual_mlp"),
    "qwen2_5_vl": dict(pooling="mean", bidirectional=True),
    "qwen3_vl": dict(pooling="eos"),
    "llava_onevision": dict(pooling="last"),
    "llava_next": dict(pooling="mean", head="linear", embedding_dim=16),
    "idefics3": dict(pooling="last"),
    "smolvlm": dict(pooling="mean"),
    "qwen2": dict(pooling="eos"),
    "qwen3": dict(pooling="last", bidirectional=True),
    "llama": dict(pooling="mean"),
    "mistral": dict(pooling="last", head="residual_mlp"),
    "bert": dict(pooling="cls"),
}


def sample_inputs(family: str, images, frames) -> list:
    items: list = ["A dog is holding a red frisbee.", "def close(self): return self._file.close()"]
    if family in VISION_FAMILIES:
        items += [
            images[0],
            {"text": "What is the dog holding?", "image": images[1]},
            {"images": [images[2], images[3]], "text": "first <image> then the other one"},
            {"video": frames, "text": "a person cooking"},
        ]
    return items


@pytest.fixture(scope="module")
def saved_models(tiny_model_dir, images, video_frames, tmp_path_factory):
    """Build, perturb the heads, encode reference vectors and save every family."""
    root = tmp_path_factory.mktemp("saved")
    references = {}
    torch.manual_seed(0)
    for family in FAMILIES:
        model = EmbeddingModel.from_backbone(tiny_model_dir(family), **OPTIONS[family])
        if model.head is not None:  # a trained-looking head, so the reload must really restore it
            with torch.no_grad():
                for parameter in model.head.parameters():
                    parameter.add_(torch.randn_like(parameter) * 0.1)
        items = sample_inputs(family, images, video_frames)
        references[family] = (
            model.encode(items),
            model.encode(items, instruction="Retrieve the matching caption."),
        )
        model.save_pretrained(root / family)
    # Inputs for the other process: images and frames as files.
    media = root / "media"
    media.mkdir()
    for index, image in enumerate(images + video_frames):
        image.save(media / f"{index}.png")
    return root, references


@pytest.fixture(scope="module")
def reloaded_vectors(saved_models):
    """One fresh interpreter without vlembed loads every saved family through AutoModel."""
    root, _ = saved_models
    run_python(
        f"""
        import json
        from pathlib import Path
        import numpy as np
        from PIL import Image
        from transformers import AutoModel
        root = Path({str(root)!r})
        load = lambda index: Image.open(root / "media" / f"{{index}}.png").convert("RGB")
        images, frames = [load(i) for i in range(4)], [load(4 + i) for i in range(6)]
        for family in {list(FAMILIES)!r}:
            model = AutoModel.from_pretrained(root / family, trust_remote_code=True)
            assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
            items = ["A dog is holding a red frisbee.", "def close(self): return self._file.close()"]
            if family in {list(VISION_FAMILIES)!r}:
                items += [images[0], {{"text": "What is the dog holding?", "image": images[1]}},
                          {{"images": [images[2], images[3]], "text": "first <image> then the other one"}},
                          {{"video": frames, "text": "a person cooking"}}]
            np.save(root / f"{{family}}_plain.npy", model.encode(items))
            np.save(root / f"{{family}}_instructed.npy", model.encode(items, instruction="Retrieve the matching caption."))
        """,
        block_vlembed=True,
        cwd=root,
    )
    return root


@pytest.mark.parametrize("family", FAMILIES)
def test_reload_without_vlembed_gives_same_vectors(family, saved_models, reloaded_vectors):
    _, references = saved_models
    plain, instructed = references[family]
    expected_dim = OPTIONS[family].get("embedding_dim", 32 if family == "bert" else 64)
    assert plain.shape == (6 if family in VISION_FAMILIES else 2, expected_dim)
    assert np.allclose(np.linalg.norm(plain, axis=1), 1.0, atol=1e-5)
    # The instruction changes the query vectors.
    assert np.abs(plain - instructed).max() > 1e-4
    np.testing.assert_allclose(np.load(reloaded_vectors / f"{family}_plain.npy"), plain, atol=1e-5)
    np.testing.assert_allclose(np.load(reloaded_vectors / f"{family}_instructed.npy"), instructed, atol=1e-5)


def test_saved_folder_is_hub_ready(saved_models):
    root, _ = saved_models
    folder = root / "qwen2_vl"
    files = {path.name for path in folder.iterdir()}
    assert {"config.json", "model.safetensors", "configuration_vlembed.py", "modeling_vlembed.py", "processing_vlembed.py"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "vlembed"
    assert config["auto_map"] == {"AutoConfig": "configuration_vlembed.VLEmbedConfig", "AutoModel": "modeling_vlembed.VLEmbedModel"}
    assert config["backbone_model_config"]["model_type"] == "qwen2_vl"
    # The copied code imports only torch, transformers and the standard library when it is imported
    # (module level, `if`/`try`/class bodies included); PIL (for images), huggingface_hub (for
    # push_to_hub) and peft (for models with adapters) only lazily, inside functions.
    import sys

    allowed = {"torch", "transformers", "__future__"} | set(sys.stdlib_module_names)
    for source in ("configuration_vlembed.py", "modeling_vlembed.py", "processing_vlembed.py"):
        module_level, in_functions = imported_packages((folder / source).read_text())
        assert "transformers" in module_level and module_level <= allowed, (source, module_level - allowed)
        assert in_functions <= allowed | {"PIL", "huggingface_hub", "peft"}, (source, in_functions - allowed)


def imported_packages(source: str) -> tuple[set[str], set[str]]:
    """Top-level packages a file imports when it is imported, and those it imports inside functions."""
    import ast

    module_level: set[str] = set()
    in_functions: set[str] = set()

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                roots = {alias.name.split(".")[0] for alias in child.names}
            elif isinstance(child, ast.ImportFrom) and child.level == 0:
                roots = {child.module.split(".")[0]}
            else:
                roots = set()
            (in_functions if in_function else module_level).update(roots)
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(source), False)
    return module_level, in_functions


def test_import_check_tells_module_level_from_lazy():
    module_level, in_functions = imported_packages(
        "import os\nif True:\n    import PIL\ntry:\n    from peft import X\nexcept ImportError:\n    pass\n"
        "class A:\n    import json\n    def f(self):\n        import huggingface_hub\n"
    )
    assert module_level == {"os", "PIL", "peft", "json"} and in_functions == {"huggingface_hub"}


def test_nothing_registers_against_stock_configs(saved_models):
    from transformers import AutoModel, Qwen2VLConfig
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    assert MODEL_MAPPING[Qwen2VLConfig].__name__ == "Qwen2VLModel"
    assert type(AutoModel.from_config(Qwen2VLConfig(vision_config={"depth": 1}, text_config={"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 32, "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3]}}))).__name__ == "Qwen2VLModel"


# Every family, and a bidirectional decoder of each kind (M-RoPE vision-language, text).
BATCHING_CASES = [pytest.param(family, False, id=family) for family in FAMILIES] + [
    pytest.param(family, True, id=f"{family}-bidirectional") for family in ("qwen2_vl", "llama")
]
MAX_LENGTH = 8  # cuts the long text, also when it shares a batch with media (which is never cut)


@pytest.mark.parametrize(("family", "bidirectional"), BATCHING_CASES)
def test_batched_equals_one_by_one_for_every_pooling_and_padding_side(family, bidirectional, tiny_model_dir, images, video_frames):
    model = EmbeddingModel.from_backbone(tiny_model_dir(family), bidirectional=bidirectional, max_length=MAX_LENGTH)
    long_text = "a much longer sentence about a dog holding a red frisbee in the park"
    items = ["short", long_text, "mid text"]
    if family in VISION_FAMILIES:
        items += [
            images[0],
            {"text": "a dog", "image": images[1]},
            {"text": "two <image> images", "images": [images[2], images[3]]},
            {"video": video_frames[:4], "text": "a person cooking"},
        ]
    for pooling in ("last", "mean", "eos", "cls"):
        if pooling == "eos" and family == "bert":
            continue  # BERT has no EOS token; the error is tested below
        model.config.pooling = pooling
        single = None
        for padding_side in ("left", "right"):
            model.config.padding_side = padding_side
            model.processor = model.processor.processor  # rebuild the input builder from the config
            assert model.processor.tokenizer.padding_side == padding_side
            batched = model.encode(items, batch_size=len(items))
            if single is None:  # an item alone has no padding: one reference serves both sides
                single = np.stack([model.encode(item) for item in items])
            np.testing.assert_allclose(batched, single, atol=1e-5, err_msg=f"{family} {pooling} {padding_side}")
            # Padding really happened (rows of different lengths), and the long text was cut to
            # max_length in a batch that holds media.
            batch = model.processor(items)
            assert (batch["attention_mask"] == 0).any()
            assert batch["attention_mask"][1].sum() == MAX_LENGTH < len(model.processor.tokenizer(long_text)["input_ids"])


def test_pooling_modes_pick_the_right_tokens():
    from vlembed.modeling import pool

    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)  # row 0: 0..3, row 1: 4..7
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    assert pool(hidden, left, "last").flatten().tolist() == [3.0, 7.0]
    assert pool(hidden, right, "last").flatten().tolist() == [1.0, 7.0]
    assert pool(hidden, left, "cls").flatten().tolist() == [2.0, 4.0]
    assert pool(hidden, right, "cls").flatten().tolist() == [0.0, 4.0]
    assert pool(hidden, left, "mean").flatten().tolist() == [2.5, 5.5]
    assert pool(hidden, right, "mean").flatten().tolist() == [0.5, 5.5]


@pytest.mark.parametrize("family", [name for name, family in SUPPORTED.items() if family.decoder])
def test_bidirectional_attention(family, tiny_model_dir):
    """Through encode with the first token's state as the embedding ("cls"): with bidirectional on,
    it depends on a later token; with it off, it does not; with eager and SDPA attention alike."""
    texts = ["a dog is holding a frisbee", "a dog is holding a cat"]  # the same but for the end
    processor = None
    for attn_implementation in ("eager", "sdpa"):
        first_token_change = {}
        for bidirectional in (False, True):
            model = EmbeddingModel.from_backbone(
                tiny_model_dir(family), pooling="cls", bidirectional=bidirectional,
                attn_implementation=attn_implementation, processor=processor,
            )
            processor = model.processor.processor  # loaded once per family
            first, second = model.encode(texts)
            first_token_change[bidirectional] = np.abs(first - second).max()
        assert first_token_change[False] < 1e-5 and first_token_change[True] > 1e-3, (attn_implementation, first_token_change)


def test_residual_head_is_identity_at_init_and_trains(tiny_model_dir):
    base = EmbeddingModel.from_backbone(tiny_model_dir("qwen2"), normalize=False)
    with_head = EmbeddingModel.from_backbone(tiny_model_dir("qwen2"), head="residual_mlp", normalize=False)
    items = ["a dog", "a red frisbee in the park"]
    np.testing.assert_array_equal(base.encode(items), with_head.encode(items))
    x = torch.randn(3, 64)
    assert torch.equal(with_head.head(x), x)
    # ABC eq. 2 by hand once A is non-zero: x + A·SELU(B·x).
    with torch.no_grad():
        with_head.head.down.weight.normal_()
        with_head.head.up.weight.normal_()
    a, b = with_head.head.down, with_head.head.up
    expected = x + (torch.nn.functional.selu(x @ b.weight.T + b.bias) @ a.weight.T + a.bias)
    torch.testing.assert_close(with_head.head(x), expected)
    assert with_head.head.up.weight.dtype == torch.float32


def test_no_lm_head_in_the_embedding_path(tiny_model_dir):
    model = EmbeddingModel.from_backbone(tiny_model_dir("qwen2_vl"))
    names = [name for name, _ in model.named_parameters()]
    assert not any("lm_head" in name for name in names)
    assert type(model.backbone).__name__ == "Qwen2VLModel"  # the base model, not *ForConditionalGeneration
    output = model(**model.processor(["a dog"]))
    assert set(output.keys()) == {"embeddings"}


def test_templates_render_the_papers_forms(tiny_model_dir, images):
    from vlembed.modeling.processing_vlembed import to_embedding_input

    model = EmbeddingModel.from_backbone(tiny_model_dir("llava_onevision"), templates={"query": "mm-embed", "document": "abc"})
    render = lambda item, instruction, task=None: model.processor.render(to_embedding_input(item, 0), instruction, task)[0]
    assert render({"image": images[0], "text": "a dog"}, "Find the answer.") == "Instruct: Find the answer.\nQuery: <image>\na dog"
    assert render("a dog", "Find the answer.") == "Instruct: Find the answer.\nQuery: a dog"
    # ABC eq. 3, "<image> Instruction: <instruction>"; an item's text goes after its image.
    assert render(images[0], "Find the dog.", task="document") == "<image> Instruction: Find the dog."
    assert render({"image": images[0], "text": "a dog"}, "Find it.", task="document") == "<image>\na dog Instruction: Find it."
    assert render({"image": images[0], "text": "a dog"}, None) == "<image>\na dog"
    vlm2vec = EmbeddingModel.from_backbone(tiny_model_dir("qwen2_vl"), templates={"query": "vlm2vec"})
    prompt = vlm2vec.processor.render(to_embedding_input({"image": images[0], "text": "What is it?"}, 0), "Represent the given image with the following question:", None)[0]
    assert prompt == "<|vision_start|><|image_pad|><|vision_end|>\nRepresent the given image with the following question: What is it?"
    # Braces in the text are not template fields.
    assert render("def f(): return {text}", "Find code.") == "Instruct: Find code.\nQuery: def f(): return {text}"
    # Per-item instructions and the query/document switch give different vectors.
    a = model.encode(["a dog", "a dog"], instruction=["Find a caption.", None])
    assert np.abs(a[0] - a[1]).max() > 1e-3
    np.testing.assert_allclose(a[1], model.encode("a dog"), atol=1e-6)
    q, d = model.encode_query(["a dog"], "Find it."), model.encode_document(["a dog"], "Find it.")
    assert np.abs(q - d).max() > 1e-3


def test_video_frames_are_sampled_uniformly(tiny_model_dir):
    from vlembed.modeling.processing_vlembed import sample_frames

    assert sample_frames(list(range(100)), 5) == [0, 25, 50, 74, 99]
    assert sample_frames(list(range(3)), 32) == [0, 1, 2]
    frames = [make_image(20 + i, (56, 56)) for i in range(40)]
    model = EmbeddingModel.from_backbone(tiny_model_dir("qwen2_vl"), max_frames=4)
    # 40 frames embed as the 4 sampled ones.
    chosen = [frames[i] for i in sample_frames(list(range(40)), 4)]
    np.testing.assert_allclose(model.encode({"video": frames}), model.encode({"video": chosen}), atol=1e-6)
    # A family without a video path gets the frames as images.
    next_model = EmbeddingModel.from_backbone(tiny_model_dir("llava_next"), max_frames=3)
    three = [frames[0], frames[20], frames[39]]
    batch = next_model.processor([{"video": frames}])
    assert batch["num_images_per_sample"].tolist() == [3]
    np.testing.assert_allclose(next_model.encode({"video": frames}), next_model.encode({"images": three}), atol=1e-6)


def test_encode_output_forms(tiny_model_dir):
    model = EmbeddingModel.from_backbone(tiny_model_dir("qwen2"))
    empty = model.encode([])
    assert empty.shape == (0, 64) and empty.dtype == np.float32
    single = model.encode("a dog")
    assert single.shape == (64,)
    tensor = model.encode(["a dog", "a cat"], convert_to="torch")
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32 and tensor.shape == (2, 64)
    np.testing.assert_allclose(tensor[0].numpy(), single, atol=1e-6)
    unnormalized = model.encode(["a dog"], normalize=False)
    assert abs(np.linalg.norm(unnormalized) - 1.0) > 1e-3
    with torch.no_grad():
        np.testing.assert_allclose(model.encode(["a dog"])[0], single, atol=1e-6)
    model.train()
    model.encode(["a dog"])
    assert model.training  # encode restores the training mode it found
    similarity = model.similarity(model.encode(["a dog", "a cat"]), model.encode(["a dog"]))
    assert similarity.shape == (2, 1) and abs(similarity[0, 0].item() - 1.0) < 1e-5


def test_image_paths_and_large_batches(tiny_model_dir, images, tmp_path):
    model = EmbeddingModel.from_backbone(tiny_model_dir("qwen2_vl"))
    path = tmp_path / "dog.png"
    images[0].save(path)
    np.testing.assert_allclose(model.encode(path), model.encode(images[0]), atol=1e-6)
    np.testing.assert_allclose(model.encode({"image": str(path), "text": "a"}), model.encode({"image": images[0], "text": "a"}), atol=1e-6)
    items = [f"sentence number {i} " * (i % 7 + 1) for i in range(70)]
    np.testing.assert_allclose(model.encode(items, batch_size=8), np.stack([model.encode(item) for item in items[:70]]), atol=1e-5)


# ---------------------------------------------------------------------------------------- bad input


def test_bad_inputs_name_the_item(tiny_model_dir, images, tmp_path):
    vlm = EmbeddingModel.from_backbone(tiny_model_dir("qwen2_vl"))
    text_only = EmbeddingModel.from_backbone(tiny_model_dir("qwen2"))
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not an image at all")
    cases = [
        (vlm, ["fine", 42], TypeError, "Input 1: unsupported input type int"),
        (text_only, ["fine", "also fine", images[0]], ValueError, "Input 2: this backbone is text-only"),
        (vlm, ["ok", {"image": tmp_path / "missing.png"}], FileNotFoundError, f"Input 1: image file not found: '{tmp_path / 'missing.png'}'"),
        (vlm, [corrupt], ValueError, f"Input 0: cannot read image file '{corrupt}'"),
        (vlm, ["ok", "ok", {"instruction": "x"}], ValueError, "Input 2: unknown key(s) ['instruction']"),
        (vlm, [{"text": ""}], ValueError, "Input 0: a dict needs 'text', 'image', 'images' or 'video'"),
        (vlm, ["a", {"video": []}], ValueError, "Input 1: the video has zero frames"),
        (vlm, [{"text": "<image> <image>", "images": [images[0]]}], ValueError, "Input 0: the text has 2 '<image>' markers but only 1 images"),
        (text_only, [""], ValueError, "Input 0: empty text"),
        (vlm, ["a dog", ""], ValueError, "Input 1: empty text"),
        (vlm, [{"images": "dog.png"}], TypeError, "Input 0: 'images' must be a list of images, got str"),
        (vlm, ["a", {"video": images[0]}], TypeError, "Input 1: 'video' must be a list of frames, got Image"),
    ]
    for model, items, error, message in cases:
        with pytest.raises(error) as raised:
            model.encode(items)
        assert message in str(raised.value)


def test_undecodable_images_fail_with_their_index_before_any_batch(tiny_model_dir, images, tmp_path):
    """A file whose header reads but whose pixels do not (cut short) is caught while parsing."""
    model = EmbeddingModel.from_backbone(tiny_model_dir("qwen2_vl"))
    forward_calls = []
    model.register_forward_pre_hook(lambda module, args: forward_calls.append(1))
    good, cut = tmp_path / "good.png", tmp_path / "cut.png"
    images[0].save(good)
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    inputs = ["a", "b", images[1], "c", {"image": good, "text": "d"}, "e"]
    encoded = {"bytes": cut.read_bytes(), "path": None}  # as `datasets` stores an undecoded image
    for bad, message in [(cut, f"Input 6: cannot read image file '{cut}'"), ({"image": encoded}, "Input 6: cannot read image bytes")]:
        with pytest.raises(ValueError) as raised:
            model.encode(inputs + [bad], batch_size=2)
        assert message in str(raised.value) and "truncated" in str(raised.value)
    assert forward_calls == []
    # A file that breaks after parsing is named by its index in the caller's input, not in the batch.
    later = tmp_path / "later.png"
    images[2].save(later)
    (item,) = model.processor.parse([{"image": later}])
    later.write_bytes(cut.read_bytes())
    model.processor.parse([item])  # a parsed item is not decoded again (a corpus shard is parsed, then encoded)
    with pytest.raises(ValueError, match="Input 5: cannot load image"):
        model.processor([item], parsed=True, indices=[5])


def test_bad_options_are_refused_before_loading(tiny_model_dir, tmp_path, monkeypatch):
    from transformers import AutoModel

    paths = {family: tiny_model_dir(family) for family in ("qwen2", "bert")}

    def load_weights(*args, **kwargs):
        raise AssertionError("weights were loaded before the options were checked")

    monkeypatch.setattr(AutoModel, "from_pretrained", load_weights)
    with pytest.raises(ValueError, match="Unknown pooling 'max'; choose one of last, mean, eos, cls"):
        EmbeddingModel.from_backbone(paths["qwen2"], pooling="max")
    with pytest.raises(ValueError, match="Unknown head 'mlp'"):
        EmbeddingModel.from_backbone(paths["qwen2"], head="mlp")
    with pytest.raises(ValueError, match="only head='linear' can change the size"):
        EmbeddingModel.from_backbone(paths["qwen2"], embedding_dim=16)
    with pytest.raises(ValueError, match="pooling='eos' needs a tokenizer with an EOS token"):
        EmbeddingModel.from_backbone(paths["bert"], pooling="eos")
    # An architecture outside the table: the message lists the supported ones.
    from transformers import GPT2Config, GPT2Model

    GPT2Model(GPT2Config(n_layer=1, n_embd=32, n_head=2)).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(ValueError) as raised:
        EmbeddingModel.from_backbone(tmp_path / "gpt2")
    assert "Unsupported backbone architecture 'gpt2'" in str(raised.value)
    assert ", ".join(SUPPORTED) in str(raised.value)


def test_text_works_and_vision_fails_clearly_without_torchvision(tiny_model_dir):
    """Simulate a machine without torchvision: transformers sees no torchvision and importing it fails."""
    out = run_python(
        f"""
        import importlib.abc, importlib.util, sys
        _find_spec = importlib.util.find_spec
        importlib.util.find_spec = lambda name, package=None: None if name.split(".")[0] == "torchvision" else _find_spec(name, package)
        class _NoTorchvision(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "torchvision":
                    raise ModuleNotFoundError("No module named 'torchvision'")
        sys.meta_path.insert(0, _NoTorchvision())
        from transformers.utils import is_torchvision_available
        assert not is_torchvision_available()
        from vlembed import EmbeddingModel
        print(EmbeddingModel.from_backbone({tiny_model_dir("qwen2")!r}).encode(["a dog"]).shape)
        try:
            EmbeddingModel.from_backbone({tiny_model_dir("qwen2_vl")!r})
        except ImportError as error:
            print("ImportError:", error)
        """
    )
    assert "(1, 64)" in out
    assert f"processor needs torchvision, which is not installed: install the torchvision build that matches your torch ({torch.__version__})" in out


def test_minilm_equals_sentence_transformers(minilm_dir):
    from sentence_transformers import SentenceTransformer

    sentences = [
        "A man is playing a guitar.",
        "Someone is strumming a guitar on stage.",
        "The stock market fell sharply today.",
        "Return the number of items in the queue.",
        "Close the file. " * 80,  # longer than max_seq_length: both truncate at 256 tokens
    ]
    reference = SentenceTransformer(minilm_dir, device="cpu").encode(sentences, normalize_embeddings=True)
    model = EmbeddingModel.from_backbone(minilm_dir, pooling="mean")
    assert model.config.max_length == 256
    vectors = model.encode(sentences, batch_size=2)
    np.testing.assert_allclose(vectors, reference, atol=1e-5)
    # The real model's semantics: guitar sentences are close, the stock market is not.
    similarity = model.similarity(vectors[:3], vectors[:3])
    assert similarity[0, 1] > 0.6 and similarity[0, 2] < 0.0
