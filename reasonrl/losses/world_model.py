"""World-model losses of DreamerV3 / STORM, one named term per head.

A world model with stochastic categorical latents learns from replayed sequences:

    representation  q(z_t | o_t)         the encoder's posterior over the latent of o_t
    dynamics        p(ẑ_{t+1} | h_t)      the sequence model's prior over the next latent
    heads of h_t    r̂_t, ĉ_t              reward of a_t, continuation after it
    decoder         ô_t from z_t

    L = L_rec + L_rew + L_con + β_dyn L_dyn + β_rep L_rep

with the KL between posterior and prior split in two by where its gradient goes (KL
balancing), each clipped below at ``free_nats`` (free bits) so a KL already small is not
pushed further:

    L_dyn = max(free, KL[sg(q) ‖ p])      trains the dynamics towards the encoder
    L_rep = max(free, KL[q ‖ sg(p)])      keeps the encoder predictable

References: Hafner et al. 2023 (DreamerV3, arXiv:2301.04104, eq. 5, symlog §3);
Zhang et al. 2023 (STORM, arXiv:2310.09615, eq. 4-6: β_dyn 0.5, β_rep 0.1, free 1 nat).
Shapes: latents are [..., groups, classes] logits; everything else [...] per step.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from reasonrl.losses._checks import check_shapes


def symlog(x: torch.Tensor) -> torch.Tensor:
    """symlog(x) = sign(x) ln(|x| + 1): targets of any scale in one regression (DreamerV3 §3)."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    """The inverse of symlog: sign(x) (exp(|x|) − 1)."""
    return torch.sign(x) * torch.expm1(x.abs())


def categorical_kl(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) of groups of categoricals, summed over the groups.

    Args:
      logits_p, logits_q: [..., groups, classes].
    Returns:
      [...]: Σ_groups Σ_classes p log(p / q).
    """
    check_shapes(logits_p=logits_p, logits_q=logits_q)
    log_p, log_q = F.log_softmax(logits_p, -1), F.log_softmax(logits_q, -1)
    return (log_p.exp() * (log_p - log_q)).sum((-1, -2))


class WorldModelLoss(NamedTuple):
    """The world model's loss and each term, averaged over the masked steps."""

    loss: torch.Tensor
    reconstruction: torch.Tensor
    reward: torch.Tensor
    continuation: torch.Tensor
    dynamics: torch.Tensor
    representation: torch.Tensor
    kl: torch.Tensor  # KL[q ‖ p] itself (for logging)


def world_model_loss(
    obs_pred: torch.Tensor,
    obs: torch.Tensor,
    reward_pred: torch.Tensor,
    reward: torch.Tensor,
    continue_logit: torch.Tensor,
    continues: torch.Tensor,
    posterior_logits: torch.Tensor,
    prior_logits: torch.Tensor,
    kl_mask: torch.Tensor,
    dyn_scale: float = 0.5,
    rep_scale: float = 0.1,
    free_nats: float = 1.0,
    reconstruction: str = "symlog",
) -> WorldModelLoss:
    """STORM's world-model objective (eq. 4-6), every coefficient visible here.

    Args:
      obs_pred, obs: decoded ô_t and o_t, [B, T, *shape], compared as ``reconstruction``
        says: "symlog" regresses symlog(o) (vectors of any scale), "mse" regresses o itself
        (pixels in [0, 1]), "bernoulli" reads ô as logits of binary pixels (MinAtar); the
        error is summed over the observation and averaged over steps.
      reward_pred, reward: r̂_t (symlog units) and r_t, the reward of a_t, [B, T].
      continue_logit, continues: logit of ĉ_t and c_t ∈ {0, 1} (0: the episode ended
        after step t), [B, T].
      posterior_logits: q(z_{t+1} | o_{t+1}), [B, T−1, G, K] (log-probabilities).
      prior_logits: p(ẑ_{t+1} | h_t) at the same positions, [B, T−1, G, K].
      kl_mask: [B, T−1], 0 where o_{t+1} starts a new episode (nothing to predict).
    Returns:
      the loss and its terms, each a mean over its steps (the KL ones over the mask).
    """
    check_shapes(reward_pred=reward_pred, reward=reward, continue_logit=continue_logit, continues=continues)
    if reconstruction == "bernoulli":
        error = F.binary_cross_entropy_with_logits(obs_pred, obs, reduction="none")
    elif reconstruction in ("symlog", "mse"):
        error = (obs_pred - (symlog(obs) if reconstruction == "symlog" else obs)) ** 2
    else:
        raise ValueError(f"reconstruction {reconstruction!r}: expected 'symlog', 'mse' or 'bernoulli'")
    rec = error.flatten(2).sum(-1).mean()
    reward_term = ((reward_pred - symlog(reward)) ** 2).mean()
    continuation = F.binary_cross_entropy_with_logits(continue_logit, continues)
    kl_mask = kl_mask.to(obs.dtype)
    total = kl_mask.sum().clamp(min=1)

    def masked(x: torch.Tensor) -> torch.Tensor:
        return (x * kl_mask).sum() / total

    kl = categorical_kl(posterior_logits, prior_logits)
    dynamics = masked(categorical_kl(posterior_logits.detach(), prior_logits).clamp(min=free_nats))
    representation = masked(categorical_kl(posterior_logits, prior_logits.detach()).clamp(min=free_nats))
    loss = rec + reward_term + continuation + dyn_scale * dynamics + rep_scale * representation
    terms = (rec, reward_term, continuation, dynamics, representation, masked(kl))
    return WorldModelLoss(loss, *terms)


@torch.no_grad()
def return_scale(returns: torch.Tensor, low: float = 0.05, high: float = 0.95) -> torch.Tensor:
    """DreamerV3's return normaliser S = max(1, P_high(R) − P_low(R)): advantages are
    divided by it, so their scale is the same in every task, large returns shrink and
    small ones are not blown up."""
    flat = returns.flatten().float()
    return torch.clamp(torch.quantile(flat, high) - torch.quantile(flat, low), min=1.0)
