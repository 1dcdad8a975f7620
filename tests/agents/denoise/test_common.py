"""Hand-computed checks of the pure-torch cores behind ReFiT / DDPO / RWFT."""

from __future__ import annotations

import math

import pytest
import torch

from recgym.agents.denoise.common import (
    exp_reward_weights,
    gaussian_kl_same_std,
    gaussian_log_prob,
    group_advantages,
    ppo_clip_loss,
    reinforce_loss,
)

LOG2PI = math.log(2 * math.pi)


def test_gaussian_log_prob_hand_values() -> None:
    x = torch.tensor([[1.0, 2.0]])
    mean = torch.zeros(1, 2)
    # per item: -0.5 * (d^2 + log 2pi) with std 1
    expected_sum = -0.5 * (1 + LOG2PI) - 0.5 * (4 + LOG2PI)
    assert gaussian_log_prob(x, mean, 1.0, reduce="sum").item() == pytest.approx(expected_sum, abs=1e-6)
    assert gaussian_log_prob(x, mean, 1.0, reduce="mean").item() == pytest.approx(expected_sum / 2, abs=1e-6)
    # std 2, d = 2: -0.5 * (1 + log 4 + log 2pi) = -2.112085...
    v = gaussian_log_prob(torch.tensor([2.0]), torch.tensor([0.0]), 2.0, reduce="sum")
    assert v.item() == pytest.approx(-0.5 * (1 + math.log(4) + LOG2PI), abs=1e-6)
    assert v.item() == pytest.approx(-2.1120857, abs=1e-6)


def test_gaussian_log_prob_batched_and_errors() -> None:
    g = torch.Generator().manual_seed(0)
    x, mean = torch.randn(3, 5, 7, generator=g), torch.randn(3, 5, 7, generator=g)
    ref = torch.distributions.Normal(mean, 0.3).log_prob(x).sum(-1)
    assert torch.allclose(gaussian_log_prob(x, mean, 0.3, reduce="sum"), ref, atol=1e-5)
    assert gaussian_log_prob(x, mean, 0.3).shape == (3, 5)
    with pytest.raises(ValueError, match="reduce"):
        gaussian_log_prob(x, mean, 0.3, reduce="max")
    with pytest.raises(ValueError, match="std"):
        gaussian_log_prob(x, mean, 0.0)


def test_gaussian_kl_same_std() -> None:
    p, q = torch.tensor([[1.0, 3.0]]), torch.tensor([[0.0, 1.0]])
    # (1 + 4) / (2 * 0.25) = 10
    assert gaussian_kl_same_std(p, q, 0.5, reduce="sum").item() == pytest.approx(10.0)
    assert gaussian_kl_same_std(p, q, 0.5, reduce="mean").item() == pytest.approx(5.0)
    assert gaussian_kl_same_std(p, p, 0.5).item() == 0.0


def test_group_advantages_baselines() -> None:
    r = torch.tensor([[1.0, 2.0, 3.0]])
    assert torch.allclose(group_advantages(r, "user"), torch.tensor([[-1.5, 0.0, 1.5]]))
    assert torch.allclose(group_advantages(r, "user_mean"), torch.tensor([[-1.0, 0.0, 1.0]]))
    s = math.sqrt(2 / 3)
    assert torch.allclose(
        group_advantages(r, "user_mean", normalize=True), torch.tensor([[-1 / s, 0.0, 1 / s]]), atol=1e-5
    )
    assert torch.allclose(
        group_advantages(r, "user_mean", normalize=True, clip=1.0), torch.tensor([[-1.0, 0.0, 1.0]])
    )
    rb = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    assert torch.allclose(group_advantages(rb, "batch"), torch.tensor([[-2.0, -1.0], [0.0, 3.0]]))
    assert torch.allclose(group_advantages(rb, "none"), rb)
    # identical samples of one user carry no signal under the per-user baseline
    assert torch.equal(group_advantages(torch.ones(2, 4), "user"), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="samples_per_user"):
        group_advantages(torch.ones(3, 1), "user")
    with pytest.raises(ValueError, match="baseline"):
        group_advantages(rb, "median")


