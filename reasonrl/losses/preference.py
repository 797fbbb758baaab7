"""Direct preference optimisation: the DPO loss family on sequence log-probabilities.

Inputs are sequence log-probs log π(y|x) = Σ_t log π(y_t|x, y_<t) of the chosen
(y_w) and rejected (y_l) completions under the policy and the frozen reference.
With the implicit rewards

    ρ_w = β (log π_θ(y_w|x) − log π_ref(y_w|x)),   ρ_l = β (log π_θ(y_l|x) − log π_ref(y_l|x))

and Δ = (ρ_w − ρ_l) / β, the loss types are

    sigmoid  −(1 − ε) log σ(βΔ) − ε log σ(−βΔ)          DPO (Rafailov et al. 2023, arXiv:2305.18290);
                                                         ε > 0 is conservative DPO (label smoothing)
    hinge    max(0, 1 − βΔ)                             SLiC (Zhao et al. 2023, arXiv:2305.10425)
    ipo      (Δ̄ − 1/(2β))²                              IPO (Azar et al. 2023, arXiv:2310.12036, eq. 17),
                                                         Δ̄ from per-token means when lengths are given
    robust   (−(1 − ε) log σ(βΔ) + ε log σ(−βΔ)) / (1 − 2ε)
                                                         rDPO (Chowdhury et al. 2024, arXiv:2403.00409)
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

from reasonrl.losses._checks import check_float, check_rank, check_shapes

DPOLossType = Literal["sigmoid", "hinge", "ipo", "robust"]


class DPOOutput(NamedTuple):
    losses: torch.Tensor  # per pair, [B]
    chosen_rewards: torch.Tensor  # ρ_w, [B], detached
    rejected_rewards: torch.Tensor  # ρ_l, [B], detached
    margins: torch.Tensor  # ρ_w − ρ_l, [B]
    accuracies: torch.Tensor  # 1.0 where ρ_w > ρ_l, [B]


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    loss_type: DPOLossType = "sigmoid",
    label_smoothing: float = 0.0,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> DPOOutput:
    """The DPO family (module docstring) with implicit-reward metrics for logging.

    Args:
      policy_chosen_logps, policy_rejected_logps: log π_θ(y_w|x), log π_θ(y_l|x), [B].
      ref_chosen_logps, ref_rejected_logps: the same under π_ref, [B] (constants).
      beta: β > 0.
      loss_type: "sigmoid", "hinge", "ipo" or "robust".
      label_smoothing: ε, the assumed rate of flipped labels (sigmoid, robust); < 0.5.
      chosen_lengths, rejected_lengths: completion token counts, [B]; IPO divides the
        log-ratios by them (as TRL does), the other losses ignore them.
    Returns:
      DPOOutput; reduce ``losses`` with ``.mean()``.
    """
    check_shapes(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
    )
    check_rank("policy_chosen_logps", policy_chosen_logps, 1, "one value per pair [B]")
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    chosen_logratios = policy_chosen_logps - ref_chosen_logps.detach()
    rejected_logratios = policy_rejected_logps - ref_rejected_logps.detach()
    delta = chosen_logratios - rejected_logratios
    if loss_type == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * delta) - label_smoothing * F.logsigmoid(
            -beta * delta
        )
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * delta)
    elif loss_type == "ipo":
        if chosen_lengths is not None and rejected_lengths is not None:
            for name, lengths in (
                ("chosen_lengths", chosen_lengths),
                ("rejected_lengths", rejected_lengths),
            ):
                if lengths.shape != delta.shape:
                    raise ValueError(f"{name} must have shape {tuple(delta.shape)}")
            delta = chosen_logratios / chosen_lengths.clamp(
                min=1
            ) - rejected_logratios / rejected_lengths.clamp(min=1)
        losses = (delta - 1 / (2 * beta)) ** 2
    elif loss_type == "robust":
        clean = -(1 - label_smoothing) * F.logsigmoid(beta * delta)
        flipped = -label_smoothing * F.logsigmoid(-beta * delta)
        losses = (clean - flipped) / (1 - 2 * label_smoothing)
    else:
        raise ValueError(f"loss_type must be 'sigmoid', 'hinge', 'ipo' or 'robust', got {loss_type!r}")
    chosen_rewards = beta * chosen_logratios.detach()
    rejected_rewards = beta * rejected_logratios.detach()
    check_float("losses", losses)
    return DPOOutput(
        losses=losses,
        chosen_rewards=chosen_rewards,
        rejected_rewards=rejected_rewards,
        margins=chosen_rewards - rejected_rewards,
        accuracies=(chosen_rewards > rejected_rewards).to(losses.dtype),
    )
