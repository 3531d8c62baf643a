"""ContrastiveTrainer: training lowers the loss and raises retrieval quality, resume continues exactly,
two processes match one, ABC's two stages, samplers, peft and freezing, bad data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset

from tests.conftest import make_image
from tests.utils import REPO, run_python, run_torchrun
from vlembed import ContrastiveTrainer, ContrastiveTrainingArguments, EmbeddingModel
from vlembed.data.stdlib_code import stdlib_code_dataset


def arguments(tmp_path, **overrides) -> ContrastiveTrainingArguments:
    defaults = dict(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, max_steps=4, learning_rate=1e-3,
        logging_steps=1, report_to="none", use_cpu=True, save_strategy="no", eval_strategy="no",
        batch_sampler="sequential", loss="infonce", disable_tqdm=True,
    )
    return ContrastiveTrainingArguments(**{**defaults, **overrides})


def losses(trainer) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


@pytest.fixture(scope="module")
def code_pairs():
    return stdlib_code_dataset()


def text_rows(count: int, negatives: int = 0) -> Dataset:
    rows = {"query": [f"question number {i} about topic {i % 7}" for i in range(count)],
            "positive": [f"answer {i}: the topic is {i % 7} and the id is {i}" for i in range(count)]}
    if negatives:
        rows["negatives"] = [[f"wrong answer {i}-{j}" for j in range(negatives)] for i in range(count)]
        rows["negative_hardness"] = [[0.5] * negatives for _ in range(count)]
    return Dataset.from_dict(rows)


# ---------------------------------------------------------------------------------- it learns


def test_minilm_training_lowers_loss_and_beats_zero_shot(minilm_dir, code_pairs, tmp_path):
    train = code_pairs["train"].shuffle(seed=0).select(range(20 * 16))
    held_out = code_pairs["dev"].select(range(120))
    model = EmbeddingModel.from_backbone(minilm_dir, pooling="mean", max_length=64)
    args = arguments(tmp_path, loss="llave", per_device_train_batch_size=16, max_steps=20, learning_rate=5e-5,
                     batch_sampler="no_duplicates", per_device_eval_batch_size=64)
    trainer = ContrastiveTrainer(model=model, args=args, train_dataset=train, eval_dataset=held_out)
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    assert len(losses(trainer)) == 20
    # Held-out pairs, the same batches before and after: the loss falls and P@1 rises above zero-shot.
    assert after["eval_loss"] < before["eval_loss"], (before["eval_loss"], after["eval_loss"])
    assert after["eval_precision@1"] > before["eval_precision@1"], (before["eval_precision@1"], after["eval_precision@1"])
    summary = model.config.training_summary
    assert summary["hardness_alpha"] == 9.0 and summary["temperature"] == 0.02 and summary["global_batch_size"] == 16


def test_tiny_qwen2_vl_learns_image_text_pairs(tiny_model_dir, tmp_path):
    images = [make_image(100 + i, (48 + 8 * (i % 3), 40)) for i in range(12)]
    rows = Dataset.from_dict({
        "query": ["" for _ in images],
        "query_image": images,
        "query_instruction": ["Find the caption of this picture." for _ in images],
        "positive": [f"caption number {i} of a colour pattern" for i in range(12)],
    })
    model = EmbeddingModel.from_backbone(tiny_model_dir("qwen2_vl"), pooling="mean")
    trainer = ContrastiveTrainer(model=model, args=arguments(tmp_path, per_device_train_batch_size=6, max_steps=24, learning_rate=3e-3),
                                 train_dataset=rows)
    trainer.train()
    history = losses(trainer)
    assert np.mean(history[-4:]) < 0.5 * np.mean(history[:4]), history


# ---------------------------------------------------------------------------------- trainer features


def test_resume_continues_with_the_same_losses(tiny_model_dir, tmp_path):
    rows = text_rows(48)
    args = dict(max_steps=6, save_strategy="steps", save_steps=3, batch_sampler="random", seed=3)
    straight = ContrastiveTrainer(model=EmbeddingModel.from_backbone(tiny_model_dir("qwen2")),
                                  args=arguments(tmp_path / "a", **args), train_dataset=rows)
    straight.train()
    interrupted_args = arguments(tmp_path / "b", **args)
    first = ContrastiveTrainer(model=EmbeddingModel.from_backbone(tiny_model_dir("qwen2")), args=interrupted_args, train_dataset=rows)
    first.train()
    checkpoint = Path(interrupted_args.output_dir) / "checkpoint-3"
    assert (checkpoint / "model.safetensors").is_file() and (checkpoint / "modules.json").is_file()
    resumed = ContrastiveTrainer(model=EmbeddingModel.from_backbone(tiny_model_dir("qwen2")),
                                 args=arguments(tmp_path / "c", **args), train_dataset=rows)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    # The checkpoint's history (steps 1-3) followed by the resumed steps 4-6, as uninterrupted.
    assert len(losses(resumed)) == 6
    np.testing.assert_allclose(losses(resumed), losses(straight), rtol=1e-5)
    # The checkpoint is a loadable model folder.
    reloaded = EmbeddingModel.from_pretrained(checkpoint)
    assert reloaded.encode("a question").shape == (64,)


def test_gradcache_and_activation_checkpointing_keep_the_losses(tiny_model_dir, tmp_path):
    rows = text_rows(32, negatives=2)
    runs = {}
    for name, extra in {"plain": {}, "gradcache": {"mini_batch_size": 3}, "checkpointing": {"gradient_checkpointing": True}}.items():
        model = EmbeddingModel.from_backbone(tiny_model_dir("qwen2"))
        trainer = ContrastiveTrainer(model=model, args=arguments(tmp_path / name, loss="llave", **extra), train_dataset=rows)
        trainer.train()
        runs[name] = losses(trainer)
    np.testing.assert_allclose(runs["gradcache"], runs["plain"], rtol=1e-4)
    np.testing.assert_allclose(runs["checkpointing"], runs["plain"], rtol=1e-4)


def test_gradient_accumulation_and_bf16_run(tiny_model_dir, tmp_path):
    rows = text_rows(32)
    trainer = ContrastiveTrainer(
        model=EmbeddingModel.from_backbone(tiny_model_dir("qwen2")),
        args=arguments(tmp_path, gradient_accumulation_steps=2, bf16=True, max_steps=2, per_device_train_batch_size=4),
        train_dataset=rows,
    )
    trainer.train()
    assert len(losses(trainer)) == 2 and all(np.isfinite(losses(trainer)))


def test_hardness_column_reaches_the_loss_as_reward(tiny_model_dir):
    from vlembed.trainer.collator import ContrastiveDataCollator

    model = EmbeddingModel.from_backbone(tiny_model_dir("qwen2"))
    collator = ContrastiveDataCollator(model.processor, hardness_scale=2.0)
    rows = [
        {"query": "q0", "positive": "p0", "negatives": ["n00", "n01"], "negative_hardness": [0.5, 0.25]},
        {"query": "q1", "positive": "p1", "negatives": ["n10"], "negative_hardness": [1.0]},
    ]
    batch = collator(rows)
    assert batch["candidate_inputs"]["input_ids"].shape[0] == 5  # 2 positives, then 3 negatives in row order
    expected = torch.zeros(2, 5)
    expected[0, 2:4] = torch.tensor([1.0, 0.5])
    expected[1, 4] = 2.0
    torch.testing.assert_close(batch["reward"], expected)


def test_torchrun_two_processes_match_one(tmp_path):
    """examples/train.py on 2 processes (gloo) logs the losses of 1 process with the same global batch."""
    from vlembed.testing import build_tiny_model

    backbone = build_tiny_model("qwen2", tmp_path / "qwen2")
    common = ["--backbone", backbone, "--pooling", "last", "--train_data", "stdlib-code", "--max_train_samples", "48",
              "--eval_data", "none", "--max_steps", "4", "--logging_steps", "1", "--report_to", "none", "--use_cpu",
              "--save_strategy", "no", "--batch_sampler", "sequential", "--loss", "llave", "--learning_rate", "1e-3",
              "--learnable_temperature", "true", "--temperature", "0.05",
              "--num_negatives", "0", "--disable_tqdm", "true"]
    run_torchrun(REPO / "examples" / "train.py", *common, "--ddp_backend", "gloo", "--per_device_train_batch_size", "4",
                 "--output_dir", str(tmp_path / "two"))
    run_python(f"import sys; sys.argv = ['train.py'] + {common + ['--per_device_train_batch_size', '8', '--output_dir', str(tmp_path / 'one')]!r}\n"
               f"exec(open({str(REPO / 'examples' / 'train.py')!r}).read())")
    logged = {
        name: [entry["loss"] for entry in json.loads((tmp_path / name / "trainer_state.json").read_text())["log_history"] if "loss" in entry]
        for name in ("one", "two")
    }
    assert len(logged["one"]) == 4
    np.testing.assert_allclose(logged["two"], logged["one"], rtol=1e-4)
    # The learnable τ (in the model, its gradient averaged over ranks) ends where one process takes it.
    from safetensors.numpy import load_file

    temperatures = {name: float(load_file(tmp_path / name / "model.safetensors")["temperature"]) for name in ("one", "two")}
    assert temperatures["one"] != 0.05
    assert abs(temperatures["two"] - temperatures["one"]) < 1e-6
    assert json.loads((tmp_path / "two" / "config.json").read_text())["training_summary"]["global_batch_size"] == 8


# ---------------------------------------------------------------------------------- ABC's two stages


def test_abc_two_stages(tiny_model_dir, tmp_path):
    images = [make_image(200 + i, (56, 48)) for i in range(4)]
    instructions = ["the colour", "the shape", "the texture", "the size"]
    rows = Dataset.from_dict({
        "query": ["" for _ in range(16)],
        "query_image": [images[i // 4] for i in range(16)],
        "query_instruction": [instructions[i % 4] for i in range(16)],
        "positive": [f"image {i // 4}: {instructions[i % 4]} is number {i}" for i in range(16)],
        "image_id": [i // 4 for i in range(16)],
    })
    # Stage 1: LoRA on vision tower and LLM, learnable τ, then merged.
    model = EmbeddingModel.from_backbone(tiny_model_dir("qwen2_vl"), pooling="mean", bidirectional=True, head="residual_mlp")
    stage1 = ContrastiveTrainer(model=model, args=arguments(tmp_path / "s1", loss="abc", lora_r=4, lora_targets=["language_model", "vision_tower"]),
                                train_dataset=rows)
    assert model.temperature.requires_grad and float(model.temperature) == pytest.approx(0.07)
    stage1.train()
    assert float(model.temperature) != pytest.approx(0.07)  # τ was trained
    model.merge_adapters()
    probe = [images[0], "image 1: the shape is number 5", {"image": images[2], "text": "the size"}]
    stage1_vectors = model.encode(probe)
    stage1_queries = model.encode(probe, instruction="the colour")
    learned_temperature = float(model.temperature)

    # Stage 2: a query-only instruction adapter against frozen candidates.
    seen = {}
    stage2 = ContrastiveTrainer(
        model=model,
        args=arguments(tmp_path / "s2", loss="abc", learnable_temperature=False, instruction_adapter="instruction", lora_r=4,
                       freeze_head=True, batch_sampler="group_by", group_by_column="image_id", max_steps=4),
        train_dataset=rows,
    )
    original_loss = stage2.loss_fn.forward

    def recording_loss(queries, candidates, reward=None, step=None):
        seen.setdefault("candidates_require_grad", []).append(candidates.requires_grad)
        seen.setdefault("queries_require_grad", []).append(queries.requires_grad)
        return original_loss(queries, candidates, reward=reward, step=step)

    stage2.loss_fn.forward = recording_loss
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert trainable and all("lora_" in name and ".instruction." in name for name in trainable)
    stage2.train()
    assert seen["candidates_require_grad"] == [False] * 4 and all(seen["queries_require_grad"])
    assert float(model.temperature) == learned_temperature  # frozen in stage 2
    # Adapter off: exactly stage 1. Adapter on (queries): moved.
    np.testing.assert_allclose(model.encode(probe, instruction="the colour", use_adapter=False), stage1_queries, atol=1e-5)
    np.testing.assert_allclose(model.encode_document(probe), stage1_vectors, atol=1e-5)
    adapted = model.encode_query(probe, instruction="the colour")
    assert np.abs(adapted - stage1_queries).max() > 1e-4

    model.save_pretrained(tmp_path / "abc")
    for index in (0, 2):
        images[index].save(tmp_path / f"img{index}.png")
    run_python(
        f"""
        import numpy as np
        from PIL import Image
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(tmp_path / 'abc')!r}, trust_remote_code=True)
        assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
        images = [Image.open({str(tmp_path)!r} + f"/img{{i}}.png").convert("RGB") for i in (0, 2)]
        probe = [images[0], "image 1: the shape is number 5", {{"image": images[1], "text": "the size"}}]
        np.save({str(tmp_path / 'on.npy')!r}, model.encode_query(probe, instruction="the colour"))
        np.save({str(tmp_path / 'off.npy')!r}, model.encode(probe, instruction="the colour", use_adapter=False))
        np.save({str(tmp_path / 'docs.npy')!r}, model.encode_document(probe))
        """,
        block_vlembed=True,
    )
    np.testing.assert_allclose(np.load(tmp_path / "on.npy"), adapted, atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "off.npy"), stage1_queries, atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "docs.npy"), stage1_vectors, atol=1e-5)


# ---------------------------------------------------------------------------------- peft and freezing


@pytest.mark.parametrize("recipe", ["llave", "abc-pretrain", "mm-embed"])
def test_recipes_set_what_trains(recipe, tiny_model_dir, tmp_path):
    from vlembed.trainer.recipes import RECIPES
    from vlembed.trainer.trainer import prepare_model

    settings = {key: value for key, value in RECIPES[recipe]["training"].items() if key in ("lora_r", "lora_alpha", "lora_targets", "freeze_vision_tower", "freeze_projector")}
    model = EmbeddingModel.from_backbone(tiny_model_dir("qwen2_vl"))
    prepare_model(model, arguments(tmp_path, **settings))
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    vision = {name for name in trainable if ".visual." in f".{name}" and ".merger." not in name}
    projector = {name for name in trainable if ".merger." in name}
    language = {name for name in trainable if "language_model" in name}
    assert projector, "the projector trains in every recipe"
    if recipe == "llave":  # full fine-tuning, vision tower frozen (LLaVE Table 3)
        assert not vision and language and not any("lora_" in name for name in trainable)
    elif recipe == "abc-pretrain":  # LoRA on vision tower and LLM
        assert vision and all("lora_" in name for name in vision | language) and language
    else:  # MM-Embed: LoRA on the LLM, projector whole, vision frozen
        assert not vision and language and all("lora_" in name for name in language)


# ---------------------------------------------------------------------------------- samplers and data


def test_no_duplicates_and_group_by_batches():
    from vlembed.trainer.samplers import build_batch_sampler

    rows = Dataset.from_dict({"query": [f"q{i}" for i in range(40)], "positive": [f"p{i % 10}" for i in range(40)],
                              "image_id": [i % 8 for i in range(40)]})
    sampler = build_batch_sampler("no_duplicates", rows, 8, drop_last=False, seed=0)
    for batch in sampler:
        positives = [rows[i]["positive"] for i in batch]
        assert len(set(positives)) == len(positives)
    sampler = build_batch_sampler("group_by", rows, 10, drop_last=True, seed=0, group_by_column="image_id")
    batches = list(sampler)
    assert len(batches) == len(sampler) == 4 and all(len(batch) == 10 for batch in batches)
    groups = [{rows[i]["image_id"] for i in batch} for batch in batches]
    # Groups of 5 rows, batches of 10: every batch holds exactly two whole groups.
    assert all(len(group) == 2 for group in groups)
    sampler.set_epoch(1)
    assert list(sampler) != batches  # reshuffled per epoch, deterministically
    sampler.set_epoch(0)
    assert list(sampler) == batches


def test_mm_embed_mixture_proportions():
    from vlembed.trainer.launch import mix

    multimodal = Dataset.from_dict({"query": [f"m{i}" for i in range(2000)], "positive": ["x"] * 2000, "extra": [1] * 2000})
    text = Dataset.from_dict({"query": [f"t{i}" for i in range(2000)], "positive": ["y"] * 2000})
    mixed = mix(multimodal, text, 0.25, seed=0)
    share = np.mean([query.startswith("t") for query in mixed["query"]])
    assert mixed.column_names == ["query", "positive"] and abs(share - 0.25) < 0.03


# ---------------------------------------------------------------------------------- bad data


def test_bad_rows_fail_before_training_naming_row_and_column(tiny_model_dir, tmp_path):
    model = EmbeddingModel.from_backbone(tiny_model_dir("qwen2_vl"))
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG not really")
    good = {"query": "q", "positive": "p"}
    cases = [
        ({"query": ["a", "b", "c"], "positive": ["x", "", "z"]}, {}, "Row 1: no positive"),
        ({"query": ["a", "b"], "positive": ["x", "y"], "negatives": [["n1", "n2"], ["n1"]]}, {"num_negatives": 2},
         "Row 1: column 'negatives' has 1 negatives, but num_negatives=2"),
        ({"query": ["a", "b"], "query_image": [None, str(tmp_path / "missing.png")], "positive": ["x", "y"]}, {},
         f"Row 1, column 'query_image': image file not found: '{tmp_path / 'missing.png'}'"),
        ({"query": ["a"], "positive": ["x"], "positive_image": [str(corrupt)]}, {}, "Row 0, column 'positive_image': cannot read image file"),
        ({**{k: [v] for k, v in good.items()}, "positive_instruction": ["Find it"]}, {}, "instructions belong to the query side"),
        ({"text": ["a"], "label": [1]}, {}, "a training set needs these"),
    ]
    for columns, extra, message in cases:
        with pytest.raises((ValueError, FileNotFoundError)) as raised:
            ContrastiveTrainer(model=model, args=arguments(tmp_path, **extra), train_dataset=Dataset.from_dict(columns))
        assert message in str(raised.value), str(raised.value)


def test_bad_row_mid_training_leaves_checkpoints_intact(tiny_model_dir, tmp_path):
    rows = text_rows(96).to_dict()
    rows["positive"][80] = ""  # beyond the validated sample: found at its batch
    args = arguments(tmp_path, max_steps=12, save_strategy="steps", save_steps=4)
    trainer = ContrastiveTrainer(model=EmbeddingModel.from_backbone(tiny_model_dir("qwen2")), args=args, train_dataset=Dataset.from_dict(rows))
    with pytest.raises(ValueError, match="Row 80: no positive"):
        trainer.train()
    checkpoints = sorted(Path(args.output_dir).glob("checkpoint-*"))
    assert [path.name for path in checkpoints] == ["checkpoint-4", "checkpoint-8"]
    for checkpoint in checkpoints:
        assert EmbeddingModel.from_pretrained(checkpoint).encode("q").shape == (64,)
