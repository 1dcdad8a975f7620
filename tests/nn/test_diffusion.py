"""The one noise schedule, timestep embedding and MLP builder: hand values, and each model's former formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from recgym.agents.diffusion_policy import VPSchedule
from recgym.nn.diffusion import NoiseSchedule, mlp, timestep_embedding
from recgym.recommenders import DiffRecConfig, diffrec_schedule
from recgym.worldmodels.diffusion import Schedule


def test_linear_var_hand_values_and_adjustments() -> None:
    s = NoiseSchedule("linear-var", 4, 0.01, 0.04)
    # 1 - alpha_bar = 0.01, 0.02, 0.03, 0.04 -> beta_t = 1 - abar_t / abar_{t-1} = 0.01 / abar_{t-1}
    assert np.allclose(1 - s.array("alphas_cumprod"), [0.01, 0.02, 0.03, 0.04], atol=1e-15)
    assert s.array("betas")[0] == pytest.approx(0.01, abs=1e-15)
    assert s.array("betas")[1] == pytest.approx(1 / 99, rel=1e-12)  # 0.01 / 0.99
    assert s.array("betas")[3] == pytest.approx(0.01 / 0.97, rel=1e-12)
    assert s.array("alphas").tolist() == (1 - s.array("betas")).tolist()
    # DiffRec forces beta_0; the world model floors it; max_beta caps t >= 1 only
    assert NoiseSchedule("linear-var", 4, 0.01, 0.04, first_beta=1e-5).array("betas")[0] == 1e-5
    assert NoiseSchedule("linear-var", 4, 1e-6, 0.04, min_first_beta=1e-5).array("betas")[0] == 1e-5
    assert NoiseSchedule("linear-var", 4, 0.01, 0.04, min_first_beta=1e-5).array("betas")[0] == s.array("betas")[0]
    capped = NoiseSchedule("linear-var", 2, 0.5, 0.9999, max_beta=0.999)
    assert capped.array("betas")[1] == 0.999 and capped.array("betas")[0] == pytest.approx(0.5)
    assert np.allclose(NoiseSchedule("linear", 3, 0.1, 0.3).array("betas"), [0.1, 0.2, 0.3], atol=1e-15)


def test_posterior_constants_follow_from_the_betas() -> None:
    s = NoiseSchedule("linear", 3, 0.1, 0.3)
    b = np.array([0.1, 0.2, 0.3])
    ab = np.cumprod(1 - b)  # 0.9, 0.72, 0.504
    assert np.allclose(s.array("alphas_cumprod"), [0.9, 0.72, 0.504], atol=1e-15)
    # t = 2: var = 0.3 (1 - 0.72) / (1 - 0.504); coef1 = 0.3 sqrt(0.72) / 0.496; coef2 = 0.28 sqrt(0.7) / 0.496
    assert s.array("posterior_variance")[2] == pytest.approx(0.3 * 0.28 / 0.496, rel=1e-12)
    assert s.array("posterior_mean_coef1")[2] == pytest.approx(0.3 * math.sqrt(0.72) / 0.496, rel=1e-12)
    assert s.array("posterior_mean_coef2")[2] == pytest.approx(0.28 * math.sqrt(0.7) / 0.496, rel=1e-12)
    # t = 0: no posterior variance, the mean is x0 itself; the log-variance is clipped to t = 1's
    assert s.array("posterior_variance")[0] == 0 and s.array("posterior_mean_coef1")[0] == pytest.approx(1.0)
    lv = s.array("posterior_log_variance_clipped")
    assert lv[0] == lv[1] == pytest.approx(math.log(0.2 * 0.1 / 0.28))
    assert np.allclose(s.array("sqrt_one_minus_alphas_cumprod"), np.sqrt(1 - ab))
    t = torch.tensor([2, 0])
    x0, noise = torch.ones(2, 3), torch.full((2, 3), 2.0)
    want = torch.tensor([[math.sqrt(0.504) + 2 * math.sqrt(0.496)], [math.sqrt(0.9) + 2 * math.sqrt(0.1)]])
    assert torch.allclose(s.q_sample(x0, t, noise), want.expand(2, 3))
    assert torch.allclose(s.snr(t), torch.tensor([0.504 / 0.496, 0.9 / 0.1], dtype=torch.float64))


def test_vp_hand_values() -> None:
    s = NoiseSchedule("vp", 2, 0.1, 10.0)
    a1 = math.exp(-0.1 / 2 - 0.5 * 9.9 * 1 / 4)
    a2 = math.exp(-0.1 / 2 - 0.5 * 9.9 * 3 / 4)
    assert s.array("alphas").tolist() == pytest.approx([a1, a2], rel=1e-14)
    assert s.array("betas").tolist() == pytest.approx([1 - a1, 1 - a2], rel=1e-14)
    assert s.array("alphas_cumprod").tolist() == pytest.approx([a1, a1 * a2], rel=1e-14)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="kind='cosine'"):
        NoiseSchedule("cosine", 3, 0.1, 0.2)
    with pytest.raises(ValueError, match="steps=0"):
        NoiseSchedule("linear", 0, 0.1, 0.2)
    with pytest.raises(ValueError, match="invalid betas"):
        NoiseSchedule("linear", 3, 0.0, 0.2)
    with pytest.raises(ValueError, match="beta_min <= beta_max"):
        NoiseSchedule("vp", 3, 2.0, 1.0)
    with pytest.raises(KeyError, match="unknown schedule constant"):
        NoiseSchedule("linear", 3, 0.1, 0.2).array("gammas")


# ------------------------------------------------ every model's schedule is this one, with its former values


def _old_diffrec_betas(steps: int, kind: str, scale: float, lo: float, hi: float, fixed: bool) -> np.ndarray:
    """DiffRec's formula as its code had it (numpy float64)."""
    start, end = scale * lo, scale * hi
    if kind == "linear":
        betas = np.linspace(start, end, steps, dtype=np.float64)
    else:
        ab = 1.0 - np.linspace(start, end, steps, dtype=np.float64)
        betas = np.append(1.0 - ab[0], np.minimum(1.0 - ab[1:] / ab[:-1], 0.999))
    if fixed:
        betas[0] = 1e-5
    return betas


