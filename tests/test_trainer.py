"""ContrastiveTrainer: training lowers the loss and raises retrieval quality, resume continues exactly,
two processes match one, ABC's two stages, samplers, peft and freezing, bad data."""

from __future__ import annotations

import copy
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


def text_rows(count: int, negatives: int = 0, negative_types: bool = False) -> Dataset:
    rows = {"query": [f"question number {i} about topic {i % 7}" for i in range(count)],
            "positive": [f"answer {i}: the topic is {i % 7} and the id is {i}" for i in range(count)]}
    if negatives:
        rows["negatives"] = [[f"wrong answer {i}-{j}" for j in range(negatives)] for i in range(count)]
        rows["negative_hardness"] = [[0.5] * negatives for _ in range(count)]
    if negative_types:  # MM-Embed: the first negative is type 1, the others type 2
        rows["negative_types"] = [[1] + [2] * (negatives - 1) for _ in range(count)]
    return Dataset.from_dict(rows)


def trainable(model) -> dict[str, torch.Tensor]:
    return {name: parameter for name, parameter in model.named_parameters() if parameter.requires_grad}


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
    assert summary["negatives_per_query"] == 15 and summary["explicit_negatives_per_row"] == 0  # in-batch only


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
    # Two epochs of 3 steps, resumed in the second: the batches and the per-epoch negative-type draws
    # (MM-Embed, one of 3 candidates per row) must be those of the uninterrupted run.
    rows = text_rows(24, negatives=3, negative_types=True)
    args = dict(max_steps=6, save_strategy="steps", save_steps=4, batch_sampler="random", seed=3)
    straight = ContrastiveTrainer(model=EmbeddingModel.from_backbone(tiny_model_dir("qwen2")),
                                  args=arguments(tmp_path / "a", **args), train_dataset=rows)
    straight.train()
    assert straight.data_collator.epoch == 1
    interrupted_args = arguments(tmp_path / "b", **args)
    first = ContrastiveTrainer(model=EmbeddingModel.from_backbone(tiny_model_dir("qwen2")), args=interrupted_args, train_dataset=rows)
    first.train()
    checkpoint = Path(interrupted_args.output_dir) / "checkpoint-4"
    assert (checkpoint / "model.safetensors").is_file() and (checkpoint / "modules.json").is_file()
    resumed = ContrastiveTrainer(model=EmbeddingModel.from_backbone(tiny_model_dir("qwen2")),
                                 args=arguments(tmp_path / "c", **args), train_dataset=rows)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    # The checkpoint's history (steps 1-4) followed by the resumed steps 5-6, as uninterrupted.
    assert len(losses(resumed)) == 6
    np.testing.assert_allclose(losses(resumed), losses(straight), rtol=1e-5)
    assert straight.model.config.training_summary["negatives_per_query"] == 8 * 2 - 1
    # The checkpoint is a loadable model folder.
    reloaded = EmbeddingModel.from_pretrained(checkpoint)
    assert reloaded.encode("a question").shape == (64,)


def test_gradcache_and_activation_checkpointing_keep_the_losses(tiny_model_dir, tmp_path):
    rows = text_rows(32, negatives=2)
    runs, layer_calls = {}, {}
    for name, extra in {"plain": {}, "gradcache": {"mini_batch_size": 3}, "checkpointing": {"activation_checkpointing": True}}.items():
        model = EmbeddingModel.from_backbone(tiny_model_dir("qwen2"))
        calls = []  # transformers checkpoints a layer's forward: the modules inside it start again in backward
        model.backbone.layers[0].self_attn.register_forward_pre_hook(lambda *_: calls.append(1))
        trainer = ContrastiveTrainer(model=model, args=arguments(tmp_path / name, loss="llave", **extra), train_dataset=rows)
        trainer.train()
        runs[name], layer_calls[name] = losses(trainer), len(calls)
    np.testing.assert_allclose(runs["gradcache"], runs["plain"], rtol=1e-4)
    np.testing.assert_allclose(runs["checkpointing"], runs["plain"], rtol=1e-4)
    # Checkpointing is on in the backbone: each decoder layer's attention runs again in the backward pass.
    assert layer_calls["plain"] == 4 * 2  # 4 steps × (queries, candidates)
    assert layer_calls["checkpointing"] == 2 * layer_calls["plain"]


