"""Value losses and soft (maximum-entropy) Bellman targets.

Shapes are whatever the caller's batch is (``[N]``, ``[B, T]``, ``[T, B]``); every
tensor argument of one call shares it, and results keep it.
"""

from __future__ import annotations

import torch

from reasonrl.losses._checks import check_float, check_shapes


def value_loss(
    values: torch.Tensor,
    returns: torch.Tensor,
    old_values: torch.Tensor | None = None,
    clip_range: float | None = None,
) -> torch.Tensor:
    """Squared value loss, optionally clipped around the old value (PPO2's critic loss).

        unclipped:  ½ (V − R)²
        clipped:    ½ max((V − R)², (V_old + clip(V − V_old, −ε, ε) − R)²)

    Args:
      values: V_θ(s), carries the gradient.
      returns: R, the regression target (a constant).
      old_values: V_old(s) of the rollout policy; required with clip_range.
      clip_range: ε, or None for the plain squared loss.
    Returns:
      per-element loss, shape of values.
    """
    check_shapes(values=values, returns=returns)
    returns = returns.detach()
    loss = (values - returns) ** 2
    if clip_range is not None:
        if old_values is None:
            raise ValueError("clip_range needs old_values")
        check_shapes(values=values, old_values=old_values)
        old_values = old_values.detach()
        clipped = old_values + (values - old_values).clamp(-clip_range, clip_range)
        loss = torch.max(loss, (clipped - returns) ** 2)
    return 0.5 * loss


@torch.no_grad()
def soft_bellman_target(
    rewards: torch.Tensor,
    dones: torch.Tensor,
    next_q1: torch.Tensor,
    next_q2: torch.Tensor,
    next_logp: torch.Tensor,
    alpha: float | torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """SAC's clipped double-Q soft target (Haarnoja et al. 2018, arXiv:1812.05905, eq. 3).

        y = r + γ (1 − d) (min(Q'_1(s', a'), Q'_2(s', a')) − α log π(a'|s')),   a' ~ π(·|s')

    Args:
      rewards: r, [N].
      dones: d ∈ {0, 1}, [N]: 1 when s' is terminal (not merely truncated).
      next_q1, next_q2: target-network Q values at (s', a'), [N].
      next_logp: log π(a'|s'), [N].
      alpha: temperature α ≥ 0.
      gamma: discount γ.
    Returns:
      y, [N] (no gradient).
    """
    dones = dones.to(rewards.dtype) if dones.dtype == torch.bool else dones
    check_shapes(rewards=rewards, dones=dones, next_q1=next_q1, next_q2=next_q2, next_logp=next_logp)
    soft_next = torch.min(next_q1, next_q2) - alpha * next_logp
    return rewards + gamma * (1.0 - dones) * soft_next


def sac_temperature_loss(log_alpha: torch.Tensor, logp: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """Automatic entropy tuning (Haarnoja et al. 2018, arXiv:1812.05905, eq. 18).

        J(α) = E_{a~π}[ −α (log π(a|s) + H̄) ]

    minimised over log α (so α stays positive); log π is a constant here. When the
    policy's entropy −E[log π] falls below the target H̄, the gradient raises α.

    Args:
      log_alpha: log α, a scalar with gradient.
      logp: log π(a|s) of fresh policy samples, [N].
      target_entropy: H̄ (usually −dim(action space)).
    Returns:
      scalar loss.
    """
    check_float("log_alpha", log_alpha)
    check_float("logp", logp)
    if log_alpha.numel() != 1:
        raise ValueError(f"log_alpha must be a scalar, got shape {tuple(log_alpha.shape)}")
    return -(log_alpha.exp() * (logp.detach() + target_entropy)).mean()


def soft_value(q_values: torch.Tensor, alpha: float, dim: int = -1) -> torch.Tensor:
    """Soft state value over discrete actions (soft Q-learning, Haarnoja et al. 2017).

        V(s) = α log Σ_a exp(Q(s, a) / α)  →  max_a Q(s, a)  as α → 0⁺

    Args:
      q_values: Q(s, ·), [..., A].
      alpha: temperature α ≥ 0; α = 0 returns the hard max.
      dim: the action axis.
    Returns:
      V(s), q_values without ``dim``.
    """
    check_float("q_values", q_values)
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if alpha == 0:
        return q_values.amax(dim=dim)
    return alpha * torch.logsumexp(q_values / alpha, dim=dim)


def signed_hyperbolic(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """MuZero's value transform (Pohlen et al. 2018; MuZero Appendix F), which squashes
    large returns so one regression fits values of 1 and of 300:

        h(x) = sign(x) (√(|x| + 1) − 1) + ε x
    """
    return torch.sign(x) * (torch.sqrt(x.abs() + 1) - 1) + eps * x


def signed_parabolic(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """The inverse of ``signed_hyperbolic``:

    h⁻¹(x) = sign(x) (((√(1 + 4ε(|x| + 1 + ε)) − 1) / (2ε))² − 1)
    """
    z = torch.sqrt(1 + 4 * eps * (x.abs() + 1 + eps))
    return torch.sign(x) * (((z - 1) / (2 * eps)) ** 2 - 1)
