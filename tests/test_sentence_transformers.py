"""Drop-in everywhere: a saved vlembed model loads in sentence-transformers and AutoModel without vlembed,
gives the same vectors, works with ST's evaluator, miner and trainer; push_to_hub uploads a complete
folder with a model card whose metadata parses and whose usage snippets run."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import make_image
from tests.utils import run_python
from vlembed import EmbeddingModel

QUERIES = ["How do I close a file?", "Return the number of items.", "Parse a date string."]
DOCUMENTS = [
    "def close(self):\n    self._file.close()",
    "def __len__(self):\n    return len(self._items)",
    "def parse_date(text):\n    return datetime.strptime(text, '%Y-%m-%d')",
    "def read(self, size=-1):\n    return self._file.read(size)",
]


@pytest.fixture(scope="module")
def saved(tiny_model_dir, minilm_dir, tmp_path_factory):
    """A tiny Qwen2-VL model and the real MiniLM, saved by vlembed, with reference vectors."""
    root = tmp_path_factory.mktemp("st")
    image_paths = []
    for index in range(3):
        path = root / f"image{index}.png"
        make_image(30 + index, (64 + 8 * index, 48)).save(path)
        image_paths.append(path)
    torch.manual_seed(0)
    qwen = EmbeddingModel.from_backbone(
        tiny_model_dir("qwen2_vl"), head="residual_mlp", instructions={"query": "Find the matching picture."}
    )
    with torch.no_grad():
        qwen.head.down.weight.normal_(std=0.1)
    minilm = EmbeddingModel.from_backbone(minilm_dir, pooling="mean", instructions={"query": "query:"})
    minilm.config.training_summary = {"recipe": "llave", "hardness_alpha": 9.0, "temperature": 0.02}
    minilm.config.evaluation_results = [
        {"task": "information-retrieval", "dataset": "stdlib-code-search", "split": "test", "metrics": {"ndcg@10": 0.5}}
    ]
    from PIL import Image

    images = [Image.open(path).convert("RGB") for path in image_paths]
    qwen_items = ["a red frisbee", images[0], {"text": "What is the dog holding?", "image": images[1]},
                  {"images": [images[1], images[2]], "text": "compare <image> with the first"}]
    references = {
        "qwen": {
            "plain": qwen.encode(qwen_items),
            "query": qwen.encode_query(qwen_items),
            "instructed": qwen.encode(qwen_items, instruction="Describe the scene."),
            "document": qwen.encode_document(qwen_items),
        },
        "minilm": {
            "plain": minilm.encode(QUERIES + DOCUMENTS),
            "query": minilm.encode_query(QUERIES),
            "instructed": minilm.encode(QUERIES, instruction="Describe the scene."),
            "document": minilm.encode_document(DOCUMENTS),
        },
    }
    qwen.save_pretrained(root / "qwen")
    minilm.save_pretrained(root / "minilm")
    return root, references, image_paths


def test_saved_folder_holds_the_sentence_transformers_files(saved):
    root, _, _ = saved
    for name in ("qwen", "minilm"):
        folder = root / name
        modules = json.loads((folder / "modules.json").read_text())
        assert modules == [{"idx": 0, "name": "0", "path": "", "type": "custom_st.VLEmbedTransformer"}]
        assert (folder / "custom_st.py").is_file() and (folder / "sentence_bert_config.json").is_file()
        assert (folder / "README.md").is_file()
    prompts = json.loads((root / "minilm" / "config_sentence_transformers.json").read_text())["prompts"]
    assert prompts == {"query": "query:", "document": ""}


def test_sentence_transformers_and_automodel_without_vlembed(saved):
    """Same vectors through ST and AutoModel in a process where vlembed cannot be imported; ST's
    InformationRetrievalEvaluator gives the MRR@10 computed by hand from AutoModel's vectors."""
    root, references, image_paths = saved
    out = run_python(
        f"""
        import json
        from pathlib import Path
        import numpy as np
        from PIL import Image
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
        from transformers import AutoModel
        root = Path({str(root)!r})
        images = [Image.open(p).convert("RGB") for p in {[str(p) for p in image_paths]!r}]
        items = {{
            "qwen": ["a red frisbee", images[0], {{"text": "What is the dog holding?", "image": images[1]}},
                     {{"images": [images[1], images[2]], "text": "compare <image> with the first"}}],
            "minilm": {QUERIES + DOCUMENTS!r},
        }}
        queries = {{"qwen": items["qwen"], "minilm": {QUERIES!r}}}
        documents = {{"qwen": items["qwen"], "minilm": {DOCUMENTS!r}}}
        for name in ("qwen", "minilm"):
            st = SentenceTransformer(str(root / name), trust_remote_code=True, device="cpu")
            auto = AutoModel.from_pretrained(root / name, trust_remote_code=True)
            assert "vlembed" not in type(auto).__module__.split(".")[0]
            vectors = {{
                "st_plain": st.encode(items[name]),
                "st_query": st.encode_query(queries[name]),
                "st_instructed": st.encode(queries[name], prompt="Describe the scene."),
                "st_document": st.encode_document(documents[name]),
                "auto_plain": auto.encode(items[name]),
                "auto_query": auto.encode_query(queries[name]),
            }}
            for key, value in vectors.items():
                np.save(root / f"{{name}}_{{key}}.npy", value)
            print(name, "dim", st.get_sentence_embedding_dimension())
        # ST's evaluator on the MiniLM model vs MRR@10 by hand from AutoModel's vectors.
        st = SentenceTransformer(str(root / "minilm"), trust_remote_code=True, device="cpu")
        auto = AutoModel.from_pretrained(root / "minilm", trust_remote_code=True)
        relevant = {{"q0": {{"d0"}}, "q1": {{"d1"}}, "q2": {{"d2"}}}}
        evaluator = InformationRetrievalEvaluator(
            queries={{f"q{{i}}": q for i, q in enumerate({QUERIES!r})}},
            corpus={{f"d{{i}}": d for i, d in enumerate({DOCUMENTS!r})}},
            relevant_docs=relevant, name="code", show_progress_bar=False)
        metrics = evaluator(st)
        # ST's evaluator embeds with encode_query / encode_document: the prompts map onto our instructions.
        q, d = auto.encode_query({QUERIES!r}), auto.encode_document({DOCUMENTS!r})
        ranks = [int((q[i] @ d.T > q[i] @ d[i]).sum()) + 1 for i in range(3)]
        mrr = float(np.mean([1.0 / r for r in ranks]))
        print("mrr", metrics["code_cosine_mrr@10"], mrr)
        assert abs(metrics["code_cosine_mrr@10"] - mrr) < 1e-6
        # The vision card's usage snippets (AutoModel and ST, text and image) load the saved folder.
        import re
        card = (root / "qwen" / "README.md").read_text()
        for snippet in re.findall(r"```python\\n(.*?)```", card, flags=re.S):
            assert json.dumps(str(root / "qwen")) in snippet
            exec(snippet, {{}})
        """,
        block_vlembed=True,
        cwd=root,
    )
    assert "qwen dim 64" in out and "minilm dim 384" in out
    assert out.count("tensor([[") == 2  # each vision snippet printed its 1x2 similarity matrix
    for name, ref in references.items():
        load = lambda key: np.load(root / f"{name}_{key}.npy")
        np.testing.assert_allclose(load("auto_plain"), ref["plain"], atol=1e-5)
        np.testing.assert_allclose(load("st_plain"), ref["plain"], atol=1e-5)
        np.testing.assert_allclose(load("auto_query"), ref["query"], atol=1e-5)
        np.testing.assert_allclose(load("st_query"), ref["query"], atol=1e-5)
        np.testing.assert_allclose(load("st_instructed"), ref["instructed"], atol=1e-5)
        np.testing.assert_allclose(load("st_document"), ref["document"], atol=1e-5)
        # The default query instruction really changes the vectors.
        assert np.abs(ref["query"] - ref["plain"][: len(ref["query"])]).max() > 1e-3