def test_gradient_accumulation_averages_the_micro_batches_in_bf16(tiny_model_dir, tmp_path):
    """One SGD step over 2 accumulated micro-batches = the step on the mean of their losses (bf16 autocast)."""
    from vlembed.trainer.losses import ContrastiveLoss

    model = EmbeddingModel.from_backbone(tiny_model_dir("qwen2"))
    reference = copy.deepcopy(model).train()
    learning_rate = 0.5
    args = arguments(tmp_path, gradient_accumulation_steps=2, bf16=True, max_steps=1, per_device_train_batch_size=4,
                     optim="sgd", learning_rate=learning_rate, lr_scheduler_type="constant", max_grad_norm=0.0, weight_decay=0.0)
    trainer = ContrastiveTrainer(model=model, args=args, train_dataset=text_rows(8))
    micro_batches = list(trainer.get_train_dataloader())
    assert len(micro_batches) == 2
    micro_losses = []
    for batch in micro_batches:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = ContrastiveLoss.from_preset("infonce")(reference(**batch["query_inputs"]).embeddings,
                                                          reference(**batch["candidate_inputs"]).embeddings)
        (loss / 2).backward()  # the gradient of the mean of the two losses
        micro_losses.append(float(loss))
    trainer.train()
    assert losses(trainer) == [pytest.approx(np.mean(micro_losses), rel=1e-4)]
    before = trainable(reference)
    steps = {name: -learning_rate * parameter.grad for name, parameter in before.items() if parameter.grad is not None}
    taken = {name: (parameter - before[name]).detach() for name, parameter in trainable(model).items()}
    assert steps and set(steps) <= set(taken)
    expected = torch.cat([step.flatten() for step in steps.values()])
    actual = torch.cat([taken[name].flatten() for name in steps])
    # bf16 leaves a few ulps between the two; summing instead of averaging would be off by 100 %.
    assert float((actual - expected).norm() / expected.norm()) < 1e-2


def test_hardness_column_reaches_the_loss_as_reward(tiny_model_dir, tmp_path):
    rows = [
        {"query": "q0", "positive": "p0", "negatives": ["n00", "n01"], "negative_hardness": [0.5, 0.25]},
        {"query": "q1", "positive": "p1", "negatives": ["n10"], "negative_hardness": [1.0]},
    ]
    model = EmbeddingModel.from_backbone(tiny_model_dir("qwen2"))
    trainer = ContrastiveTrainer(model=model, args=arguments(tmp_path, hardness_scale=2.0), train_dataset=Dataset.from_list(rows))
    batch = trainer.data_collator(rows)
    assert batch["candidate_inputs"]["input_ids"].shape[0] == 5  # 2 positives, then 3 negatives in row order
    expected = torch.zeros(2, 5)
    expected[0, 2:4] = torch.tensor([1.0, 0.5])
    expected[1, 4] = 2.0
    torch.testing.assert_close(batch["reward"], expected)
    # Through compute_loss: InfoNCE (τ = 0.02) on cosine logits plus the reward, by hand.
    with torch.no_grad():
        loss = trainer.compute_loss(model, batch)
        queries = torch.nn.functional.normalize(model(**batch["query_inputs"]).embeddings, dim=-1)
        candidates = torch.nn.functional.normalize(model(**batch["candidate_inputs"]).embeddings, dim=-1)
        logits = queries @ candidates.T / 0.02 + expected
        naive = -torch.log_softmax(logits, dim=1)[[0, 1], [0, 1]].mean()
        without_reward = -torch.log_softmax(logits - expected, dim=1)[[0, 1], [0, 1]].mean()
    torch.testing.assert_close(loss, naive, rtol=1e-5, atol=1e-6)
    assert abs(float(naive - without_reward)) > 1e-3  # the reward changes the loss


def test_learnable_temperature_is_clamped_after_each_optimizer_step(tiny_model_dir, tmp_path):
    from transformers import TrainerCallback

    seen = []

    class BelowTheFloor(TrainerCallback):
        def on_optimizer_step(self, args, state, control, model=None, **kwargs):
            model.temperature.data.fill_(0.001)  # as if the step had taken τ below its floor

        def on_step_end(self, args, state, control, model=None, **kwargs):
            seen.append(float(model.temperature))

    model = EmbeddingModel.from_backbone(tiny_model_dir("qwen2"))
    trainer = ContrastiveTrainer(model=model, args=arguments(tmp_path, loss="abc", max_steps=2, per_device_train_batch_size=4),
                                 train_dataset=text_rows(8), callbacks=[BelowTheFloor()])
    trainer.train()
    assert seen == [pytest.approx(0.01)] * 2


