import math

import pytest
import torch

from reasonrl.losses import (
    aggregate_tokens,
    clipped_surrogate,
    entropy_from_logits,
    importance_ratio,
    kl_estimate,
    linear_token_logprobs,
    masked_mean,
    policy_gradient_loss,
    soft_policy_loss,
    token_logprobs,
)

from .conftest import rand_mask, randn


def ref_surrogate(lp, old, adv, el, eh, dual=None):
    out = torch.zeros_like(lp)
    for idx in range(lp.numel()):
        r = math.exp(float(lp.view(-1)[idx]) - float(old.view(-1)[idx]))
        a = float(adv.view(-1)[idx])
        loss = -min(r * a, min(max(r, 1 - el), 1 + eh) * a)
        if dual is not None and a < 0:
            loss = min(loss, -dual * a)
        out.view(-1)[idx] = loss
    return out


@pytest.mark.parametrize("eh, dual", [(None, None), (0.28, None), (0.28, 3.0)])
def test_clipped_surrogate(gen, eh, dual):
    lp, old = randn(gen, 4, 7) * 0.3, randn(gen, 4, 7) * 0.3
    adv = randn(gen, 4, 7)
    out = clipped_surrogate(lp, old, adv, 0.2, eh, dual)
    torch.testing.assert_close(out.loss, ref_surrogate(lp, old, adv, 0.2, eh or 0.2, dual))
    torch.testing.assert_close(out.ratio, importance_ratio(lp, old))


def test_surrogate_per_sequence_advantages(gen):
    lp, old, adv = randn(gen, 3, 5), randn(gen, 3, 5), randn(gen, 3)
    a = clipped_surrogate(lp, old, adv).loss
    b = clipped_surrogate(lp, old, adv.unsqueeze(1).expand(3, 5).contiguous()).loss
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="advantages must have the shape"):
        clipped_surrogate(lp, old, randn(gen, 5))


def test_surrogate_errors(gen):
    x = randn(gen, 2, 3)
    with pytest.raises(ValueError, match="shape mismatch: logp has shape"):
        clipped_surrogate(x, randn(gen, 2, 4), x)
    with pytest.raises(ValueError, match="dual_clip must be > 1"):
        clipped_surrogate(x, x, x, dual_clip=0.5)


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_kl_estimators(gen, estimator):
    lp, ref = randn(gen, 3, 6), randn(gen, 3, 6)
    expected = torch.zeros_like(lp)
    for i in range(lp.numel()):
        lr = float(ref.view(-1)[i]) - float(lp.view(-1)[i])
        expected.view(-1)[i] = {"k1": -lr, "k2": 0.5 * lr * lr, "k3": math.exp(lr) - 1 - lr}[estimator]
    torch.testing.assert_close(kl_estimate(lp, ref, estimator), expected)


def test_kl_importance_weighted(gen):
    lp, ref, old = randn(gen, 3, 6), randn(gen, 3, 6), randn(gen, 3, 6)
    torch.testing.assert_close(kl_estimate(lp, ref, "k3", old), kl_estimate(lp, ref) * (lp - old).exp())


def test_kl_estimators_are_unbiased_or_not_as_documented():
    # Sample from p = softmax(lp); true KL(p || q). k1 and k3 are unbiased, k2 is not.
    gen = torch.Generator().manual_seed(0)
    logits_p, logits_q = torch.randn(5, generator=gen) * 0.5, torch.randn(5, generator=gen) * 0.5
    lp, lq = logits_p.log_softmax(0).double(), logits_q.log_softmax(0).double()
    true_kl = float((lp.exp() * (lp - lq)).sum())
    samples = torch.multinomial(lp.exp(), 400_000, replacement=True, generator=gen)
    for est in ("k1", "k3"):
        assert abs(float(kl_estimate(lp[samples], lq[samples], est).mean()) - true_kl) < 3e-3
    assert float(kl_estimate(lp[samples], lq[samples], "k3").min()) >= 0


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_entropy_from_logits(gen, temperature):
    logits = randn(gen, 3, 4, 11)
    expected = torch.zeros(3, 4, dtype=torch.float64)
    for i in range(3):
        for j in range(4):
            p = [math.exp(x / temperature) for x in logits[i, j].tolist()]
            z = sum(p)
            expected[i, j] = -sum(q / z * math.log(q / z) for q in p)
    torch.testing.assert_close(entropy_from_logits(logits, chunk_size=5, temperature=temperature), expected)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs_gradient_is_onehot_minus_softmax(gen, temperature):
    """The hand-written backward against autograd through log_softmax, with padding-like zero grads."""
    logits = randn(gen, 3, 4, 17).requires_grad_(True)
    tokens = torch.randint(0, 17, (3, 4), generator=gen)
    weights = randn(gen, 3, 4) * (torch.rand(3, 4, generator=gen) > 0.3)
    (token_logprobs(logits, tokens, temperature) * weights).sum().backward()
    ours = logits.grad.clone()
    logits.grad = None
    reference = torch.log_softmax(logits / temperature, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    (reference * weights).sum().backward()
    torch.testing.assert_close(ours, logits.grad)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs(gen, temperature):
    logits, tokens = randn(gen, 2, 5, 13), torch.randint(0, 13, (2, 5), generator=gen)
    expected = torch.zeros(2, 5, dtype=torch.float64)
    for i in range(2):
        for j in range(5):
            z = [x / temperature for x in logits[i, j].tolist()]
            expected[i, j] = z[tokens[i, j]] - math.log(sum(math.exp(x) for x in z))
    torch.testing.assert_close(token_logprobs(logits, tokens, temperature), expected)


def test_token_logprobs_bf16_runs_in_fp32(gen):
    logits = randn(gen, 2, 3, 50, dtype=torch.float32).to(torch.bfloat16)
    tokens = torch.randint(0, 50, (2, 3), generator=gen)
    out = token_logprobs(logits, tokens)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, token_logprobs(logits.float(), tokens))