def test_reinforce_loss_gradient() -> None:
    # log p = w * c  ->  d loss / d w = -mean_i A_i * sum_t c_ti
    c = torch.tensor([[1.0, 2.0], [3.0, -1.0]])  # [T=2, N=2]
    adv = torch.tensor([0.5, -2.0])
    w = torch.tensor(1.0, requires_grad=True)
    loss = reinforce_loss(w * c, adv)
    loss.backward()
    expected = -((0.5 * (1 + 3)) + (-2.0 * (2 - 1))) / 2
    assert loss.item() == pytest.approx(expected)
    assert w.grad.item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="advantages"):
        reinforce_loss(c, torch.ones(3))


def test_ppo_clip_behaviour() -> None:
    eps = 0.2
    old = torch.zeros(4)
    new = torch.log(torch.tensor([1.5, 1.5, 0.5, 1.0])).requires_grad_(True)
    adv = torch.tensor([1.0, -1.0, 1.0, 2.0])
    loss, clip_frac, kl = ppo_clip_loss(new, old, adv, eps)
    # per element: A>0,r=1.5 -> -1.2 (clipped); A<0,r=1.5 -> +1.5 (unclipped, pessimistic);
    # A>0,r=0.5 -> -0.5 (unclipped); A=2,r=1 -> -2
    assert loss.item() == pytest.approx((-1.2 + 1.5 - 0.5 - 2.0) / 4, abs=1e-6)
    assert clip_frac.item() == pytest.approx(0.75)
    assert kl.item() >= 0
    loss.backward()
    g = new.grad
    assert g[0].item() == 0.0  # clipped: no gradient pushes the ratio further up
    assert g[1].item() == pytest.approx(1.5 / 4)  # d(-A r)/d log r = -A r / 4
    assert g[2].item() == pytest.approx(-0.5 / 4)
    assert g[3].item() == pytest.approx(-2.0 / 4)


def test_ppo_ratio_one_matches_policy_gradient() -> None:
    # at new == old the PPO gradient equals the vanilla policy-gradient one
    lp = torch.tensor([0.3, -0.2], requires_grad=True)
    adv = torch.tensor([1.0, -3.0])
    loss, _, _ = ppo_clip_loss(lp, lp.detach(), adv, 1e-4)
    loss.backward()
    assert torch.allclose(lp.grad, -adv / 2)


def test_exp_reward_weights() -> None:
    r = torch.tensor([[0.0, math.log(2.0)]])
    assert torch.allclose(exp_reward_weights(r, 1.0), torch.tensor([[2 / 3, 4 / 3]]))
    r2 = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    assert torch.allclose(exp_reward_weights(r2, 1.0, "user"), torch.tensor([[2 / 3, 4 / 3], [1.0, 1.0]]))
    assert torch.allclose(exp_reward_weights(r2, 1.0, "batch"), torch.tensor([[0.8, 1.6], [0.8, 0.8]]))
    # temperature: lambda -> large gives uniform weights; huge r / tiny lambda stays finite
    assert torch.allclose(exp_reward_weights(r2, 1e6), torch.ones(2, 2), atol=1e-5)
    w = exp_reward_weights(torch.tensor([[1000.0, 0.0]]), 0.01)
    assert torch.isfinite(w).all() and w.sum().item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="temperature"):
        exp_reward_weights(r, 0.0)


def test_group_advantages_greedy_baseline() -> None:
    r = torch.tensor([[3.0, 3.0, 4.0], [2.0, 2.0, 2.0]])
    ref = torch.tensor([3.0, 1.0])
    # reward minus the user's deterministic-chain reward; 0 where the samples did not change the list
    assert torch.equal(group_advantages(r, "greedy", reference=ref), torch.tensor([[0.0, 0.0, 1.0], [1.0, 1.0, 1.0]]))
    # normalised by the root mean square of the user's advantages: sqrt(1/3) and 1
    n = group_advantages(r, "greedy", normalize=True, reference=ref)
    assert torch.allclose(n, torch.tensor([[0.0, 0.0, math.sqrt(3.0)], [1.0, 1.0, 1.0]]), atol=1e-6)
    # one sample per user: the batch's root mean square
    one = group_advantages(r[:, 2:], "greedy", normalize=True, reference=ref)
    assert torch.allclose(one, torch.tensor([[1.0], [1.0]]) / math.sqrt(1.0), atol=1e-6)
    with pytest.raises(ValueError, match="reference"):
        group_advantages(r, "greedy")
    with pytest.raises(ValueError, match="reference"):
        group_advantages(r, "user", reference=ref)
    with pytest.raises(ValueError, match=r"reference must be \[n_users\]"):
        group_advantages(r, "greedy", reference=torch.zeros(3))