@pytest.mark.parametrize("cfg", [dict(), dict(steps=5, noise_scale=0.5, noise_min=0.001, noise_max=0.01),
                                 dict(steps=10, noise_schedule="linear", beta_fixed=False)])
def test_diffrec_schedule_reproduces_its_formula(cfg: dict) -> None:
    c = DiffRecConfig(**cfg)
    s = diffrec_schedule(c)
    want = _old_diffrec_betas(c.steps, c.noise_schedule, c.noise_scale, c.noise_min, c.noise_max, c.beta_fixed)
    assert np.array_equal(s.array("betas"), want)
    ab = np.cumprod(1.0 - want)
    assert np.array_equal(s.array("alphas_cumprod"), ab)
    ab_prev = np.append(1.0, ab[:-1])
    assert np.array_equal(s.array("posterior_mean_coef1"), want * np.sqrt(ab_prev) / (1.0 - ab))


@pytest.mark.parametrize("steps,scale,lo,hi", [(20, 1.0, 0.01, 0.3), (5, 1.0, 0.01, 0.3), (10, 0.5, 0.01, 0.2)])
def test_world_model_schedule_reproduces_its_former_float32_tables(steps: int, scale: float, lo: float,
                                                                   hi: float) -> None:
    # the world model's former code: torch float64, beta_1 floored at 1e-5, tables cast to float32
    abar = 1.0 - torch.linspace(scale * lo, scale * hi, steps, dtype=torch.float64)
    betas = 1.0 - abar / torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    betas[0] = max(float(betas[0]), 1e-5)
    abar = torch.cumprod(1.0 - betas, 0)
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    post_var = betas * (1.0 - abar_prev) / (1.0 - abar)
    s = Schedule(steps, scale, lo, hi, torch.device("cpu"))
    assert torch.equal(s.abar, abar.float())
    assert torch.equal(s.coef_x0, (betas * abar_prev.sqrt() / (1.0 - abar)).float())
    assert torch.equal(s.coef_xt, ((1.0 - abar_prev) * (1.0 - betas).sqrt() / (1.0 - abar)).float())
    assert torch.equal(s.post_std, post_var.clamp_min(0).sqrt().float())


@pytest.mark.parametrize("n", [1, 2, 10, 100])
def test_vp_schedule_buffers_reproduce_the_formula(n: int) -> None:
    # DAC4Rec's former code: torch float64, alphas from the formula, buffers cast to float32
    i = torch.arange(1, n + 1, dtype=torch.float64)
    alphas = torch.exp(-0.1 / n - 0.5 * 9.9 * (2 * i - 1) / n**2)
    abar = torch.cumprod(alphas, 0)
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    vp = VPSchedule(n)
    assert torch.equal(vp.alphas, alphas.float()) and torch.equal(vp.betas, (1.0 - alphas).float())
    assert torch.equal(vp.abar, abar.float())
    assert torch.equal(vp.post_c0, ((1.0 - alphas) * abar_prev.sqrt() / (1.0 - abar)).float())
    assert torch.equal(vp.post_ct, ((1.0 - abar_prev) * alphas.sqrt() / (1.0 - abar)).float())


# ------------------------------------------------ embedding and MLP


def test_timestep_embedding_hand_values() -> None:
    t = torch.tensor([0, 1])
    e = timestep_embedding(t, 4)  # frequencies 1 and 10000^(-1/2) = 0.01
    want = torch.tensor([[1.0, 1.0, 0.0, 0.0], [math.cos(1.0), math.cos(0.01), math.sin(1.0), math.sin(0.01)]])
    assert torch.allclose(e, want, atol=1e-7)
    assert torch.equal(timestep_embedding(t, 4, sin_first=True), torch.cat([e[:, 2:], e[:, :2]], -1))
    odd = timestep_embedding(t, 5)
    assert odd.shape == (2, 5) and torch.equal(odd[:, :4], e) and torch.all(odd[:, 4] == 0)
    assert timestep_embedding(torch.zeros(3, 2, dtype=torch.long), 6).shape == (3, 2, 6)
    assert e.dtype == torch.float32


def test_mlp_builder() -> None:
    net = mlp(3, (8, 4), 2, nn.Tanh)
    kinds = [type(m) for m in net]
    assert kinds == [nn.Linear, nn.Tanh, nn.Linear, nn.Tanh, nn.Linear]
    assert [m.out_features for m in net if isinstance(m, nn.Linear)] == [8, 4, 2]
    assert isinstance(mlp(3, (8,), 1)[1], nn.Mish)  # Mish by default (Diffusion-QL's networks)
    assert len(mlp(3, (), 1)) == 1