def test_mine_hard_negatives_on_the_st_model(saved):
    """ST's miner on the loaded model picks, per query, the most similar non-positive documents of a
    cosine ranking computed here from its query and document vectors."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    root, _, _ = saved
    minilm = SentenceTransformer(str(root / "minilm"), trust_remote_code=True, device="cpu")
    assert minilm[0].processor is minilm[0].model.processor.processor  # one tokenizer, not two
    pairs = Dataset.from_dict({"anchor": QUERIES, "positive": DOCUMENTS[:3]})
    mined = mine_hard_negatives(pairs, minilm, corpus=DOCUMENTS, num_negatives=2, output_format="n-tuple", verbose=False)
    assert mined.column_names == ["anchor", "positive", "negative_1", "negative_2"]
    scores = minilm.encode_query(QUERIES) @ minilm.encode_document(DOCUMENTS).T
    expected = []
    for query_index in range(len(QUERIES)):
        ranking = [index for index in np.argsort(-scores[query_index], kind="stable") if index != query_index]
        expected.append([DOCUMENTS[index] for index in ranking[:2]])
    assert [[row["negative_1"], row["negative_2"]] for row in mined] == expected


@pytest.fixture(scope="module")
def st_finetuned(saved):
    """The Qwen2-VL model fine-tuned by ST's trainer on text→image+text rows (one batch of all six rows,
    two steps), its first logged loss, and the loss computed here from the untrained vectors."""
    from datasets import Dataset
    from PIL import Image
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    root, _, image_paths = saved
    qwen = SentenceTransformer(str(root / "qwen"), trust_remote_code=True, device="cpu")
    images = [Image.open(path).convert("RGB") for path in image_paths]
    anchors = [f"caption {i}" for i in range(6)]
    # Rows i and i + 3 share their positive, so the loss stays well above 0 (at least log 2 per row).
    positives = [{"text": "a photo", "image": images[i % 3]} for i in range(6)]
    # MultipleNegativesRankingLoss by hand: cross-entropy over 20 · cos(anchor_i, positive_j), target i.
    with torch.no_grad():
        anchor_vectors = qwen.encode(anchors, convert_to_tensor=True)
        positive_vectors = qwen.encode(positives, convert_to_tensor=True)
    cosine = torch.nn.functional.normalize(anchor_vectors, dim=-1) @ torch.nn.functional.normalize(positive_vectors, dim=-1).T
    expected_loss = torch.nn.functional.cross_entropy(20.0 * cosine, torch.arange(6)).item()
    args = SentenceTransformerTrainingArguments(
        output_dir=str(root / "st_train"), per_device_train_batch_size=6, max_steps=2, learning_rate=1e-3,
        report_to="none", use_cpu=True, save_strategy="no", logging_steps=1,
    )
    before = {name: parameter.detach().clone() for name, parameter in qwen.named_parameters()}
    rows = Dataset.from_dict({"anchor": anchors, "positive": positives})
    trainer = SentenceTransformerTrainer(model=qwen, args=args, train_dataset=rows, loss=MultipleNegativesRankingLoss(qwen))
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return qwen, before, losses, expected_loss, anchors + positives


def test_sentence_transformers_trainer_fine_tunes_the_st_model(st_finetuned):
    qwen, before, losses, expected_loss, _ = st_finetuned
    assert len(losses) == 2
    # The first step's loss is MNRL of the untrained model's vectors (the model has no dropout).
    assert expected_loss > np.log(2) and losses[0] == pytest.approx(expected_loss, rel=1e-4)
    moved = [name for name, parameter in qwen.named_parameters() if not torch.equal(before[name], parameter)]
    assert any("language_model" in name for name in moved) and any("visual" in name for name in moved)


def test_st_fine_tuned_model_saves_and_reloads_without_vlembed(st_finetuned, tmp_path):
    """st.save() after ST fine-tuning: a folder that loads without vlembed (ST and AutoModel) with the
    fine-tuned vectors. Its README is ST's card (ST's training record), still tagged as vlembed's."""
    from huggingface_hub import ModelCard

    qwen, _, _, _, items = st_finetuned
    texts = [item for item in items if isinstance(item, str)]
    reference = qwen.encode(texts)
    reference_query = qwen.encode_query(texts)
    folder = tmp_path / "finetuned"
    qwen.save(str(folder))
    tags = set(ModelCard.load(folder / "README.md").data.tags)
    assert {"vlembed", "multimodal-embedding", "sentence-transformers", "loss:MultipleNegativesRankingLoss"} <= tags
    run_python(
        f"""
        import numpy as np
        from sentence_transformers import SentenceTransformer
        from transformers import AutoModel
        st = SentenceTransformer({str(folder)!r}, trust_remote_code=True, device="cpu")
        auto = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True)
        np.save({str(tmp_path / "st.npy")!r}, st.encode({texts!r}))
        np.save({str(tmp_path / "st_query.npy")!r}, st.encode_query({texts!r}))
        np.save({str(tmp_path / "auto.npy")!r}, auto.encode({texts!r}))
        """,
        block_vlembed=True,
    )
    np.testing.assert_allclose(np.load(tmp_path / "st.npy"), reference, atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "auto.npy"), reference, atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "st_query.npy"), reference_query, atol=1e-5)


