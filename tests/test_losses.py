"""ContrastiveLoss against naive float64 code written here from the papers' equations (explicit loops
over i and j): LLaVE eq. 1, 5, 6 and its released symmetric form, ABC eq. 4, MM-Embed eq. 1; and
against sentence-transformers' MultipleNegativesRankingLoss. LLaVE eq. 8 (gathering) runs in two
processes in test_loss_distributed.py."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vlembed.trainer.losses import PRESETS, ContrastiveLoss, hardness_weighted_cross_entropy

# Float64 embeddings keep the loss in float64; τ is a float32 parameter (0.02 -> 0.0199999996), which
# limits agreement with the exact paper value to ~1e-7 relative.
TOLERANCE = dict(rtol=1e-6, atol=1e-9)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a @ b) / (a.norm() * b.norm())


def naive_llave(queries, candidates, tau, alpha, reward=None, symmetric=False):
    """LLaVE eq. 5 with r_θ(q_i, t_j) = α·sg(s_ij) + reward_ij, over M >= N candidates (t_i positive).

    ``symmetric`` adds the released code's target-to-query term (each positive t_i against all
    queries, same weighting) and averages the two.
    """

    def extra(i, j):
        return reward[i][j] if reward is not None else 0.0

    def one_direction(anchors, others, extra_reward):
        """Mean over anchors i of eq. 5, others[i] being anchor i's positive."""
        total = 0.0
        for i in range(len(anchors)):
            positive = cosine(anchors[i], others[i]) / tau
            denominator = torch.exp(positive)
            for j in range(len(others)):
                if j != i:
                    s_ij = cosine(anchors[i], others[j])
                    denominator = denominator + torch.exp(s_ij / tau + alpha * s_ij.detach() + extra_reward(i, j))
            total = total - torch.log(torch.exp(positive) / denominator)
        return total / len(anchors)

    loss = one_direction(queries, candidates, extra)
    if not symmetric:
        return loss
    positives = candidates[: len(queries)]
    return (loss + one_direction(positives, queries, lambda i, j: extra(j, i))) / 2


def naive_abc_eq4(x, y, negatives, tau):
    """ABC eq. 4, scaled by 1/N: x_i image queries, y_j captions, negatives[j][k] = n_j^k."""
    total = 0.0
    for i in range(len(x)):
        denominator = 0.0
        for j in range(len(y)):
            denominator = denominator + torch.exp(cosine(x[i], y[j]) / tau)
            for n_jk in negatives[j]:
                denominator = denominator + torch.exp(cosine(x[i], n_jk) / tau)
        total = total - torch.log(torch.exp(cosine(x[i], y[i]) / tau) / denominator)
    return total / len(x)


def naive_mm_embed_eq1(queries, positives, negatives, tau):
    """MM-Embed eq. 1 with D_B = (c_1^+, c_1^-, ..., c_B^+, c_B^-); η(·) normalised, so η·η = cosine."""
    pool = [c for pair in zip(positives, negatives) for c in pair]
    total = 0.0
    for i in range(len(queries)):
        denominator = sum(torch.exp(cosine(queries[i], c) / tau) for c in pool)
        total = total - torch.log(torch.exp(cosine(queries[i], positives[i]) / tau) / denominator)
    return total / len(queries)


def leaves(*shapes, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=generator, dtype=dtype).requires_grad_() for shape in shapes]


def gradients(loss, tensors):
    return torch.autograd.grad(loss, tensors)


def float64_leaves(*tensors):
    return [t.detach().double().requires_grad_() for t in tensors]


def assert_float32_gradients_match(loss, tensors, exact, exact_tensors):
    """float32 gradients within 1e-5 of the largest entry of the float64 reference's (logits of 50-110
    carry ~1e-5 absolute rounding in float32)."""
    for got, expected in zip(gradients(loss, tensors), gradients(exact, exact_tensors)):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.double(), expected, rtol=0, atol=1e-5 * expected.abs().max().item())


def assert_same_loss_and_gradients(loss_fn, naive, queries, candidates, **kwargs):
    ours = loss_fn(queries, candidates, **kwargs)
    reference = naive()
    torch.testing.assert_close(ours.double(), reference.detach(), **TOLERANCE)
    for got, expected in zip(gradients(ours, [queries, candidates]), gradients(reference, [queries, candidates])):
        torch.testing.assert_close(got, expected, **TOLERANCE)
    return ours


