"""The pieces MuZero adds to reasonrl.losses: n-step targets, the value transform, and the
cross-entropy to the search's visit distribution (hand-worked values)."""

import math

import pytest
import torch

from reasonrl.losses import cross_entropy_to_target, n_step_returns, signed_hyperbolic, signed_parabolic


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
