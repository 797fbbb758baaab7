"""Whole objectives: the scalar a trainer backpropagates, from log-probs and advantages.

Each function composes the family modules (policy, value, aggregation) into one
algorithm's loss, so a trainer computes model outputs and calls one function, and a
parity test against another library calls the very same function with the very same
arguments. Nothing here runs a model.

    grpo_loss   clipped surrogate + β·KL(π_θ ‖ π_ref), aggregated by GRPO's loss types
    ppo_loss    clipped surrogate + c_v · (clipped) value loss − c_H · entropy

DPO's objective is ``reasonrl.losses.preference.dpo_loss``.

Micro-batches: with a normaliser from the whole minibatch (``num_tokens`` for
token-mean losses, ``num_sequences`` for sequence losses) the gradients of a
minibatch's micro-batches add up to the gradient of the minibatch in one piece.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from reasonrl.losses._checks import as_mask, check_shapes
from reasonrl.losses.aggregation import LOSS_TYPE_AGGREGATION, aggregate_tokens, masked_mean
from reasonrl.losses.policy import clipped_surrogate, kl_estimate
from reasonrl.losses.value import value_loss


class GRPOLossOutput(NamedTuple):
    loss: torch.Tensor  # scalar
    kl: torch.Tensor  # [B, T] per-token KL estimate (zeros when there is no reference), detached
    ratio: torch.Tensor  # [B, T] π_θ / π_old, detached
    is_clipped: torch.Tensor  # [B, T] bool


def grpo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    beta: float = 0.0,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    loss_type: str = "dapo",
    bias_correction_kl: bool = True,
    max_completion_length: int | None = None,
    num_tokens: torch.Tensor | float | None = None,
    num_sequences: int | None = None,
) -> GRPOLossOutput:
    """GRPO's loss (Shao et al. 2024, arXiv:2402.03300) with TRL 1.16's loss types.

    Per token of completion i, with r = π_θ / π_old and Â_i the group-relative advantage:

        ℓ_{i,t} = − min(r Â_i, clip(r, 1 − ε, 1 + ε_high) Â_i) + β · KL̂_{i,t}
        KL̂ = (π_θ / π_old) · k3(π_θ, π_ref)   with bias correction, else k3 (Schulman 2020)

    then reduced by ``loss_type`` (``reasonrl.losses.aggregation``): "grpo" averages per
    sequence, "bnpo" / "dapo" per token, "dr_grpo" divides the token sum by B · L.

    Args:
      logprobs: log π_θ of the completion tokens, [B, T]; carries the gradient.
      old_logprobs: log π_old (the sampling policy, or logprobs detached), [B, T].
      ref_logprobs: log π_ref, [B, T], or None (then β must be 0).
      advantages: Â, [B] (one per completion) or [B, T].
      mask: [B, T], true for tokens that count.
      beta: β, the KL coefficient.
      epsilon, epsilon_high: clip range (ε_high: DAPO's clip-higher; None = ε).
      loss_type: "grpo", "bnpo", "dr_grpo" or "dapo".
      bias_correction_kl: importance-weight the KL by π_θ / π_old (TRL's use_bias_correction_kl).
      max_completion_length: L, needed by "dr_grpo".
      num_tokens: token-mean losses: the minibatch's token count (default: this batch's).
      num_sequences: sequence losses: the minibatch's row count (default: B).
    Returns:
      GRPOLossOutput(loss, kl, ratio, is_clipped).
    """
    check_shapes(logprobs=logprobs, old_logprobs=old_logprobs)
    mask = as_mask(mask, logprobs).bool()
    if loss_type not in LOSS_TYPE_AGGREGATION:
        raise ValueError(f"loss_type must be one of {sorted(LOSS_TYPE_AGGREGATION)}, got {loss_type!r}")
    surrogate = clipped_surrogate(logprobs, old_logprobs, advantages, epsilon, epsilon_high)
    per_token = surrogate.loss
    kl = torch.zeros_like(logprobs)
    if ref_logprobs is not None:
        sampling = old_logprobs if bias_correction_kl else None
        kl = kl_estimate(logprobs, ref_logprobs, "k3", sampling_logp=sampling)
        per_token = per_token + beta * kl
    elif beta:
        raise ValueError(f"beta={beta} needs ref_logprobs")
    mode = LOSS_TYPE_AGGREGATION[loss_type]
    if mode == "token_mean":
        loss = aggregate_tokens(per_token, mask, mode, num_tokens=num_tokens)
    else:
        loss = aggregate_tokens(per_token, mask, mode, max_length=max_completion_length)
        if num_sequences is not None:
            loss = loss * (logprobs.shape[0] / num_sequences)
    return GRPOLossOutput(loss, kl.detach(), surrogate.ratio, surrogate.is_clipped)


class PPOLossOutput(NamedTuple):
    loss: torch.Tensor  # scalar
    policy_loss: torch.Tensor  # scalar, detached: the surrogate's mean over counted elements
    value_loss: torch.Tensor  # scalar, detached
    entropy: torch.Tensor  # scalar, detached
    clip_fraction: torch.Tensor  # scalar, detached
    approx_kl: torch.Tensor  # scalar, detached: mean of log π_old − log π_θ (k1)


def ppo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    clip_coef: float = 0.2,
    vf_coef: float = 0.5,
    ent_coef: float = 0.0,
    value_clip: float | None = 0.2,
    num_tokens: torch.Tensor | float | None = None,
) -> PPOLossOutput:
    """PPO's loss (Schulman et al. 2017, arXiv:1707.06347, eq. 9), as CleanRL and TRL write it:

        L = mean_t [ −min(r_t A_t, clip(r_t, 1 − ε, 1 + ε) A_t)
                     + c_v · ½ max((V_t − R_t)², (V_old + clip(V_t − V_old, ±ε_v) − R_t)²)
                     − c_H · H_t ]

    The same function trains the CartPole agent (elements are environment steps, no
    mask) and the LLM (elements are completion tokens, masked, averaged over the
    minibatch's ``num_tokens``).

    Args:
      logprobs: log π_θ(a_t|s_t), [N] or [B, T]; carries the gradient.
      old_logprobs: log π_old of the same actions (the rollout policy), same shape.
      advantages: A_t, same shape (already normalised if the caller wants that).
      values: V_θ(s_t), same shape; carries the gradient.
      old_values: V_old(s_t) of the rollout, same shape.
      returns: R_t, the value target, same shape.
      entropy: H(π_θ(·|s_t)), same shape; with a gradient only when ent_coef is used.
      mask: elements that count, same shape, or None for all.
      clip_coef: ε, the policy clip range.
      vf_coef: c_v; ent_coef: c_H.
      value_clip: ε_v, or None for the unclipped value loss.
      num_tokens: the minibatch's count of counted elements (default: this batch's).
    Returns:
      PPOLossOutput(loss, policy_loss, value_loss, entropy, clip_fraction, approx_kl).
    """
    check_shapes(
        logprobs=logprobs,
        old_logprobs=old_logprobs,
        advantages=advantages,
        values=values,
        old_values=old_values,
        returns=returns,
        entropy=entropy,
    )
    surrogate = clipped_surrogate(logprobs, old_logprobs, advantages, clip_coef)
    v_loss = value_loss(values, returns, old_values, value_clip)
    per_token = surrogate.loss + vf_coef * v_loss
    if ent_coef:
        per_token = per_token - ent_coef * entropy
    if mask is None:
        loss = per_token.mean() if num_tokens is None else per_token.sum() / num_tokens
        mask = torch.ones_like(logprobs, dtype=torch.bool)
    else:
        mask = as_mask(mask, logprobs).bool()
        loss = aggregate_tokens(per_token, mask, "token_mean", num_tokens=num_tokens)
    with torch.no_grad():
        return PPOLossOutput(
            loss=loss,
            policy_loss=masked_mean(surrogate.loss.detach(), mask),
            value_loss=masked_mean(v_loss.detach(), mask),
            entropy=masked_mean(entropy.detach(), mask),
            clip_fraction=masked_mean(surrogate.is_clipped.float(), mask),
            approx_kl=masked_mean(old_logprobs.detach() - logprobs.detach(), mask),
        )