def test_st_save_without_training_keeps_the_vlembed_card(saved, tmp_path):
    from sentence_transformers import SentenceTransformer

    root, _, _ = saved
    SentenceTransformer(str(root / "minilm"), trust_remote_code=True, device="cpu").save(str(tmp_path / "copy"))
    assert (tmp_path / "copy" / "README.md").read_text() == (root / "minilm" / "README.md").read_text()


class _FakeHub:
    """Stands in for the Hub: create_repo records, upload_folder copies the folder into ``root/repo_id``."""

    def __init__(self, root: Path):
        self.root, self.calls = root, []

    def install(self, monkeypatch):
        from huggingface_hub import HfApi

        hub = self

        def create_repo(api, repo_id, **kwargs):
            hub.calls.append(("create_repo", repo_id, {**kwargs, "api_token": api.token}))
            return type("RepoUrl", (), {"repo_id": repo_id})()

        def upload_folder(api, *, repo_id, folder_path, **kwargs):
            hub.calls.append(("upload_folder", repo_id, kwargs))
            shutil.copytree(folder_path, hub.root / repo_id, dirs_exist_ok=True)
            return type("CommitInfo", (), {"commit_url": f"https://hub.invalid/{repo_id}/commit/1"})()

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "upload_folder", upload_folder)


