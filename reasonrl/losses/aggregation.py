"""Reducing per-token losses to a scalar: masks and the GRPO family's loss types.

With per-token losses ℓ_{i,t} for sequences i = 1..B and a completion mask m_{i,t}:

    token_mean         Σ_{i,t} m ℓ / Σ_{i,t} m                    (DAPO; TRL "bnpo", "dapo")
    sequence_mean      1/B Σ_i (Σ_t m ℓ / Σ_t m)                  (GRPO; TRL "grpo")
    sequence_sum_norm  Σ_{i,t} m ℓ / (B · L)                      (Dr. GRPO; TRL "dr_grpo")

where L is a constant, the maximum completion length. ``sequence_mean`` gives every
sequence the same weight, so tokens of long answers count less; ``token_mean`` gives
every token the same weight within a batch; ``sequence_sum_norm`` does neither and
removes the length bias altogether (its normaliser does not depend on the sample).
"""

from __future__ import annotations

from typing import Literal

import torch

from reasonrl.losses._checks import as_mask, check_float, check_rank

Aggregation = Literal["token_mean", "sequence_mean", "sequence_sum_norm"]

# TRL's GRPOConfig.loss_type names, mapped to the aggregation they perform.
LOSS_TYPE_AGGREGATION: dict[str, Aggregation] = {
    "grpo": "sequence_mean",
    "bnpo": "token_mean",
    "dapo": "token_mean",
    "dr_grpo": "sequence_sum_norm",
}


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None = None, dim: int | None = None) -> torch.Tensor:
    """Σ m x / max(Σ m, 1) over ``dim`` (all elements when None). Empty masks give 0."""
    check_float("x", x)
    m = as_mask(mask, x)
    if dim is None:
        return (x * m).sum() / m.sum().clamp(min=1.0)
    return (x * m).sum(dim) / m.sum(dim).clamp(min=1.0)


def aggregate_tokens(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    mode: Aggregation = "token_mean",
    max_length: int | None = None,
    num_tokens: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Reduce ``per_token`` [B, T] to a scalar by ``mode`` (see the module docstring).

    Args:
      per_token: ℓ_{i,t}, [B, T].
      mask: m_{i,t}, [B, T], bool or float (1 = completion token that counts).
      mode: "token_mean", "sequence_mean" or "sequence_sum_norm".
      max_length: L for "sequence_sum_norm" (required there).
      num_tokens: for "token_mean", a global token count to divide by instead of this
        batch's Σ m (DAPO across processes or gradient-accumulation steps).
    Returns:
      scalar loss.
    """
    check_float("per_token", per_token)
    check_rank("per_token", per_token, 2, "batch-first [B, T]")
    m = as_mask(mask, per_token)
    if mode == "token_mean":
        denominator = m.sum() if num_tokens is None else torch.as_tensor(num_tokens)
        return (per_token * m).sum() / denominator.clamp(min=1.0)
    if mode == "sequence_mean":
        return ((per_token * m).sum(-1) / m.sum(-1).clamp(min=1.0)).mean()
    if mode == "sequence_sum_norm":
        if not max_length or max_length < 1:
            raise ValueError("sequence_sum_norm needs max_length (the maximum completion length)")
        return (per_token * m).sum() / (per_token.shape[0] * max_length)
    raise ValueError(f"mode must be 'token_mean', 'sequence_mean' or 'sequence_sum_norm', got {mode!r}")
