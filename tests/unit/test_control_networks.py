"""The numpy acting copy is the torch policy: same logits, same values, right sampling law."""

import numpy as np
import torch

from reasonrl.control.networks import ActingCopy, DiscreteActorCritic, sample_categorical


def test_acting_copy_matches_the_torch_networks():
    torch.manual_seed(0)
    agent = DiscreteActorCritic(obs_dim=6, n_actions=3, hidden=32)
    with torch.no_grad():  # a trained-looking policy, not the near-uniform initial one
        for p in agent.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    obs = torch.randn(16, 6)
    copy = ActingCopy(agent)
    with torch.no_grad():
        np.testing.assert_allclose(copy.logits(obs.numpy()), agent.actor(obs).numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(copy.value(obs.numpy()), agent.value(obs).numpy(), rtol=1e-5, atol=1e-5)


def test_acting_copy_is_a_snapshot():
    agent = DiscreteActorCritic(obs_dim=4, n_actions=2)
    copy = ActingCopy(agent)
    obs = np.ones((1, 4), np.float32)
    before = copy.logits(obs).copy()
    with torch.no_grad():
        for p in agent.parameters():
            p.add_(1.0)
    np.testing.assert_array_equal(copy.logits(obs), before)


def test_sample_categorical_follows_the_softmax():
    logits = np.array([[0.0, 1.0, -1.0, 2.0]], np.float32).repeat(200_000, axis=0)
    uniform = np.random.default_rng(0).random(len(logits))
    counts = np.bincount(sample_categorical(logits, uniform), minlength=4) / len(logits)
    probs = torch.softmax(torch.from_numpy(logits[0]), -1).numpy()
    # binomial standard error at n=200k is below 0.0011; 5 sigma
    np.testing.assert_allclose(counts, probs, atol=0.0055)


def test_sample_categorical_edges():
    logits = np.array([[0.0, -np.inf, 0.0], [5.0, 5.0, 5.0]], np.float32)
    assert sample_categorical(logits, np.array([0.999999, 0.0])).tolist() == [2, 0]
    assert sample_categorical(logits, np.array([0.0, 0.999999])).tolist() == [0, 2]
    assert sample_categorical(logits, np.array([0.6, 0.5])).tolist() == [2, 1]  # never the -inf action