def test_push_to_hub_uploads_a_complete_folder_that_loads(saved, tmp_path, monkeypatch, capsys, caplog):
    import logging

    root, references, _ = saved
    hub = _FakeHub(tmp_path / "hub")
    hub.install(monkeypatch)
    model = EmbeddingModel.from_pretrained(root / "minilm")
    secret = "hf_thisIsASecretTestTokenValue123"
    caplog.set_level(logging.DEBUG)
    commit = model.push_to_hub("org/tiny-minilm", private=True, token=secret, commit_message="First upload")
    assert commit.commit_url.endswith("/commit/1")
    assert [call[0] for call in hub.calls] == ["create_repo", "upload_folder"]
    assert hub.calls[0][2]["private"] is True and hub.calls[1][2]["commit_message"] == "First upload"
    assert hub.calls[0][2]["api_token"] == secret  # the token reaches HfApi(token=...)
    captured = capsys.readouterr()
    assert secret not in captured.out + captured.err + caplog.text

    pushed = hub.root / "org/tiny-minilm"
    files = {path.name for path in pushed.iterdir()}
    assert files == {
        "config.json", "model.safetensors", "configuration_vlembed.py", "modeling_vlembed.py",
        "processing_vlembed.py", "custom_st.py", "modules.json", "sentence_bert_config.json",
        "config_sentence_transformers.json", "tokenizer.json", "tokenizer_config.json", "README.md",
    }

    # The card: parses, carries the metadata, and its usage snippets run against the pushed folder.
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    card = ModelCard.load(pushed / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "sentence-transformers"
    assert {"vlembed", "sentence-transformers", "multimodal-embedding"} <= set(data["tags"])
    assert data["license"] == "apache-2.0" and data["language"] == "en"
    name, results = model_index_to_eval_results(data["model-index"])
    assert name == "tiny-minilm"
    assert [(r.dataset_name, r.metric_name, r.metric_value) for r in results] == [("stdlib-code-search", "ndcg@10", 0.5)]
    assert "| hardness alpha | 9.0 |" in card.text and "@article{lan2025llave" in card.text
    snippets = re.findall(r"```python\n(.*?)```", card.text, flags=re.S)
    assert len(snippets) == 2 and all('"org/tiny-minilm"' in snippet for snippet in snippets)
    # One fresh interpreter without vlembed runs both snippets, then embeds with the pushed folder.
    snippets = [snippet.replace('"org/tiny-minilm"', repr(str(pushed))) for snippet in snippets]
    out = run_python(
        f"""
        for snippet in {snippets!r}:
            exec(snippet, {{}})
        import numpy as np
        from sentence_transformers import SentenceTransformer
        st = SentenceTransformer({str(pushed)!r}, trust_remote_code=True, device="cpu")
        np.save({str(tmp_path / "pushed.npy")!r}, st.encode({QUERIES + DOCUMENTS!r}))
        """,
        block_vlembed=True,
    )
    assert out.count("tensor([[") == 2  # each snippet printed its 1x2 similarity matrix
    np.testing.assert_allclose(np.load(tmp_path / "pushed.npy"), references["minilm"]["plain"], atol=1e-5)


def test_card_for_a_vision_model_shows_image_usage(saved):
    from huggingface_hub import ModelCard

    root, _, _ = saved
    card = ModelCard.load(root / "qwen" / "README.md")
    assert card.data.pipeline_tag == "feature-extraction"
    assert 'Image.new("RGB"' in card.text and '"image": image' in card.text
    assert "residual_mlp" in card.text and "@article{schneider2025abc" in card.text  # ABC eq. 2 head


def test_vlembed_push_renders_the_card_for_the_repository(saved, tmp_path, monkeypatch, capsys):
    """The command `vlembed train` prints: the card in the repository is named after it and its
    snippets load it; the token goes to HfApi only."""
    from huggingface_hub import ModelCard

    from tests.utils import run_cli

    root, _, _ = saved
    hub = _FakeHub(tmp_path / "hub")
    hub.install(monkeypatch)
    secret = "hf_anotherSecretTestTokenValue456"
    assert run_cli("push", [str(root / "minilm"), "org/cli-minilm", "--private", "--token", secret]) == 0
    captured = capsys.readouterr()
    assert "https://hub.invalid/org/cli-minilm/commit/1" in captured.out and secret not in captured.out + captured.err
    assert hub.calls[0][2]["api_token"] == secret and hub.calls[0][2]["private"] is True
    card = ModelCard.load(hub.root / "org/cli-minilm" / "README.md")
    assert card.data.model_name == "cli-minilm" and card.text.lstrip().startswith("# cli-minilm")
    snippets = re.findall(r"```python\n(.*?)```", card.text, flags=re.S)
    assert len(snippets) == 2 and all('"org/cli-minilm"' in snippet for snippet in snippets)

    assert run_cli("push", [str(tmp_path / "missing"), "org/x"]) == 2
    assert "Model not found" in capsys.readouterr().err
