"""Training data without training: batch samplers (no duplicates within the gathered batch of every
step, image-only and optional-image rows, group-by) and the collator's negatives (type draws, bad cells)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from accelerate.data_loader import BatchSamplerShard
from datasets import Dataset

from tests.conftest import make_image
from vlembed.trainer.collator import ROW_INDEX, ContrastiveDataCollator
from vlembed.trainer.samplers import build_batch_sampler


def contents(row: dict) -> list:
    """A row's contents as comparable values, computed independently of the sampler: texts, and images by pixels."""
    found = []
    for column in ("query", "positive", "negatives"):
        value = row.get(column)
        found += [("text", text) for text in (value if isinstance(value, list) else [value]) if text]
    for column in ("query_image", "positive_image", "negative_images"):
        value = row.get(column)
        found += [("image", image.tobytes()) for image in (value if isinstance(value, list) else [value]) if image is not None]
    return found


def assert_no_duplicates(rows: Dataset, batch: list[int]) -> None:
    values = [value for index in batch for value in contents(rows[index])]
    repeated = [value for value, count in Counter(values).items() if count > 1]
    assert not repeated, (batch, repeated[:3])


def shards(sampler, num_processes: int) -> list[list[list[int]]]:
    """Each step's per-rank batches, as accelerate (split_batches=False) hands the sampler's batches out."""
    per_rank = [list(BatchSamplerShard(sampler, num_processes, rank)) for rank in range(num_processes)]
    assert len({len(batches) for batches in per_rank}) == 1
    assert all(len(batches) == len(BatchSamplerShard(sampler, num_processes, 0)) for batches in per_rank)
    return [list(step) for step in zip(*per_rank)]


# ---------------------------------------------------------------------------------- samplers


def test_image_only_queries_and_optional_images_fill_whole_batches():
    images = [make_image(300 + i, (8, 8)) for i in range(16)]
    image_only = Dataset.from_dict({"query": [""] * 16, "query_image": images, "positive": [f"p{i}" for i in range(16)]})
    assert [len(batch) for batch in build_batch_sampler("no_duplicates", image_only, 8, drop_last=False, seed=0)] == [8, 8]
    optional = Dataset.from_dict({
        "query": [f"q{i}" for i in range(16)],
        "positive": [f"p{i}" for i in range(16)],
        "positive_image": [images[i] if i < 4 else None for i in range(16)],
    })
    assert [len(batch) for batch in build_batch_sampler("no_duplicates", optional, 8, drop_last=False, seed=0)] == [8, 8]


def test_no_duplicates_covers_images_and_negatives():
    # 4 images shared by 8 rows each; every row's negative is another row's positive.
    images = [make_image(400 + i, (8, 8)) for i in range(4)]
    rows = Dataset.from_dict({
        "query": [""] * 32,
        "query_image": [images[i % 4] for i in range(32)],
        "positive": [f"caption {i}" for i in range(32)],
        "negatives": [[f"caption {(i + 1) % 32}"] for i in range(32)],
    })
    batches = list(build_batch_sampler("no_duplicates", rows, 4, drop_last=True, seed=0))
    assert len(batches) == 8 and all(len(batch) == 4 for batch in batches)
    for batch in batches:
        assert_no_duplicates(rows, batch)


def test_global_batches_have_no_duplicates_across_ranks():
    # 48 rows over 12 positives: with per-device deduplication most steps repeat a positive across ranks.
    rows = Dataset.from_dict({"query": [f"q{i}" for i in range(48)], "positive": [f"p{i % 12}" for i in range(48)]})
    per_device = build_batch_sampler("no_duplicates", rows, 4, drop_last=True, seed=0)
    repeated = sum(
        len({rows[i]["positive"] for batch in step for i in batch}) < 8 for step in shards(per_device, 2)
    )
    assert repeated >= 3  # the data makes the check meaningful
    sampler = build_batch_sampler("no_duplicates", rows, 4, drop_last=True, seed=0, num_devices=2)
    steps = shards(sampler, 2)
    assert len(steps) == len(rows) // 8
    for step in steps:
        assert [len(batch) for batch in step] == [4, 4]
        assert_no_duplicates(rows, [index for batch in step for index in batch])
    sampler.set_epoch(1)
    assert shards(sampler, 2) != steps  # reshuffled per epoch, deterministically
    sampler.set_epoch(0)
    assert shards(sampler, 2) == steps


