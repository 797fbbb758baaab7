"""torch.autograd.gradcheck in float64 on every differentiable loss."""

import pytest
import torch
from torch.autograd import gradcheck

from reasonrl.losses import (
    aggregate_tokens,
    clipped_surrogate,
    dpo_loss,
    entropy_from_logits,
    kl_estimate,
    linear_token_logprobs,
    masked_mean,
    policy_gradient_loss,
    sac_temperature_loss,
    soft_policy_loss,
    soft_value,
    token_logprobs,
    value_loss,
)

from .conftest import rand_mask, randn


def leaf(x):
    return x.detach().clone().requires_grad_(True)


def test_surrogate(gen):
    # keep ratios away from the clip kinks, where the gradient is not defined
    old = randn(gen, 3, 4) * 0.1
    lp = leaf(old + torch.tensor([-0.6, -0.05, 0.05, 0.6]).double())
    adv = randn(gen, 3, 4)
    assert gradcheck(lambda x: clipped_surrogate(x, old, adv, 0.2, 0.28).loss, (lp,))
    assert gradcheck(lambda x: clipped_surrogate(x, old, adv, 0.2, 0.28, dual_clip=1.5).loss, (lp,))


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_kl(gen, estimator):
    pair, old = (leaf(randn(gen, 3, 4)), leaf(randn(gen, 3, 4))), randn(gen, 3, 4)
    assert gradcheck(lambda a, b: kl_estimate(a, b, estimator), pair)
    assert gradcheck(lambda a, b: kl_estimate(a, b, estimator, sampling_logp=old), pair)


def test_entropy_and_logprobs(gen):
    logits = leaf(randn(gen, 2, 3, 7))
    tokens = torch.randint(0, 7, (2, 3), generator=gen)
    assert gradcheck(lambda z: entropy_from_logits(z, chunk_size=2), (logits,))
    assert gradcheck(lambda z: token_logprobs(z, tokens, 0.8), (logits,))
    weight, bias = randn(gen, 7, 5), randn(gen, 7)  # the fused head: its gradient in its hidden input
    hidden = leaf(randn(gen, 2, 3, 5))
    assert gradcheck(
        lambda h: linear_token_logprobs(h, weight, tokens, 0.8, bias, chunk_size=4)[0], (hidden,)
    )


def test_value_and_sac(gen):
    old, ret = randn(gen, 6), randn(gen, 6)
    v = leaf(old + torch.tensor([-0.5, -0.1, 0.05, 0.1, 0.3, 0.9]).double())
    assert gradcheck(lambda x: value_loss(x, ret, old, 0.2), (v,))
    logp = randn(gen, 8)
    assert gradcheck(lambda a: sac_temperature_loss(a, logp, -1.0), (leaf(torch.tensor(0.3).double()),))
    assert gradcheck(lambda q: soft_value(q, 0.3), (leaf(randn(gen, 2, 5)),))


@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge", "ipo", "robust"])
def test_dpo(gen, loss_type):
    rc, rr = randn(gen, 5), randn(gen, 5)
    pc, pr = leaf(rc + randn(gen, 5)), leaf(rr + randn(gen, 5))
    assert gradcheck(lambda a, b: dpo_loss(a, b, rc, rr, 0.5, loss_type, 0.1).losses, (pc, pr))


@pytest.mark.parametrize("mode", ["token_mean", "sequence_mean", "sequence_sum_norm"])
def test_aggregation(gen, mode):
    x, m = leaf(randn(gen, 3, 5)), rand_mask(gen, 3, 5)
    assert gradcheck(lambda y: aggregate_tokens(y, m, mode, max_length=5), (x,))
    assert gradcheck(lambda y: masked_mean(y, m, dim=1), (x,))


def test_policy_gradient_and_soft_policy(gen):
    adv = randn(gen, 6)
    assert gradcheck(lambda lp: policy_gradient_loss(lp, adv), (leaf(randn(gen, 6)),))
    assert gradcheck(lambda lp, q: soft_policy_loss(lp, q, 0.2), (leaf(randn(gen, 6)), leaf(randn(gen, 6))))