@pytest.mark.parametrize("num_negatives_per_query", [0, 2], ids=["in-batch", "explicit-negatives"])
def test_llave_eq5_self_reward(num_negatives_per_query):
    queries, candidates = leaves((4, 16), (4 * (1 + num_negatives_per_query), 16))
    loss_fn = ContrastiveLoss(temperature=0.02, hardness_alpha=9.0)
    loss = assert_same_loss_and_gradients(loss_fn, lambda: naive_llave(queries, candidates, 0.02, 9.0), queries, candidates)
    assert loss.dtype == torch.float64  # at least float32: float64 embeddings keep float64


@pytest.mark.parametrize("hardness_alpha", [0.0, 9.0])
def test_llave_eq5_given_reward(hardness_alpha):
    queries, candidates = leaves((4, 16), (12, 16), seed=1)
    reward = torch.rand(4, 12, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 3
    reward[0, 0] = float("nan")  # a positive's entry is ignored
    loss_fn = ContrastiveLoss(temperature=0.02, hardness_alpha=hardness_alpha)
    assert_same_loss_and_gradients(
        loss_fn, lambda: naive_llave(queries, candidates, 0.02, hardness_alpha, reward), queries, candidates, reward=reward
    )


def test_symmetric_term_matches_released_llave_form():
    queries, candidates = leaves((5, 16), (10, 16), seed=3)
    reward = torch.rand(5, 10, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    loss_fn = ContrastiveLoss(temperature=0.02, hardness_alpha=9.0, symmetric=True)
    assert_same_loss_and_gradients(
        loss_fn,
        lambda: naive_llave(queries, candidates, 0.02, 9.0, reward, symmetric=True),
        queries,
        candidates,
        reward=reward,
    )


def test_abc_eq4_with_mined_negatives_and_learnable_temperature():
    num_queries, negatives_per_query = 4, 3
    x, y, mined = leaves((num_queries, 16), (num_queries, 16), (num_queries * negatives_per_query, 16), seed=5)
    negatives = [mined[j * negatives_per_query : (j + 1) * negatives_per_query] for j in range(num_queries)]
    loss_fn = ContrastiveLoss.from_preset("abc")
    tau = torch.tensor(0.07, dtype=torch.float64, requires_grad=True)
    ours = loss_fn(x, torch.cat([y, mined]))
    reference = naive_abc_eq4(x, y, negatives, tau)
    torch.testing.assert_close(ours.double(), reference.detach(), **TOLERANCE)
    ours_grads = gradients(ours, [x, y, mined, loss_fn.temperature])
    reference_grads = gradients(reference, [x, y, mined, tau])
    for got, expected in zip(ours_grads, reference_grads):
        torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-5)
    assert ours_grads[-1] != 0  # the temperature learns


def test_mm_embed_eq1_interleaved_pool():
    queries, positives, negatives = leaves((6, 16), (6, 16), (6, 16), seed=6)
    loss_fn = ContrastiveLoss.from_preset("mm-embed")
    ours = loss_fn(queries, torch.cat([positives, negatives]))
    reference = naive_mm_embed_eq1(queries, positives, negatives, 0.02)
    torch.testing.assert_close(ours.double(), reference.detach(), **TOLERANCE)
    tensors = [queries, positives, negatives]
    for got, expected in zip(gradients(ours, tensors), gradients(reference, tensors)):
        torch.testing.assert_close(got, expected, **TOLERANCE)


def test_alpha_zero_is_infonce():
    queries, candidates = leaves((8, 32), (16, 32), seed=7)
    ours = ContrastiveLoss(temperature=0.05, hardness_alpha=0.0)(queries, candidates)
    logits = F.normalize(queries, dim=-1) @ F.normalize(candidates, dim=-1).T / 0.05
    torch.testing.assert_close(ours.double(), F.cross_entropy(logits, torch.arange(8)), **TOLERANCE)
    # LLaVE eq. 1 is eq. 5 with r_θ = 0.
    torch.testing.assert_close(ours.double(), naive_llave(queries, candidates, 0.05, 0.0), **TOLERANCE)


def test_eq6_gradient_of_a_negative_logit():
    """∂L_i/∂r_π(q_i, t_j) = e^{r_θ(q_i,t_j)} · e^{r_π(q_i,t_j)} / Z_i for j ≠ i (LLaVE eq. 6)."""
    generator = torch.Generator().manual_seed(8)
    num_queries, num_candidates = 3, 7
    logits = (torch.randn(num_queries, num_candidates, generator=generator, dtype=torch.float64) * 10).requires_grad_()
    reward = torch.randn(num_queries, num_candidates, generator=generator, dtype=torch.float64) * 3
    labels = torch.arange(num_queries)
    hardness_weighted_cross_entropy(logits, labels, reward).backward()
    for i in range(num_queries):
        z_i = math.exp(logits[i, i]) + sum(
            math.exp(logits[i, j] + reward[i, j]) for j in range(num_candidates) if j != i
        )
        for j in range(num_candidates):
            if j == i:
                expected = (math.exp(logits[i, i]) / z_i - 1) / num_queries
            else:
                expected = math.exp(reward[i, j]) * math.exp(logits[i, j]) / z_i / num_queries  # mean over i
            assert logits.grad[i, j].item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_temperature_defaults_follow_the_papers():
    """τ = None: a learnable τ starts at 0.07 (ABC §4.1), a fixed one is 0.02 (LLaVE §3.2)."""
    learnable, fixed = ContrastiveLoss(learnable_temperature=True), ContrastiveLoss()
    assert learnable.temperature.requires_grad and learnable.temperature.item() == pytest.approx(0.07)
    assert not fixed.temperature.requires_grad and fixed.temperature.item() == pytest.approx(0.02)
    assert [p for p in fixed.parameters() if p.requires_grad] == []
    assert ContrastiveLoss(temperature=0.05, learnable_temperature=True).temperature.item() == pytest.approx(0.05)


def floor_gradient_reference(queries, candidates, floor):
    """dL/dτ of the naive float64 loss at τ = the float32 floor (the value the parameter holds)."""
    tau = torch.tensor(float(torch.tensor(floor)), dtype=torch.float64, requires_grad=True)
    loss = naive_llave(queries.detach(), candidates.detach(), tau, 0.0)
    return loss, torch.autograd.grad(loss, tau)[0]


def test_temperature_at_the_floor_gets_its_gradient_and_can_rise():
    """Below the floor the loss uses the floor; on it (after `clamp_temperature_`) τ's gradient is the
    naive loss's, so a data set that favours a larger τ raises it again. `clamp`'s gradient would be 0."""
    queries, candidates = leaves((4, 16), (8, 16), seed=9)  # random: a larger τ lowers the loss
    loss_fn = ContrastiveLoss(temperature=0.07, learnable_temperature=True, min_temperature=0.01)
    with torch.no_grad():
        loss_fn.temperature.fill_(0.001)  # as if the optimiser had pushed τ toward 0 (ABC §4.4)
    reference_loss, reference_gradient = floor_gradient_reference(queries, candidates, 0.01)
    torch.testing.assert_close(loss_fn(queries, candidates).double(), reference_loss.detach(), **TOLERANCE)
    loss_fn.clamp_temperature_()
    assert loss_fn.temperature.item() == float(torch.tensor(0.01))
    loss = loss_fn(queries, candidates)
    torch.testing.assert_close(loss.double(), reference_loss.detach(), **TOLERANCE)
    loss.backward()
    assert reference_gradient < 0  # the data wants a larger τ
    torch.testing.assert_close(loss_fn.temperature.grad.double(), reference_gradient, rtol=1e-5, atol=0)
    torch.optim.SGD([loss_fn.temperature], lr=1e-6).step()
    assert loss_fn.temperature.item() > 0.01


def test_training_loop_with_clamp_keeps_temperature_at_or_above_the_floor():
    """A user loop (Adam, as ABC) calling `clamp_temperature_` after each step, with τ owned by a model
    as ContrastiveTrainer does: τ is never below the floor when the loss reads it; from 0.00999 (one
    Adam step under 0.01) it recovers when the data wants a larger τ, where without the clamp it sits
    below the floor with no gradient."""
    floor = float(torch.tensor(0.01))  # the float32 value the parameter holds on the floor
    model = nn.Module()
    model.temperature = nn.Parameter(torch.tensor(0.0105))
    loss_fn = ContrastiveLoss(learnable_temperature=True)
    loss_fn.temperature = model.temperature  # the trainer's sharing: one parameter
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(20)
    candidates = torch.randn(8, 16, generator=generator)
    # Positives a little closer than the negatives favour a smaller τ (not so close that the loss underflows to 0).
    easy_queries = candidates[:4] + 2.0 * torch.randn(4, 16, generator=generator)
    hard_queries = torch.randn(4, 16, generator=generator)  # favour a large τ

    def step(queries):
        optimizer.zero_grad()
        assert model.temperature.item() >= floor  # what the loss reads
        loss_fn(queries, candidates).backward()
        optimizer.step()
        below = model.temperature.item() < floor
        loss_fn.clamp_temperature_()
        return below

    assert sum(step(easy_queries) for _ in range(10)) >= 5  # the optimizer kept pushing τ under the floor
    assert model.temperature.item() == floor

    with torch.no_grad():
        model.temperature.fill_(0.00999)
    optimizer.zero_grad()
    loss_fn(hard_queries, candidates).backward()
    assert model.temperature.grad.item() == 0.0  # below the floor: no gradient without the clamp
    loss_fn.clamp_temperature_()
    for _ in range(5):
        step(hard_queries)
    assert model.temperature.item() > 0.0104  # Adam moves τ by ~lr per step, upward now


def test_frozen_temperature_gets_no_gradient():
    queries, candidates = leaves((4, 16), (8, 16), seed=9)
    loss_fn = ContrastiveLoss(learnable_temperature=True)
    loss_fn.temperature.requires_grad_(False)  # ABC stage 2
    loss_fn(queries, candidates).backward()
    assert loss_fn.temperature.grad is None and queries.grad is not None


def test_bf16_embeddings_use_float32_log_sum_exp():
    queries, candidates = leaves((16, 64), (48, 64), seed=10, dtype=torch.bfloat16)
    loss_fn = ContrastiveLoss.from_preset("llave")
    loss = loss_fn(queries, candidates)
    assert loss.dtype == torch.float32
    exact = naive_llave(queries.detach().double(), candidates.detach().double(), 0.02, 9.0)
    torch.testing.assert_close(loss.double(), exact, **TOLERANCE)
    # Logits rounded to bf16 at τ = 0.02 would be off by ~0.1 each: far outside that tolerance.
    bf16_logits = (F.normalize(queries, dim=-1) @ F.normalize(candidates, dim=-1).T) / 0.02
    float32_logits = (F.normalize(queries.float(), dim=-1) @ F.normalize(candidates.float(), dim=-1).T) / 0.02
    assert (bf16_logits.float() - float32_logits).abs().max() > 0.05
    query_grad, candidate_grad = gradients(loss, [queries, candidates])
    assert query_grad.dtype == torch.bfloat16 and torch.isfinite(query_grad).all() and torch.isfinite(candidate_grad).all()


def test_enclosing_autocast_does_not_lower_the_similarities_to_bf16():
    """Under torch.autocast(bf16) the loss and gradients are float32's, checked against float64 (the
    gradient tolerance is relative to the largest entry); autocast would otherwise run the matmul in
    bf16 (the loss off by ~1e-3)."""
    queries, candidates = leaves((16, 64), (48, 64), seed=10, dtype=torch.float32)
    exact_queries, exact_candidates = float64_leaves(queries, candidates)
    exact = naive_llave(exact_queries, exact_candidates, 0.02, 9.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (queries @ candidates.T).dtype == torch.bfloat16
        loss = ContrastiveLoss.from_preset("llave")(queries, candidates)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss.double(), exact.detach(), **TOLERANCE)
    assert_float32_gradients_match(loss, [queries, candidates], exact, [exact_queries, exact_candidates])


def test_stable_at_llave_settings_with_identical_embeddings():
    """All similarities 1: L = log(1 + (M-1)·e^{α}) exactly, with logits at 1/τ + α = 59."""
    queries = torch.ones(8, 32, requires_grad=True)
    candidates = torch.ones(24, 32) * 1e6
    loss = ContrastiveLoss(temperature=0.02, hardness_alpha=9.0)(queries, candidates)
    assert loss.item() == pytest.approx(math.log(1 + 23 * math.exp(9.0)), rel=1e-6)
    loss.backward()
    assert torch.isfinite(queries.grad).all()


@pytest.mark.parametrize(
    "temperature, alpha, given_reward",
    [(0.01, 9.0, 0.0), (0.02, 0.0, 60.0)],
    ids=["floor-tau-alpha-9", "given-reward-60"],
)
def test_stable_where_naive_float32_exp_overflows(temperature, alpha, given_reward):
    """Negative logits 1/τ + α + reward = 109 and 110: e^{logit} is inf in float32 (past 88.7). With all
    similarities 1, L = log(1 + (M-1)·e^{α + reward}) (float64); on random embeddings, the float64 loops."""
    num_queries, num_candidates = 8, 24
    assert math.isinf(torch.exp(torch.tensor(1 / temperature + alpha + given_reward)).item())
    loss_fn = ContrastiveLoss(temperature=temperature, hardness_alpha=alpha)
    reward = torch.full((num_queries, num_candidates), given_reward)
    queries = torch.ones(num_queries, 32, requires_grad=True)
    loss = loss_fn(queries, torch.ones(num_candidates, 32) * 1e6, reward=reward)
    closed_form = math.log1p((num_candidates - 1) * math.exp(alpha + given_reward))
    assert math.isfinite(loss.item()) and loss.item() == pytest.approx(closed_form, rel=1e-6)
    loss.backward()
    assert torch.isfinite(queries.grad).all()

    queries, candidates = leaves((num_queries, 32), (num_candidates, 32), seed=15, dtype=torch.float32)
    loss = loss_fn(queries, candidates, reward=reward)
    exact_queries, exact_candidates = float64_leaves(queries, candidates)
    exact = naive_llave(exact_queries, exact_candidates, temperature, alpha, reward.double())
    assert math.isfinite(loss.item()) and math.isfinite(exact.item())
    torch.testing.assert_close(loss.double(), exact.detach(), rtol=1e-6, atol=0)
    assert_float32_gradients_match(loss, [queries, candidates], exact, [exact_queries, exact_candidates])


def test_minus_infinite_reward_removes_a_negative():
    queries, candidates = leaves((1, 16), (5, 16), seed=11)
    reward = torch.zeros(1, 5)
    reward[0, 2] = -math.inf
    loss_fn = ContrastiveLoss(temperature=0.02, hardness_alpha=9.0)
    without = loss_fn(queries, candidates[[0, 1, 3, 4]])
    torch.testing.assert_close(loss_fn(queries, candidates, reward=reward), without)


def test_gather_without_process_group_runs_as_one_process():
    """LLaVE's loss calls torch.distributed.get_rank() unconditionally and fails here."""
    queries, candidates = leaves((4, 16), (8, 16), seed=12)
    gathered = ContrastiveLoss(hardness_alpha=9.0, symmetric=True, gather_across_devices=True)(queries, candidates)
    local = ContrastiveLoss(hardness_alpha=9.0, symmetric=True, gather_across_devices=False)(queries, candidates)
    assert gathered.item() == local.item()


def test_presets():
    assert PRESETS["llave"] == dict(
        temperature=0.02, learnable_temperature=False, hardness_alpha=9.0, gather_across_devices=True
    )
    llave = ContrastiveLoss.from_preset("llave")
    assert (llave.temperature.item(), llave.hardness_alpha, llave.gather_across_devices) == (pytest.approx(0.02), 9.0, True)
    assert not llave.temperature.requires_grad and not llave.symmetric
    abc = ContrastiveLoss.from_preset("abc")
    assert abc.temperature.requires_grad and abc.temperature.item() == pytest.approx(0.07) and abc.hardness_alpha == 0.0
    mm_embed = ContrastiveLoss.from_preset("mm-embed")
    assert mm_embed.hardness_alpha == 0.0 and mm_embed.temperature.item() == pytest.approx(0.02)
    infonce = ContrastiveLoss.from_preset("infonce", temperature=0.05)
    assert infonce.hardness_alpha == 0.0 and infonce.temperature.item() == pytest.approx(0.05)
    assert not infonce.gather_across_devices
    assert ContrastiveLoss.from_preset("llave", symmetric=True).symmetric
    with pytest.raises(ValueError, match="Unknown loss preset 'clip'.*llave, abc, mm-embed, infonce"):
        ContrastiveLoss.from_preset("clip")


@pytest.mark.parametrize(
    "query_shape, candidate_shape, reward_shape, message",
    [
        ((4, 16), (8, 32), None, "dimension 16 but candidate embeddings 32"),
        ((4, 16), (3, 16), None, "3 candidates for 4 queries.*M >= N"),
        ((16,), (8, 16), None, r"query_embeddings must be 2-D \[rows, dim\], got shape \[16\]"),
        ((0, 16), (8, 16), None, "no query embeddings"),
        ((4, 16), (8, 16), (8, 4), r"reward must be \[N, M\] = \[4, 8\].*got \[8, 4\]"),
        ((4, 16), (8, 16), (4, 16), r"reward must be \[N, M\] = \[4, 8\].*got \[4, 16\]"),
    ],
)
def test_bad_shapes_are_clear_errors(query_shape, candidate_shape, reward_shape, message):
    reward = None if reward_shape is None else torch.zeros(reward_shape)
    with pytest.raises(ValueError, match=message):
        ContrastiveLoss()(torch.randn(query_shape), torch.randn(candidate_shape), reward=reward)


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="min_temperature <= temperature"):
        ContrastiveLoss(temperature=0.005)
    with pytest.raises(ValueError, match="hardness_alpha must be >= 0"):
        ContrastiveLoss(hardness_alpha=-1.0)


