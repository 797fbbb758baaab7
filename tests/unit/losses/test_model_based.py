"""The pieces the model-based agents add to reasonrl.losses (hand-worked values): MuZero's
n-step targets, value transform and visit-distribution cross-entropy; STORM's world-model
terms (symlog, categorical KL, balancing, free bits) and return scale."""

import math

import pytest
import torch
import torch.nn.functional as F

from reasonrl.losses import (
    categorical_kl,
    cross_entropy_to_target,
    n_step_returns,
    return_scale,
    signed_hyperbolic,
    signed_parabolic,
    symexp,
    symlog,
    world_model_loss,
)


def test_n_step_returns_stop_at_episode_ends_and_at_the_data_end():
    rewards = torch.ones(4, 1)
    dones = torch.tensor([[0.0], [0.0], [1.0], [0.0]])
    values = torch.tensor([[10.0], [20.0], [30.0], [40.0]])
    z = n_step_returns(rewards, dones, values, gamma=0.5, n=2)
    # z0 = 1 + .5·1 + .25·v2 = 9;  z1 = 1 + .5·1 (the episode ends after step 2: no v3) = 1.5
    # z2 = 1 (it ends after step 2);  z3 = 1 (no data beyond)
    assert z[:, 0].tolist() == [9.0, 1.5, 1.0, 1.0]
    # n = 1 is the one-step TD target r_t + γ (1 − d_t) v_{t+1}
    assert n_step_returns(rewards, dones, values, 0.5, 1)[:, 0].tolist() == [11.0, 16.0, 1.0, 1.0]
    # n longer than the data: every step sums what is left, no bootstrap (a run's first updates)
    long = n_step_returns(rewards, torch.zeros(4, 1), values, 0.5, 10)
    assert long[:, 0].tolist() == [1.875, 1.75, 1.5, 1.0]
    with pytest.raises(ValueError, match="n must be >= 1"):
        n_step_returns(rewards, dones, values, 0.5, 0)


def test_value_transform_squashes_and_inverts():
    assert signed_hyperbolic(torch.tensor(3.0)).item() == pytest.approx(1 + 0.003)  # √4 − 1 + ε·3
    assert signed_hyperbolic(torch.tensor(-3.0)).item() == pytest.approx(-1.003)
    x = torch.linspace(-500, 500, 1001, dtype=torch.float64)
    torch.testing.assert_close(signed_parabolic(signed_hyperbolic(x)), x, rtol=1e-9, atol=1e-7)


def test_cross_entropy_to_the_visit_distribution():
    logits = torch.zeros(2, 2, requires_grad=True)
    target = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    loss = cross_entropy_to_target(logits, target)
    assert loss.tolist() == pytest.approx([math.log(2), math.log(2)])
    loss.sum().backward()  # ∂/∂z = softmax(z) − π
    torch.testing.assert_close(logits.grad, torch.tensor([[-0.5, 0.5], [0.0, 0.0]]))


def test_symlog_and_symexp():
    x = torch.tensor([-100.0, -1.0, 0.0, 1.0, 1000.0])
    assert symlog(torch.tensor(math.e - 1)).item() == pytest.approx(1.0)  # ln(e − 1 + 1)
    torch.testing.assert_close(symexp(symlog(x)), x)


def test_categorical_kl_sums_over_groups():
    # two groups; group 0: p = (1/2, 1/2), q = (1/4, 3/4): KL = ½ ln 2 + ½ ln(2/3); group 1 equal: 0
    p = torch.log(torch.tensor([[[0.5, 0.5], [0.3, 0.7]]]))
    q = torch.log(torch.tensor([[[0.25, 0.75], [0.3, 0.7]]]))
    expected = 0.5 * math.log(2) + 0.5 * math.log(2 / 3)
    assert categorical_kl(p, q).item() == pytest.approx(expected, abs=1e-6)


def test_world_model_kl_is_balanced_and_clipped_by_free_bits():
    """L_dyn trains only the prior and L_rep only the posterior; both stop below free_nats."""
    B, T, G, K, D = 2, 3, 2, 4, 3
    gen = torch.Generator().manual_seed(0)
    post = torch.randn(B, T - 1, G, K, generator=gen).log_softmax(-1).requires_grad_()
    prior = torch.randn(B, T - 1, G, K, generator=gen).log_softmax(-1).requires_grad_()
    common = dict(
        obs_pred=torch.zeros(B, T, D), obs=torch.zeros(B, T, D), reward_pred=torch.zeros(B, T),
        reward=torch.zeros(B, T), continue_logit=torch.full((B, T), 20.0), continues=torch.ones(B, T),
        posterior_logits=post, prior_logits=prior, kl_mask=torch.ones(B, T - 1),
    )  # fmt: skip
    out = world_model_loss(**common, dyn_scale=1.0, rep_scale=0.0, free_nats=0.0)
    out.loss.backward()
    assert post.grad.abs().sum() == 0 and prior.grad.abs().sum() > 0  # dynamics: the prior only
    assert out.dynamics.item() == pytest.approx(out.kl.item()) and out.reconstruction.item() == 0
    post.grad, prior.grad = None, None
    world_model_loss(**common, dyn_scale=0.0, rep_scale=1.0, free_nats=0.0).loss.backward()
    assert prior.grad.abs().sum() == 0 and post.grad.abs().sum() > 0  # representation: the encoder only
    clipped = world_model_loss(**common, free_nats=100.0)
    assert clipped.dynamics.item() == 100.0 and clipped.representation.item() == 100.0  # no gradient below
    # a masked step (o_{t+1} starts a new episode) does not count
    masked = dict(common, kl_mask=torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    only_first = categorical_kl(post[:, :1], prior[:, :1]).mean()
    assert world_model_loss(**masked, free_nats=0.0).kl.item() == pytest.approx(only_first.item(), rel=1e-5)


def test_reconstruction_modes_sum_over_the_observation_and_average_over_steps():
    B, T = 2, 3
    gen = torch.Generator().manual_seed(1)
    pred = torch.randn(B, T, 5, 5, 2, generator=gen)
    obs = (torch.rand(B, T, 5, 5, 2, generator=gen) > 0.5).float()
    zeros = torch.zeros(B, T)
    common = dict(
        obs_pred=pred, obs=obs, reward_pred=zeros, reward=zeros, continue_logit=torch.full((B, T), 20.0),
        continues=torch.ones(B, T), posterior_logits=torch.zeros(B, T - 1, 1, 2),
        prior_logits=torch.zeros(B, T - 1, 1, 2), kl_mask=torch.ones(B, T - 1),
    )  # fmt: skip
    # binary pixels: the decoder's outputs are logits, −log p(o) summed over the 50 pixels
    bce = -(obs * F.logsigmoid(pred) + (1 - obs) * F.logsigmoid(-pred)).sum((2, 3, 4)).mean()
    got = world_model_loss(**common, reconstruction="bernoulli").reconstruction
    assert got.item() == pytest.approx(bce.item(), rel=1e-5)
    mse = ((pred - obs) ** 2).sum((2, 3, 4)).mean()  # pixels: the values themselves
    assert world_model_loss(**common, reconstruction="mse").reconstruction.item() == pytest.approx(mse.item())
    with pytest.raises(ValueError, match="reconstruction 'l1'"):
        world_model_loss(**common, reconstruction="l1")


def test_return_scale_is_the_5_95_percentile_range_at_least_1():
    assert return_scale(torch.arange(101.0)).item() == pytest.approx(90.0)  # P95 − P5 of 0..100
    assert return_scale(torch.full((10,), 3.0)).item() == 1.0
