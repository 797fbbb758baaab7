"""The CPU engine's inverse-CDF sampler draws from the distribution it is given."""

import math

import torch

from reasonrl.rollout.vllm_cpu_sampler import inverse_cdf


def test_inverse_cdf_draws_the_given_distribution():
    probs = torch.tensor([0.5, 0.3, 0.0, 0.15, 0.05, 0.0])
    draws = 40_000
    logprobs = probs.log().expand(draws, -1).contiguous()  # -inf where excluded
    tokens = inverse_cdf(logprobs, torch.Generator().manual_seed(0))
    assert tokens.shape == (draws,) and tokens.dtype == torch.int64
    counts = torch.bincount(tokens, minlength=len(probs)).double()
    print("frequencies", (counts / draws).tolist())
    assert counts[probs == 0].sum() == 0, "a token of probability 0 was drawn"
    live = probs > 0
    expected = probs[live].double() * draws
    chi2 = ((counts[live] - expected) ** 2 / expected).sum().item()
    assert chi2 < 21.1, f"chi-square {chi2:.1f} on 3 degrees of freedom (p < 1e-4)"


def test_inverse_cdf_at_the_ends_of_the_vocabulary():
    first = torch.full((3, 49152), -math.inf)
    first[0, 0] = 0.0  # all mass on the first token
    first[1, -1] = 0.0  # on the last
    first[2, 17] = first[2, 49150] = math.log(0.5)
    tokens = inverse_cdf(first, torch.Generator().manual_seed(1))
    assert tokens[0] == 0 and tokens[1] == 49151 and tokens[2] in (17, 49150)