def test_non_finite_embeddings_name_step_term_and_rows():
    queries, candidates = torch.randn(4, 16), torch.randn(8, 16)
    queries[2, 5] = float("nan")
    message = r"at step 7: query→candidate = nan\. Cause: 1 query embedding\(s\) of this rank are non-finite \(rows \[2\]\)"
    with pytest.raises(FloatingPointError, match=message):
        ContrastiveLoss(hardness_alpha=9.0)(queries, candidates, step=7)
    queries[2, 5] = 0.0
    candidates[6] = float("inf")  # a negative: only the query→candidate term sees it
    message = r"loss: query→candidate = nan\. Cause: 1 candidate embedding\(s\).*rows \[6\]"
    with pytest.raises(FloatingPointError, match=message):
        ContrastiveLoss(symmetric=True)(queries, candidates)
    candidates[6] = 0.0
    candidates[1] = float("inf")  # a positive: both terms
    message = r"query→candidate = nan, candidate→query = nan\. Cause: 1 candidate.*rows \[1\]"
    with pytest.raises(FloatingPointError, match=message):
        ContrastiveLoss(symmetric=True)(queries, candidates)


def test_non_finite_reward_is_named():
    reward = torch.zeros(4, 8)
    reward[1, 3] = float("nan")
    message = r"Non-finite contrastive loss: query→candidate = nan\. Cause: the reward has NaN"
    with pytest.raises(FloatingPointError, match=message):
        ContrastiveLoss()(torch.randn(4, 16), torch.randn(8, 16), reward=reward)


