"""Small networks of the control agents (CleanRL's shapes and initialisation)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.distributions import Normal
from torch.nn import functional as F

from reasonrl.losses import entropy_from_logits, token_logprobs


def layer_init(layer: nn.Linear, std: float = math.sqrt(2), bias: float = 0.0) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


class MLP(nn.Module):
    """Linear layers with an activation between them (CleanRL's shapes and initialisation).

    ``forward`` calls the functional ops directly instead of one sub-module per layer:
    at a batch of 4 observations, module dispatch costs more than a 64-unit layer.
    """

    def __init__(self, sizes: list[int], activation=torch.tanh, last_std: float = 1.0):
        super().__init__()
        stds = [math.sqrt(2)] * (len(sizes) - 2) + [last_std]
        shapes = zip(sizes[:-1], sizes[1:], stds, strict=True)
        self.layers = nn.ModuleList(layer_init(nn.Linear(n_in, n_out), std) for n_in, n_out, std in shapes)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *hidden, last = self.layers
        for layer in hidden:
            x = self.activation(F.linear(x, layer.weight, layer.bias))
        return F.linear(x, last.weight, last.bias)


class DiscreteActorCritic(nn.Module):
    """Separate actor and critic MLPs (64-64, tanh) for discrete actions."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 64):
        super().__init__()
        self.actor = MLP([obs_dim, hidden, hidden, n_actions], last_std=0.01)
        self.critic = MLP([obs_dim, hidden, hidden, 1], last_std=1.0)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)

    def evaluate(self, obs: torch.Tensor, action: torch.Tensor):
        """(log π(action), entropy, V(obs)) for given actions."""
        logits = self.actor(obs)
        return token_logprobs(logits, action), entropy_from_logits(logits, chunk_size=4096), self.value(obs)


class ActingCopy:
    """A numpy snapshot of a DiscreteActorCritic (tanh MLPs) that steps environments.

    Acting evaluates a handful of observations per call, where torch spends more time
    dispatching each op (~3 µs here) than computing it and numpy about a third of that.
    Take a fresh copy after every update: it is then exactly the behaviour policy whose
    logits the rollout records (their log-probs come from reasonrl.losses afterwards).
    """

    def __init__(self, agent: DiscreteActorCritic):
        def arrays(net: MLP):
            return [
                (lin.weight.detach().numpy().T.copy(), lin.bias.detach().numpy().copy()) for lin in net.layers
            ]

        self.actor, self.critic = arrays(agent.actor), arrays(agent.critic)

    @staticmethod
    def _forward(layers, x: np.ndarray) -> np.ndarray:
        for w, b in layers[:-1]:
            x = np.tanh(x @ w + b)
        w, b = layers[-1]
        return x @ w + b

    def logits(self, obs: np.ndarray) -> np.ndarray:
        return self._forward(self.actor, obs)

    def value(self, obs: np.ndarray) -> np.ndarray:
        return self._forward(self.critic, obs)[:, 0]


def sample_categorical(logits: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling: one action per row of ``logits`` [N, A] from ``uniform`` [N] in [0, 1)."""
    cdf = np.exp(logits - logits.max(-1, keepdims=True)).cumsum(-1)
    return np.minimum((cdf < uniform[:, None] * cdf[:, -1:]).sum(-1), logits.shape[-1] - 1)


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


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of [N, C, H, W] maps, at every pixel (DreamerV3's)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvEncoder(nn.Module):
    """Images [..., H, W, C] (channels last, as Gymnasium returns them) -> a flat feature
    vector: one 3 x 3 convolution, then 4 x 4 stride-2 ones doubling the channels until the
    shorter side is at most 6 (STORM's and DreamerV3's encoder shape; MinAtar's 10 x 10
    is halved once, Atari's 64 x 64 four times)."""

    def __init__(self, shape: tuple[int, int, int], depth: int = 16):
        super().__init__()
        H, W, C = shape
        # each convolution normalised over its channels before the activation (DreamerV3):
        # without it the features grow, the latent's softmax saturates within ~50 updates
        # and the straight-through gradient it passes back vanishes (every MinAtar frame
        # got the same code, and the decoder learnt the pixels' marginals: 12 nats a frame)
        layers: list[nn.Module] = [nn.Conv2d(C, depth, 3, padding=1), ChannelNorm(depth), nn.SiLU()]
        self.sizes = [(H, W)]  # the spatial size after each stride-2 convolution's input
        channels = depth
        while min(H, W) > 6:
            layers += [
                nn.Conv2d(channels, 2 * channels, 4, stride=2, padding=1),
                ChannelNorm(2 * channels),
                nn.SiLU(),
            ]
            channels, H, W = 2 * channels, H // 2, W // 2
            self.sizes.append((H, W))
        self.net = nn.Sequential(*layers)
        self.out_shape = (channels, H, W)
        self.out_features = channels * H * W

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-3]
        x = x.reshape(-1, *x.shape[-3:]).permute(0, 3, 1, 2)
        return self.net(x).reshape(*lead, self.out_features)


class ConvDecoder(nn.Module):
    """The mirror of a ConvEncoder: features [..., F] -> images [..., H, W, C] of the
    encoder's exact input size (transposed convolutions told each output size)."""

    def __init__(self, encoder: ConvEncoder, in_features: int, channels_out: int):
        super().__init__()
        channels = encoder.out_shape[0]
        self.start_shape = encoder.out_shape
        self.project = nn.Linear(in_features, encoder.out_features)
        self.up, self.norms = nn.ModuleList(), nn.ModuleList()
        for _ in encoder.sizes[1:]:
            self.up.append(nn.ConvTranspose2d(channels, channels // 2, 4, stride=2, padding=1))
            self.norms.append(ChannelNorm(channels // 2))
            channels //= 2
        self.sizes = encoder.sizes[-2::-1]  # the output size of each transposed convolution
        self.head = nn.Conv2d(channels, channels_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x = F.silu(self.project(x)).reshape(-1, *self.start_shape)
        for up, norm, size in zip(self.up, self.norms, self.sizes, strict=True):
            x = F.silu(norm(up(x, output_size=size)))
        return self.head(x).permute(0, 2, 3, 1).reshape(*lead, *x.shape[-2:], -1)
