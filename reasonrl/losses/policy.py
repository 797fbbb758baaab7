"""Policy losses: importance ratios, the clipped surrogate, KL estimators, entropy
(the log-prob kernels they take as input are in ``reasonrl.losses.logprobs``).

Token tensors are batch-first ``[B, T]`` (sequences × completion tokens); for the
control agents ``B·T`` is simply a flat batch of transitions and ``[N]`` works
as well. Every function returns *per-element* values: reduce them with
:mod:`reasonrl.losses.aggregation`, which is where masks and loss types live.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch

from reasonrl.losses._checks import check_float, check_shapes

KLEstimator = Literal["k1", "k2", "k3"]


def importance_ratio(logp: torch.Tensor, old_logp: torch.Tensor) -> torch.Tensor:
    """r_t = π_θ(a_t|s_t) / π_old(a_t|s_t) = exp(log π_θ − log π_old), same shape as inputs."""
    check_shapes(logp=logp, old_logp=old_logp)
    return torch.exp(logp - old_logp)


class SurrogateOutput(NamedTuple):
    loss: torch.Tensor  # per-element loss to minimise, shape of logp
    ratio: torch.Tensor  # r_t, detached
    is_clipped: torch.Tensor  # bool: the clipped branch was taken (its gradient is zero)


def _broadcast_advantages(advantages: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    check_float("advantages", advantages)
    if advantages.shape == logp.shape:
        return advantages
    if advantages.dim() == 1 and logp.dim() == 2 and advantages.shape[0] == logp.shape[0]:
        return advantages.unsqueeze(1)  # one advantage per sequence, shared by its tokens
    raise ValueError(
        f"advantages must have the shape of logp {tuple(logp.shape)} or one value per "
        f"sequence [{logp.shape[0]}], got {tuple(advantages.shape)}"
    )


def clipped_surrogate(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    epsilon_low: float = 0.2,
    epsilon_high: float | None = None,
    dual_clip: float | None = None,
) -> SurrogateOutput:
    """PPO's clipped surrogate (Schulman et al. 2017, arXiv:1707.06347, eq. 7), as a loss.

        L_t = − min(r_t A_t, clip(r_t, 1 − ε_low, 1 + ε_high) A_t)

    ε_high > ε_low is DAPO's clip-higher (Yu et al. 2025, arXiv:2503.14476). With
    ``dual_clip = c > 1`` (Ye et al. 2020, arXiv:1912.09729) negative advantages are
    also bounded from below: L_t = min(L_t, −c A_t) when A_t < 0.

    Args:
      logp: log π_θ(a_t|s_t), [B, T] or [N]; carries the gradient.
      old_logp: log π_old(a_t|s_t) of the policy that sampled, same shape (a constant).
      advantages: A_t, same shape as logp, or [B] (one per sequence) for [B, T] inputs.
      epsilon_low, epsilon_high: clip range; epsilon_high defaults to epsilon_low.
      dual_clip: c > 1, or None.
    Returns:
      SurrogateOutput(loss, ratio, is_clipped), each shaped like logp.
    """
    check_shapes(logp=logp, old_logp=old_logp)
    advantages = _broadcast_advantages(advantages, logp)
    epsilon_high = epsilon_low if epsilon_high is None else epsilon_high
    if epsilon_low < 0 or epsilon_high < 0:
        raise ValueError(f"clip ranges must be >= 0, got {epsilon_low}, {epsilon_high}")
    ratio = torch.exp(logp - old_logp.detach())
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - epsilon_low, 1.0 + epsilon_high) * advantages
    loss = -torch.min(unclipped, clipped)
    is_clipped = clipped < unclipped
    if dual_clip is not None:
        if dual_clip <= 1.0:
            raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
        cap = -dual_clip * advantages  # the loss of a negative advantage never exceeds −c A
        dual = (advantages < 0) & (loss > cap)
        loss = torch.where(dual, cap, loss)
        is_clipped = is_clipped | dual
    return SurrogateOutput(loss=loss, ratio=ratio.detach(), is_clipped=is_clipped)


def policy_gradient_loss(logp: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """The score-function (REINFORCE) loss, as used with V-trace advantages (IMPALA, eq. 4).

        L_t = − A_t · log π_θ(a_t|x_t)          (A_t a constant: ρ_t (r_t + γ v_{t+1} − V(x_t)) for IMPALA)

    Args:
      logp: log π_θ(a_t|x_t), any shape; carries the gradient.
      advantages: A_t, same shape (detached here).
    Returns:
      per-element loss, same shape.
    """
    check_shapes(logp=logp, advantages=advantages)
    return -advantages.detach() * logp


def soft_policy_loss(logp: torch.Tensor, q_values: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
    """SAC's actor loss (Haarnoja et al. 2018, arXiv:1812.05905, eq. 7), reparameterised samples a ~ π(·|s):

        L = α log π(a|s) − Q(s, a)            (Q = min of the twin critics)

    Args:
      logp: log π(a|s) of reparameterised actions, [N]; carries the gradient.
      q_values: Q(s, a) at those actions, [N]; carries the gradient to the actor through a.
      alpha: temperature α (a constant here).
    Returns:
      per-sample loss, [N].
    """
    check_shapes(logp=logp, q_values=q_values)
    alpha = alpha.detach() if isinstance(alpha, torch.Tensor) else alpha
    return alpha * logp - q_values


def kl_estimate(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    estimator: KLEstimator = "k3",
    sampling_logp: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample estimate of KL(π_θ ‖ π_ref) from tokens sampled by π_θ (J. Schulman,
    "Approximating KL divergence", 2020). With log ρ = log π_ref − log π_θ:

        k1 = −log ρ                  (unbiased, high variance, can be negative)
        k2 = ½ (log ρ)²              (biased, low variance)
        k3 = ρ − 1 − log ρ           (unbiased, ≥ 0; GRPO's and TRL's choice)

    When the tokens were sampled by another policy μ (the rollout policy of an
    earlier iteration), pass ``sampling_logp = log μ``: each estimate is then weighted
    by π_θ/μ (with gradient), which keeps it unbiased for KL(π_θ ‖ π_ref). This is
    TRL's ``use_bias_correction_kl`` (on by default in TRL 1.16).

    Args:
      logp: log π_θ of the sampled tokens, [B, T] or [N].
      ref_logp: log π_ref of the same tokens, same shape.
      estimator: "k1", "k2" or "k3".
      sampling_logp: log μ of the same tokens, or None when μ = π_θ.
    Returns:
      per-element KL estimate, same shape.
    """
    check_shapes(logp=logp, ref_logp=ref_logp)
    log_rho = ref_logp - logp
    if estimator == "k1":
        kl = -log_rho
    elif estimator == "k2":
        kl = 0.5 * log_rho**2
    elif estimator == "k3":
        kl = torch.exp(log_rho) - 1.0 - log_rho
    else:
        raise ValueError(f"estimator must be 'k1', 'k2' or 'k3', got {estimator!r}")
    if sampling_logp is not None:
        kl = kl * importance_ratio(logp, sampling_logp.detach())
    return kl