def test_matches_sentence_transformers_hardness_all_negatives():
    """sentence-transformers' (>= 6.2) MNRL(hardness_mode="all_negatives") on the same embeddings: the
    same loss and gradients (differences at float32 rounding; benchmarks/loss.py prints them). ST takes
    negatives as columns (k per query); ours, any M >= N."""
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    queries, positives, negatives_1, negatives_2 = leaves((8, 32), (8, 32), (8, 32), (8, 32), seed=13, dtype=torch.float32)
    ours = ContrastiveLoss(temperature=0.02, hardness_alpha=9.0)(queries, torch.cat([positives, negatives_1, negatives_2]))
    st_loss = MultipleNegativesRankingLoss(None, scale=50.0, hardness_mode="all_negatives", hardness_strength=9.0)
    theirs = st_loss.compute_loss_from_embeddings([queries, positives, negatives_1, negatives_2], None)
    tensors = [queries, positives, negatives_1, negatives_2]
    assert abs(ours.item() - theirs.item()) < 1e-5
    for got, expected in zip(gradients(ours, tensors), gradients(theirs, tensors)):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_symmetric_differs_from_sentence_transformers_only_by_weighting_the_reverse_term():
    """ST's doc_to_query term carries no hardness penalty; LLaVE's released code weights both terms.
    Without hardness the two symmetric losses agree."""
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    queries, positives, negatives = leaves((8, 32), (8, 32), (8, 32), seed=14, dtype=torch.float32)
    candidates = torch.cat([positives, negatives])
    columns = [queries, positives, negatives]

    def st(alpha):
        loss = MultipleNegativesRankingLoss(
            None, scale=50.0, directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction",
            hardness_mode="all_negatives" if alpha else None, hardness_strength=alpha,
        )
        return loss.compute_loss_from_embeddings(columns, None)

    plain = ContrastiveLoss(temperature=0.02, symmetric=True)(queries, candidates)
    assert abs(plain.item() - st(0.0).item()) < 1e-5
    weighted = ContrastiveLoss(temperature=0.02, hardness_alpha=9.0, symmetric=True)(queries, candidates)
    reference = naive_llave(*(t.detach().double() for t in (queries, candidates)), 0.02, 9.0, symmetric=True)
    assert weighted.item() == pytest.approx(reference.item(), rel=1e-5)
    assert abs(weighted.item() - st(9.0).item()) > 0.1