def test_token_logprobs_errors(gen):
    with pytest.raises(TypeError, match="integer ids"):
        token_logprobs(randn(gen, 2, 3, 5), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="vocab axis"):
        token_logprobs(randn(gen, 2, 3, 5), torch.zeros(2, 4, dtype=torch.long))


def ref_aggregate(x, m, mode, max_len=None):
    B, T = x.shape
    m = m.double()
    if mode == "token_mean":
        return sum(float(x[i, t] * m[i, t]) for i in range(B) for t in range(T)) / float(m.sum())
    if mode == "sequence_mean":
        return sum(float((x[i] * m[i]).sum() / m[i].sum()) for i in range(B)) / B
    return float((x * m).sum()) / (B * max_len)


@pytest.mark.parametrize("mode", ["token_mean", "sequence_mean", "sequence_sum_norm"])
@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.float64])
def test_aggregate_tokens(gen, mode, mask_dtype):
    x, m = randn(gen, 5, 9), rand_mask(gen, 5, 9, mask_dtype)
    out = aggregate_tokens(x, m, mode, max_length=12)
    assert math.isclose(float(out), ref_aggregate(x, m, mode, 12), rel_tol=1e-12, abs_tol=1e-12)


def test_padding_never_leaks(gen):
    x, m = randn(gen, 4, 6), rand_mask(gen, 4, 6)
    y = torch.where(m, x, torch.full_like(x, 1e6))
    for mode in ("token_mean", "sequence_mean", "sequence_sum_norm"):
        torch.testing.assert_close(aggregate_tokens(x, m, mode, 6), aggregate_tokens(y, m, mode, 6))
    torch.testing.assert_close(masked_mean(x, m), masked_mean(y, m))


def test_mask_errors(gen):
    x = randn(gen, 2, 3)
    with pytest.raises(TypeError, match="bool or floating point, got torch.int64; use mask.bool"):
        aggregate_tokens(x, torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"mask has shape \(2, 4\), expected \(2, 3\)"):
        aggregate_tokens(x, torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="needs max_length"):
        aggregate_tokens(x, torch.ones(2, 3, dtype=torch.bool), "sequence_sum_norm")
    with pytest.raises(ValueError, match="mode must be"):
        aggregate_tokens(x, torch.ones(2, 3, dtype=torch.bool), "mean")


def test_policy_gradient_and_soft_policy_losses(gen):
    logp, adv, q = randn(gen, 7), randn(gen, 7), randn(gen, 7)
    expected_pg = torch.tensor(
        [-float(a) * float(lp) for a, lp in zip(adv, logp, strict=True)], dtype=torch.float64
    )
    torch.testing.assert_close(policy_gradient_loss(logp, adv), expected_pg)
    expected_sac = torch.tensor(
        [0.3 * float(lp) - float(v) for lp, v in zip(logp, q, strict=True)], dtype=torch.float64
    )
    torch.testing.assert_close(soft_policy_loss(logp, q, 0.3), expected_sac)
    leaf = logp.clone().requires_grad_(True)
    policy_gradient_loss(leaf, adv.requires_grad_(True)).sum().backward()
    torch.testing.assert_close(leaf.grad, -adv.detach())  # advantages are constants


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("trained_head", [False, True])
def test_linear_token_logprobs_equal_the_unfused_head(gen, temperature, trained_head):
    """Chunks of 4 over 2 x 7 tokens (the last chunk short): the log-probs, entropies and
    gradients of token_logprobs on the whole logits. A head that takes a gradient goes
    the unfused way, and its gradient arrives too."""
    weight, bias = randn(gen, 13, 6).requires_grad_(trained_head), randn(gen, 13)
    hidden = randn(gen, 2, 7, 6).requires_grad_(True)
    tokens = torch.randint(0, 13, (2, 7), generator=gen)
    weights = randn(gen, 2, 7) * (torch.rand(2, 7, generator=gen) > 0.3)
    logp, entropy = linear_token_logprobs(hidden, weight, tokens, temperature, bias, True, chunk_size=4)
    (logp * weights).sum().backward()
    ours = [hidden.grad.clone()] + ([weight.grad.clone()] if trained_head else [])
    hidden.grad = weight.grad = None
    logits = torch.nn.functional.linear(hidden, weight, bias)
    expected = token_logprobs(logits, tokens, temperature)
    torch.testing.assert_close(logp, expected)
    torch.testing.assert_close(entropy, entropy_from_logits(logits.detach(), temperature=temperature))
    assert not entropy.requires_grad
    (expected * weights).sum().backward()
    torch.testing.assert_close(ours, [hidden.grad] + ([weight.grad] if trained_head else []))
    with torch.no_grad():  # no gradient wanted: the same numbers, and no entropy unless asked
        again, none = linear_token_logprobs(hidden, weight, tokens, temperature, bias, chunk_size=4)
    torch.testing.assert_close(again, expected.detach())
    assert none is None


def test_linear_token_logprobs_name_a_shape_mismatch(gen):
    with pytest.raises(
        ValueError, match=r"hidden \(2, 3, 5\) must be tokens \(2, 3\) plus the head's input axis \(6\)"
    ):
        linear_token_logprobs(randn(gen, 2, 3, 5), randn(gen, 13, 6), torch.zeros(2, 3, dtype=torch.long))
