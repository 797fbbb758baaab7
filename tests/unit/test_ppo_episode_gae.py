"""PPO on episodes: GAE runs over the model's tokens only, skipping the environment's."""

from types import SimpleNamespace

import torch

from reasonrl.trainers.ppo import advantages_and_returns


def cfg(gamma, lam):
    return SimpleNamespace(gamma=gamma, gae_lambda=lam, whiten_advantages=False)


def test_environment_tokens_are_skipped_not_steps():
    # model, env, env, model (the final answer, reward 1), padding
    mask = torch.tensor([[True, False, False, True, False]])
    rewards = torch.tensor([[0.0, 0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 9.0, 9.0, 0.25, 7.0]])  # the env tokens' values must not matter
    adv, ret = advantages_and_returns(rewards, values, mask, cfg(1.0, 1.0))
    # γ = λ = 1: every model token's return is the episode's reward, 1; advantage = 1 − V
    assert ret.tolist() == [[1.0, 0.0, 0.0, 1.0, 0.0]]
    assert adv.tolist() == [[0.5, 0.0, 0.0, 0.75, 0.0]]


def test_same_as_the_episode_without_its_environment_tokens():
    gen = torch.Generator().manual_seed(0)
    mask = torch.tensor(
        [[True, True, False, False, True, True, False], [True, False, True, True, True, False, False]]
    )
    rewards, values = torch.randn(2, 7, generator=gen), torch.randn(2, 7, generator=gen)
    rewards = rewards * mask
    adv, ret = advantages_and_returns(rewards, values, mask, cfg(0.9, 0.8))
    for row in range(2):
        keep = mask[row].nonzero().flatten()
        n = len(keep)
        dense = torch.ones(1, n, dtype=torch.bool)
        a, r = advantages_and_returns(rewards[row, keep][None], values[row, keep][None], dense, cfg(0.9, 0.8))
        torch.testing.assert_close(adv[row, keep], a[0])
        torch.testing.assert_close(ret[row, keep], r[0])
        assert (adv[row, ~mask[row]] == 0).all() and (ret[row, ~mask[row]] == 0).all()


def test_single_turn_completions_are_unchanged():
    """A completion's mask is a prefix: packing is the identity, GAE as before."""
    mask = torch.tensor([[True, True, True, False]])
    rewards = torch.tensor([[0.0, 0.0, 2.0, 0.0]])
    values = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    adv, ret = advantages_and_returns(rewards, values, mask, cfg(1.0, 1.0))
    assert ret.tolist() == [[2.0, 2.0, 2.0, 0.0]] and adv.tolist() == [[1.0, 1.0, 1.0, 0.0]]