def entropy_from_logits(
    logits: torch.Tensor, chunk_size: int = 256, temperature: float = 1.0
) -> torch.Tensor:
    """Entropy H = logsumexp(z') − Σ_v softmax(z')_v z'_v, z' = z / τ, of each row of logits (nats).

    Rows are processed ``chunk_size`` at a time so a [B, T, V] tensor never needs a
    second full-size softmax (or scaled) copy.

    Args:
      logits: z, [..., V].
      temperature: τ; the entropy is that of the sampling distribution softmax(z / τ).
    Returns:
      H, [...].
    """
    check_float("logits", logits)
    flat = logits.reshape(-1, logits.shape[-1])
    out = []
    for chunk in flat.split(chunk_size):
        if temperature != 1.0:
            chunk = chunk / temperature
        out.append(torch.logsumexp(chunk, -1) - (torch.softmax(chunk, -1) * chunk).sum(-1))
    if not out:
        return logits.new_zeros(logits.shape[:-1])
    return (out[0] if len(out) == 1 else torch.cat(out)).view(logits.shape[:-1])


def cross_entropy_to_target(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of a policy to a target distribution, AlphaZero / MuZero's policy
    loss towards the search's visit distribution (Silver et al. 2017; Schrittwieser et
    al. 2020, eq. 1):

        l(π, p) = − Σ_a π(a) log p(a),   p = softmax(logits)

    Args:
      logits: the policy's logits [..., A], carries the gradient.
      target_probs: π, [..., A], rows summing to 1 (a constant).
    Returns:
      per-row loss, [...].
    """
    check_shapes(logits=logits, target_probs=target_probs)
    return -(target_probs.detach() * torch.log_softmax(logits, -1)).sum(-1)
