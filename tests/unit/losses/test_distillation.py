"""Distillation divergences: TRL's GKD loss, the definitions, and their limits."""

import math

import pytest
import torch

from reasonrl.losses import (
    distillation_divergence,
    generalized_jsd,
    kl_divergence,
    masked_mean,
    nll,
    token_gap_advantages,
)


def _logits(seed, shape=(3, 5, 11)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_matches_trl_gkd_generalized_jsd_loss(beta, temperature):
    from trl.experimental.gkd.gkd_trainer import GKDTrainer

    s, t = _logits(0).requires_grad_(True), _logits(1)
    labels = torch.randint(0, 11, (3, 5), generator=torch.Generator().manual_seed(2))
    labels[0, 3:] = -100
    labels[2, 1:] = -100
    ours = masked_mean(generalized_jsd(s, t, beta, temperature), labels != -100)
    trl = GKDTrainer.generalized_jsd_loss(s, t, labels=labels, beta=beta, temperature=temperature)
    torch.testing.assert_close(ours, trl, rtol=1e-10, atol=1e-12)
    (g_ours,) = torch.autograd.grad(ours, s)
    (g_trl,) = torch.autograd.grad(trl, s)
    torch.testing.assert_close(g_ours, g_trl, rtol=1e-9, atol=1e-12)


def test_named_divergences_are_the_definitions():
    s, t = _logits(3), _logits(4)
    ls, lt = torch.log_softmax(s, -1), torch.log_softmax(t, -1)
    forward = (lt.exp() * (lt - ls)).sum(-1)
    reverse = (ls.exp() * (ls - lt)).sum(-1)
    torch.testing.assert_close(distillation_divergence(s, t, "forward_kl"), forward)
    torch.testing.assert_close(distillation_divergence(s, t, "reverse_kl"), reverse)
    m = 0.3 * lt.exp() + 0.7 * ls.exp()
    jsd = 0.3 * kl_divergence(lt, m.log()) + 0.7 * kl_divergence(ls, m.log())
    torch.testing.assert_close(distillation_divergence(s, t, "jsd", beta=0.3), jsd)
    assert (jsd >= 0).all() and (jsd <= math.log(2) + 1e-12).all()  # JSD_β ≤ H(β) ≤ log 2
    assert distillation_divergence(s, s.clone(), "jsd").abs().max() < 1e-12
    with pytest.raises(ValueError, match="divergence must be"):
        distillation_divergence(s, t, "kl")
    with pytest.raises(ValueError, match="beta must be in"):
        generalized_jsd(s, t, beta=1.5)


def test_teacher_gets_no_gradient_and_gap_is_detached():
    s, t = _logits(5).requires_grad_(True), _logits(6).requires_grad_(True)
    generalized_jsd(s, t, 0.5).sum().backward()
    assert t.grad is None and s.grad is not None
    lt = torch.randn(2, 4, dtype=torch.float64)
    ls = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    gap = token_gap_advantages(lt, ls)
    torch.testing.assert_close(gap, lt - ls.detach())
    assert not gap.requires_grad
    torch.testing.assert_close(nll(ls), -ls)
