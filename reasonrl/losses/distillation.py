"""Supervised and distillation objectives: next-token NLL, and divergences between a
student's and a teacher's next-token distributions.

With the student's distribution s = softmax(z_s / τ) and the teacher's t = softmax(z_t / τ)
at one position, over the vocabulary:

    forward KL     KL(t ‖ s) = Σ_v t log(t / s)          mean-seeking (classic KD, Hinton 2015)
    reverse KL     KL(s ‖ t) = Σ_v s log(s / t)          mode-seeking (MiniLLM, on-policy KD)
    generalised    JSD_β = β KL(t ‖ m) + (1 − β) KL(s ‖ m),  m = β t + (1 − β) s
    JSD                                                 (GKD, Agarwal et al. 2024, eq. 2)

As in TRL's ``GKDTrainer.generalized_jsd_loss``, β = 0 is taken to mean the forward KL
and β = 1 the reverse KL (the limits of JSD_β are 0 at both ends, so the endpoints name
the KLs instead). All functions return a value per position: the trainer masks and
reduces (``reasonrl.losses.aggregation``).

``token_gap_advantages`` is the on-policy distillation signal when only sampled tokens
are scored (Agarwal et al. 2024 with a sampled reverse KL; the hindsight variant of
OpenClaw-RL, where the "teacher" is the policy with a hint in its context): the
per-token advantage A_t = log t(y_t) − log s(y_t), used with ``policy_gradient_loss``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from reasonrl.losses._checks import check_float, check_shapes

Divergence = Literal["forward_kl", "reverse_kl", "jsd"]


def nll(logp: torch.Tensor) -> torch.Tensor:
    """Supervised next-token loss per token: ℓ_t = −log π_θ(y_t | x, y_<t) (SFT; the value a
    language model's cross-entropy averages).

    Args:
      logp: log π_θ of the target tokens, any shape (e.g. [B, T] from ``token_logprobs``).
    Returns:
      per-token loss, same shape.
    """
    check_float("logp", logp)
    return -logp


def _log_softmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16 logits: fp32 softmax
    return F.log_softmax(logits / temperature, dim=-1)


def kl_divergence(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) = Σ_v p (log p − log q) over the last axis, from log-probabilities.

    Args:
      log_p, log_q: [..., V] log-probabilities of the same shape.
    Returns:
      [...] per position.
    """
    check_shapes(log_p=log_p, log_q=log_q)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def generalized_jsd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    beta: float = 0.5,
    temperature: float = 1.0,
) -> torch.Tensor:
    """GKD's generalised Jensen-Shannon divergence per position (see the module docstring;
    β = 0: forward KL, β = 1: reverse KL, as TRL).

    Args:
      student_logits: z_s [..., V], carries the gradient.
      teacher_logits: z_t [..., V] (detached here).
      beta: β in [0, 1], the teacher's weight in the mixture m.
      temperature: τ, applied to both.
    Returns:
      [...] divergence per position, ≥ 0.
    """
    check_shapes(student_logits=student_logits, teacher_logits=teacher_logits)
    if not 0 <= beta <= 1:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    log_s = _log_softmax(student_logits, temperature)
    log_t = _log_softmax(teacher_logits.detach(), temperature)
    if beta == 0:
        return kl_divergence(log_t, log_s)
    if beta == 1:
        return kl_divergence(log_s, log_t)
    log_m = torch.logaddexp(log_s + math.log(1 - beta), log_t + math.log(beta))
    return beta * kl_divergence(log_t, log_m) + (1 - beta) * kl_divergence(log_s, log_m)


def distillation_divergence(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    divergence: Divergence = "forward_kl",
    beta: float = 0.5,
    temperature: float = 1.0,
) -> torch.Tensor:
    """The per-position divergence a distillation recipe names: ``forward_kl`` KL(t ‖ s),
    ``reverse_kl`` KL(s ‖ t) or ``jsd`` (JSD_β). Shapes as ``generalized_jsd``."""
    if divergence == "forward_kl":
        return generalized_jsd(student_logits, teacher_logits, 0.0, temperature)
    if divergence == "reverse_kl":
        return generalized_jsd(student_logits, teacher_logits, 1.0, temperature)
    if divergence == "jsd":
        return generalized_jsd(student_logits, teacher_logits, beta, temperature)
    raise ValueError(f"divergence must be 'forward_kl', 'reverse_kl' or 'jsd', got {divergence!r}")


def token_gap_advantages(teacher_logp: torch.Tensor, student_logp: torch.Tensor) -> torch.Tensor:
    """A_t = log t(y_t) − log s(y_t) of sampled tokens, detached: positive where the teacher
    (or the policy given a hint) likes the token more than the student did. Its negative
    mean is the sampled estimate of KL(s ‖ t).

    Args:
      teacher_logp, student_logp: [B, T] log-probs of the sampled tokens.
    Returns:
      [B, T] advantages (no gradient).
    """
    check_shapes(teacher_logp=teacher_logp, student_logp=student_logp)
    return (teacher_logp - student_logp).detach()
