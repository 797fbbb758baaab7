"""Properties that must hold for any input (hypothesis)."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonrl.losses import (
    clipped_surrogate,
    discounted_returns,
    generalized_advantage_estimation,
    group_advantages,
    rloo_advantages,
    soft_value,
    vtrace,
)

# no subnormals: r·A and clip(r)·A of a 5e-324 advantage round to the same number, so
# "clipped" cannot be told from "not clipped" (hypothesis found adv = 5e-324, r = e^0.5)
finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False, allow_subnormal=False)
SETTINGS = settings(max_examples=60, deadline=None)


def tensor(draw, shape, elements=finite):
    n = math.prod(shape)
    return torch.tensor(draw(st.lists(elements, min_size=n, max_size=n)), dtype=torch.float64).view(shape)


@st.composite
def rollouts(draw):
    T, B = draw(st.integers(1, 12)), draw(st.integers(1, 4))
    r, v, boot = tensor(draw, (T, B)), tensor(draw, (T, B)), tensor(draw, (B,))
    d = tensor(draw, (T, B), st.sampled_from([0.0, 1.0]))
    gamma = draw(st.floats(0.0, 1.0))
    return r, v, d, boot, gamma


@SETTINGS
@given(rollouts())
def test_gae_lambda_one_is_monte_carlo_minus_value(batch):
    r, v, d, boot, gamma = batch
    adv, _ = generalized_advantage_estimation(r, v, d, boot, gamma, lam=1.0)
    torch.testing.assert_close(adv, discounted_returns(r, d, boot, gamma) - v)


@SETTINGS
@given(rollouts())
def test_vtrace_on_policy_is_n_step_return(batch):
    r, v, d, boot, gamma = batch
    logp = torch.zeros_like(r)  # π = μ: every ratio is 1
    out = vtrace(logp, logp, r, gamma * (1 - d), v, boot, rho_bar=1.0, c_bar=1.0)
    torch.testing.assert_close(out.vs, discounted_returns(r, d, boot, gamma))


@SETTINGS
@given(
    st.lists(st.tuples(st.floats(-2, 2), finite), min_size=1, max_size=30),
    st.floats(0.01, 0.5),
    st.floats(0.01, 0.5),
)
def test_clipped_surrogate_gradient(pairs, eps_low, eps_high):
    log_ratio = torch.tensor([p[0] for p in pairs], dtype=torch.float64)
    adv = torch.tensor([p[1] for p in pairs], dtype=torch.float64)
    old = torch.zeros_like(log_ratio)
    logp = log_ratio.clone().requires_grad_(True)
    out = clipped_surrogate(logp, old, adv, eps_low, eps_high)
    out.loss.sum().backward()
    ratio = log_ratio.exp()
    inside = (ratio > 1 - eps_low) & (ratio < 1 + eps_high)
    above = (ratio >= 1 + eps_high) & (adv > 0)  # clipped side for positive advantages
    below = (ratio <= 1 - eps_low) & (adv < 0)  # clipped side for negative advantages
    # inside the clip range the loss is −r A and its gradient w.r.t. log π is −r A
    torch.testing.assert_close(out.loss[inside], -(ratio * adv)[inside])
    torch.testing.assert_close(logp.grad[inside], -(ratio * adv)[inside])
    assert torch.all(logp.grad[above | below] == 0)
    assert torch.equal(out.is_clipped & (adv != 0), (above | below) & (adv != 0))


@SETTINGS
@given(st.integers(1, 6), st.integers(2, 8), st.data())
def test_group_advantages_sum_to_zero(groups, size, data):
    r = tensor(data.draw, (groups * size,))
    for scale in ("group", "batch", "none"):
        sums = group_advantages(r, size, scale).view(groups, size).sum(1)
        assert torch.all(sums.abs() < 1e-10 * (1 + r.abs().max()) / 1e-4), (scale, sums)
    assert torch.all(rloo_advantages(r, size).view(groups, size).sum(1).abs() < 1e-9 * (1 + r.abs().sum()))


@SETTINGS
@given(st.integers(1, 8), st.data())
def test_soft_value_tends_to_max(actions, data):
    q = tensor(data.draw, (3, actions))
    hard = q.amax(-1)
    for alpha in (1.0, 0.1, 0.01, 1e-4):
        gap = soft_value(q, alpha) - hard
        # max ≤ α log Σ exp(q/α) ≤ max + α log A
        assert torch.all(gap >= -1e-9) and torch.all(gap <= alpha * math.log(actions) + 1e-9)