def test_eval_during_training_logging_and_atomic_checkpoints(tiny_model_dir, tmp_path, monkeypatch):
    from transformers import TrainerCallback
    from transformers.trainer_utils import get_last_checkpoint

    class LogRecorder(TrainerCallback):  # what report_to integrations receive
        def __init__(self):
            self.logs = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.logs.append((state.global_step, dict(logs)))

    recorder, rows = LogRecorder(), text_rows(56)
    output = tmp_path / "out"
    common = dict(save_strategy="steps", save_steps=2, per_device_eval_batch_size=8)
    trainer = ContrastiveTrainer(
        model=EmbeddingModel.from_backbone(tiny_model_dir("qwen2")),
        args=arguments(tmp_path, max_steps=4, eval_strategy="steps", eval_steps=2, save_total_limit=1, load_best_model_at_end=True,
                       metric_for_best_model="eval_loss", greater_is_better=False, **common),
        train_dataset=rows.select(range(48)), eval_dataset=rows.select(range(48, 56)), callbacks=[recorder],
    )
    trainer.train()
    evaluations = {step: logs for step, logs in recorder.logs if "eval_loss" in logs}
    assert sorted(evaluations) == [2, 4]
    assert all(0 <= logs["eval_precision@1"] <= 1 and "eval_recall@5" in logs for logs in evaluations.values())
    assert [logs["loss"] for _, logs in recorder.logs if "loss" in logs] == losses(trainer) and len(losses(trainer)) == 4
    # The best checkpoint is tracked at its final place; rotation keeps it and the last one.
    best = Path(trainer.state.best_model_checkpoint)
    best_step = min(evaluations, key=lambda step: evaluations[step]["eval_loss"])
    assert best == output / f"checkpoint-{best_step}" and best.is_dir()
    assert {path.name for path in output.glob("checkpoint-*")} == {best.name, "checkpoint-4"}
    state = json.loads((output / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["best_model_checkpoint"] == str(best) and not list((output / "_staging").iterdir())

    # A crash while writing checkpoint-6 (after the weights, before the rest) leaves no checkpoint-6.
    resumed = ContrastiveTrainer(model=EmbeddingModel.from_backbone(tiny_model_dir("qwen2")),
                                 args=arguments(tmp_path, max_steps=6, **common), train_dataset=rows.select(range(48)))

    def full_disk(output_dir):
        raise OSError("No space left on device")

    monkeypatch.setattr(resumed, "_save_rng_state", full_disk)
    with pytest.raises(OSError, match="No space left"):
        resumed.train(resume_from_checkpoint=str(output / "checkpoint-4"))
    assert (output / "_staging" / "checkpoint-6" / "model.safetensors").is_file()  # the partial save, out of resume's way
    assert get_last_checkpoint(str(output)) == str(output / "checkpoint-4")


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

    temperatures = {name: load_file(tmp_path / name / "model.safetensors")["temperature"].item() for name in ("one", "two")}
    assert temperatures["one"] != 0.05
    assert abs(temperatures["two"] - temperatures["one"]) < 1e-6
    summary = json.loads((tmp_path / "two" / "config.json").read_text())["training_summary"]
    assert summary["global_batch_size"] == 8 and summary["negatives_per_query"] == 4 * 2 - 1


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
    # FSDP2 replaces every parameter by a new (sharded) one when it wraps the model: the loss must
    # read τ from the model, not keep the object it saw first.
    model.temperature = torch.nn.Parameter(model.temperature.detach().clone())
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
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        assert trainable and all("lora_" in n for n in trainable), trainable
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
    # The projector trains whole in LLaVE (Table 3 row 3) and MM-Embed (§5.1); ABC LoRAs only the encoder and LLM.
    assert bool(projector) == (recipe != "abc-pretrain")
    if recipe == "llave":  # full fine-tuning, vision tower frozen (LLaVE Table 3)
        assert not vision and language and not any("lora_" in name for name in trainable)
    elif recipe == "abc-pretrain":  # LoRA on vision tower and LLM
        assert vision and all("lora_" in name for name in vision | language) and language
    else:  # MM-Embed: LoRA on the LLM, projector whole, vision frozen
        assert not vision and language and all("lora_" in name for name in language)


# ---------------------------------------------------------------------------------- samplers and data


def test_recipe_flag_sets_the_papers_settings_and_flags_win(tmp_path):
    from vlembed.trainer.launch import parse_arguments
    from vlembed.trainer.recipes import RECIPES

    for name, recipe in RECIPES.items():
        model_args, _, training_args = parse_arguments(
            ["--recipe", name, "--learning_rate", "3e-6", "--use_cpu", "--report_to", "none", "--output_dir", str(tmp_path)]
        )
        assert model_args.recipe == name and training_args.learning_rate == 3e-6
        for key, value in recipe["training"].items():
            if key != "learning_rate":
                assert getattr(training_args, key) == value, (name, key)
        model_settings = dict(recipe["model"])
        for side, template in model_settings.pop("templates", {}).items():
            assert getattr(model_args, f"{side}_template") == template
        for key, value in model_settings.items():
            assert getattr(model_args, key) == value, (name, key)
    # LoRA on a frozen vision tower would silently not train.
    with pytest.raises(ValueError, match="freeze_vision_tower would also freeze the LoRA on the vision tower"):
        arguments(tmp_path, lora_r=4, lora_targets=["vision_tower"], freeze_vision_tower=True)


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
    rows = text_rows(72).to_dict()
    rows["positive"][68] = ""  # beyond the validated sample (64 rows): found when its batch (the 9th) is loaded
    args = arguments(tmp_path, max_steps=9, save_strategy="steps", save_steps=3)
    trainer = ContrastiveTrainer(model=EmbeddingModel.from_backbone(tiny_model_dir("qwen2")), args=args, train_dataset=Dataset.from_dict(rows))
    with pytest.raises(ValueError, match="Row 68: no positive"):
        trainer.train()
    checkpoints = sorted(Path(args.output_dir).glob("checkpoint-*"))
    assert [path.name for path in checkpoints] == ["checkpoint-3", "checkpoint-6"]
    for checkpoint in checkpoints:
        assert EmbeddingModel.from_pretrained(checkpoint).encode("q").shape == (64,)