def test_group_by_keeps_groups_in_one_step_across_ranks():
    images = [make_image(500 + i, (8, 8)) for i in range(6)]
    rows = Dataset.from_dict({
        "query": [f"instruction {i % 4}" for i in range(24)],
        "query_image": [images[i // 4] for i in range(24)],
        "positive": [f"p{i}" for i in range(24)],
    })
    sampler = build_batch_sampler("group_by", rows, 4, drop_last=True, seed=0, group_by_column="query_image", num_devices=2)
    steps = shards(sampler, 2)
    assert len(steps) == 3
    groups = [Counter(index // 4 for batch in step for index in batch) for step in steps]
    # Groups of 4 (one image each), global batches of 8: every step holds two whole groups.
    assert all(sorted(group.values()) == [4, 4] for group in groups)
    assert sorted(image for group in groups for image in group) == list(range(6))


def test_group_by_batches_and_epochs():
    rows = Dataset.from_dict({"query": [f"q{i}" for i in range(40)], "positive": [f"p{i % 10}" for i in range(40)],
                              "image_id": [i % 8 for i in range(40)]})
    sampler = build_batch_sampler("group_by", rows, 10, drop_last=True, seed=0, group_by_column="image_id")
    batches = list(sampler)
    assert len(batches) == len(sampler) == 4 and all(len(batch) == 10 for batch in batches)
    # Groups of 5 rows, batches of 10: every batch holds exactly two whole groups.
    assert all(len({rows[i]["image_id"] for i in batch}) == 2 for batch in batches)
    sampler.set_epoch(1)
    assert list(sampler) != batches
    sampler.set_epoch(0)
    assert list(sampler) == batches


# ---------------------------------------------------------------------------------- collator


@pytest.fixture(scope="module")
def collator(tiny_model_dir):
    from vlembed import EmbeddingModel

    return ContrastiveDataCollator(EmbeddingModel.from_backbone(tiny_model_dir("qwen2")).processor, seed=7)


def mined_row(index: int, types: list[int]) -> dict:
    return {ROW_INDEX: index, "query": f"q{index}", "positive": f"p{index}", "negatives": [f"n{j}" for j in range(len(types))],
            "negative_hardness": [0.1 * j for j in range(len(types))], "negative_types": types}


def test_negative_type_draw_is_uniform_over_types_then_candidates(collator):
    types = [1, 2, 2, 2]  # one type-1 candidate, three type-2 ones
    drawn = []
    for index in range(3000):
        negatives, hardness = collator._training_negatives(mined_row(index, types), f"Row {index}", index)
        assert len(negatives) == 1 and hardness == [0.1 * int(negatives[0][1:])]
        drawn.append(int(negatives[0][1:]))
    share = np.bincount(drawn, minlength=4) / len(drawn)
    # P(type 1) = 1/2 (its one candidate), each type-2 candidate 1/6.
    np.testing.assert_allclose(share, [1 / 2, 1 / 6, 1 / 6, 1 / 6], atol=0.03)
    # Deterministic in (seed, epoch, row): the same again, another epoch draws otherwise.
    again = [collator._training_negatives(mined_row(i, types), "", i)[0] for i in range(200)]
    assert [int(n[0][1:]) for n in again] == drawn[:200]
    collator.epoch = 1
    try:
        other_epoch = [int(collator._training_negatives(mined_row(i, types), "", i)[0][0][1:]) for i in range(200)]
    finally:
        collator.epoch = 0
    assert other_epoch != drawn[:200]
    # One type only: always that type.
    assert {collator._training_negatives(mined_row(i, [2, 2]), "", i)[0][0] for i in range(50)} == {"n0", "n1"}
    assert {collator._training_negatives(mined_row(i, [1, 2]), "", i)[0][0] for i in range(50)} == {"n0", "n1"}


def test_bad_negative_cells_name_row_and_column(collator):
    base = {ROW_INDEX: 5, "query": "q", "positive": "p"}
    cases = [
        ({"negatives": "a single string"}, "Row 5: column 'negatives' must hold a list"),
        ({"negatives": ["a", "b"], "negative_hardness": [0.1, 0.2, 0.3]}, "Row 5: column 'negative_hardness' has 3 scores for 2 negatives"),
        ({"negatives": ["a"], "negative_hardness": 0.5}, "Row 5: column 'negative_hardness' must hold a list"),
        ({"negatives": ["a", "b"], "negative_types": [1]}, "Row 5: column 'negative_types' has 1 types for 2 negatives"),
        ({"negatives": ["a"], "negative_types": [3]}, "Row 5: column 'negative_types' must hold 1 or 2"),
        ({"negatives": [], "negative_types": []}, "Row 5: no negative of type 1 or 2 to draw from"),
    ]
    for extra, message in cases:
        with pytest.raises(ValueError) as raised:
            collator([{**base, **extra}])
        assert message in str(raised.value), str(raised.value)
    # Extra scores are refused even when num_negatives would cut them off.
    limited = ContrastiveDataCollator(collator.processor, num_negatives=1)
    with pytest.raises(ValueError, match="Row 5: column 'negative_hardness' has 3 scores for 2 negatives"):
        limited([{**base, "negatives": ["a", "b"], "negative_hardness": [0.1, 0.2, 0.3]}])
    with pytest.raises(ValueError, match="Row 5: column 'negative_types' draws one negative per row, but num_negatives=2"):
        ContrastiveDataCollator(collator.processor, num_negatives=2)([{**base, **mined_row(5, [1, 2])}])
    # Gathering needs one count everywhere: the error names the column and each row's count.
    gathering = ContrastiveDataCollator(collator.processor, fixed_negative_count=True)
    rows = [{**base, ROW_INDEX: 3, "negatives": ["a", "b"]}, {**base, ROW_INDEX: 4, "negatives": ["c"]}]
    with pytest.raises(ValueError) as raised:
        gathering(rows)
    assert "column 'negatives'" in str(raised.value) and "{3: 2, 4: 1}" in str(raised.value), str(raised.value)
