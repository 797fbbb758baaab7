"""STORM's world model: stochastic categorical latents and a causal transformer over them
(Zhang et al. 2023, arXiv:2310.09615), for vector and image observations.

    encoder      o_t -> q(z_t | o_t): G categoricals of K classes (1% uniform mixed in,
                 DreamerV3), sampled one-hot with straight-through gradients; an MLP for
                 vectors, strided convolutions for images
    decoder      z_t -> ô_t: symlog values for vectors, pixel logits for binary images
                 (MinAtar), pixel values for 8-bit images
    sequence     e_t = embed(z_t, a_t); h_{0:t} = causal transformer(e_{0:t})
    heads of h_t p(ẑ_{t+1} | h_t), r̂_t (symlog), continuation logit ĉ_t

``imagine`` rolls the model forward from replayed contexts with a policy: the actor-critic
learns from these imagined trajectories only (``reasonrl.control.storm``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from reasonrl.control.networks import MLP, ConvDecoder, ConvEncoder
from reasonrl.losses import symexp

# how each kind of observation is fed in and reconstructed (``world_model_loss``'s modes)
RECONSTRUCTION = {"vector": "symlog", "binary": "bernoulli", "pixels": "mse"}


def observation_kind(shape: tuple[int, ...], dtype) -> str:
    """The kind of observation: "vector" ([D]), "binary" (a bool image [H, W, C]) or "pixels"
    (any other image)."""
    if len(shape) == 1:
        return "vector"
    if len(shape) == 3:
        return "binary" if np.dtype(dtype) == np.bool_ else "pixels"
    raise ValueError(f"observations of shape {shape}: the world model takes [D] vectors or [H, W, C] images")


UNIMIX = 0.01  # uniform share mixed into every categorical (DreamerV3): no class ever has p = 0


class Block(nn.Module):
    """A pre-norm transformer block whose keys and values can be cached, so imagination
    adds one token per step instead of re-running the whole sequence."""

    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 2 * d_model), nn.GELU(), nn.Linear(2 * d_model, d_model))

    def forward(self, x: torch.Tensor, cache: tuple | None = None) -> tuple[torch.Tensor, tuple]:
        """x [B, T, d] -> (y [B, T, d], (keys, values) with the cache's first). Causal
        within x; with a cache, x is one token, which sees every cached one."""
        B, T, d = x.shape
        if cache is not None and T > 1:
            raise ValueError("with a cache, add one token at a time")
        q, k, v = self.qkv(self.norm1(x)).view(B, T, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=cache is None and T > 1)
        x = x + self.out(y.transpose(1, 2).reshape(B, T, d))
        return x + self.mlp(self.norm2(x)), (k, v)


class WorldModel(nn.Module):
    def __init__(
        self,
        obs_shape: int | tuple[int, ...],
        n_actions: int,
        groups: int = 16,
        classes: int = 16,
        d_model: int = 64,
        layers: int = 2,
        heads: int = 4,
        hidden: int = 128,
        max_len: int = 64,
        kind: str = "vector",
    ):
        super().__init__()
        self.groups, self.classes, self.n_actions, self.d_model = groups, classes, n_actions, d_model
        self.kind, self.reconstruction = kind, RECONSTRUCTION[kind]
        latent = groups * classes
        if kind == "vector":
            (obs_dim,) = (obs_shape,) if isinstance(obs_shape, int) else obs_shape
            self.encoder = MLP([obs_dim, hidden, hidden, latent], activation=F.silu)
            self.decoder = MLP([latent, hidden, hidden, obs_dim], activation=F.silu)
        else:
            conv = ConvEncoder(tuple(obs_shape))
            self.encoder = nn.Sequential(conv, nn.Linear(conv.out_features, latent))
            self.decoder = ConvDecoder(conv, latent, obs_shape[-1])
        self.embed = nn.Sequential(nn.Linear(latent + n_actions, d_model), nn.LayerNorm(d_model))
        self.position = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(Block(d_model, heads) for _ in range(layers))
        self.final_norm = nn.LayerNorm(d_model)
        self.prior_head = MLP([d_model, hidden, latent], activation=F.silu)
        self.reward_head = MLP([d_model, hidden, 1], activation=F.silu, last_std=0.0)
        self.continue_head = MLP([d_model, hidden, 1], activation=F.silu)

    @property
    def latent_size(self) -> int:
        return self.groups * self.classes

    def _logits(self, flat: torch.Tensor) -> torch.Tensor:
        """[..., G·K] -> [..., G, K] log-probabilities with the uniform share mixed in."""
        probs = F.softmax(flat.unflatten(-1, (self.groups, self.classes)), -1)
        return torch.log((1 - UNIMIX) * probs + UNIMIX / self.classes)

    def prepare(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations as stored (float vectors, bool or 8-bit images) -> float inputs."""
        if self.kind == "pixels":
            return obs.float() / 255.0
        return obs.float()

    def posterior(self, obs: torch.Tensor) -> torch.Tensor:
        return self._logits(self.encoder(self.prepare(obs)))

    def prior(self, h: torch.Tensor) -> torch.Tensor:
        return self._logits(self.prior_head(h))

    @staticmethod
    def sample(logits: torch.Tensor) -> torch.Tensor:
        """One-hot samples [..., G·K] with straight-through gradients of the probabilities."""
        probs = logits.exp()
        gumbel = -torch.log(-torch.log(torch.rand_like(logits).clamp(min=1e-20)))
        index = (logits + gumbel).argmax(-1)  # Gumbel-max: a categorical sample, far cheaper than multinomial
        onehot = F.one_hot(index, probs.shape[-1]).to(probs.dtype)
        return (onehot + probs - probs.detach()).flatten(-2)

    def hidden(self, z: torch.Tensor, actions: torch.Tensor, cache: list | None = None):
        """(h [B, T, d] of each new token, the cache to continue from) from latents
        [B, T, G·K] and actions [B, T]; causal; with ``cache``, T is 1."""
        start = 0 if cache is None else cache[0][0].shape[2]
        T = z.shape[1]
        x = self.embed(torch.cat([z, F.one_hot(actions, self.n_actions).to(z.dtype)], -1))
        x = x + self.position(torch.arange(start, start + T, device=z.device))
        new_cache = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, None if cache is None else cache[i])
            new_cache.append(kv)
        return self.final_norm(x), new_cache

    def heads(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(prior logits of z_{t+1}, reward in symlog units, continuation logit) from h_t."""
        return self.prior(h), self.reward_head(h).squeeze(-1), self.continue_head(h).squeeze(-1)


@dataclass
class Imagined:
    """H imagined steps from B starts: the agent's states and what the model predicts."""

    states: torch.Tensor  # [B, H+1, S]: s_k = [z_k, h_{k−1}]; the last one is only valued
    actions: torch.Tensor  # [B, H]
    rewards: torch.Tensor  # [B, H] in return units
    continues: torch.Tensor  # [B, H] probability the episode goes on after step k


Policy = Callable[[torch.Tensor], torch.Tensor]  # states [B, S] -> action logits [B, A]


@torch.no_grad()
def imagine(
    model: WorldModel,
    policy: Policy,
    z: torch.Tensor,
    actions: torch.Tensor,
    horizon: int,
    planned: torch.Tensor | None = None,
) -> Imagined:
    """Roll the world model forward ``horizon`` steps with ``policy`` (STORM §3.3).

    Args:
      z: posterior latents of a replayed context, [B, C, G·K]; the last is the start.
      actions: the actions taken after each context latent, [B, C] (the last is unused).
      planned: [B, horizon] actions to take instead of the policy's (open loop: how well
        the model predicts what really followed a replayed context).
    The context's tokens e_0..e_{C−2} give h_{C−2}; from the start latent on, each step
    samples a ~ π([z, h]), adds e = embed(z, a) to the transformer (its keys and values
    cached) and reads h, r̂, ĉ and ẑ_next. Nothing here takes a gradient.
    """
    B, C, _ = z.shape
    if C > 1:
        h, cache = model.hidden(z[:, :-1], actions[:, :-1])
        h_prev = h[:, -1]
    else:
        h_prev, cache = z.new_zeros(B, model.d_model), None
    current = z[:, -1]
    states, chosen, rewards, continues = [], [], [], []
    for k in range(horizon):
        state = torch.cat([current, h_prev], -1)
        if planned is not None:
            action = planned[:, k]
        else:
            action = torch.multinomial(F.softmax(policy(state), -1), 1)[:, 0]
        h, cache = model.hidden(current[:, None], action[:, None], cache)
        h = h[:, -1]
        prior, reward, cont = model.heads(h)
        states.append(state)
        chosen.append(action)
        rewards.append(symexp(reward))
        continues.append(torch.sigmoid(cont))
        current, h_prev = model.sample(prior), h
    states.append(torch.cat([current, h_prev], -1))
    return Imagined(*(torch.stack(x, 1) for x in (states, chosen, rewards, continues)))
