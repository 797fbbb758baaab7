"""Batched MCTS (trees as tensors) against the per-tree reference search of MuZero's
pseudocode: the same visit counts on the same network and noise."""

import pytest
import torch

from reasonrl.control.mcts import (
    RecurrentOutput,
    RootOutput,
    SearchConfig,
    reference_search,
    search,
    visit_policy,
)


class RandomModel:
    """A fixed random MLP world model in float64: embedding [B, 8], A actions."""

    def __init__(self, actions: int = 3, seed: int = 0, discount: float = 0.97):
        gen = torch.Generator().manual_seed(seed)
        self.A, self.discount = actions, discount
        self.w_dyn = torch.randn(8 + actions, 8, generator=gen, dtype=torch.float64) / 3
        self.w_out = torch.randn(8, actions + 2, generator=gen, dtype=torch.float64)

    def predict(self, embedding):
        out = embedding @ self.w_out
        return out[:, : self.A], out[:, self.A]  # prior logits, value

    def root(self, batch: int, seed: int = 1) -> RootOutput:
        embedding = torch.randn(batch, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        logits, value = self.predict(embedding)
        return RootOutput(logits, value, embedding)

    def recurrent(self, embedding, action) -> RecurrentOutput:
        onehot = torch.nn.functional.one_hot(action, self.A).to(torch.float64)
        nxt = torch.tanh(torch.cat([embedding, onehot], -1) @ self.w_dyn)
        logits, value = self.predict(nxt)
        reward = (nxt @ self.w_out)[:, self.A + 1]
        return RecurrentOutput(reward, torch.full_like(reward, self.discount), logits, value, nxt)


@pytest.mark.parametrize("noise", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_search_gives_the_reference_visit_counts(seed, noise):
    model = RandomModel(seed=seed)
    root = model.root(16, seed=seed + 10)
    config = SearchConfig(num_simulations=50)
    dirichlet = None
    if noise:
        dirichlet = torch.distributions.Dirichlet(torch.full((3,), 0.25, dtype=torch.float64)).sample((16,))
    tree = search(root, model.recurrent, config, dirichlet)
    expected = reference_search(root, model.recurrent, config, dirichlet)
    counts = tree.root_visit_counts()
    assert torch.equal(counts, expected), f"\n{counts}\n{expected}"
    assert (counts.sum(-1) == 50).all()  # every simulation adds one visit below the root
    assert len(set(map(tuple, counts.tolist()))) > 1  # the roots differ: the test can fail


def test_puct_prefers_the_prior_before_any_visit_then_the_value():
    # one tree, two actions, priors 0.2 / 0.8: the first simulation follows the prior
    root = RootOutput(
        torch.log(torch.tensor([[0.2, 0.8]], dtype=torch.float64)), torch.zeros(1), -torch.ones(1, 1)
    )

    def model(good: float):  # the root's action 0 leads where every value is `good`, action 1 to 0
        def recurrent(embedding, action):
            state = torch.where(embedding < 0, (action == 0).to(torch.float64)[:, None], embedding)
            v = good * state[:, 0]
            logits = torch.zeros(len(action), 2, dtype=torch.float64)
            return RecurrentOutput(torch.zeros_like(v), torch.ones_like(v), logits, v, state)

        return recurrent

    one = search(root, model(10.0), SearchConfig(num_simulations=1, exploration_fraction=0))
    assert one.root_visit_counts().tolist() == [[0, 1]]
    many = search(root, model(10.0), SearchConfig(num_simulations=30, exploration_fraction=0))
    counts = many.root_visit_counts()[0]
    assert counts[0] > counts[1]  # the better action wins once its value is seen
    assert visit_policy(counts[None], 0).tolist() == [[1.0, 0.0]]
    assert torch.allclose(visit_policy(counts[None], 1.0).sum(-1), torch.ones(1, dtype=torch.float64))
