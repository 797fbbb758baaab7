"""Small networks of the control agents (CleanRL's shapes and initialisation)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Normal

from reasonrl.losses import entropy_from_logits, token_logprobs


def layer_init(layer: nn.Linear, std: float = math.sqrt(2), bias: float = 0.0) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


def mlp(sizes: list[int], activation=nn.Tanh, last_std: float = 1.0) -> nn.Sequential:
    layers = []
    for i in range(len(sizes) - 1):
        last = i == len(sizes) - 2
        layers.append(layer_init(nn.Linear(sizes[i], sizes[i + 1]), last_std if last else math.sqrt(2)))
        if not last:
            layers.append(activation())
    return nn.Sequential(*layers)


class DiscreteActorCritic(nn.Module):
    """Separate actor and critic MLPs (64-64, tanh) for discrete actions."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 64):
        super().__init__()
        self.actor = mlp([obs_dim, hidden, hidden, n_actions], last_std=0.01)
        self.critic = mlp([obs_dim, hidden, hidden, 1], last_std=1.0)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)

    # Log-probs and entropy come from reasonrl.losses, not torch.distributions.Categorical,
    # whose construction and argument checks cost more than the 64-unit MLP at every env step.
    def act(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample actions: (action, log π(action), V(obs))."""
        logits = self.actor(obs)
        action = torch.multinomial(torch.softmax(logits, -1), 1).squeeze(-1)
        return action, token_logprobs(logits, action), self.value(obs)

    def evaluate(self, obs: torch.Tensor, action: torch.Tensor):
        """(log π(action), entropy, V(obs)) for given actions."""
        logits = self.actor(obs)
        return token_logprobs(logits, action), entropy_from_logits(logits, chunk_size=4096), self.value(obs)


class SquashedGaussianActor(nn.Module):
    """SAC's actor: a Gaussian squashed by tanh and rescaled to the action bounds."""

    LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0

    def __init__(self, obs_dim: int, act_dim: int, low, high, hidden: int = 256):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.mean = nn.Linear(hidden, act_dim)
        self.log_std = nn.Linear(hidden, act_dim)
        self.register_buffer("scale", torch.as_tensor((high - low) / 2.0, dtype=torch.float32))
        self.register_buffer("bias", torch.as_tensor((high + low) / 2.0, dtype=torch.float32))

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised action a = tanh(u)·scale + bias, u ~ N(μ, σ), and log π(a|s)."""
        h = self.body(obs)
        log_std = torch.tanh(self.log_std(h))
        log_std = self.LOG_STD_MIN + 0.5 * (self.LOG_STD_MAX - self.LOG_STD_MIN) * (log_std + 1)
        normal = Normal(self.mean(h), log_std.exp())
        u = normal.rsample()
        y = torch.tanh(u)
        # change of variables through tanh and the affine rescaling
        logp = normal.log_prob(u) - torch.log(self.scale * (1 - y.pow(2)) + 1e-6)
        return y * self.scale + self.bias, logp.sum(-1)


class QNetwork(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(obs_dim + act_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, action], -1)).squeeze(-1)
